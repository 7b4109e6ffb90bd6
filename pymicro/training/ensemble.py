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
callables, so the specialists may be anything that trains. :func:`train_specialists` does
it end to end on market data: the three presets on their own feature sets (rows aligned by
date and symbol), out-of-fold predictions on the development period, the combiner, the
final members, one container, and the untouched test period for
:func:`pymicro.evaluation.ensemble.compare` (evaluation is a layer above training).
"""

from __future__ import annotations

from dataclasses import dataclass
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
                progress: Callable[[int, int], None] | None = None,
                ys: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities ``(rows, members, n_classes)`` mapped onto the common labels,
    and the mask of rows that have them (every block but the first).

    ``Xs[m]``: member ``m``'s own features for the same rows (time order); ``y``: the
    common labels; ``ys[m]``: the labels member ``m`` trains on, if not ``y`` (sentiment's
    five classes). A member never predicts a row it was fitted on."""
    y = np.asarray(y)
    ys = [y] * len(members) if ys is None else [np.asarray(v) for v in ys]
    n = len(y)
    if any(len(X) != n for X in Xs) or len(Xs) != len(members) or len(class_maps) != len(members):
        raise TrainingError("out_of_fold needs one feature matrix and one class map per member, "
                            "each with a row per label")
    folds = time_series_folds(n, k, embargo)
    q = np.full((n, len(members), n_classes), np.nan)
    done, total = 0, len(folds) * len(members)
    for fit, pred in folds:
        for m, (fp, X) in enumerate(zip(members, Xs)):
            p = np.asarray(fp(X[fit], ys[m][fit], X[pred]), np.float64)
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


# --------------------------------------------------------------------------- end to end

SPECIALISTS = ("momentum", "reversal", "sentiment")


@dataclass
class EnsembleRun:
    """What :func:`train_specialists` returns: the container, its parts and the comparison."""

    blob: bytes
    combiner: str
    members: dict          # preset -> member blob
    test: dict             # the held-out rows: X, y, y_train, dates, symbols, frame (for compare)
    oof_rows: int
    test_start: str
    settings: dict


def aligned_datasets(frame, presets, horizon: int = 5) -> dict:
    """Each preset's dataset on the rows all of them have (same date and symbol), date order."""
    from pymicro.market.dataset import make_dataset

    sets = {p: make_dataset(frame, p, horizon=horizon) for p in presets}
    keys = None
    for ds in sets.values():
        k = set(zip(ds.dates.astype("datetime64[D]").tolist(), ds.symbols.tolist()))
        keys = k if keys is None else keys & k
    order = sorted(keys)
    out = {}
    for p, ds in sets.items():
        index = {key: i for i, key in enumerate(zip(ds.dates.astype("datetime64[D]").tolist(), ds.symbols.tolist()))}
        out[p] = ds.take(np.array([index[key] for key in order]))
    return out


FIT_ROWS_MULTIPLE = 256  # the batch size; fits use a multiple of it (see fit_predict_for)


def fit_predict_for(preset: str, *, epochs: int, seed: int, feature_names):
    """A ``fit_predict(X, y, X_pred, keep=None)`` for :func:`out_of_fold` that trains the preset
    in tinygrad (the last ~15 % of the fit rows, by time, for early stopping) and predicts with
    the frozen blob on the native core; ``keep``, a list, receives the fitted member's blob.

    The oldest ``len(X) % 256`` rows are left out and both parts are multiples of 256 rows
    (the batch size): tinygrad compiles its kernels once per array size (2-5 s each on these
    machines against 0.3 s for a fit of 1,000 rows), so the many fits of out-of-fold folds and
    walk-forward blocks reuse a few sizes instead of compiling for each."""
    from pymicro.runtime.blob import freeze
    from pymicro.runtime.model import load
    from pymicro.training.train import train
    from pymicro.training.trainer import spec_for

    def fit_predict(X, y, X_pred, *, keep=None):
        m = FIT_ROWS_MULTIPLE
        if len(X) >= 2 * m:
            drop = len(X) % m
            X, y = X[drop:], y[drop:]
            cut = len(X) - max(m, round(len(X) * 0.15 / m) * m)
        else:
            cut = int(len(X) * 0.85)
        spec = spec_for(preset, feature_names=feature_names, name=preset)
        result = train(spec, X[:cut], y[:cut], X[cut:], y[cut:], epochs=epochs, seed=seed, batch_size=256)
        blob = freeze(result.network, preset=preset)
        if keep is not None:
            keep.append(blob)
        return load(blob).predict(np.ascontiguousarray(X_pred, np.float32))

    return fit_predict


def common_labels(sets: dict, presets) -> tuple[np.ndarray, list[list[int]]]:
    """The common down/flat/up label of the aligned rows and each preset's class map onto it
    (a 5-class label coarsens exactly: strong_down and down count as down, ...)."""
    from pymicro.runtime.ensemble import _default_class_map
    from pymicro.runtime.spec import preset as preset_spec

    maps = [_default_class_map(preset_spec(p).labels, LABELS3, p) for p in presets]
    return np.asarray(maps[0])[sets[presets[0]].y], maps


