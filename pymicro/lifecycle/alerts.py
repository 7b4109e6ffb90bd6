"""Alerts: rules over the prediction log and the registry's drift reports, their transitions
logged in the registry (append-only ``alert`` events), their state exposed as metrics.

    from pymicro.lifecycle.alerts import AlertRules, evaluate
    states = evaluate(registry, log, AlertRules(sharpe_below=0.0))   # one dict per rule and subject
    registry.events("trader", "alert")                               # firing / resolved transitions

The rules and their defaults (each with its source):

* ``sharpe``: the rolling Sharpe ratio of a model's last ``sharpe_window`` logged decisions
  (:func:`pymicro.live.predictions.performance_report`: the position held until the next
  decision, net of ``cost_bps``, annualised at the decisions' own pace) is below
  ``sharpe_below``. Default **0.0**: below it the strategy lost money net of costs over the
  window, the break-even line of the ratio (Sharpe, "The Sharpe Ratio", J. Portfolio
  Management 1994). Default window **500** decisions, evaluated once at least
  ``sharpe_min_decisions`` (**30**, the usual small-sample floor for a mean/std ratio)
  decisions were scored (had a position and a price move). A single window's Sharpe is
  noisy (its standard error is about ``sqrt((1 + SR^2 / 2) / n)`` per period, Lo 2002): this
  is a prompt to look, not a verdict.
* ``drift``: the newest drift report of a registered name (``pymicro learn`` and
  ``pymicro drift`` store them) has a feature or prediction PSI of at least ``psi_above``.
  Default **0.25**, the "significant shift" band of the population stability index
  (Siddiqi, *Credit Risk Scorecards*, Wiley 2006, ch. 8; :mod:`pymicro.lifecycle.drift`).
* ``range``: that report's mean out-of-range share (rows outside the training window's
  central 99 %, nominally 0.01) reaches ``out_of_range_above``. Default **0.05**, the
  calibration :mod:`pymicro.lifecycle.drift` explains (on daily market features PSI
  exceeds 0.25 on calm days too; this share does not, and rises under a new regime).
* ``accuracy``: that report's realised accuracy decayed (the Wilson 95 % interval of the
  accuracy on the newest labelled rows lies below the training window's accuracy).
  On by default (``accuracy_decay=True``).

Every evaluation returns the state of each rule that has data; :func:`evaluate` with
``record=True`` (the default) logs a registry event only on a transition (``firing`` after
``resolved`` or nothing, ``resolved`` after ``firing``), in one write transaction
(:meth:`pymicro.store.registry.Registry.log_state`), so repeated scrapes do not repeat it.
A prediction-log model that is a registry model id is logged under its registry name;
any other log name under the name made from it (:func:`pymicro.store.registry.slug`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pymicro.errors import InputError, RegistryError
from pymicro.lifecycle.drift import OUT_OF_RANGE_ALERT, PSI_SIGNIFICANT
from pymicro.live.predictions import PredictionLog, performance_report
from pymicro.store.registry import ID_RE, Registry, slug

RULES = ("sharpe", "drift", "range", "accuracy")
SOURCES = {
    "sharpe": "break-even Sharpe (Sharpe 1994); its noise: Lo, 'The Statistics of Sharpe Ratios', FAJ 2002",
    "drift": "PSI >= 0.25 'significant shift' (Siddiqi, Credit Risk Scorecards, 2006, ch. 8)",
    "range": "mean share of rows outside the training window's central 99 % (nominal 0.01) >= 0.05: "
             "calibrated on the embedded 2009-2010 history (pymicro.lifecycle.drift)",
    "accuracy": "Wilson 95 % interval of realised accuracy below the training accuracy",
}

__all__ = ["AlertRules", "RULES", "SOURCES", "evaluate", "log_name", "model_figures"]


@dataclass(frozen=True)
class AlertRules:
    """Thresholds of the rules (module docstring: defaults and sources)."""

    sharpe_below: float = 0.0
    sharpe_window: int = 500
    sharpe_min_decisions: int = 30
    psi_above: float = PSI_SIGNIFICANT
    out_of_range_above: float = OUT_OF_RANGE_ALERT
    accuracy_decay: bool = True
    cost_bps: float = 0.0

    def __post_init__(self):
        for field in ("sharpe_below", "psi_above", "out_of_range_above", "cost_bps"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InputError(f"{field} must be a finite number, got {value!r}")
        if self.psi_above <= 0 or self.cost_bps < 0:
            raise InputError("psi_above must be > 0 and cost_bps >= 0")
        if not (isinstance(self.sharpe_window, int) and self.sharpe_window >= 3):
            raise InputError(f"sharpe_window must be an int >= 3, got {self.sharpe_window!r}")
        if not (isinstance(self.sharpe_min_decisions, int) and self.sharpe_min_decisions >= 2):
            raise InputError(f"sharpe_min_decisions must be an int >= 2, got {self.sharpe_min_decisions!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def log_name(registry: Registry, model_id: str) -> tuple[str, int | None]:
    """The registry name (and version, if it is one) a prediction-log model belongs to."""
    if ID_RE.fullmatch(model_id):
        try:
            name = registry.get(model_id).name
        except RegistryError:
            return slug(model_id), None
        version = next((v.version for v in registry.versions(name) if v.model_id == model_id), None)
        return name, version
    return slug(model_id), None


def model_figures(log: PredictionLog, model_id: str, rules: AlertRules) -> dict | None:
    """performance_report over the rule's window, or None with fewer than 3 logged decisions."""
    if log.count(model_id) < 3:
        return None
    return performance_report(log, model_id, window=rules.sharpe_window, cost_bps=rules.cost_bps)


