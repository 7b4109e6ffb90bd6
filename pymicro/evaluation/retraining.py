"""The retraining experiments: the same fit on true, shifted and block-shuffled labels.

``fit(X, y) -> predict_proba``: :func:`tinygrad_fit` (the model's architecture, briefly) or
:func:`ridge_fit` (a fast linear stand-in). :func:`run_experiments` retrains on the labels
``h`` bars later (label_shift) and on block-permuted labels (shuffled_labels).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from pymicro import metrics as M
from pymicro.errors import EvaluationError
from pymicro.evaluation.backtest import tinygrad_fit as _fit
from pymicro.evaluation.resampling import boot_corr, corr
from pymicro.evaluation.rows import Bars


def ridge_fit(alpha: float = 1.0, temperature: float = 0.1) -> Callable:
    """A fast linear stand-in for the retraining experiments: ridge regression of the
    one-hot labels on the standardised inputs (statistics of the rows it is given).
    ``fit(X, y) -> predict_proba``; probabilities are a softmax of the scores / ``temperature``.
    """
    def fit(X, y):
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.int64)
        mean, std = X.mean(axis=0), X.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        Z = (X - mean) / std
        k = int(y.max()) + 1 if fit.n_classes is None else fit.n_classes
        Y = np.eye(k)[y]
        Ym = Y.mean(axis=0)
        W = np.linalg.solve(Z.T @ Z + alpha * len(Z) * 1e-3 * np.eye(Z.shape[1]), Z.T @ (Y - Ym))

        def predict_proba(Xt):
            s = ((np.asarray(Xt, np.float64) - mean) / std) @ W + Ym
            s = (s - s.max(axis=1, keepdims=True)) / temperature
            e = np.exp(s)
            return e / e.sum(axis=1, keepdims=True)
        return predict_proba

    fit.n_classes = None
    fit.__name__ = "ridge"
    return fit


def tinygrad_fit(spec, *, horizon: int, epochs: int = 8, batch_size: int = 64, patience: int | None = 3,
                 learning_rate: float = 1e-3, seed: int = 0, **train_kwargs) -> Callable:
    """The default ``fit``: pymicro's tinygrad trainer on the model's own architecture
    (:func:`pymicro.evaluation.backtest.tinygrad_fit`: the last 20 % of the rows it is given hold out
    for early stopping after a ``horizon``-row purge; frozen; native runtime). Few epochs:
    the experiments compare fits with each other, not with the model's own training.

    The fits share one data shape, so after the first they replay its compiled step (see
    :func:`pymicro.training.train.train`); they never warm-start from each other (a shuffled-label
    fit started from the true-label fit's weights would carry the real signal into the null).
    ``train_kwargs`` (e.g. ``compile_cache=False``) go to the trainer."""

    f = _fit(spec, horizon=horizon, epochs=epochs, batch_size=batch_size, patience=patience,
             learning_rate=learning_rate, seed=seed, **train_kwargs)
    f.__name__ = "tinygrad"
    return f


def _block_permute(y: np.ndarray, bars: Bars, idx: np.ndarray, block: int, rng) -> np.ndarray:
    """Permute the order of blocks of ``block`` consecutive labels within each symbol."""
    out = y.copy()
    sym = bars.rows.symbols[idx].astype(str)
    for s in np.unique(sym):
        loc = np.flatnonzero(sym == s)
        blocks = [loc[i:i + block] for i in range(0, loc.size, block)]
        perm = rng.permutation(len(blocks))
        src = np.concatenate([blocks[i] for i in perm])
        out[loc] = y[src]
    return out


def _cyclic_shift(y: np.ndarray, bars: Bars, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``k`` rows later within each symbol (cyclic, so the shape is unchanged), and a
    mask of the rows whose shifted label is real (not wrapped)."""
    out = y.copy()
    real = np.ones(idx.size, bool)
    sym = bars.rows.symbols[idx].astype(str)
    for s in np.unique(sym):
        loc = np.flatnonzero(sym == s)
        out[loc] = np.roll(y[loc], -k)
        real[loc[loc.size - k:]] = False
    return out, real


def run_experiments(rows, bars, fit, shuffles, seed, majority, n_classes) -> tuple[dict, dict | None]:
    """The retraining experiments, each scored on the test rows by accuracy and by the
    information coefficient (IC: correlation of the fit's score with the ordinal label),
    which, unlike accuracy, does not move with the mix of classes a fit happens to predict."""
    tr = rows.idx(0)
    te = rows.idx(2)
    h = rows.horizon
    Xtr, ytr = rows.X[tr], rows.y[tr]
    Xte, yte = rows.X[te], rows.y[te]
    block = h * max(1, len(bars.symbols))
    values = np.linspace(-1.0, 1.0, n_classes)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def run(X, y):
        proba = np.asarray(fit(X, y)(Xte), np.float64)
        if proba.shape != (te.size, n_classes):
            raise EvaluationError(f"fit's predict_proba returned {proba.shape} for {te.size} test rows; "
                                  f"expected ({te.size}, {n_classes})")
        return proba.argmax(axis=1), proba @ values

    # 1. the same fit on the true labels: the reference; 2. on the labels h bars later
    pred0, sc0 = run(Xtr, ytr)
    y_sh, _ = _cyclic_shift(ytr, bars, tr, h)
    pred_h, sch = run(Xtr, y_sh)
    yte_h, real = _cyclic_shift(yte, bars, te, h)
    maj_h = M.majority_class(y_sh, n_classes)
    d0 = ((pred0 == yte).astype(float) - (yte == majority))[real]
    dh = ((pred_h == yte_h).astype(float) - (yte_h == maj_h))[real]
    F = np.column_stack([sc0, sch])[real]
    G = np.column_stack([yte, yte_h])[real].astype(np.float64)
    C = corr(F, G)
    boot = boot_corr(F, G, 4 * block, 500, rng)
    shift = {"shift_bars": h, "rows": int(real.sum()), "ic": float(C[0, 0]), "ic_shifted": float(C[1, 1]),
             "ic_drop": float(C[0, 0] - C[1, 1]), "ic_drop_se": float(np.std(boot[:, 0, 0] - boot[:, 1, 1], ddof=1)),
             "ic_se": float(np.std(boot[:, 0, 0], ddof=1)),
             "edge": float(d0.mean()), "edge_shifted": float(dh.mean()), "edge_drop": float(d0.mean() - dh.mean()),
             "accuracy": float(np.mean(pred0 == yte)), "accuracy_shifted": float(np.mean((pred_h == yte_h)[real]))}
    # 3. shuffled labels
    accs, scores = [], []
    for _ in range(int(shuffles)):
        y_perm = _block_permute(ytr, bars, tr, 2 * h, rng)
        pred, sc = run(Xtr, y_perm)
        accs.append(float(np.mean(pred == yte)))
        scores.append(sc)
    if not shuffles:
        return shift, None
    S = np.column_stack(scores)
    y1 = yte[:, None].astype(np.float64)
    ics = corr(S, y1)[:, 0]
    null_se = float(np.mean(np.std(boot_corr(S, y1, 4 * block, 500, rng)[:, :, 0], axis=0, ddof=1)))
    shuffled = {"repeats": int(shuffles), "block_bars": 2 * h, "accuracies": accs, "ics": ics.tolist(),
                "null_ic_se": null_se, "true_label_accuracy": shift["accuracy"], "true_label_ic": shift["ic"],
                "fit": getattr(fit, "__name__", type(fit).__name__),
                "seconds": round(time.perf_counter() - t0, 2)}
    return shift, shuffled
