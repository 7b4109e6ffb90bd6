"""Hyper-parameter search: Optuna (TPE sampler, median pruning) with trials run as Dask tasks.

    from pymicro.training.tune import tune

    result = tune("momentum", n_trials=40, objective="balanced_accuracy", out_dir="tuning")
    result.best_params, result.best_value        # on walk-forward validation folds (never the test split)
    result.blob_path                             # the best trial retrained and frozen
    result.comparison                            # tuned vs default, out-of-sample on the test split
    print(result.summary())

What it does, exactly (docs/tuning.md):

* **Data**: the preset's features and labels on the embedded history (or ``data``), split by
  date as the trainer splits it (0.7 / 0.15 / 0.15 with an embargo). The search only sees the
  first two parts (the *development* rows); the test part is used once, at the end, to
  compare the tuned model with the default one.
* **Folds**: ``n_folds`` walk-forward folds over the development dates: fold ``k`` validates
  on the ``k``-th of ``n_folds`` consecutive date blocks of the development period's second
  half and trains on every earlier row whose label ends before the block (``horizon`` dates
  embargoed). Each fold trains with early stopping on its block.
* **Objective** (maximised), the mean over folds of: ``balanced_accuracy`` of the best-epoch
  network on the block, or ``sharpe``: the annualised Sharpe ratio of an equal-weight
  portfolio of the symbols, each holding -1/0/+1 by the most likely class, next-bar
  returns, net of ``cost_bps`` per unit traded.
* **Pruning**: after every epoch the trial reports the negated class-weighted validation
  cross-entropy (higher is better) at step ``fold * epochs + epoch`` and asks Optuna's
  ``MedianPruner`` whether to stop.
* **Reproducibility**: trials are asked in rounds of ``parallel`` (independent of the number
  of workers); a round's trials are sampled from, and pruned against, the trials finished
  before the round. So the same seed gives the same trials, and the same best parameters,
  on 1 worker or 10.
* **Compiled steps**: every trial trains inside the search space's widest network
  (:func:`padded_spec`: the largest widths, extra weights masked to zero, so each trial trains
  exactly its own network) with its batches padded to a power of four (:func:`batch_rows`, rows
  of weight zero: the same gradient), and each worker process keeps its compiled steps
  (:func:`pymicro.training.train.train`). A worker compiles about four steps for a whole study
  (batch 64 or 256 rows, attention or not) instead of one per architecture, batch size and
  dropout rate. ``compile_cache=False`` turns this off.
* **Storage**: an Optuna journal file (``JournalStorage(JournalFileBackend)``): append-only,
  each finished trial written as soon as it finishes. Running ``tune`` again with the same
  storage and study name resumes: finished trials are kept, ``n_trials`` is the total, and a
  trial left running by a killed coordinator is marked failed and its parameters run again.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pymicro import metrics as M
from pymicro.errors import TrainingError, require
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import load
from pymicro.runtime.spec import Attention, Dense, Dropout, Spec, preset as preset_spec
from pymicro.training.cluster import dask_client, scatter

__all__ = ["DEFAULT_SPACE", "OBJECTIVES", "TuneData", "TuneResult", "neural_optimize", "prepare_data",
           "search_space_from_ranges", "tune"]

OBJECTIVES = ("balanced_accuracy", "sharpe")

DEFAULT_SPACE: dict[str, tuple] = {
    "learning_rate": ("float_log", 1e-4, 1e-2),
    "hidden_1": ("categorical", (8, 16, 24, 32)),
    "hidden_2": ("categorical", (4, 8, 16)),
    "dropout": ("float", 0.0, 0.5),
    "attention": ("categorical", (0, 4, 8, 16)),  # 0: no attention layer
    "batch_size": ("categorical", (32, 64, 128, 256)),
    "label_threshold": ("categorical", (0.25, 0.5, 0.75, 1.0)),  # volatility units
}
"""The search space: name -> ("float_log", lo, hi) | ("float", lo, hi) | ("categorical", choices)."""

DEFAULT_PARAMS = {"learning_rate": 1e-3, "batch_size": 32, "label_threshold": 0.5}
"""The untuned model: the preset's architecture with the trainer's defaults."""


def _optuna():
    optuna = require("optuna", "tune", purpose="hyper-parameter search")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ----------------------------------------------------------------------------- data

@dataclass
class TuneData:
    """What every trial reads (scattered to the workers once): development rows, labels per
    threshold, next-bar returns, and the folds as row indices."""

    X: np.ndarray
    ys: dict[float, np.ndarray]
    dates: np.ndarray
    symbols: np.ndarray
    next_return: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    feature_names: tuple[str, ...]
    preset: str
    horizon: int
    n_classes: int
    cost_bps: float = 2.0


def _next_returns(frame, dates, symbols) -> np.ndarray:
    """Close-to-next-close simple return of each (date, symbol) row (NaN where there is no next bar)."""
    import pandas as pd

    out = np.full(len(dates), np.nan)
    for sym, g in frame.groupby("symbol"):
        close = g.set_index("date")["close"].astype(np.float64)
        nxt = (close.shift(-1) / close - 1.0)
        mask = symbols == sym
        out[mask] = nxt.reindex(pd.DatetimeIndex(dates[mask])).to_numpy()
    return out


def prepare_data(preset: str = "momentum", *, data=None, symbols=None, horizon: int = 5,
                 thresholds=None, n_folds: int = 3, feature_lookback: int | None = None, cost_bps: float = 2.0):
    """(TuneData of the development rows, {threshold: Split}, the bars) for ``preset`` (module docstring)."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.training.lookback import within_lookback

    if not (isinstance(n_folds, int) and not isinstance(n_folds, bool) and n_folds >= 1):
        raise TrainingError(f"n_folds must be an int >= 1, got {n_folds!r}")
    thresholds = tuple(sorted(set(thresholds or DEFAULT_SPACE["label_threshold"][1])))
    frame = load_embedded(symbols) if data is None else data
    splits, ys = {}, {}
    base = None
    for thr in thresholds:
        ds = make_dataset(frame, preset, horizon=horizon, threshold=float(thr))
        if feature_lookback is not None:
            ds = within_lookback(ds, preset, feature_lookback)
        split = ds.split()
        splits[float(thr)] = split
        if base is None:
            base = ds
        elif len(ds) != len(base) or not np.array_equal(ds.dates, base.dates):
            raise TrainingError("label thresholds changed the rows; expected the same rows for every threshold")
        ys[float(thr)] = ds.y
    assert base is not None
    split0 = splits[thresholds[0]]
    # development rows: dates before the test cut less the embargo, labels ending before it
    days = np.unique(base.dates)
    t_idx = int(np.searchsorted(days, split0.test_start))
    dev = (base.dates < days[max(t_idx - split0.embargo, 0)]) & (base.label_end < split0.test_start)
    idx = np.flatnonzero(dev)
    dev_days = np.unique(base.dates[idx])
    half = len(dev_days) // 2
    edges = [half + round(k * (len(dev_days) - half) / n_folds) for k in range(n_folds + 1)]
    folds = []
    d, end = base.dates[idx], base.label_end[idx]
    for k in range(n_folds):
        lo, hi = dev_days[edges[k]], dev_days[min(edges[k + 1], len(dev_days) - 1)]
        last = k == n_folds - 1
        gap = dev_days[max(edges[k] - base.horizon, 0)]
        tr = np.flatnonzero((d < gap) & (end < lo))
        va = np.flatnonzero((d >= lo) & ((d <= hi) if last else (d < hi)))
        if tr.size < 100 or va.size < 20:
            raise TrainingError(f"fold {k} has {tr.size} training and {va.size} validation rows: too few "
                                "(use more history or fewer folds)")
        folds.append((tr, va))
    nxt = _next_returns(frame, base.dates[idx], base.symbols[idx])
    td = TuneData(np.ascontiguousarray(base.X[idx]), {t: y[idx] for t, y in ys.items()}, base.dates[idx],
                  base.symbols[idx], nxt, folds, tuple(base.feature_names), preset, int(base.horizon),
                  len(base.label_names), float(cost_bps))
    return td, splits, frame