def train_specialists(*, symbols=None, data=None, combiner: str = "stacked", folds: int = 3,
                      epochs: int = 20, horizon: int = 5, test_fraction: float = 0.2, seed: int = 0,
                      path=None, presets: Sequence[str] | None = None,
                      progress: Callable[[str, int, int], None] | None = None) -> EnsembleRun:
    """Train momentum, reversal and sentiment on their own feature sets and the combiner on
    their out-of-fold predictions; hold out the last ``test_fraction`` of the dates, which
    nothing is fitted on, in ``run.test`` (``pymicro.evaluation.ensemble.compare_run``
    compares the ensemble with its members and the baselines there).

    The development period (the rest, less an embargo of ``horizon`` dates) is cut into
    ``folds + 1`` chronological blocks for the out-of-fold predictions; the final members
    are then trained on the whole development period. ``combiner``: "stacked" (the meta-model
    fitted to the out-of-fold predictions), "soft_vote" (weights from them, fit_weights) or
    "majority_vote" (equal weights). ``presets``: the specialists (default momentum, reversal,
    sentiment; any of the presets, each once). ``progress(stage, done, total)``.
    """
    presets = tuple(SPECIALISTS if presets is None else presets)
    from pymicro.runtime.spec import PRESETS

    if not presets or len(set(presets)) != len(presets) or any(p not in PRESETS for p in presets):
        raise TrainingError(f"presets must be distinct names among {tuple(PRESETS)}, got {list(presets)!r}")
    if combiner not in ("stacked", "soft_vote", "majority_vote"):
        raise TrainingError(f"combiner must be 'stacked', 'soft_vote' or 'majority_vote', got {combiner!r}")
    from pymicro.market.data import load_embedded

    frame = load_embedded(symbols) if data is None else data
    sets = aligned_datasets(frame, presets, horizon)
    common = sets[presets[0]]
    y_common, maps = common_labels(sets, presets)
    dates = common.dates.astype("datetime64[D]")
    udates = np.unique(dates)
    test_start = udates[int(len(udates) * (1 - test_fraction))]
    dev_end = udates[max(0, int(len(udates) * (1 - test_fraction)) - horizon)]
    dev = dates < dev_end
    test = dates >= test_start
    if dev.sum() < 200 * (folds + 1) or test.sum() < 100:
        raise TrainingError(f"too few rows for {folds} folds and a test period ({int(dev.sum())} development, "
                            f"{int(test.sum())} test): use more history or fewer folds")
    n_sym = len(set(common.symbols.tolist()))
    members, Xs, ys = [], [], []
    for p in presets:
        ds = sets[p]
        members.append(fit_predict_for(p, epochs=epochs, seed=seed, feature_names=ds.feature_names))
        Xs.append(ds.X)
        ys.append(ds.y)
    d = np.flatnonzero(dev)
    q, have = out_of_fold(members, [X[d] for X in Xs], y_common[d], class_maps=maps, n_classes=3,
                          k=folds, embargo=horizon * n_sym, ys=[y[d] for y in ys],
                          progress=(lambda i, t: progress("out-of-fold", i, t)) if progress else None)
    blobs = []
    for i, (fp, X, y) in enumerate(zip(members, Xs, ys)):
        keep: list = []
        fp(X[d], y[d], X[d[:1]], keep=keep)
        blobs.append(keep[0])
        if progress:
            progress("final members", i + 1, len(members))
    offsets = np.cumsum([0] + [X.shape[1] for X in Xs])
    columns = [list(range(offsets[i], offsets[i + 1])) for i in range(len(Xs))]
    feature_names = [f"{p}.{f}" for p in presets for f in sets[p].feature_names]
    kw = {}
    if combiner == "stacked":
        kw["meta"] = fit_meta(q[have], y_common[d][have], labels=LABELS3)
    elif combiner == "soft_vote":
        kw["weights"] = fit_weights(q[have], y_common[d][have]).tolist()
    blob = freeze_ensemble(blobs, path, combiner=combiner, columns=columns, labels=LABELS3,
                           feature_names=feature_names, names=list(presets), class_maps=maps,
                           name=f"specialists-{combiner}", test_start=str(test_start), horizon=horizon,
                           **kw)
    X_all = np.concatenate(Xs, axis=1)
    held_out = {"X": X_all[test], "y": y_common[test], "y_train": y_common[d], "dates": dates[test],
                "symbols": common.symbols[test], "frame": frame}
    return EnsembleRun(blob=blob, combiner=combiner, members=dict(zip(presets, blobs)),
                       test=held_out, oof_rows=int(have.sum()), test_start=str(test_start),
                       settings={"folds": folds, "epochs": epochs, "horizon": horizon, "seed": seed,
                                 "presets": list(presets),
                                 "symbols": sorted(set(common.symbols.tolist()))})


LABELS3 = ("down", "flat", "up")

