"""Federated averaging (FedAvg) over nodes that keep their own symbols, as Dask tasks, beside
pooled and per-node training on the same rows.

    from pymicro.training.federated import neural_train_distributed

    report = neural_train_distributed(federated=True, rounds=5, local_epochs=2)
    report["federated"]["accuracy"], report["pooled"]["accuracy"], report["per_node"]["accuracy"]

The seed's ``neural_train_distributed(federated=True)`` as a Python function. Each *node*
holds the rows of its own symbols (default: three nodes of two embedded symbols each). The
data are split by date as the trainer splits them (one set of cut dates for every node).

* **Normalisation**: each node sends only its row count, feature sums and sums of squares;
  the coordinator forms the pooled mean and standard deviation, which every node then uses
  (weights averaged across nodes must see inputs on one scale).
* **A round**: every node starts from the global weights, trains ``local_epochs`` epochs of
  Adam on its own training rows (the weights of its best epoch on its own validation rows
  come back; rows never leave the node), and the coordinator averages the returned
  weights, weighted by each node's training rows (McMahan et al., 2017). ``rounds`` rounds.
  Each node's local training is a Dask task; the node's rows are scattered to the workers once.
* **Comparisons**, on the same test rows (the chronologically last part, never trained on):
  ``pooled`` (one model on all training rows, ``rounds * local_epochs`` epochs, early stopping
  on all validation rows) and ``per_node`` (each node its own model, scored on its own test
  rows), beside the majority class of the training rows.
"""

from __future__ import annotations

import time

import numpy as np

from pymicro import metrics as M
from pymicro.errors import TrainingError
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import load
from pymicro.runtime.spec import Network, Spec, preset as preset_spec
from pymicro.training.cluster import dask_client, scatter

__all__ = ["DEFAULT_NODES", "fedavg", "neural_train_distributed"]

DEFAULT_NODES = {"node-0": ("AAPL", "MSFT"), "node-1": ("GOOG", "IBM"), "node-2": ("NASDAQ", "SP500")}


def fedavg(weights: list[list[dict]], rows: list[int]) -> list[dict]:
    """The row-weighted average of several networks' parameters (lists of dicts of arrays)."""
    total = float(sum(rows))
    if total <= 0 or len(weights) != len(rows) or not weights:
        raise TrainingError(f"fedavg needs one positive row count per network, got {rows}")
    out = []
    for layer in range(len(weights[0])):
        out.append({k: sum(w[layer][k].astype(np.float64) * (n / total) for w, n in zip(weights, rows)).astype(
            np.float32) for k in weights[0][layer]})
    return out


def _stats(part) -> tuple[int, np.ndarray, np.ndarray]:
    X = np.asarray(part["X_train"], np.float64)
    return len(X), X.sum(axis=0), (X * X).sum(axis=0)


def _local(spec, start: Network, part, epochs: int, batch_size: int, learning_rate: float, seed: int):
    from pymicro.training.train import train

    res = train(spec, part["X_train"], part["y_train"], part["X_val"], part["y_val"], epochs=epochs,
                batch_size=batch_size, learning_rate=learning_rate, seed=seed, patience=None, init=start)
    return res.network.params, len(part["y_train"])


def _fit(spec, part, epochs: int, batch_size: int, learning_rate: float, seed: int, patience):
    from pymicro.training.train import train

    res = train(spec, part["X_train"], part["y_train"], part["X_val"], part["y_val"], epochs=epochs,
                batch_size=batch_size, learning_rate=learning_rate, seed=seed, patience=patience)
    return res.network


def _score(network: Network, X, y, majority: int, n_classes: int) -> tuple[dict, np.ndarray]:
    pred = load(freeze(network)).predict(X).argmax(axis=1)
    s = M.classification_summary(y, pred, n_classes=n_classes, majority=majority)
    return ({k: s[k] for k in ("n", "accuracy", "accuracy_ci", "balanced_accuracy", "majority_accuracy",
                               "p_value_vs_majority")}, pred)