# ----------------------------------------------------------------------------- a trial

def build_spec(params: dict, input_size: int, n_classes: int, name: str = "tuned",
               feature_names=None, labels=None) -> Spec:
    """The network a trial's parameters describe: [Attention(a)] -> Dense(h1) -> [Dropout(p)] -> Dense(h2) -> head."""
    layers = []
    if int(params.get("attention", 0)) > 0:
        layers.append(Attention(int(params["attention"])))
    layers.append(Dense(int(params["hidden_1"])))
    if float(params.get("dropout", 0.0)) > 0:
        layers.append(Dropout(float(params["dropout"])))
    layers.append(Dense(int(params["hidden_2"])))
    return Spec(input_size, tuple(layers), n_classes, name=name, labels=labels,
                feature_names=tuple(feature_names) if feature_names is not None else None)


def space_widths(space: dict) -> dict | None:
    """The widest network of a search space: the largest choice of ``hidden_1``, ``hidden_2`` and
    ``attention``, and whether a dropout layer can occur (None when a width is not categorical)."""
    out = {}
    for key in ("hidden_1", "hidden_2", "attention"):
        entry = space.get(key, ("categorical", (0,) if key == "attention" else ()))
        if entry[0] != "categorical" or not entry[1]:
            return None
        out[key] = int(max(entry[1]))
    d = space.get("dropout")
    out["dropout"] = bool(d is not None and (d[0] != "categorical" or max(d[1]) > 0))
    return out


