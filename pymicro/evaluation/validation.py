"""Validation with reasoning: is a trained model's out-of-sample figure real?

    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.evaluation.validation import validate

    ds = make_dataset(load_embedded("SP500"), "momentum", horizon=5)
    report = validate("momentum.pmb", ds, prices=load_embedded("SP500"), n_trials=20)
    print(report.answer)          # plain language
    report.risks                  # [Risk(check, severity, finding), ...]
    report.confidence             # in [0, 1]
    report.checks["label_shift"].numbers   # each check's raw numbers
    report.to_dict()              # strict JSON

Every finding comes from an experiment or a computation on the data given, never from a
rule of thumb alone:

* ``split``: the parts are chronological, no training label reads a test bar (purge),
  no test row is a copy of a training row, and the blob's own training dates (metadata
  ``train_end``/``test_start`` written by the trainer) do not reach into the test rows.
* ``feature_lookahead``: for every input feature, its correlation with each single future
  bar return ``r_{t+1} .. r_{t+2h}`` (with prices) and the change of its correlation with
  the label when the label is shifted one bar further into the future (always). A causal
  feature knows bars up to ``t`` only; a strong tie to a future bar is a peek.
* ``label_shift``: the same for the model's own output on out-of-sample rows, its
  accuracy against labels shifted by ``-2h .. +2h`` bars, and a retraining experiment:
  the same ``fit`` trained to predict the label ``h`` bars later. Honest inputs lose
  little when the target moves to a later, equally unknown window; inputs that peek at
  the first bars after ``t`` lose everything they had.
* ``shuffled_labels``: the same ``fit`` retrained on block-permuted training labels:
  the null distribution of the out-of-sample accuracy and label correlation. It must
  collapse: null fits whose scores still track the test labels mean some input carries
  the label; null fits above the majority-class baseline mean the evaluation does. The
  real model is ranked against it (permutation p-values).
* ``normalisation``: the blob's mean/std (and the inputs themselves) are matched
  against the statistics of every date-ordered prefix of the data: a normalisation
  fitted on rows that reach into the test period is found and dated.
* ``train_test_gap``, ``accuracy``, ``sharpe`` (probabilistic and deflated Sharpe
  ratio for ``n_trials``), ``plausibility`` (figures impossible for the frequency).

The formulas, thresholds and what these checks cannot see are in ``docs/validation.md``.

This module runs the checks (:func:`validate`); they live beside it: ``leaks`` (split,
feature_lookahead, label_shift, normalisation, train_test_gap, shuffled_labels),
``overfitting`` (Sharpe statistics, the sharpe check), ``plausibility`` (the limits per
frequency), ``performance`` (accuracy, trading figures), ``retraining`` (the fits and their
experiments), ``resampling`` (block bootstrap), ``rows`` (the data in date order) and
``verdict`` (risks, checks, the report and its answer).
"""

from __future__ import annotations

import math
import time

import numpy as np

from pymicro import metrics as M
from pymicro.errors import EvaluationError, TrainingError
from pymicro.evaluation.leaks import (check_features, check_gap, check_label_shift, check_normalisation,
                                      check_shuffled, check_split)
from pymicro.evaluation.overfitting import (EULER_GAMMA, check_sharpe, deflated_sharpe_ratio,
                                            expected_max_sharpe, probabilistic_sharpe_ratio, sharpe_statistics)
from pymicro.evaluation.performance import check_accuracy, model_figures
from pymicro.evaluation.plausibility import FREQUENCIES, Frequency, check_plausibility
from pymicro.evaluation.resampling import corr, edge_test
from pymicro.evaluation.retraining import ridge_fit, run_experiments, tinygrad_fit
from pymicro.evaluation.rows import Bars, as_rows, price_table
from pymicro.evaluation.verdict import (PENALTY, SEVERITIES, SKIPPED_PENALTY, CheckResult, Risk, ValidationReport,
                                        answer_text)
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import Model, load, spec_of
from pymicro.runtime.spec import Network

__all__ = [
    "EULER_GAMMA",
    "FREQUENCIES",
    "PENALTY",
    "SEVERITIES",
    "CheckResult",
    "Frequency",
    "Risk",
    "ValidationReport",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "ridge_fit",
    "sharpe_statistics",
    "tinygrad_fit",
    "validate",
]


def _as_model(model):

    if isinstance(model, Model):
        return model
    if hasattr(model, "network") and not hasattr(model, "blob"):  # a TrainResult
        model = model.network

    if isinstance(model, Network):

        return load(freeze(model))
    if hasattr(model, "blob") and isinstance(model.blob, (bytes, bytearray)):  # a TrainingRun
        return load(model.blob)
    return load(model)


