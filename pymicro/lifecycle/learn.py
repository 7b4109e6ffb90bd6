"""Continuous learning: a challenger from the champion and new bars, promoted only on evidence.

    result = learn(registry, "trader", frame, epochs=5)     # frame: long OHLCV, old and new bars
    result["decision"]["promoted"], result["decision"]["rule"]

What ``learn`` does, exactly:

1. The ``champion`` version of ``name`` is the parent. Its blob gives the architecture,
   the weights, the input normalisation and the labelling (``preset``, ``horizon``,
   ``threshold`` in its metadata); its ``data_window["unseen_from"]`` is the first date
   it never trained on (nor early-stopped on).
2. The rows of ``frame`` from that date on are *new*. They are cut by date (with the
   dataset's embargo and purge, :func:`pymicro.market.dataset.split_chronological`) into
   fine-tune rows, validation rows (early stopping) and the **holdout**: the newest
   ``holdout`` fraction, which neither model has seen.
3. ``mode="finetune"``: the parent's weights and normalisation train a few epochs on the
   fine-tune rows (Adam, cosine learning-rate decay, early stopping on validation loss).
   ``mode="rolling"``: a fresh network trains on the last ``window_days`` dates before the
   validation rows (old and new bars alike).
4. The candidate is registered as the next version (parent, data window, config) and
   becomes the ``challenger``.
5. **The test**: per holdout row the log-loss of each model, ``d = loss_champion -
   loss_challenger`` (> 0: the challenger is better), its mean and a 95 % interval from a
   paired moving-block bootstrap (:func:`pymicro.evaluation.resampling.block_mean`: blocks
   of ``2 * horizon`` dates, so overlapping labels stay together). Promoted to
   ``champion`` only when the interval's lower bound is above ``margin`` (default 0: a
   significant improvement). Otherwise the challenger stays a challenger. Accuracy of
   both and of the majority class on the same rows are reported beside it.
6. The decision and a drift report (training window against the new rows) are stored as
   registry events (``decision``, ``drift``).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from pymicro.errors import RegistryError, TrainingError
from pymicro.evaluation.resampling import block_mean
from pymicro.lifecycle.drift import drift_report
from pymicro.market.dataset import make_dataset
from pymicro.metrics import majority_class
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import load, spec_of
from pymicro.runtime.spec import Network
from pymicro.store.registry import CHALLENGER, CHAMPION, Registry
from pymicro.training.train import train

MODES = ("finetune", "rolling")
MIN_NEW_ROWS = 200
CONFIDENCE = 0.95

__all__ = ["MODES", "bootstrap_version", "continue_training", "learn", "network_of", "paired_log_loss_test"]


def network_of(blob: bytes) -> Network:
    """The Network (spec, weights, normalisation) a blob holds: what fine-tuning starts from."""
    described = load(blob, backend="reference").described
    spec = spec_of(described)
    params = [{k: np.array(layer[k], np.float32) for k in (("W_a", "b_a", "W_v", "b_v")
                                                            if layer["kind"] == "attention" else ("W", "b"))}
              for layer in described["layers"]]
    mean = None if described["mean"] is None else np.array(described["mean"], np.float32)
    std = None if described["std"] is None else np.array(described["std"], np.float32)
    return Network(spec, params, mean, std)


def _day(value) -> str:
    return str(np.datetime64(value, "D"))


def bootstrap_version(registry: Registry, name: str, blob: bytes, *, start, unseen_from, config=None,
                      metrics=None) -> dict:
    """Register ``blob`` (trained on dates before ``unseen_from``) as a version and the ``champion``."""
    record = registry.add_version(blob, name, data_window={"start": _day(start), "unseen_from": _day(unseen_from)},
                                  config=config or {}, metrics=metrics, aliases=[CHAMPION], reason="first version")
    return record.to_dict()


def paired_log_loss_test(p_champion, p_challenger, y, *, block: int, seed: int = 0, resamples: int = 2000,
                         confidence: float = CONFIDENCE) -> dict:
    """Mean per-row log-loss improvement of the challenger and its moving-block bootstrap interval."""
    y = np.asarray(y, dtype=np.int64)
    rows = np.arange(len(y))
    eps = 1e-7
    loss_a = -np.log(np.clip(np.asarray(p_champion, np.float64)[rows, y], eps, 1.0))
    loss_b = -np.log(np.clip(np.asarray(p_challenger, np.float64)[rows, y], eps, 1.0))
    test = block_mean(loss_a - loss_b, block, seed, resamples)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return {"statistic": "mean(log_loss_champion - log_loss_challenger) per holdout row",
            "method": f"paired moving-block bootstrap, {resamples} resamples, blocks of {test['block']} rows, "
                      f"normal interval mean +/- {z:.3f} se",
            "log_loss_champion": float(loss_a.mean()), "log_loss_challenger": float(loss_b.mean()),
            "improvement": test["edge"], "se": test["se"], "confidence": confidence,
            "interval": [test["edge"] - z * test["se"], test["edge"] + z * test["se"]],
            "p_value": test["p_value"], "rows": int(len(y))}


def learn(registry: Registry, name: str, data, *, mode: str = "finetune", epochs: int = 5,
          learning_rate: float = 3e-4, batch_size: int = 32, patience: int | None = 3, holdout: float = 0.3,
          margin: float = 0.0, window_days: int = 750, seed: int = 0, resamples: int = 2000,
          device: str | None = None, promote: bool = True) -> dict:
    """One round of continuous learning on ``name`` (see the module docstring); returns what happened."""
    if mode not in MODES:
        raise TrainingError(f"mode must be one of {MODES}, got {mode!r}")
    if not 0.1 <= holdout <= 0.6:
        raise TrainingError(f"holdout must be a fraction in 0.1..0.6, got {holdout!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin >= 0):
        raise TrainingError(f"margin must be a finite number >= 0 (log-loss per row), got {margin!r}")
    champion = registry.get_version(name, CHAMPION)
    blob = registry.read_blob(champion.model_id)
    model = load(blob)
    meta = model.described["metadata"]
    parent = network_of(blob)
    preset = meta.get("preset")
    if preset is None:
        raise RegistryError(f"{name!r} v{champion.version}'s blob has no 'preset' metadata; learn cannot rebuild "
                            "its features (freeze it with preset=, horizon=, threshold=)")
    horizon, threshold = int(meta.get("horizon", 5)), float(meta.get("threshold", 0.5))
    unseen_from = champion.data_window.get("unseen_from")
    if unseen_from is None:
        raise RegistryError(f"{name!r} v{champion.version} has no data_window['unseen_from']: which bars are new?")

    ds = make_dataset(data, preset, horizon=horizon, threshold=threshold)
    if tuple(ds.feature_names) != tuple(model.info.feature_names or ds.feature_names):
        raise TrainingError(f"the data's features {ds.feature_names[:3]}... differ from the champion's")
    new = ds.take(ds.dates >= np.datetime64(unseen_from))
    if len(new) < MIN_NEW_ROWS:
        raise TrainingError(f"only {len(new)} labelled rows on or after {unseen_from} (the champion's unseen "
                            f"data); learn needs at least {MIN_NEW_ROWS}")
    fit = 1.0 - holdout
    split = new.split(train=fit * 0.75, validation=fit * 0.25)
    tr, va, te = split
    if mode == "rolling":
        days = np.unique(ds.dates[ds.dates < split.validation_start])
        first = days[max(0, len(days) - window_days - horizon)]
        tr = ds.take((ds.dates >= first) & (ds.dates < split.validation_start) & (ds.label_end < split.validation_start))
    result = train(parent.spec, tr.X, tr.y, va.X, va.y, epochs=epochs, batch_size=batch_size,
                   learning_rate=learning_rate, seed=seed, patience=patience, device=device,
                   init=parent if mode == "finetune" else None, lr_schedule="cosine")
    metadata = {**{k: v for k, v in meta.items() if k != "name"}, "preset": preset, "horizon": horizon,
                "threshold": threshold, "parent_hash": champion.content_hash, "mode": mode}
    candidate_blob = freeze(result.network, **metadata)
    candidate = load(candidate_blob)
    window = {"start": _day(tr.dates.min()), "end": _day(va.dates.max()), "unseen_from": _day(split.test_start)}
    config = {"mode": mode, "epochs": epochs, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
              "learning_rate": learning_rate, "lr_schedule": "cosine", "batch_size": batch_size,
              "patience": patience, "seed": seed, "rows": {"train": len(tr), "validation": len(va), "holdout": len(te)}}
    version = registry.add_version(candidate_blob, name, parent=champion.version, data_window=window, config=config,
                                   aliases=[CHALLENGER], reason=f"learn ({mode}) from v{champion.version}")

    n_symbols = max(1, len(set(te.symbols.tolist())))
    p_a, p_b = model.predict(te.X), candidate.predict(te.X)
    test = paired_log_loss_test(p_a, p_b, te.y, block=2 * horizon * n_symbols, seed=seed, resamples=resamples)
    majority = majority_class(tr.y, parent.spec.n_classes)
    accuracy = {"champion": float((p_a.argmax(1) == te.y).mean()), "challenger": float((p_b.argmax(1) == te.y).mean()),
                "majority_class": float((te.y == majority).mean())}
    promoted = bool(test["interval"][0] > margin) and version.version != champion.version
    rule = (f"promote iff the lower bound of the {test['confidence']:.0%} interval of the mean log-loss "
            f"improvement on the holdout ({_day(split.test_start)}..{_day(te.dates.max())}, {len(te)} rows, "
            f"unseen by both) is above margin {margin}")
    decision = {"champion": champion.version, "challenger": version.version, "promoted": promoted and promote,
                "rule": rule, "margin": margin, "test": test, "accuracy": accuracy, "mode": mode}
    if promoted and promote:
        registry.promote(name, version.version, reason=f"improvement {test['improvement']:.4f}, interval "
                                                        f"[{test['interval'][0]:.4f}, {test['interval'][1]:.4f}]")
    reference = ds.take(ds.dates < np.datetime64(unseen_from))
    drift = drift_report(reference.X, new.X, ds.feature_names, model=model, y_reference=reference.y,
                         y_current=new.y)
    drift["window"] = {"reference": [_day(reference.dates.min()), _day(reference.dates.max())],
                       "current": [_day(new.dates.min()), _day(new.dates.max())]}
    registry.log_event(name, "decision", decision, version=version.version)
    registry.log_event(name, "drift", drift, version=champion.version)
    return {"name": name, "parent": champion.to_dict(), "candidate": registry.get_version(name, version.version).to_dict(),
            "decision": decision, "drift": {k: drift[k] for k in ("status", "max_psi", "out_of_range", "drifted", "window")},
            "aliases": registry.aliases(name)}


def continue_training(registry: Registry, model_id: str, data, *, epochs: int = 5, **options) -> dict:
    """``neural_train(model_id, new_data, epochs)``: continuous learning from a registered model.

    A model with no versions yet (one ``neural_train`` or ``pymicro train`` registered) becomes
    version 1 and ``champion`` of its name first, its unseen data starting at the blob's
    ``test_start`` (the first date of its test split). Then :func:`learn` runs on ``data``.
    The model must be its name's champion: a challenger is fine-tuned from the champion only."""
    record = registry.get(model_id)
    if record.kind == "ensemble":
        raise RegistryError(f"{model_id!r} is an ensemble container; continuous learning fine-tunes one network: "
                            "retrain the ensemble (neural_ensemble_create, pymicro ensemble train)")
    name = record.name
    versions = [v for v in registry.versions(name) if v.model_id == model_id]
    if not registry.versions(name):
        meta = load(registry.read_blob(model_id), backend="reference").described["metadata"]
        if "test_start" not in meta:
            raise RegistryError(f"{model_id!r} has no 'test_start' in its metadata: which bars did it not see?")
        registry.add_version(registry.read_blob(model_id), name, aliases=[CHAMPION],
                             data_window={"unseen_from": _day(np.datetime64(meta["test_start"]))},
                             config={"source": "registered model"}, reason="first version")
    elif not versions or CHAMPION not in versions[0].aliases:
        raise RegistryError(f"{model_id!r} is not the champion of {name!r} (aliases {registry.aliases(name)}); "
                            "continuous learning starts from the champion")
    return learn(registry, name, data, epochs=epochs, **options)