def batch_rows(batch_size: int) -> int:
    """The compiled step's rows for a trial's batch size: the power of four at or above it (32 -> 64,
    128 -> 256); the batch is padded with rows of weight zero (the same loss and gradient), so the
    space's batch sizes share two compiled steps, at most 4x the rows of the batch itself."""
    b = 1
    while b < batch_size:
        b *= 4
    return b


def padded_spec(widths: dict, spec: Spec) -> Spec:
    """The network a trial trains in (``train(pad_to=...)``): ``spec``'s layers at the search space's
    largest widths, attention kept only where ``spec`` has it, a dropout layer wherever the space
    allows one. Every trial of one batch size and attention on/off shares one compiled step; the
    padding is masked, so each trial trains exactly its own network."""
    layers = []
    if any(isinstance(layer, Attention) for layer in spec.layers):
        layers.append(Attention(int(widths["attention"])))
    layers.append(Dense(int(widths["hidden_1"])))
    if widths["dropout"] or any(isinstance(layer, Dropout) for layer in spec.layers):
        layers.append(Dropout(0.5))  # the rate is the trial's (train draws the masks); this one is unused
    layers.append(Dense(int(widths["hidden_2"])))
    return Spec(spec.input_size, tuple(layers), spec.n_classes, name="padded", allow_large=True)


def _positions(probs: np.ndarray) -> np.ndarray:
    n = probs.shape[1]
    cp = np.array([-1.0, 0.0, 1.0]) if n == 3 else np.linspace(-1.0, 1.0, n)
    return cp[probs.argmax(axis=1)]


def portfolio_returns(positions, next_return, dates, symbols, cost_bps: float) -> np.ndarray:
    """Net daily returns of an equal-weight portfolio: each symbol holds its row's position over the
    next bar, paying ``cost_bps`` per unit of position changed (the first entry included)."""
    pos = np.asarray(positions, np.float64)
    net = np.zeros(len(pos))
    for sym in np.unique(symbols):
        m = np.flatnonzero(symbols == sym)
        m = m[np.argsort(dates[m], kind="stable")]
        p = pos[m]
        r = np.nan_to_num(next_return[m])
        net[m] = p * r - np.abs(np.diff(p, prepend=0.0)) * cost_bps / 1e4
    days, inv = np.unique(dates, return_inverse=True)
    total = np.bincount(inv, weights=net, minlength=len(days))
    count = np.bincount(inv, minlength=len(days))
    return total / np.maximum(count, 1)


def _score(objective: str, data: TuneData, probs: np.ndarray, rows: np.ndarray, y: np.ndarray) -> float:
    if objective == "balanced_accuracy":
        return float(M.balanced_accuracy(y[rows], probs.argmax(axis=1), data.n_classes))
    ret = portfolio_returns(_positions(probs), data.next_return[rows], data.dates[rows], data.symbols[rows],
                            data.cost_bps)
    s = M.sharpe(ret)
    return float(s) if math.isfinite(s) else 0.0


@dataclass
class _Snapshot:
    """The trials a round prunes against (one object, so scatter sends it whole)."""

    trials: list


class _Pruned(Exception):
    pass


