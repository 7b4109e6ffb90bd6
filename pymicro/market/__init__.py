"""Market data and what is computed from it before a model sees it.

``data`` (OHLCV loaders and the embedded histories in ``datasets/``), ``bars`` (one symbol's
validated bars and causal window helpers), ``technical`` (momentum and reversal features),
``macro``, ``news`` and ``reasoning_features`` (the sentiment preset's inputs), ``features``
(the feature-set registry: one set per preset), ``labels`` (forward-return classes) and
``dataset`` (chronological splits with train-only normalisation). ``reasoning_client`` asks an
outside reasoning server (over MCP) for feature columns.

A feature at bar t reads bars up to t only; a label reads later bars.
"""

from pymicro.errors import require as _require

_require("pandas", "train", purpose="pymicro.market (data, features, labels)")