def neural_train_distributed(preset: str = "momentum", *, nodes: dict | None = None, federated: bool = True,
                             rounds: int = 5, local_epochs: int = 2, batch_size: int = 64,
                             learning_rate: float = 1e-3, seed: int = 0, horizon: int = 5, threshold: float = 0.5,
                             compare: bool = True, scheduler=None, n_workers: int | None = None,
                             data=None) -> dict:
    """Train ``preset`` across ``nodes`` ({name: symbols}) by FedAvg (``federated=True``) or as one
    pooled model (``federated=False``), as Dask tasks; with ``compare`` the other two ways as well.
    Returns {"federated"|"pooled"|"per_node": out-of-sample figures, "settings": ...}."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset

    for key, v in (("rounds", rounds), ("local_epochs", local_epochs)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise TrainingError(f"{key} must be an int >= 1, got {v!r}")
    nodes = {str(k): tuple(v) for k, v in (nodes or DEFAULT_NODES).items()}
    if len(nodes) < 2:
        raise TrainingError("federated training needs at least two nodes")
    every = [s for syms in nodes.values() for s in syms]
    if len(set(every)) != len(every):
        raise TrainingError(f"a symbol belongs to two nodes: {nodes}")
    frame = load_embedded(every) if data is None else data
    ds = make_dataset(frame, preset, horizon=horizon, threshold=threshold)
    split = ds.split()
    base = preset_spec(preset)
    spec = Spec(ds.X.shape[1], base.layers, base.n_classes, name=f"{preset}-federated", labels=base.labels,
                feature_names=ds.feature_names)
    parts = {}
    for name, syms in nodes.items():
        m = {k: np.isin(getattr(split, k).symbols, syms) for k in ("train", "validation", "test")}
        if not all(v.any() for v in m.values()):
            raise TrainingError(f"node {name} ({syms}) has no rows in one of train/validation/test")
        parts[name] = {"X_train": split.train.X[m["train"]], "y_train": split.train.y[m["train"]],
                       "X_val": split.validation.X[m["validation"]], "y_val": split.validation.y[m["validation"]],
                       "X_test": split.test.X[m["test"]], "y_test": split.test.y[m["test"]]}
    majority = M.majority_class(split.train.y, spec.n_classes)
    out: dict = {"settings": {"preset": preset, "nodes": {k: list(v) for k, v in nodes.items()}, "rounds": rounds,
                              "local_epochs": local_epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                              "seed": seed, "test_start": str(np.datetime64(split.test_start, "D")),
                              "rows": {k: {"train": len(p["y_train"]), "test": len(p["y_test"])}
                                       for k, p in parts.items()}}}
    with dask_client(scheduler, n_workers=n_workers) as client:
        refs = {k: scatter(client, p) for k, p in parts.items()}
        if federated or compare:
            t0 = time.perf_counter()
            stats = client.gather([client.submit(_stats, r, pure=False) for r in refs.values()])
            n = sum(s[0] for s in stats)
            mean = sum(s[1] for s in stats) / n
            var = np.maximum(sum(s[2] for s in stats) / n - mean * mean, 0.0)
            std = np.sqrt(var)
            std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
            glob = Network(spec, spec.init(seed=seed).params, mean.astype(np.float32), std.astype(np.float32))
            history = []
            for r in range(rounds):
                futures = [client.submit(_local, spec, glob, ref, local_epochs, batch_size, learning_rate,
                                         seed + 1000 * (r + 1) + i, pure=False) for i, ref in enumerate(refs.values())]
                results = client.gather(futures)
                glob = Network(spec, fedavg([w for w, _ in results], [k for _, k in results]), glob.mean, glob.std)
                val_acc = float(np.mean([(load(freeze(glob)).predict(p["X_val"]).argmax(1) == p["y_val"]).mean()
                                         for p in parts.values()]))
                history.append({"round": r + 1, "mean_node_validation_accuracy": val_acc})
            X_test = np.concatenate([p["X_test"] for p in parts.values()])
            y_test = np.concatenate([p["y_test"] for p in parts.values()])
            summary, _ = _score(glob, X_test, y_test, majority, spec.n_classes)
            summary["per_node"] = {k: _score(glob, p["X_test"], p["y_test"], majority, spec.n_classes)[0]["accuracy"]
                                   for k, p in parts.items()}
            summary.update(rounds=history, seconds=round(time.perf_counter() - t0, 2),
                           blob=freeze(glob) if federated else None)
            out["federated"] = summary
        if not federated or compare:
            t0 = time.perf_counter()
            pooled_part = {"X_train": split.train.X, "y_train": split.train.y, "X_val": split.validation.X,
                           "y_val": split.validation.y}
            net = client.submit(_fit, spec, scatter(client, pooled_part), rounds * local_epochs, batch_size,
                                learning_rate, seed, None, pure=False).result()
            X_test = np.concatenate([p["X_test"] for p in parts.values()])
            y_test = np.concatenate([p["y_test"] for p in parts.values()])
            summary, _ = _score(net, X_test, y_test, majority, spec.n_classes)
            summary["per_node"] = {k: _score(net, p["X_test"], p["y_test"], majority, spec.n_classes)[0]["accuracy"]
                                   for k, p in parts.items()}
            summary["seconds"] = round(time.perf_counter() - t0, 2)
            out["pooled"] = summary
        if compare:
            t0 = time.perf_counter()
            nets = client.gather([client.submit(_fit, spec, ref, rounds * local_epochs, batch_size, learning_rate,
                                                seed, None, pure=False) for ref in refs.values()])
            preds, ys = [], []
            per = {}
            for (k, p), net in zip(parts.items(), nets):
                s, pred = _score(net, p["X_test"], p["y_test"], majority, spec.n_classes)
                per[k] = s["accuracy"]
                preds.append(pred)
                ys.append(p["y_test"])
            y_all, p_all = np.concatenate(ys), np.concatenate(preds)
            s = M.classification_summary(y_all, p_all, n_classes=spec.n_classes, majority=majority)
            out["per_node"] = {**{k: s[k] for k in ("n", "accuracy", "accuracy_ci", "balanced_accuracy",
                                                    "majority_accuracy", "p_value_vs_majority")},
                               "per_node": per, "seconds": round(time.perf_counter() - t0, 2)}
    return out