def run_trial(data: TuneData, params: dict, settings: dict, snapshot) -> dict:
    """One trial on a worker: train every fold, report per epoch, prune with Optuna's MedianPruner
    against ``snapshot`` (the trials finished before this round). Returns state, value and the
    reported intermediate values."""
    from pymicro.training.train import train

    optuna = _optuna()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                pruner=_pruner(optuna, settings))
    trials = snapshot.trials if isinstance(snapshot, _Snapshot) else list(snapshot or ())
    if trials:
        study.add_trials(trials)
    trial = study.ask()
    y_all = data.ys[float(params["label_threshold"])]
    spec = build_spec(params, data.X.shape[1], data.n_classes)
    pad_to = padded_spec(settings["widths"], spec) if settings.get("widths") else None
    epochs = int(settings["epochs"])
    reported: dict[int, float] = {}
    values = []
    started = time.perf_counter()
    for f, (tr, va) in enumerate(data.folds):
        def progress(epoch, total, m, f=f):
            step = f * epochs + epoch
            value = -float(m["val_loss"])
            reported[step] = value
            if settings["prune"]:
                trial.report(value, step)
                if trial.should_prune():
                    raise _Pruned(step)
        try:
            res = train(spec, data.X[tr], y_all[tr], data.X[va], y_all[va], epochs=epochs,
                        batch_size=int(params["batch_size"]), learning_rate=float(params["learning_rate"]),
                        seed=int(settings["seed"]), patience=settings["patience"], progress=progress,
                        pad_to=pad_to, compile_cache=bool(settings.get("compile_cache", True)),
                        batch_rows=batch_rows(int(params["batch_size"])) if settings.get("widths") else None)
        except _Pruned:
            return {"state": "pruned", "intermediate": reported, "fold_values": values,
                    "seconds": time.perf_counter() - started}
        probs = load(freeze(res.network)).predict(data.X[va])
        values.append(_score(settings["objective"], data, probs, va, y_all))
    return {"state": "complete", "value": float(np.mean(values)), "intermediate": reported, "fold_values": values,
            "seconds": time.perf_counter() - started}


def _pruner(optuna, settings: dict):
    if not settings["prune"]:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=int(settings["n_startup_trials"]),
                                       n_warmup_steps=int(settings["n_warmup_steps"]))


def _suggest(trial, space: dict) -> dict:
    out = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "float_log":
            out[name] = trial.suggest_float(name, spec[1], spec[2], log=True)
        elif kind == "float":
            out[name] = trial.suggest_float(name, spec[1], spec[2])
        elif kind == "categorical":
            out[name] = trial.suggest_categorical(name, list(spec[1]))
        else:
            raise TrainingError(f"search space entry {name!r} has unknown kind {kind!r}")
    return out


# ----------------------------------------------------------------------------- the study

def journal_storage(path):
    """Optuna's journal file storage at ``path`` (an append-only log; lock: an O_EXCL lock file)."""
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(
        JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path) + ".lock")))


def _counted(study) -> int:
    """Finished trials: complete, pruned or failed, less those a killed coordinator left running."""
    optuna = _optuna()
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done) if not t.user_attrs.get("lost"))


def _recover(study) -> int:
    """Trials left RUNNING (a killed coordinator) become FAIL (marked lost) and their parameters are
    queued again, so the same trials run. Returns how many."""
    optuna = _optuna()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "lost", True)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        if t.params:
            study.enqueue_trial(t.params, skip_if_exists=False)
        n += 1
    return n


