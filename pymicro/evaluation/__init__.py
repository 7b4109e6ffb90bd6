"""Honest figures: backtests, walk-forward validation, the benchmark report.

``backtest`` (positions from probabilities, costs and slippage charged, walk-forward
retraining), ``validation`` (leak checks, overfitting statistics, the validation report),
``report`` (every preset's out-of-sample table, beside baselines) and ``plots``. The statistics
they share live in :mod:`pymicro.metrics`, below training, which reports them too.
"""

from pymicro.errors import require as _require

_require("pandas", "eval", purpose="pymicro.evaluation (backtests, validation, reports)")
