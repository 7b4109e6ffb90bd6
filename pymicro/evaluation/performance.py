"""The model's out-of-sample figures: its accuracy edge, and the trading of its test signals.

:func:`check_accuracy` (the edge over the majority class and its block-bootstrap p-value);
:func:`trade_test_rows` backtests the test rows' positions per symbol, net of costs, beside
buy-and-hold and the majority class, as an equal-weight portfolio.
"""

from __future__ import annotations

import numpy as np

from pymicro import metrics as M
from pymicro.evaluation.backtest import positions_from_probabilities, run_backtest
from pymicro.evaluation.rows import Rows
from pymicro.evaluation.verdict import CheckResult, add_risk


def trade_test_rows(rows: Rows, table, probs_all, majority, freq, cost_bps, slippage_bps, threshold, n_classes,
             class_positions):
    import pandas as pd


    te = rows.idx(2)
    cp = class_positions
    if cp is None and n_classes != 3:
        cp = np.linspace(-1, 1, n_classes)
    legs = {"strategy": {}, "buy_and_hold": {}, "majority_class": {}}
    trades = 0
    missing = []
    for s in sorted(set(map(str, rows.symbols[te]))):
        idx = te[rows.symbols[te].astype(str) == s]
        if s not in table or idx.size < 3:
            missing.append(s)
            continue
        cal, close = table[s]
        p = np.searchsorted(cal, rows.dates[idx])
        ok = (p < cal.size) & (cal[np.minimum(p, cal.size - 1)] == rows.dates[idx])
        if not ok.all():
            missing.append(s)
            continue
        # one bar past the last test row so the last position earns its next bar
        bars_p = np.append(p, p[-1] + 1) if p[-1] + 1 < cal.size else p
        pos = positions_from_probabilities(probs_all[idx], threshold, False, cp)
        if bars_p.size > p.size:
            pos = np.append(pos, 0.0)
        res = run_backtest(close[bars_p], pos, cost_bps, slippage_bps, dates=cal[bars_p],
                           periods_per_year=freq.periods_per_year, majority_class=majority, class_positions=cp)
        trades += int(np.count_nonzero(np.diff(res.strategy.positions, prepend=0.0)))
        for name, leg in (("strategy", res.strategy), ("buy_and_hold", res.baselines["buy_and_hold"]),
                          ("majority_class", res.baselines["majority_class"])):
            legs[name][s] = pd.Series(leg.returns, index=res.dates)
    if not legs["strategy"]:
        return None, missing
    out = {"symbols": sorted(legs["strategy"]), "missing_prices": missing, "trades": trades,
           "cost_bps": cost_bps, "slippage_bps": slippage_bps, "threshold": threshold,
           "portfolio": "equal weight across symbols, daily mean of their net returns"}
    series = {}
    for name, per in legs.items():
        r = pd.DataFrame(per).mean(axis=1).to_numpy()
        series[name] = r
        out[name] = M.trading_summary(r, periods_per_year=freq.periods_per_year)
    return out, series


def check_accuracy(summary: dict, edge: dict, label_names) -> CheckResult:
    c = CheckResult("accuracy", "pass", "")
    c.numbers = {**summary, "edge": edge["edge"], "edge_se_block": edge["se"], "edge_z": edge["z"],
                 "p_value_block": edge["p_value"], "block": edge["block"]}
    lo, hi = summary["accuracy_ci"]
    maj = summary["majority_class"]
    name = label_names[maj] if label_names and isinstance(maj, int) and maj < len(label_names) else str(maj)
    if edge["p_value"] >= 0.05:
        add_risk(c, "medium", f"the edge over always predicting {name!r} ({edge['edge'] * 100:+.1f} points) is not "
                           f"statistically significant (p = {edge['p_value']:.2f}, block bootstrap)")
    c.summary = (f"accuracy {summary['accuracy']:.1%} ({lo:.1%}..{hi:.1%}) vs majority {summary['majority_accuracy']:.1%}: "
                 f"{edge['edge'] * 100:+.1f} points, p = {edge['p_value']:.2g} (block bootstrap), "
                 f"{summary['p_value_vs_majority']:.2g} (binomial)")
    return c