@dataclass
class TuneResult:
    """The study, the best trial and its frozen retraining, and the out-of-sample comparison."""

    study_name: str
    storage: Path
    best_params: dict
    best_value: float
    objective: str
    n_trials: dict
    blob_path: Path | None
    comparison: dict
    plots: dict = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 0
    recovered: int = 0

    def to_dict(self) -> dict:
        return {"study_name": self.study_name, "storage": str(self.storage), "best_params": self.best_params,
                "best_value": self.best_value, "objective": self.objective, "n_trials": self.n_trials,
                "blob_path": str(self.blob_path) if self.blob_path else None, "comparison": self.comparison,
                "plots": {k: str(v) for k, v in self.plots.items()}, "seconds": self.seconds,
                "workers": self.workers, "recovered": self.recovered}

    def summary(self) -> str:
        n = self.n_trials
        lines = [f"study {self.study_name!r} ({self.storage}): {n['complete']} complete, {n['pruned']} pruned, "
                 f"{n['failed']} failed on {self.workers} worker(s) in {self.seconds:.0f} s",
                 f"best {self.objective} on the walk-forward validation folds: {self.best_value:.4f}",
                 "best parameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items())]
        c = self.comparison
        if c:
            lines.append(f"\nout-of-sample (test split, {c['test_start']} on; never seen by the search):")
            lines.append(f"{'':22}{'accuracy (95% CI)':>26}{'balanced':>10}{'majority':>10}"
                         f"{'Sharpe net (95% CI)':>26}")
            for key in ("tuned", "default"):
                r = c[key]
                lo, hi = r["accuracy_ci"]
                slo, shi = r["sharpe_ci"]
                lines.append(f"{key + ' model':22}{r['accuracy']:>10.1%} ({lo:.1%}..{hi:.1%}){r['balanced_accuracy']:>10.1%}"
                             f"{r['majority_accuracy']:>10.1%}{r['sharpe']:>10.2f} ({slo:.2f}..{shi:.2f})")
            for key, r in c["baselines"].items():
                slo, shi = r["sharpe_ci"]
                lines.append(f"{key:22}{'':>26}{'':>10}{'':>10}{r['sharpe']:>10.2f} ({slo:.2f}..{shi:.2f})")
            lines.append(f"(labels of each model use its own label threshold; Sharpe: equal-weight portfolio, "
                         f"next-bar returns, net of {c['cost_bps']:g} bps per unit traded)")
        return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _counts(study) -> dict:
    states = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    return {"complete": sum(t.state == states.COMPLETE for t in trials),
            "pruned": sum(t.state == states.PRUNED for t in trials),
            "failed": sum(t.state == states.FAIL and not t.user_attrs.get("lost") for t in trials),
            "lost_and_rerun": sum(bool(t.user_attrs.get("lost")) for t in trials)}


def _finish(study, study_name, storage_path, splits, frame, data_obj, preset, name, out_dir, seed, patience,
            epochs, cost_bps, objective, client, widths):
    """The best trial retrained and frozen, and the comparison with the default model (on the workers)."""
    counts = _counts(study)
    if counts["complete"] == 0:
        raise TrainingError(f"no trial of study {study_name!r} completed ({counts}); see the trials' 'error' "
                            f"attributes in {storage_path}")
    best = study.best_trial
    full = {**{k: v for k, v in DEFAULT_PARAMS.items()}, **dict(best.params)}
    return _final(full, splits, frame, data_obj, preset, name, out_dir, seed, patience, epochs, cost_bps,
                  study_name, best.value, objective, client=client, widths=widths)


def tune(preset: str = "momentum", *, n_trials: int = 20, objective: str = "balanced_accuracy",
         storage=None, study_name: str | None = None, seed: int = 0, scheduler=None,
         n_workers: int | None = None, parallel: int = 4, epochs: int = 20, patience: int | None = 5,
         n_folds: int = 3, symbols=None, data=None, horizon: int = 5, feature_lookback: int | None = None,
         space: dict | None = None, prune: bool = True, n_startup_trials: int = 4, n_warmup_steps: int = 3,
         cost_bps: float = 2.0, out_dir="pymicro-tune", name: str | None = None, plots: bool = True,
         final_epochs: int | None = None, progress: Callable[[int, int, dict], None] | None = None,
         compile_cache: bool = True) -> TuneResult:
    """Search hyper-parameters of ``preset`` with Optuna on Dask; freeze the best (module docstring).

    ``n_trials``: finished trials the study should hold (a resumed study counts its old ones).
    ``storage``: the journal file (default ``out_dir/<study_name>.journal``). ``scheduler``: a
    Dask scheduler address or Client (default ``$PYMICRO_DASK_SCHEDULER``, else a local cluster
    of ``n_workers`` processes). ``parallel``: trials per round. ``progress(done, n_trials,
    info)`` after each finished trial. ``compile_cache`` (default): each worker process keeps its
    compiled training steps, and every trial trains inside the search space's widest network
    (masked, :func:`padded_spec`) so trials of one batch size share them; False compiles each
    trial's own shapes afresh (the slow way, for comparison).
    """
    optuna = _optuna()
    if objective not in OBJECTIVES:
        raise TrainingError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    for key, v, lo in (("n_trials", n_trials, 1), ("parallel", parallel, 1), ("epochs", epochs, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise TrainingError(f"{key} must be an int >= {lo}, got {v!r}")
    space = dict(DEFAULT_SPACE if space is None else space)
    started = time.perf_counter()
    thresholds = space["label_threshold"][1] if space.get("label_threshold", ("",))[0] == "categorical" else None
    if thresholds is None:
        raise TrainingError("label_threshold must be a categorical entry of the search space (labels are "
                            "precomputed for each value)")
    thresholds = tuple(sorted(set(thresholds) | {DEFAULT_PARAMS["label_threshold"]}))
    data_obj, splits, frame = prepare_data(preset, data=data, symbols=symbols, horizon=horizon, thresholds=thresholds,
                                    n_folds=n_folds, feature_lookback=feature_lookback, cost_bps=cost_bps)
    out_dir = Path(out_dir)
    study_name = study_name or f"{preset}-{objective}"
    storage_path = Path(storage) if storage is not None else out_dir / f"{study_name}.journal"
    study = optuna.create_study(study_name=study_name, storage=journal_storage(storage_path),
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials, n_warmup_steps),
                                direction="maximize", load_if_exists=True)
    recovered = _recover(study)
    settings = {"epochs": epochs, "patience": patience, "seed": seed, "objective": objective, "prune": prune,
                "n_startup_trials": n_startup_trials, "n_warmup_steps": n_warmup_steps,
                "compile_cache": bool(compile_cache), "widths": space_widths(space) if compile_cache else None}
    study.set_user_attr("settings", {**settings, "preset": preset, "n_folds": n_folds, "horizon": horizon,
                                     "feature_lookback": feature_lookback, "space": {k: list(map(str, v)) for k, v
                                                                                     in space.items()}})
    workers = 0
    name = name or f"{preset}-tuned"
    with dask_client(scheduler, n_workers=n_workers) as client:
        workers = len(client.scheduler_info()["workers"])
        data_ref = scatter(client, data_obj)
        from distributed import as_completed

        while (done := _counted(study)) < n_trials:
            k = min(parallel, n_trials - done)
            snapshot = study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE,))
            snap_ref = scatter(client, _Snapshot(snapshot))
            asked = []
            for _ in range(k):
                t = study.ask()
                asked.append((t, _suggest(t, space)))
            futures = {client.submit(run_trial, data_ref, p, settings, snap_ref, pure=False): (t, p)
                       for t, p in asked}
            for fut in as_completed(list(futures), loop=client.loop):
                t, p = futures[fut]
                try:
                    r = fut.result()
                except Exception as e:  # noqa: BLE001 - a trial's failure is recorded, the study goes on
                    t.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
                    study.tell(t, state=optuna.trial.TrialState.FAIL)
                    r = {"state": "failed", "error": str(e)}
                else:
                    for step, v in sorted(r["intermediate"].items()):
                        t.report(v, int(step))
                    t.set_user_attr("fold_values", r["fold_values"])
                    t.set_user_attr("seconds", round(r["seconds"], 3))
                    if r["state"] == "complete":
                        study.tell(t, r["value"])
                    else:
                        study.tell(t, state=optuna.trial.TrialState.PRUNED)
                if progress is not None:
                    progress(_counted(study), n_trials, {"trial": t.number, "state": r["state"],
                                                         "value": r.get("value"), "params": p})
        blob_path, comparison = _finish(study, study_name, storage_path, splits, frame, data_obj, preset, name,
                                        out_dir, seed, patience, final_epochs or max(epochs, 50), cost_bps,
                                        objective, client, settings["widths"])
    counts = _counts(study)
    best = study.best_trial
    best_params = dict(best.params)
    plot_paths = _plots(study, out_dir, study_name) if plots else {}
    result = TuneResult(study_name, storage_path, best_params, float(best.value), objective, counts, blob_path,
                        comparison, plot_paths, time.perf_counter() - started, workers, recovered)
    (out_dir / f"{study_name}.json").write_text(json.dumps(result.to_dict(), indent=2, default=str))
    return result


