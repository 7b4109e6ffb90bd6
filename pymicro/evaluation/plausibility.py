"""What a causal model can plausibly score on bars of one frequency, and the check of it.

:data:`FREQUENCIES` holds the limits per bar frequency (:class:`Frequency`); the leak checks
use ``max_bar_corr``, :func:`check_plausibility` the rest: a figure whose lower 95 % bound is
above its limit is implausible (docs/validation.md, "plausibility").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from pymicro.evaluation.verdict import CheckResult, add_risk

_N = NormalDist()


@dataclass(frozen=True)
class Frequency:
    """What is physically plausible for a causal model on bars of one frequency.

    ``max_bar_corr``: largest |correlation| between a causal signal at ``t`` and one future
    bar's return. ``max_edge``: accuracy points above the majority class. ``max_sharpe``:
    annualised out-of-sample Sharpe net of costs. ``max_win_rate``: share of winning
    periods while in the market. Above any of these a figure is flagged as implausible.
    """

    name: str
    periods_per_year: float
    max_bar_corr: float
    max_edge: float
    max_binary_accuracy: float
    max_sharpe: float
    max_win_rate: float


FREQUENCIES: dict[str, Frequency] = {f.name: f for f in (
    Frequency("minute", 252 * 390, 0.30, 0.10, 0.60, 8.0, 0.70),
    Frequency("hourly", 252 * 6.5, 0.20, 0.10, 0.60, 5.0, 0.68),
    Frequency("daily", 252, 0.15, 0.10, 0.60, 3.0, 0.65),
    Frequency("weekly", 52, 0.20, 0.12, 0.62, 2.5, 0.68),
    Frequency("monthly", 12, 0.25, 0.15, 0.65, 2.0, 0.70),
)}


def check_plausibility(summary, edge, trade, freq, n_classes) -> CheckResult:
    c = CheckResult("plausibility", "pass", "")
    nums = {"frequency": freq.name, "limits": {"max_edge": freq.max_edge, "max_binary_accuracy": freq.max_binary_accuracy,
                                              "max_sharpe": freq.max_sharpe, "max_win_rate": freq.max_win_rate}}
    z = _N.inv_cdf(0.95)  # one-sided 95 %: a figure is implausible when even its lower bound is
    edge_lo = edge["edge"] - z * edge["se"]
    acc_lo = summary["accuracy"] - z * edge["se"]
    nums.update(edge=edge["edge"], edge_lower_bound=edge_lo)
    if edge_lo > freq.max_edge:
        add_risk(c, "high", f"an accuracy edge of {edge['edge'] * 100:.1f} points over the majority class (lower 95 % "
                         f"bound {edge_lo * 100:.1f}) is implausible for {freq.name} direction labels "
                         f"(limit {freq.max_edge * 100:.0f})")
    elif edge["edge"] > freq.max_edge:
        add_risk(c, "medium", f"an accuracy edge of {edge['edge'] * 100:.1f} points is above what is plausible for "
                           f"{freq.name} direction labels ({freq.max_edge * 100:.0f}), though within sampling error "
                           f"(lower 95 % bound {edge_lo * 100:.1f}): expect it to shrink on new data")
    if n_classes == 2 and acc_lo > freq.max_binary_accuracy:
        add_risk(c, "high", f"{summary['accuracy']:.1%} accuracy on {freq.name} up/down labels (lower 95 % bound "
                         f"{acc_lo:.1%}) is implausible (limit {freq.max_binary_accuracy:.0%})")
    if trade is not None:
        s = trade["strategy"]
        P, n = freq.periods_per_year, s["periods"]
        sr = s["sharpe"] / math.sqrt(P) if math.isfinite(s["sharpe"]) else s["sharpe"]
        sr_lo = (sr - z * math.sqrt((1 + sr * sr / 2) / max(n - 1, 1))) * math.sqrt(P) if math.isfinite(sr) else sr
        wr_lo = s["win_rate"] - z * math.sqrt(max(s["win_rate"] * (1 - s["win_rate"]), 0) / max(n, 1))
        nums.update(sharpe=s["sharpe"], sharpe_lower_bound=sr_lo, win_rate=s["win_rate"], win_rate_lower_bound=wr_lo,
                    max_drawdown=s["max_drawdown"], trades=trade["trades"], periods=n)
        if sr_lo > freq.max_sharpe:
            add_risk(c, "high", f"an out-of-sample Sharpe ratio of {s['sharpe']:.1f} net of costs (lower 95 % bound "
                             f"{sr_lo:.1f}) is implausible for {freq.name} bars (limit {freq.max_sharpe:g})")
        elif s["sharpe"] > freq.max_sharpe:
            add_risk(c, "medium", f"an out-of-sample Sharpe ratio of {s['sharpe']:.1f} is above what is plausible for "
                               f"{freq.name} bars ({freq.max_sharpe:g}), though within sampling error (lower 95 % "
                               f"bound {sr_lo:.1f}): expect it to shrink")
        # too good against the references: the baselines on the same dates and what honest models of this
        # frequency reach (about a third of the limit: Sharpe ~1 on daily bars). A Sharpe far above both is
        # itself evidence of a leak the scans did not see; it lowers the confidence instead of raising it.
        refs = {k: trade[k]["sharpe"] for k in ("buy_and_hold", "momentum", "majority_class")
                if isinstance(trade.get(k), dict) and math.isfinite(trade[k]["sharpe"])}
        typical = freq.max_sharpe / 3
        ref_name, ref = max([("honest models' typical Sharpe", typical)] + list(refs.items()), key=lambda kv: kv[1])
        se = math.sqrt(P * (1 + sr * sr / 2) / max(n - 1, 1)) if math.isfinite(sr) else math.inf
        excess_z = (s["sharpe"] - ref) / se if math.isfinite(s["sharpe"]) and se > 0 else 0.0
        nums.update(sharpe_reference=ref, sharpe_reference_name=ref_name, sharpe_excess_z=excess_z,
                    baseline_sharpes=refs, typical_sharpe=typical)
        if excess_z > 3:
            add_risk(c, "high", f"the Sharpe ratio {s['sharpe']:.2f} is {excess_z:.1f} s.e. above the best reference "
                             f"({ref_name} {ref:.2f}): too good for {freq.name} bars; treat it as a leak until explained")
        elif excess_z > _N.inv_cdf(0.95):
            add_risk(c, "medium", f"the Sharpe ratio {s['sharpe']:.2f} is {excess_z:.1f} s.e. above the best reference "
                               f"({ref_name} {ref:.2f}): better than honest {freq.name} models usually are, which is "
                               "evidence of a leak the scans did not see as much as of skill")
        if wr_lo > freq.max_win_rate and n >= 50:
            add_risk(c, "high", f"{s['win_rate']:.0%} of periods in the market win: implausible for {freq.name} bars "
                             f"(limit {freq.max_win_rate:.0%})")
        if s["max_drawdown"] < 0.005 and trade["trades"] >= 20 and s["total_return"] > 0 and s["periods"] >= 60:
            add_risk(c, "high", f"{trade['trades']} trades and a maximum drawdown of {s['max_drawdown']:.2%}: "
                             "real signals lose some of the time")
    c.numbers = nums
    c.summary = "figures within what is plausible for " + freq.name + " bars" if not c.risks else \
        "; ".join(r.finding for r in c.risks)
    return c
