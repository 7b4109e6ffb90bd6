"""The verdict of :func:`pymicro.evaluation.validation.validate`: its risks, checks and report.

A check (:class:`CheckResult`) raises :class:`Risk` findings of a severity (``critical`` ..
``info``); :class:`ValidationReport` gathers them with the metrics, a confidence and the
plain-language answer (:func:`answer_text`). Each risk multiplies the confidence by its
severity's :data:`PENALTY` (docs/validation.md, "Confidence").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


SEVERITIES = ("critical", "high", "medium", "low", "info")
PENALTY = {"critical": 0.05, "high": 0.25, "medium": 0.7, "low": 0.9, "info": 1.0}
"""Each risk multiplies the confidence by its severity's factor (see :func:`validate`)."""
SKIPPED_PENALTY = 0.9


@dataclass(frozen=True)
class Risk:
    """One finding: which check, how bad (``critical`` .. ``info``), and what was found."""

    check: str
    severity: str
    finding: str

    def to_dict(self) -> dict:
        return {"check": self.check, "severity": self.severity, "finding": self.finding}


@dataclass
class CheckResult:
    """One check: ``status`` is "pass", "flag" (a critical or high risk), "warn" (a lesser
    risk) or "skipped" (its inputs were missing); ``numbers`` holds its raw figures."""

    name: str
    status: str
    summary: str
    numbers: dict = field(default_factory=dict)
    risks: list[Risk] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "numbers": to_json(self.numbers), "risks": [r.to_dict() for r in self.risks]}


@dataclass
class ValidationReport:
    """What :func:`validate` returns. ``flagged``: a critical or high risk was found.
    ``leak_suspected``: a critical one (a leak, not merely an implausible figure)."""

    metrics: dict
    answer: str
    risks: list[Risk]
    confidence: float
    checks: dict[str, CheckResult]
    settings: dict
    seconds: float = 0.0

    @property
    def flagged(self) -> bool:
        return any(r.severity in ("critical", "high") for r in self.risks)

    @property
    def leak_suspected(self) -> bool:
        return any(r.severity == "critical" for r in self.risks)

    def flagged_checks(self, severities=("critical", "high")) -> set[str]:
        """Names of the checks that raised a risk of one of ``severities``."""
        return {r.check for r in self.risks if r.severity in severities}

    def to_dict(self) -> dict:
        """Strict JSON values (``json.dumps(..., allow_nan=False)`` works)."""
        return to_json({"answer": self.answer, "confidence": self.confidence, "flagged": self.flagged,
                      "leak_suspected": self.leak_suspected, "risks": [r.to_dict() for r in self.risks],
                      "metrics": self.metrics, "checks": {k: c.to_dict() for k, c in self.checks.items()},
                      "settings": self.settings, "seconds": self.seconds})

    def summary(self) -> str:
        """A plain-text report: the answer, the risks, one line per check."""
        lines = [self.answer, ""]
        if self.risks:
            lines.append("risks:")
            order = {s: i for i, s in enumerate(SEVERITIES)}
            for r in sorted(self.risks, key=lambda r: order[r.severity]):
                lines.append(f"  [{r.severity}] {r.check}: {r.finding}")
        else:
            lines.append("risks: none found")
        lines += ["", "checks:"]
        width = max(len(k) for k in self.checks)
        for name, c in self.checks.items():
            lines.append(f"  {name.ljust(width)}  {c.status:7s}  {c.summary}")
        lines.append(f"\nconfidence {self.confidence:.2f}  ({self.seconds:.1f} s)")
        return "\n".join(lines)


def to_json(v):
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return [to_json(x) for x in v.tolist()]
    if isinstance(v, np.datetime64) or type(v).__name__ == "Timestamp":
        return str(np.datetime64(v, "D"))
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def add_risk(check: CheckResult, severity: str, finding: str) -> None:
    check.risks.append(Risk(check.name, severity, finding))
    if severity in ("critical", "high"):
        check.status = "flag"
    elif severity in ("medium", "low") and check.status == "pass":
        check.status = "warn"


def answer_text(checks, summary, edge, trade, label_names, confidence) -> str:
    risks = [r for c in checks.values() for r in c.risks]
    crit = sorted({r.check for r in risks if r.severity == "critical"})
    high = sorted({r.check for r in risks if r.severity == "high"})
    maj = summary["majority_class"]
    maj_name = label_names[maj] if label_names and isinstance(maj, int) and maj < len(label_names) else str(maj)
    lo, hi = summary["accuracy_ci"]
    e, p = edge["edge"] * 100, edge["p_value"]
    out = []
    if crit:
        out.append(f"Do not trust these figures: the leak checks failed ({', '.join(crit)}).")
    elif high:
        out.append(f"These figures are implausible or inconsistent ({', '.join(high)}): treat them as a leak "
                   "until explained.")
    elif p < 0.05 and e > 0:
        out.append("The model shows a small, statistically significant edge, and no leak was found.")
    else:
        out.append("The model does not beat the majority-class baseline by more than chance; no leak was found.")
    out.append(f"Out of sample it is right {summary['accuracy']:.1%} of the time on {summary['n']} rows "
               f"({summary['confidence']:.0%} CI {lo:.1%}-{hi:.1%}), against {summary['majority_accuracy']:.1%} for "
               f"always predicting {maj_name!r}: {e:+.1f} points, "
               f"{'significant' if p < 0.05 else 'not significant'} (p = {p:.2g}, block bootstrap).")
    g = checks["train_test_gap"].numbers
    out.append(f"Training accuracy {g['train_accuracy']:.1%} against {g['test_accuracy']:.1%} on test.")
    sh = checks["sharpe"]
    if trade is not None and sh.status != "skipped":
        s = sh.numbers
        out.append(f"Trading its signals net of {trade['cost_bps'] + trade['slippage_bps']:g} bps per unit traded: "
                   f"Sharpe {s['sharpe']:.2f} in the market {trade.get('exposure', float('nan')):.0%} of the time "
                   f"(threshold {trade.get('threshold', 0):g}, chosen on validation rows unless given; "
                   f"{trade.get('periods_per_year', 252):g} periods a year) "
                   f"(buy-and-hold {s['buy_and_hold_sharpe']:.2f}); probabilistic Sharpe "
                   f"{s['psr']:.2f}, deflated for {s['n_trials']} trial{'s' if s['n_trials'] != 1 else ''} "
                   f"{s['dsr']:.2f}.")
    elif sh.status == "skipped":
        out.append(f"No trading figures: {sh.summary}.")
    for r in risks:
        if r.severity in ("critical", "high"):
            out.append(r.finding[0].upper() + r.finding[1:] + ".")
    if not crit:
        ran = [n for n in ("split", "feature_lookahead", "label_shift", "shuffled_labels", "normalisation")
               if checks[n].status != "skipped"]
        out.append(f"Leak checks run: {', '.join(ran)}.")
    out.append(f"Confidence {confidence:.2f}.")
    return " ".join(out)