# ----------------------------------------------------------------------------- after the search

def _sharpe_ci(returns: np.ndarray, seed: int = 0, resamples: int = 1000, block: int = 5) -> tuple[float, float]:
    """95% moving-block bootstrap interval of the annualised Sharpe ratio."""
    r = np.asarray(returns, np.float64)
    n = r.size
    if n < 2 * block:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    k = -(-n // block)
    starts = rng.integers(0, n - block + 1, (resamples, k))
    idx = (starts[:, :, None] + np.arange(block)).reshape(resamples, -1)[:, :n]
    s = r[idx]
    sd = s.std(axis=1, ddof=1)
    sr = np.where(sd > 0, s.mean(axis=1) / np.where(sd > 0, sd, 1) * math.sqrt(M.PERIODS_PER_YEAR), 0.0)
    lo, hi = np.percentile(sr, [2.5, 97.5])
    return (float(lo), float(hi))


def _final_train(spec, arrays, kwargs, widths):
    """One final training (a Dask task): inside the search space's padded network when it fits, so the
    worker's compiled steps serve it too; otherwise as it is."""
    from pymicro.training.train import _align, train

    pad = {}
    if widths:
        candidate = padded_spec(widths, spec)
        try:
            _align(spec, candidate)
        except TrainingError:
            pass  # e.g. the preset's own widths lie outside a narrowed search space
        else:
            pad = {"pad_to": candidate, "batch_rows": batch_rows(int(kwargs["batch_size"]))}
    return train(spec, *arrays, **kwargs, **pad)


def _final(params, splits, frame, data_obj, preset, name, out_dir, seed, patience, epochs, cost_bps, study_name,
           best_value, objective, client=None, widths=None):
    """Retrain the best parameters and the default model on train (early stopping on validation),
    freeze the tuned one, and compare both on the test split beside baselines. With ``client`` the two
    trainings run as Dask tasks side by side."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    base_spec = preset_spec(preset)
    test_start = None
    next_ret = None
    models = {}
    for key, p in (("tuned", params), ("default", DEFAULT_PARAMS)):
        split = splits[float(p["label_threshold"])]
        if key == "tuned":
            spec = build_spec(p, data_obj.X.shape[1], data_obj.n_classes, name=name,
                              feature_names=data_obj.feature_names, labels=base_spec.labels)
        else:
            spec = Spec(data_obj.X.shape[1], base_spec.layers, base_spec.n_classes, name=f"{preset}-default",
                        labels=base_spec.labels, feature_names=data_obj.feature_names)
        arrays = (split.train.X, split.train.y, split.validation.X, split.validation.y)
        kwargs = {"epochs": epochs, "batch_size": int(p["batch_size"]), "learning_rate": float(p["learning_rate"]),
                  "seed": seed, "patience": patience}
        models[key] = (client.submit(_final_train, spec, arrays, kwargs, widths, pure=False) if client is not None
                       else _final_train(spec, arrays, kwargs, widths))
    for key, p in (("tuned", params), ("default", DEFAULT_PARAMS)):
        split = splits[float(p["label_threshold"])]
        res = models[key].result() if client is not None else models[key]
        spec = res.network.spec
        meta = {"preset": preset, "horizon": int(data_obj.horizon), "threshold": float(p["label_threshold"]),
                "test_start": str(split.test_start), "seed": seed}
        if key == "tuned":
            meta.update(study=study_name, objective=objective, best_value=float(best_value))
            blob_path = out_dir / f"{name}.pmb"
            blob = freeze(res.network, blob_path, **meta)
        else:
            blob = freeze(res.network)
        probs = load(blob).predict(split.test.X)
        pred = probs.argmax(axis=1)
        majority = M.majority_class(split.train.y, spec.n_classes)
        summary = M.classification_summary(split.test.y, pred, n_classes=spec.n_classes, majority=majority)
        if next_ret is None:
            next_ret = _next_returns(frame, split.test.dates, split.test.symbols)
            test_start = str(np.datetime64(split.test_start, "D"))
        ret = portfolio_returns(_positions(probs), next_ret, split.test.dates, split.test.symbols, cost_bps)
        results[key] = {"accuracy": summary["accuracy"], "accuracy_ci": list(summary["accuracy_ci"]),
                        "balanced_accuracy": summary["balanced_accuracy"],
                        "majority_accuracy": summary["majority_accuracy"], "n": summary["n"],
                        "label_threshold": float(p["label_threshold"]), "params": spec.params,
                        "architecture": spec.describe(), "sharpe": float(M.sharpe(ret)),
                        "sharpe_ci": list(_sharpe_ci(ret)), "total_return": float(M.total_return(ret)),
                        "epochs_run": res.epochs_run}
    split = splits[float(DEFAULT_PARAMS["label_threshold"])]
    ones = np.ones(len(split.test.dates))
    bh = portfolio_returns(ones, next_ret, split.test.dates, split.test.symbols, cost_bps)
    mom = portfolio_returns(np.sign(_momentum_signal(split)), next_ret, split.test.dates, split.test.symbols,
                            cost_bps)
    baselines = {"buy and hold": {"sharpe": float(M.sharpe(bh)), "sharpe_ci": list(_sharpe_ci(bh))},
                 "momentum rule (20d)": {"sharpe": float(M.sharpe(mom)), "sharpe_ci": list(_sharpe_ci(mom))}}
    return blob_path, {"test_start": test_start, "tuned": results["tuned"], "default": results["default"],
                       "baselines": baselines, "cost_bps": cost_bps}


def _momentum_signal(split) -> np.ndarray:
    """sign(ret_20) of each test row when the features have it, else 0 (no baseline)."""
    names = list(split.test.feature_names)
    if "ret_20" in names:
        return split.test.X[:, names.index("ret_20")].astype(np.float64)
    return np.zeros(len(split.test.dates))


def _plots(study, out_dir: Path, study_name: str) -> dict:
    """Optimisation history and parameter importances as PNGs (optuna.visualization.matplotlib)."""
    from pymicro.plots import _pyplot

    plt = _pyplot()
    optuna = _optuna()
    vis = optuna.visualization.matplotlib
    out = {}
    for key, fn in (("history", vis.plot_optimization_history), ("importances", vis.plot_param_importances)):
        path = out_dir / f"{study_name}.{key}.png"
        try:
            ax = fn(study)
        except (ValueError, RuntimeError) as e:  # e.g. importances need 2+ completed trials with varied params
            warnings.warn(f"no {key} plot: {e}", stacklevel=2)
            continue
        fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
        fig.set_size_inches(8, 5)
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
        out[key] = path
    return out


# ----------------------------------------------------------------------------- the seed's tool

_METRICS = {"sharpe_ratio": "sharpe", "sharpe": "sharpe", "balanced_accuracy": "balanced_accuracy",
            "accuracy": "balanced_accuracy"}
_RANGE_KEYS = {"learning_rate", "dropout", "hidden_size", "hidden_1", "hidden_2", "attention", "batch_size",
               "label_threshold"}


def search_space_from_ranges(parameter_ranges: dict | None) -> dict:
    """The seed's ``parameter_ranges`` ({"learning_rate": [1e-4, 1e-2], "dropout": [0.1, 0.5],
    "hidden_size": [8, 64]}) as a search space: two numbers are a range (learning rate on a log
    scale; ``hidden_size`` bounds both hidden widths, in steps of 4), a longer list is a set of
    choices. Unnamed parameters keep :data:`DEFAULT_SPACE`."""
    space = dict(DEFAULT_SPACE)
    for key, value in (parameter_ranges or {}).items():
        if key not in _RANGE_KEYS:
            raise TrainingError(f"parameter_ranges has {key!r}; tunable: {sorted(_RANGE_KEYS)}")
        if not isinstance(value, (list, tuple)) or len(value) < 2 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise TrainingError(f"parameter_ranges[{key!r}] must be [low, high] or a list of choices, got {value!r}")
        if key in ("hidden_size", "hidden_1", "hidden_2") and len(value) == 2:
            lo, hi = int(value[0]), int(value[1])
            if not 1 <= lo <= hi <= 256:
                raise TrainingError(f"parameter_ranges[{key!r}] must satisfy 1 <= low <= high <= 256, got {value!r}")
            choices = tuple(sorted({lo, hi, *range(-(-lo // 4) * 4, hi + 1, 4)} - {0}))
            for name in (("hidden_1", "hidden_2") if key == "hidden_size" else (key,)):
                space[name] = ("categorical", choices)
        elif key in ("label_threshold", "batch_size", "attention") or len(value) > 2:
            space[key] = ("categorical", tuple(value))
        else:
            lo, hi = float(value[0]), float(value[1])
            if not lo < hi:
                raise TrainingError(f"parameter_ranges[{key!r}] needs low < high, got {value!r}")
            if key == "learning_rate":
                if lo <= 0:
                    raise TrainingError(f"learning_rate range must be > 0, got {value!r}")
                space[key] = ("float_log", lo, hi)
            else:
                space[key] = ("float", lo, hi)
    return space


def neural_optimize(model_id: str | None = None, *, parameter_ranges: dict | None = None,
                    optimization_metric: str = "sharpe_ratio", trials: int = 100, registry=None,
                    preset: str | None = None, symbols=None, **tune_kwargs) -> dict:
    """The seed's ``neural_optimize`` as a plain function (an MCP tool wraps it): search the
    hyper-parameters of the model ``model_id`` (its preset and symbols from the blob's metadata,
    read through ``registry``, a :class:`pymicro.store.registry.Registry` or folder) or of
    ``preset``/``symbols``, with :func:`tune`; returns :meth:`TuneResult.to_dict` (JSON values).
    ``use_gpu`` and the like are the caller's to drop: training picks its device itself."""
    if optimization_metric not in _METRICS:
        raise TrainingError(f"optimization_metric must be one of {sorted(_METRICS)}, got {optimization_metric!r}")
    if model_id is not None:
        from pymicro.store.registry import Registry

        reg = registry if isinstance(registry, Registry) else Registry(registry)
        meta = reg.load(model_id).info.metadata
        preset = preset or meta.get("preset")
        if symbols is None and meta.get("symbols"):
            symbols = str(meta["symbols"]).split(",")
    result = tune(preset or "momentum", n_trials=trials, objective=_METRICS[optimization_metric],
                  space=search_space_from_ranges(parameter_ranges), symbols=symbols, **tune_kwargs)
    out = result.to_dict()
    out["model_id"] = model_id
    out["optimization_metric"] = optimization_metric
    return out
