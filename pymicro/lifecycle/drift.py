"""Drift between a model's training window and the bars it now sees: pure numpy.

    report = drift_report(X_train, X_recent, feature_names, model=model, y_reference=..., y_current=...)
    report["status"]              # "stable", "moderate" or "significant"

What is measured, and the thresholds (each with its source):

* **PSI** (population stability index) per feature: the reference sample's deciles
  (quantile bins, so each holds ~10 % of the training rows) and
  ``PSI = sum((a - e) * ln(a / e))`` over the bins, ``e``/``a`` the reference/current
  shares, each floored at 1e-4 so an empty bin stays finite. Thresholds 0.1 and 0.25:
  < 0.1 stable, 0.1-0.25 moderate shift, >= 0.25 significant — the credit-scoring
  convention (Siddiqi, *Credit Risk Scorecards*, Wiley 2006, ch. 8; Yurdakul & Naranjo,
  "Statistical properties of the population stability index", J. Risk Model Validation
  2020, who also show PSI grows with 1/n, hence ``MIN_ROWS``).
* **Two-sample Kolmogorov-Smirnov** per feature: ``D = max |F_ref - F_cur|`` and its
  asymptotic p-value ``Q_KS((sqrt(ne) + 0.12 + 0.11 / sqrt(ne)) * D)``, ``ne = n m / (n + m)``
  (Stephens 1970; Numerical Recipes 3rd ed. §14.3.3). A feature is flagged at
  ``p < KS_ALPHA / n_features`` (Bonferroni over the features). With thousands of rows
  KS flags shifts too small to matter, so it supports PSI and never raises the status alone.
* **Out-of-range share** per feature: the share of current rows outside the reference's
  central 99 % (its 0.5 % and 99.5 % quantiles); 1 % when nothing moved. Its mean over the
  features (``out_of_range``) is what the retraining trigger (:func:`pymicro.lifecycle.watch.watch_step`)
  and the ``range`` alert read, at **0.05** (five times the nominal rate). Why beside PSI:
  market features are autocorrelated, so a 60-day window sits in a few deciles of a
  multi-year reference and its PSI exceeds 0.25 on calm days too (measured on the embedded
  2009-2010 history: 15-23 of 24 momentum features "significant" on every checked day),
  and a PSI whose rows all fall in the top decile cannot grow when the shift grows. Values
  outside everything the model trained on are what PSI cannot see: on the same history the
  60-day mean share stayed at or below 0.015 on every checked day, and rose to 0.05-0.30
  within weeks of a 4x volatility regime (tests/test_lifecycle.py). The 0.05 is a
  calibration on that history, stated as such, not a published convention.
* **Prediction drift**: PSI of the predicted class shares (categorical bins), same thresholds.
* **Realised-accuracy decay**: accuracy on the current rows whose labels are known, with a
  Wilson 95 % interval, beside the reference accuracy; decayed when the interval's upper
  bound is below the reference accuracy.

The status is the worst PSI band over the features and the predictions, raised to
"significant" when accuracy decayed.
"""

from __future__ import annotations

import math

import numpy as np

from pymicro.errors import EvaluationError
from pymicro.metrics import wilson_interval

PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25
KS_ALPHA = 0.01
PSI_BINS = 10
PSI_FLOOR = 1e-4
OUT_OF_RANGE_QUANTILE = 0.005  # each tail: the reference's central 99 %
OUT_OF_RANGE_ALERT = 0.05  # mean share over the features (nominal 0.01)
MIN_ROWS = 50  # fewer current rows than this: PSI is mostly noise (it grows like 1/n)
STATUSES = ("stable", "moderate", "significant")

__all__ = ["KS_ALPHA", "OUT_OF_RANGE_ALERT", "PSI_MODERATE", "PSI_SIGNIFICANT", "drift_report", "ks_2samp",
           "out_of_range", "psi", "psi_band", "psi_categorical"]


