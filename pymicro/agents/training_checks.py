"""The fast leak checks run after every training (``pymicro train`` and ``neural_train``).

A training run's figures are measured honestly on its test split, but a data file can still
carry the answer in its features (an ``open`` that is a later close, say): the figures then
look excellent and are meaningless. :func:`leak_checks` runs the cheap checks of
:func:`pymicro.evaluation.validation.validate` (no retraining experiments: split and purge,
look-ahead scans, normalisation, train/test gap, accuracy against the majority class,
plausibility) on the run's own data and split, so its verdict can be shown beside the figures.

Training (:mod:`pymicro.training`) may not import evaluation; the CLI and the MCP server call
this after :func:`pymicro.training.trainer.run_training`.
"""

from __future__ import annotations

from pymicro.evaluation.validation import validate
from pymicro.training.trainer import TrainingRun

FAST = {"fit": None, "shuffles": 0, "resamples": 100}  # no retraining: a few seconds at most


def leak_checks(run: TrainingRun) -> dict:
    """The verdict of the fast checks on ``run``: ``status`` ('ok', 'warning' or 'critical'),
    a one-line ``verdict``, the ``answer`` of validate, its ``confidence`` and the risks of
    severity high or critical."""
    train, validation = run.split_fractions
    report = validate(run.blob, run.dataset, prices=run.prices, train=train, validation=validation, **FAST)
    serious = [r.to_dict() for r in report.risks if r.severity in ("critical", "high")]
    if report.leak_suspected:
        status = "critical"
        verdict = ("CRITICAL: a leak is suspected; these figures are not to be believed until it is found "
                   f"({'; '.join(r['finding'] for r in serious if r['severity'] == 'critical')[:600]})")
    elif report.flagged:
        status = "warning"
        verdict = f"WARNING: {'; '.join(r['finding'] for r in serious)[:600]}"
    else:
        status = "ok"
        verdict = "fast leak checks: nothing suspicious found (no retraining experiments were run)"
    return {"status": status, "verdict": verdict, "answer": report.answer, "confidence": report.confidence,
            "risks": serious, "checks": {k: c.status for k, c in report.checks.items()}}
