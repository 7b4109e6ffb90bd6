"""The model's out-of-sample figures: its accuracy edge, and the trading of its test signals.

:func:`check_accuracy` (the edge over the majority class and its block-bootstrap p-value);
:func:`trade_test_rows` backtests the test rows' positions per symbol, net of costs, beside
buy-and-hold and the majority class, as an equal-weight portfolio.
"""

from __future__ import annotations

import numpy as np

from pymicro import metrics as M
from pymicro.evaluation.backtest import run_backtest
from pymicro.evaluation.positions import (PositionRule, choose_rule, exposure_warning, fixed_rule,
                                         next_bar_returns)
from pymicro.evaluation.rows import Rows
from pymicro.evaluation.verdict import CheckResult, add_risk


def rule_for_rows(rows: Rows, table, probs_all, cost_bps, slippage_bps, threshold, n_classes,
                  class_positions=None, long_only: bool = False) -> PositionRule:
    """The position rule every command uses: ``threshold`` if given, else chosen on the validation rows
    (part 1) by :func:`pymicro.evaluation.positions.choose_rule`, never on the test rows."""
    cp = class_positions
    if cp is None and n_classes != 3:
        cp = np.linspace(-1, 1, n_classes)
    if threshold is not None:
        return fixed_rule(threshold, long_only, cp)
    va = rows.idx(1)
    if table is None or va.size == 0:
        return PositionRule(0.0, long_only, None if cp is None else tuple(map(float, cp)),
                            "no validation rows with prices: threshold 0 (the most likely class)")
    nxt = next_bar_returns(rows.dates[va], rows.symbols[va], table)
    return choose_rule(probs_all[va], nxt, groups=rows.symbols[va], cost_bps=cost_bps, slippage_bps=slippage_bps,
                       class_positions=cp, long_only=long_only, chosen_on="the validation rows")


def trade_test_rows(rows: Rows, table, probs_all, majority, freq, cost_bps, slippage_bps, rule: PositionRule,
                    n_classes, results: dict | None = None):
    """Backtest the test rows' positions per symbol (``rule``), net of costs, beside buy-and-hold, the
    majority class and momentum; the equal-weight portfolio of the symbols on each date.
    ``results``, if given, receives each symbol's :class:`BacktestResult`."""
    import pandas as pd

    te = rows.idx(2)
    cp = rule.class_positions
    legs = {"strategy": {}, "buy_and_hold": {}, "majority_class": {}, "momentum": {}}
    held = []
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
        pos = rule.apply(probs_all[idx])
        if bars_p.size > p.size:
            pos = np.append(pos, 0.0)
        res = run_backtest(close[bars_p], pos, cost_bps, slippage_bps, dates=cal[bars_p],
                           periods_per_year=freq.periods_per_year, majority_class=majority, class_positions=cp,
                           long_only=rule.long_only)
        res.settings.update(threshold=rule.threshold, position_rule=rule.chosen_on,
                            periods_per_year_source=f"the '{freq.name}' frequency")
        if results is not None:
            results[s] = res
        held.append(res.strategy.positions)
        trades += int(np.count_nonzero(np.diff(res.strategy.positions, prepend=0.0)))
        for name in legs:
            leg = res.strategy if name == "strategy" else res.baselines[name]
            legs[name][s] = pd.Series(leg.returns, index=res.dates)
    if not legs["strategy"]:
        return None, missing
    exposure = float(np.mean(np.concatenate(held) != 0))
    out = {"symbols": sorted(legs["strategy"]), "missing_prices": missing, "trades": trades,
           "cost_bps": cost_bps, "slippage_bps": slippage_bps, "threshold": rule.threshold,
           "position_rule": rule.to_dict(), "exposure": exposure,
           "low_exposure": exposure_warning(exposure),
           "periods_per_year": freq.periods_per_year, "periods_per_year_source": f"the '{freq.name}' frequency",
           "portfolio": "equal weight across symbols, daily mean of their net returns"}
    series = {}
    for name, per in legs.items():
        frame = pd.DataFrame(per).mean(axis=1)
        r = frame.to_numpy()
        series[name] = r
        series["dates"] = np.asarray(frame.index)
        out[name] = M.trading_summary(r, periods_per_year=freq.periods_per_year)
    out["strategy"]["exposure"] = exposure
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


def model_figures(model, rows: Rows, table, freq, cost_bps: float, slippage_bps: float, *, threshold=None,
                  class_positions=None, seed: int = 0, results: dict | None = None,
                  long_only: bool = False) -> dict:
    """A frozen model's out-of-sample figures, computed once for every command (validate, report, backtest
    of a blob, the MCP tools): accuracy beside the training majority class, the paired edge with its
    block-bootstrap p-value (the labels overlap), the position rule (chosen on the validation rows unless
    ``threshold`` is given) and the test rows traded with it, net of costs, beside the baselines."""
    from pymicro.evaluation.resampling import edge_test

    n_classes = model.n_classes
    probs_all = np.asarray(model.predict(np.ascontiguousarray(rows.X, np.float32)), np.float64)
    pred_all = probs_all.argmax(axis=1)
    tr, te = rows.idx(0), rows.idx(2)
    majority = M.majority_class(rows.y[tr], n_classes)
    block = rows.horizon * max(1, len(set(map(str, rows.symbols[te]))))  # the symbols the test rows interleave
    summary = M.classification_summary(rows.y[te], pred_all[te], n_classes=n_classes, majority=majority,
                                       block=block)
    edge = edge_test(rows.y[te], pred_all[te], np.full(te.size, majority), block, seed)
    summary["p_value_block"] = edge["p_value"]
    rule = rule_for_rows(rows, table, probs_all, cost_bps, slippage_bps, threshold, n_classes, class_positions,
                         long_only)
    trade = series = None
    if table is not None:
        trade, series = trade_test_rows(rows, table, probs_all, majority, freq, cost_bps, slippage_bps, rule,
                                        n_classes, results)
    return {"probs_all": probs_all, "pred_all": pred_all, "majority": majority, "summary": summary, "edge": edge,
            "block": block, "rule": rule, "trade": trade, "series": series}
