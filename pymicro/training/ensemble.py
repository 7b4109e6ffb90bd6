"""Training an ensemble's combiner honestly: stacking on out-of-fold predictions only.

A stacked meta-model must learn how much to trust each member from predictions the member
made on rows it did **not** train on; trained on a member's predictions on its own training
rows, it learns to trust whichever member memorised them best (scikit-learn's
``StackingClassifier`` uses ``cross_val_predict`` for the same reason). Market rows are
ordered in time, so the folds here are chronological and expanding (as ``TimeSeriesSplit``):
fold ``i`` fits each member on blocks ``0..i`` (minus an embargo of rows before the cut, so
no label window of the fit overlaps the predicted block) and predicts block ``i + 1``. Rows
of block 0 get no out-of-fold prediction and are not used to fit the combiner.

* :func:`time_series_folds`: the folds;
* :func:`out_of_fold`: every member's out-of-fold probabilities on the common labels;
* :func:`fit_meta`: a meta-model (multinomial logistic regression, a one-layer pymicro
  network, so it freezes into the container like any blob) fitted to them;
* :func:`fit_weights`: soft-vote weights from the same out-of-fold predictions.

Members are given as ``fit_predict(X_train, y_train, X_predict) -> probabilities``
callables, so the specialists may be anything that trains (pymicro.training.train on their
own feature sets, in practice). Not done yet (issue 12): the end-to-end
``train_specialists`` over the embedded market data, and ``pymicro ensemble train``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pymicro.errors import TrainingError
from pymicro.runtime.ensemble import combine, freeze_ensemble, map_classes  # noqa: F401 (pymicro.ensemble.*)
from pymicro.runtime.spec import Network, Spec

FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def time_series_folds(n: int, k: int = 4, embargo: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` expanding chronological folds over ``n`` rows in time order:
    ``[(fit_rows, predict_rows), ...]``. The rows split into ``k + 1`` contiguous blocks;
    fold ``i`` fits on blocks ``0..i`` less the last ``embargo`` rows and predicts block
    ``i + 1``."""
    if not isinstance(k, int) or k < 1 or n < 2 * (k + 1):
        raise TrainingError(f"time_series_folds needs k >= 1 and at least 2 (k + 1) rows; got k={k!r}, n={n}")
    if embargo < 0:
        raise TrainingError(f"embargo must be >= 0, got {embargo}")
    edges = np.linspace(0, n, k + 2).round().astype(int)
    folds = []
    for i in range(k):
        fit = np.arange(0, max(edges[i + 1] - embargo, 0))
        if len(fit) == 0:
            raise TrainingError(f"fold {i}: the embargo of {embargo} rows leaves nothing to fit on")
        folds.append((fit, np.arange(edges[i + 1], edges[i + 2])))
    return folds


def out_of_fold(members: Sequence[FitPredict], Xs: Sequence[np.ndarray], y: np.ndarray, *,
                class_maps: Sequence[Sequence[int]], n_classes: int, k: int = 4, embargo: int = 0,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities ``(rows, members, n_classes)`` mapped onto the common labels,
    and the mask of rows that have them (every block but the first).

    ``Xs[m]``: member ``m``'s own features for the same rows (time order); ``y``: the
    common labels. A member never predicts a row it was fitted on."""
    y = np.asarray(y)
    n = len(y)
    if any(len(X) != n for X in Xs) or len(Xs) != len(members) or len(class_maps) != len(members):
        raise TrainingError("out_of_fold needs one feature matrix and one class map per member, "
                            "each with a row per label")
    folds = time_series_folds(n, k, embargo)
    q = np.full((n, len(members), n_classes), np.nan)
    done, total = 0, len(folds) * len(members)
    for fit, pred in folds:
        for m, (fp, X) in enumerate(zip(members, Xs)):
            p = np.asarray(fp(X[fit], y[fit], X[pred]), np.float64)
            q[pred, m] = map_classes(p, class_maps[m], n_classes)
            done += 1
            if progress:
                progress(done, total)
    have = ~np.isnan(q).any(axis=(1, 2))
    return q, have


def fit_meta(q: np.ndarray, y: np.ndarray, *, labels: Sequence[str], epochs: int = 500,
             learning_rate: float = 0.5, l2: float = 1e-3, name: str = "stacker") -> Network:
    """A multinomial logistic regression from the members' out-of-fold mapped probabilities
    ``q`` (rows, members, classes) to ``y``, as a pymicro network (no hidden layer), ready
    for ``freeze_ensemble(..., combiner="stacked", meta=...)``. Full-batch gradient descent
    on the class-balanced cross-entropy with an L2 penalty; deterministic."""
    q = np.asarray(q, np.float64)
    y = np.asarray(y)
    if q.ndim != 3 or len(q) != len(y) or np.isnan(q).any():
        raise TrainingError("fit_meta needs finite out-of-fold probabilities (rows, members, classes), "
                            "one row per label: pass q[have], y[have] from out_of_fold")
    n, m, c = q.shape
    Z = q.reshape(n, m * c)
    counts = np.bincount(y, minlength=c).astype(np.float64)
    w_class = np.where(counts > 0, n / (c * np.maximum(counts, 1)), 0.0)
    sw = w_class[y] / w_class[y].sum()
    Y = np.eye(c)[y]
    W = np.zeros((c, m * c))
    b = np.zeros(c)
    for _ in range(epochs):
        logits = Z @ W.T + b
        logits -= logits.max(axis=1, keepdims=True)
        P = np.exp(logits)
        P /= P.sum(axis=1, keepdims=True)
        G = (P - Y) * sw[:, None]
        W -= learning_rate * (G.T @ Z + l2 * W)
        b -= learning_rate * G.sum(axis=0)
    spec = Spec(m * c, (), c, name=name, labels=tuple(labels))
    net = spec.init(0)
    net.params[0]["W"] = W.astype(np.float32)
    net.params[0]["b"] = b.astype(np.float32)
    return net


def member_trust(meta: Network, n_members: int) -> np.ndarray:
    """How strongly a linear meta-model listens to each member: the mean absolute weight on
    that member's block of inputs (a diagnostic for reports and tests)."""
    W = np.asarray(meta.params[-1]["W"], np.float64)
    c = W.shape[0]
    return np.array([np.abs(W[:, i * c:(i + 1) * c]).mean() for i in range(n_members)])


def fit_weights(q: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Soft-vote weights from out-of-fold predictions: each member's out-of-fold
    log-likelihood gain over the uniform guess, floored at 0 (a member that does no better
    than chance gets no vote); all equal if none beats chance."""
    q = np.asarray(q, np.float64)
    n, m, c = q.shape
    ll = np.log(np.clip(q[np.arange(n), :, y], 1e-12, 1.0)).mean(axis=0)
    gain = np.maximum(ll - np.log(1.0 / c), 0.0)
    return gain / gain.sum() if gain.sum() > 0 else np.full(m, 1.0 / m)