def validate(model, data, *, prices=None, n_trials: int = 1, frequency: str = "daily", fit="tinygrad",
             shuffles: int = 3, trial_sharpes=None, train: float = 0.7, validation: float = 0.15,
             embargo: int | None = None, horizon: int | None = None, cost_bps: float = 1.0,
             slippage_bps: float = 1.0, threshold: float | None = None, class_positions=None, seed: int = 0,
             resamples: int = 200, fit_kwargs: dict | None = None) -> ValidationReport:
    """Validate ``model`` on ``data`` and explain the verdict.

    ``model``: a :class:`pymicro.Model`, blob bytes or path, a Network or TrainResult.
    ``data``: a :class:`~pymicro.market.dataset.Dataset` (split here chronologically with ``train``,
    ``validation``, ``embargo``, as the trainer does), a ``Split``, or a dict of arrays
    ``X_train, y_train, X_test, y_test`` (``X_val``, ``y_val``, ``dates_*``, ``symbols_*``
    optional; without dates the rows of each part are taken as consecutive bars).
    ``prices``: closes for the trading figures and the bar-level look-ahead scans (a long
    OHLCV frame, a wide frame with one column per symbol, or one Series); optional.
    ``n_trials``: how many configurations were tried before this one (deflated Sharpe);
    ``trial_sharpes`` their annualised Sharpe ratios if known. ``frequency``: one of
    :data:`FREQUENCIES`. ``fit``: ``"tinygrad"`` (the model's architecture, retrained
    briefly), ``"ridge"`` (:func:`ridge_fit`), a callable ``fit(X, y) -> predict_proba``,
    or None to skip the retraining experiments. ``shuffles``: retrains on shuffled labels.
    ``threshold``/``class_positions``: how probabilities become positions
    (:func:`pymicro.evaluation.backtest.positions_from_probabilities`); ``threshold=None`` (default)
    chooses it on the validation rows (:func:`pymicro.evaluation.positions.choose_rule`), as every
    pymicro command does; a number fixes it (0: trade the most likely class).

    **Confidence** = evidence x the product of the risks' penalties (critical 0.05, high
    0.25, medium 0.7, low 0.9) x 0.9 per check skipped for want of inputs, where evidence is
    ``1 - p`` (block-bootstrap p-value of the accuracy edge over the majority class), or
    ``sqrt((1 - p) * DSR)`` when trading figures exist. It reads: how much to believe the
    model has a real, honestly measured out-of-sample edge.
    """
    started = time.perf_counter()
    if frequency not in FREQUENCIES:
        raise EvaluationError(f"frequency must be one of {sorted(FREQUENCIES)}, got {frequency!r}")
    freq = FREQUENCIES[frequency]
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise EvaluationError(f"n_trials must be an int >= 1 (configurations tried), got {n_trials!r}")
    if isinstance(shuffles, bool) or not isinstance(shuffles, (int, np.integer)) or shuffles < 0:
        raise EvaluationError(f"shuffles must be an int >= 0, got {shuffles!r}")
    m = _as_model(model)
    meta = dict(m.described.get("metadata", {}))
    if horizon is None and "horizon" in meta:
        try:
            horizon = int(str(meta["horizon"]).rstrip("d"))
        except ValueError:
            horizon = None
    rows = as_rows(data, horizon, train, validation, embargo)
    if rows.X.shape[1] != m.input_size:
        raise EvaluationError(f"the model takes {m.input_size} inputs but the data has {rows.X.shape[1]} features")
    n_classes = m.n_classes
    if rows.y.max() >= n_classes:
        raise EvaluationError(f"labels go up to {int(rows.y.max())} but the model has {n_classes} classes")
    if rows.label_names is None:
        rows.label_names = tuple(m.labels)
    if rows.feature_names is None and m.described.get("feature_names"):
        rows.feature_names = tuple(m.described["feature_names"])
    for p, name in ((0, "training"), (2, "test")):
        if rows.idx(p).size < 30:
            raise EvaluationError(f"the {name} part has {rows.idx(p).size} rows; validation needs at least 30")
    bad = ~np.isfinite(rows.X)
    if bad.any():
        r, col = np.argwhere(bad)[0]
        raise EvaluationError(f"X[{r}, {col}] is {rows.X[r, col]}; drop non-finite rows before validating")
    table = price_table(prices, rows.symbols) if prices is not None else None
    bars = Bars(rows, table)
    unmatched = None
    if table is not None and rows.synthetic_dates:
        unmatched = "the rows have no dates (pass dates_train, dates_test, ...) to align prices with"
    elif table is not None and np.mean(bars.pos >= 0) < 0.5:  # the prices do not cover the rows' dates
        unmatched = f"prices matched only {np.mean(bars.pos >= 0):.0%} of the rows' (symbol, date) pairs"
    if unmatched:
        table = None
        bars = Bars(rows, None)

    figs = model_figures(m, rows, table, freq, cost_bps, slippage_bps, threshold=threshold,
                         class_positions=class_positions, seed=seed)
    probs_all, pred_all, majority = figs["probs_all"], figs["pred_all"], figs["majority"]
    summary, edge, rule = figs["summary"], figs["edge"], figs["rule"]
    tr, te = rows.idx(0), rows.idx(2)
    h = rows.horizon

    # retraining experiments
    if isinstance(fit, str):
        if fit == "tinygrad":

            fit_fn = tinygrad_fit(spec_of(m.described), horizon=h, seed=seed, **(fit_kwargs or {}))
        elif fit == "ridge":
            fit_fn = ridge_fit(**(fit_kwargs or {}))
            fit_fn.n_classes = n_classes
        else:
            raise EvaluationError(f"fit must be 'tinygrad', 'ridge', a callable or None, got {fit!r}")
    elif fit is None:
        fit_fn = None
    elif callable(fit):
        fit_fn = fit
    else:
        raise EvaluationError(f"fit must be 'tinygrad', 'ridge', a callable or None, got {type(fit).__name__}")
    shift_exp = shuffled = None
    exp_reason = "no fit given (fit=None)"
    if fit_fn is not None:
        try:
            shift_exp, shuffled = run_experiments(rows, bars, fit_fn, shuffles, seed, majority, n_classes)
        except (ImportError, TrainingError) as e:
            if fit != "tinygrad":
                raise
            exp_reason = f"the tinygrad fit cannot run here ({e}); pass fit='ridge' or a callable"
        else:
            if not shuffles:
                exp_reason = "shuffles=0"

    checks: dict[str, CheckResult] = {}
    checks["split"] = check_split(rows, bars, meta, m.described.get("feature_names") or None)
    checks["feature_lookahead"] = check_features(rows, bars, freq, seed, resamples)
    checks["label_shift"] = check_label_shift(rows, bars, probs_all, freq, seed, resamples, shift_exp, n_classes)
    model_ic = float(corr((probs_all[te] @ np.linspace(-1.0, 1.0, n_classes))[:, None],
                           rows.y[te][:, None].astype(np.float64))[0, 0])
    checks["shuffled_labels"] = check_shuffled(shuffled, summary["accuracy"], model_ic, summary["majority_accuracy"],
                                                edge["se"], freq, exp_reason)
    checks["normalisation"] = check_normalisation(rows, m.described.get("mean"), m.described.get("std"))
    checks["train_test_gap"] = check_gap(rows, pred_all, majority, freq, seed, edge)
    checks["accuracy"] = check_accuracy(summary, edge, rows.label_names)
    trade, series = figs["trade"], figs["series"]
    trade_reason = f"{unmatched}: prices ignored" if unmatched else "no prices given"
    if table is not None and trade is None:
        trade_reason = f"no prices for the test rows of {series}"
    checks["sharpe"] = check_sharpe(trade, series, int(n_trials), trial_sharpes, freq, trade_reason)
    checks["plausibility"] = check_plausibility(summary, edge, trade, freq, n_classes)

    risks = [r for c in checks.values() for r in c.risks]
    for name, c in checks.items():
        if c.status == "skipped":
            risks.append(Risk(name, "info", f"not run: {c.summary}"))
    n_skipped = sum(c.status == "skipped" for c in checks.values())
    evidence = 1.0 - edge["p_value"]
    dsr = checks["sharpe"].numbers.get("dsr") if checks["sharpe"].status != "skipped" else None
    if dsr is not None:
        evidence = math.sqrt(max(evidence, 0.0) * dsr)
    penalty = math.prod(PENALTY[r.severity] for r in risks if not r.finding.startswith("not run"))
    confidence = float(min(1.0, max(0.0, evidence * penalty * SKIPPED_PENALTY ** n_skipped)))
    metrics = {"test": {**summary, "edge": edge["edge"], "edge_se_block": edge["se"],
                        "p_value_block": edge["p_value"]},
               "train_accuracy": checks["train_test_gap"].numbers["train_accuracy"],
               "validation_accuracy": checks["train_test_gap"].numbers.get("validation_accuracy"),
               "trading": trade, "sharpe": checks["sharpe"].numbers or None}
    settings = {"frequency": freq.name, "periods_per_year": freq.periods_per_year, "n_trials": int(n_trials),
                "horizon": h, "fit": None if fit_fn is None else getattr(fit_fn, "__name__", "custom"),
                "shuffles": int(shuffles), "seed": seed, "resamples": resamples, "threshold": rule.threshold, "position_rule": rule.to_dict(),
                "cost_bps": cost_bps, "slippage_bps": slippage_bps, "model": meta.get("name", "custom"),
                "prices": table is not None,
                "content_hash": m.info.content_hash, "confidence_rule": "evidence x penalties; see docs/validation.md"}
    answer = answer_text(checks, summary, edge, trade, rows.label_names, confidence)
    return ValidationReport(metrics=metrics, answer=answer, risks=risks, confidence=round(confidence, 4),
                            checks=checks, settings=settings, seconds=time.perf_counter() - started)