def _finite(x):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def evaluate(registry: Registry, log: PredictionLog | None = None, rules: AlertRules | None = None, *,
             record: bool = True, figures: dict | None = None) -> list[dict]:
    """The state of every rule with data: ``{rule, name, subject, firing, value, threshold,
    source, message}``; transitions logged as ``alert`` events of ``name`` when ``record``.
    ``figures`` ({log model id: model_figures(...)}) reuses reports already computed."""
    rules = rules or AlertRules()
    states: list[dict] = []
    if log is not None:
        for model_id in log.models():
            report = figures[model_id] if figures is not None and model_id in figures \
                else model_figures(log, model_id, rules)
            if report is None or report["model"]["decisions_scored"] < rules.sharpe_min_decisions:
                continue
            value = report["model"]["sharpe"]
            name, version = log_name(registry, model_id)
            states.append({"rule": "sharpe", "name": name, "version": version, "subject": f"sharpe:{model_id}",
                           "model": model_id, "firing": bool(value < rules.sharpe_below), "value": _finite(value),
                           "threshold": rules.sharpe_below, "source": SOURCES["sharpe"],
                           "message": f"rolling Sharpe {value:.3f} over the last {report['window']} decisions of "
                                      f"{model_id} (always long: {report['baseline_always_long']['sharpe']:.3f}); "
                                      f"alert below {rules.sharpe_below}"})
    for name in registry.names():
        newest = registry.events(name, "drift", limit=1)
        if not newest:
            continue
        report, version = newest[0]["payload"], newest[0]["version"]
        values = [f["psi"] for f in report.get("features", {}).values()]
        if "predictions" in report:
            values.append(report["predictions"]["psi"])
        worst = max(values, default=0.0)
        states.append({"rule": "drift", "name": name, "version": version, "subject": "drift", "model": None,
                       "firing": bool(worst >= rules.psi_above), "value": worst, "threshold": rules.psi_above,
                       "source": SOURCES["drift"],
                       "message": f"largest PSI {worst:.3f} in the drift report of {name} v{version} "
                                  f"({newest[0]['at']}); alert at {rules.psi_above}"})
        if "out_of_range" in report:
            share = report["out_of_range"]
            states.append({"rule": "range", "name": name, "version": version, "subject": "range", "model": None,
                           "firing": bool(share >= rules.out_of_range_above), "value": share,
                           "threshold": rules.out_of_range_above, "source": SOURCES["range"],
                           "message": f"{share:.1%} of the recent rows (mean over features) lie outside the central "
                                      f"99% of {name} v{version}'s training window; alert at "
                                      f"{rules.out_of_range_above:.0%}"})
        if rules.accuracy_decay and "accuracy" in report:
            acc = report["accuracy"]
            states.append({"rule": "accuracy", "name": name, "version": version, "subject": "accuracy",
                           "model": None, "firing": bool(acc["decayed"]), "value": acc["current"],
                           "threshold": acc["reference"], "source": SOURCES["accuracy"],
                           "message": f"realised accuracy {acc['current']:.3f} (95% CI {acc['current_ci95'][0]:.3f}"
                                      f"..{acc['current_ci95'][1]:.3f}) against {acc['reference']:.3f} in training"})
    if record:
        for s in states:
            seq = registry.log_state(s["name"], "alert", s["subject"], "firing" if s["firing"] else "resolved",
                                     {k: s[k] for k in ("rule", "model", "value", "threshold", "message")},
                                     version=s["version"], initial="resolved")
            s["logged"] = seq
    return states