def _sample(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise EvaluationError(f"{name} is empty")
    bad = ~np.isfinite(a)
    if bad.any():
        raise EvaluationError(f"{name}[{int(np.argmax(bad))}] is {a[bad][0]}; drift needs finite values")
    return a


def psi(reference, current, bins: int = PSI_BINS) -> float:
    """Population stability index of ``current`` against ``reference`` over the reference's quantile bins."""
    ref, cur = _sample(reference, "reference"), _sample(current, "current")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / ref.size
    a = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / cur.size
    return _psi_shares(e, a)


def psi_categorical(reference, current, n_classes: int) -> float:
    """PSI of the class shares of two integer samples (0..n_classes-1)."""
    ref = np.asarray(reference, dtype=np.int64).ravel()
    cur = np.asarray(current, dtype=np.int64).ravel()
    if ref.size == 0 or cur.size == 0:
        raise EvaluationError("psi_categorical needs non-empty samples")
    e = np.bincount(ref, minlength=n_classes)[:n_classes] / ref.size
    a = np.bincount(cur, minlength=n_classes)[:n_classes] / cur.size
    return _psi_shares(e, a)


def _psi_shares(e: np.ndarray, a: np.ndarray) -> float:
    e, a = np.maximum(e, PSI_FLOOR), np.maximum(a, PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def out_of_range(reference, current, q: float = OUT_OF_RANGE_QUANTILE) -> float:
    """Share of ``current`` outside the ``q`` and ``1 - q`` quantiles of ``reference``."""
    ref, cur = _sample(reference, "reference"), _sample(current, "current")
    lo, hi = np.quantile(ref, [q, 1 - q])
    return float(np.mean((cur < lo) | (cur > hi)))


def psi_band(value: float) -> str:
    return "stable" if value < PSI_MODERATE else "moderate" if value < PSI_SIGNIFICANT else "significant"


def _q_ks(lam: float) -> float:
    """The Kolmogorov distribution's survival function Q_KS(lambda)."""
    if lam < 1e-3:
        return 1.0
    total = sum((-1) ** (j - 1) * math.exp(-2 * j * j * lam * lam) for j in range(1, 101))
    return float(min(1.0, max(0.0, 2 * total)))


def ks_2samp(reference, current) -> tuple[float, float]:
    """Two-sample KS statistic ``D`` and its asymptotic two-sided p-value."""
    ref, cur = np.sort(_sample(reference, "reference")), np.sort(_sample(current, "current"))
    both = np.concatenate([ref, cur])
    d = float(np.max(np.abs(np.searchsorted(ref, both, side="right") / ref.size
                            - np.searchsorted(cur, both, side="right") / cur.size)))
    ne = ref.size * cur.size / (ref.size + cur.size)
    root = math.sqrt(ne)
    return d, _q_ks((root + 0.12 + 0.11 / root) * d)


def drift_report(reference_X, current_X, feature_names=None, *, model=None, y_reference=None,
                 y_current=None) -> dict:
    """Per-feature PSI and KS of ``current_X`` against ``reference_X`` (rows x features), and with
    ``model`` (a loaded pymicro Model) the predicted-class PSI; with labels, realised accuracy."""
    ref = np.asarray(reference_X, dtype=np.float64)
    cur = np.asarray(current_X, dtype=np.float64)
    if ref.ndim != 2 or cur.ndim != 2 or ref.shape[1] != cur.shape[1]:
        raise EvaluationError(f"reference_X {ref.shape} and current_X {cur.shape} must be 2-D with equal widths")
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(ref.shape[1])]
    if len(names) != ref.shape[1]:
        raise EvaluationError(f"{len(names)} feature names for {ref.shape[1]} columns")
    alpha = KS_ALPHA / ref.shape[1]
    features = {}
    for j, name in enumerate(names):
        value = psi(ref[:, j], cur[:, j])
        d, p = ks_2samp(ref[:, j], cur[:, j])
        features[name] = {"psi": round(value, 6), "band": psi_band(value), "ks": round(d, 6), "ks_p": p,
                          "ks_flag": bool(p < alpha), "out_of_range": round(out_of_range(ref[:, j], cur[:, j]), 6)}
    worst = max((f["psi"] for f in features.values()), default=0.0)
    bands = [psi_band(worst)]
    oor = float(np.mean([f["out_of_range"] for f in features.values()])) if features else 0.0
    report = {"rows": {"reference": int(len(ref)), "current": int(len(cur))},
              "thresholds": {"psi_moderate": PSI_MODERATE, "psi_significant": PSI_SIGNIFICANT,
                             "ks_alpha": KS_ALPHA, "ks_alpha_per_feature": alpha,
                             "out_of_range_quantile": OUT_OF_RANGE_QUANTILE, "out_of_range_alert": OUT_OF_RANGE_ALERT},
              "features": features, "max_psi": round(worst, 6), "out_of_range": round(oor, 6),
              "drifted": sorted(n for n, f in features.items() if f["band"] == "significant"),
              "ks_flagged": sorted(n for n, f in features.items() if f["ks_flag"])}
    if model is not None:
        pr, pc = model.predict(ref.astype(np.float32)), model.predict(cur.astype(np.float32))
        k = pr.shape[1]
        value = psi_categorical(pr.argmax(1), pc.argmax(1), k)
        report["predictions"] = {"psi": round(value, 6), "band": psi_band(value),
                                 "reference_shares": np.bincount(pr.argmax(1), minlength=k).tolist(),
                                 "current_shares": np.bincount(pc.argmax(1), minlength=k).tolist()}
        bands.append(psi_band(value))
        if y_reference is not None and y_current is not None and len(y_current):
            yr, yc = np.asarray(y_reference), np.asarray(y_current)
            ref_acc = float((pr.argmax(1) == yr).mean())
            hits = int((pc.argmax(1) == yc).sum())
            lo, hi = wilson_interval(hits, int(len(yc)))
            decayed = hi < ref_acc
            report["accuracy"] = {"reference": ref_acc, "current": hits / len(yc), "current_ci95": [lo, hi],
                                  "decayed": bool(decayed)}
            if decayed:
                bands.append("significant")
    report["status"] = max(bands, key=STATUSES.index)
    if len(cur) < MIN_ROWS:
        report["note"] = f"only {len(cur)} current rows (< {MIN_ROWS}): PSI is inflated by sampling noise"
    return report
