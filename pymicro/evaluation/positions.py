"""The position rule: how class probabilities become positions, chosen on validation data.

One rule for every command (``pymicro backtest``, ``validate``, ``report``, the MCP tools):

    from pymicro.evaluation.positions import choose_rule

    rule = choose_rule(probs_val, next_returns_val, groups=symbols_val, cost_bps=1, slippage_bps=1)
    positions = rule.apply(probs_test)        # never chosen on the rows it trades

A rule is a confidence threshold (:func:`pymicro.evaluation.backtest.positions_from_probabilities`:
long when P(up) is the largest and at least the threshold, short likewise for down). It is
chosen among :data:`THRESHOLDS` by the net Sharpe ratio of the validation rows (one bar
held, costs charged on every change), among the thresholds that keep the strategy in the
market at least :data:`MIN_EXPOSURE` of the validation rows; if none does, the lowest
threshold (the most exposure). Ties go to the lower threshold. The test rows are never
looked at. A strategy in the market less than :data:`MIN_EXPOSURE` of the time has a
Sharpe ratio that rests on few positions: :func:`exposure_warning` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pymicro.errors import EvaluationError
from pymicro.evaluation.backtest import positions_from_probabilities

__all__ = ["MIN_EXPOSURE", "THRESHOLDS", "PositionRule", "choose_rule", "exposure_warning", "fixed_rule",
           "next_bar_returns"]

THRESHOLDS = (0.0, 0.35, 0.4, 0.45, 0.5)
MIN_EXPOSURE = 0.10


@dataclass(frozen=True)
class PositionRule:
    """A confidence threshold and the class-to-position map; where it was chosen and what it scored there."""

    threshold: float
    long_only: bool = False
    class_positions: tuple[float, ...] | None = None
    chosen_on: str = "given"
    candidates: dict = field(default_factory=dict)  # threshold -> {"sharpe", "exposure", "rows"} on validation

    def apply(self, probs) -> np.ndarray:
        """Positions (one per row) from class probabilities."""
        return positions_from_probabilities(probs, self.threshold, self.long_only, self.class_positions)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "long_only": self.long_only,
                "class_positions": None if self.class_positions is None else list(self.class_positions),
                "chosen_on": self.chosen_on,
                "candidates": {f"{k:g}": v for k, v in self.candidates.items()}}

    def describe(self) -> str:
        return f"confidence threshold {self.threshold:g} ({self.chosen_on})"


def fixed_rule(threshold: float, long_only: bool = False, class_positions=None) -> PositionRule:
    """A rule given by the caller, not chosen on data."""
    cp = None if class_positions is None else tuple(float(v) for v in class_positions)
    return PositionRule(float(threshold), bool(long_only), cp, "given by the caller")


def _net_returns(pos: np.ndarray, r: np.ndarray, groups: np.ndarray, cost: float) -> np.ndarray:
    prev = np.concatenate([[0.0], pos[:-1]])
    new_group = np.concatenate([[True], groups[1:] != groups[:-1]])
    prev[new_group] = 0.0
    return pos * r - np.abs(pos - prev) * cost


def choose_rule(probs, next_returns, *, groups=None, cost_bps: float = 1.0, slippage_bps: float = 1.0,
                long_only: bool = False, class_positions: Sequence[float] | None = None,
                thresholds: Sequence[float] = THRESHOLDS, min_exposure: float = MIN_EXPOSURE,
                chosen_on: str = "validation rows") -> PositionRule:
    """Choose the confidence threshold on validation rows (never the test rows).

    ``probs``: (rows, classes) probabilities of the validation rows; ``next_returns``: the
    simple return each row's position would earn (the bar after the row's close; NaN where
    unknown: those rows are left out). ``groups``: the symbol of each row (costs are
    charged within a symbol, rows in date order within it). Returns a :class:`PositionRule`
    whose ``candidates`` hold each threshold's validation Sharpe (per period) and exposure.
    """
    p = np.asarray(probs, np.float64)
    r = np.asarray(next_returns, np.float64)
    if p.ndim != 2 or r.shape != (p.shape[0],):
        raise EvaluationError(f"probs {p.shape} and next_returns {r.shape} must have one row each")
    g = np.zeros(len(r), np.int64) if groups is None else np.asarray(groups).astype(str)
    ok = np.isfinite(r)
    p, r, g = p[ok], r[ok], g[ok]
    if len(g):
        order = np.lexsort((np.arange(len(g)), g))  # stable: by symbol, then row order
        p, r, g = p[order], r[order], g[order]
    cp = None if class_positions is None else tuple(float(v) for v in class_positions)
    cost = (float(cost_bps) + float(slippage_bps)) / 1e4
    cands: dict[float, dict] = {}
    for t in sorted(float(x) for x in thresholds):
        pos = positions_from_probabilities(p, t, long_only, cp) if len(r) else np.zeros(0)
        net = _net_returns(pos, r, g, cost) if len(r) else np.zeros(0)
        sd = float(net.std(ddof=1)) if net.size > 1 else 0.0
        sharpe = float(net.mean() / sd) if sd > 0 else 0.0
        cands[t] = {"sharpe_per_period": sharpe, "exposure": float(np.mean(pos != 0)) if pos.size else 0.0,
                    "rows": int(r.size)}
    eligible = [t for t, v in cands.items() if v["exposure"] >= min_exposure]
    if len(r) < 30:
        best, why = min(cands), f"{len(r)} validation rows with a known next bar: too few to choose, lowest"
    elif eligible:
        best = max(eligible, key=lambda t: (cands[t]["sharpe_per_period"], -t))
        why = f"best net Sharpe on {chosen_on} among thresholds with exposure >= {min_exposure:.0%}"
    else:
        best, why = min(cands), f"no threshold reaches {min_exposure:.0%} exposure on {chosen_on}: lowest"
    return PositionRule(best, bool(long_only), cp, f"{why}; {len(r)} rows", cands)


def next_bar_returns(dates, symbols, table) -> np.ndarray:
    """The simple return of the bar after each row's bar, from ``table`` (symbol -> (calendar, closes),
    :func:`pymicro.evaluation.rows.price_table`); NaN where unknown."""
    dates = np.asarray(dates)
    syms = np.asarray(symbols).astype(str)
    out = np.full(len(dates), np.nan)
    for s in np.unique(syms):
        if s not in table:
            continue
        cal, close = table[s]
        idx = np.flatnonzero(syms == s)
        p = np.searchsorted(cal, dates[idx])
        ok = (p + 1 < cal.size) & (cal[np.minimum(p, cal.size - 1)] == dates[idx])
        out[idx[ok]] = close[p[ok] + 1] / close[p[ok]] - 1.0
    return out


def exposure_warning(exposure: float | None, min_exposure: float = MIN_EXPOSURE) -> str | None:
    """A sentence when a strategy is in the market less than ``min_exposure`` of the time, else None."""
    if exposure is None or (isinstance(exposure, float) and math.isnan(exposure)) or exposure >= min_exposure:
        return None
    return (f"in the market only {exposure:.1%} of the time (< {min_exposure:.0%}): its Sharpe ratio rests on "
            "few positions and says little about the model")
