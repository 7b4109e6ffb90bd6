"""Drift of one registered model on a window of bars against its own training window, stored
in the registry (``pymicro drift``, the MCP status, the monitor), and the drift-triggered
round of continuous learning a replay (or a daily cron) runs.

    report = drift_check(registry, "trader", frame)                  # champion, its unseen bars
    report = drift_check(registry, "trader-1b925ee6", frame, start="2015-01-01", end="2015-06-30")
    step = watch_step(registry, "trader", frame_so_far, recent_days=60)   # drift; learn if significant

The training window: a version's ``data_window`` (``start`` .. ``unseen_from``, exclusive),
or, for a model registered without versions, its blob's ``train_end``/``test_start``
metadata (rows dated before ``test_start``). The current window: ``start`` (default: the
first unseen date) to ``end`` (default: the last labelled row). Features are computed on the
whole frame first (they are causal: a row reads only earlier bars), then cut by date.
"""

from __future__ import annotations

import numpy as np

from pymicro.errors import RegistryError, TrainingError
from pymicro.lifecycle.drift import OUT_OF_RANGE_ALERT, drift_report
from pymicro.runtime.model import load
from pymicro.store.registry import CHAMPION, ID_RE, Registry

__all__ = ["drift_check", "resolve", "watch_step"]


def _day(value) -> str:
    return str(np.datetime64(value, "D"))


def resolve(registry: Registry, model: str, version: int | str | None = None) -> dict:
    """``{name, version, model_id, start, unseen_from}`` of a name (+ version or alias, default
    the champion) or a model id."""
    if ID_RE.fullmatch(model) and model in registry:
        record = registry.get(model)
        found = [v for v in registry.versions(record.name) if v.model_id == model]
        if found:
            v = found[0]
            return {"name": v.name, "version": v.version, "model_id": model, "start": v.data_window.get("start"),
                    "unseen_from": v.data_window.get("unseen_from")}
        meta = load(registry.read_blob(model), backend="reference").described["metadata"]
        return {"name": record.name, "version": None, "model_id": model, "start": meta.get("train_start"),
                "unseen_from": meta.get("test_start") or meta.get("train_end")}
    v = registry.get_version(model, CHAMPION if version is None else version)
    return {"name": v.name, "version": v.version, "model_id": v.model_id, "start": v.data_window.get("start"),
            "unseen_from": v.data_window.get("unseen_from")}


def drift_check(registry: Registry, model: str, data, *, version: int | str | None = None, start=None, end=None,
                dataset=None, store: bool = True) -> dict:
    """The drift report (:func:`pymicro.lifecycle.drift.drift_report`, with the model's predicted
    classes and realised accuracy) of the rows dated ``start``..``end`` against the training
    window; stored as a ``drift`` event of the name when ``store``. ``dataset``: the frame's
    dataset already built (a replay builds it once)."""
    from pymicro.market.dataset import make_dataset

    target = resolve(registry, model, version)
    if target["unseen_from"] is None:
        raise RegistryError(f"{model!r} records no training window (a version's data_window['unseen_from'], or "
                            "the blob's test_start metadata): drift has nothing to compare against")
    blob = registry.read_blob(target["model_id"])
    net = load(blob)
    meta = net.described["metadata"]
    if meta.get("preset") is None:
        raise RegistryError(f"{target['model_id']!r} has no 'preset' metadata: which features does it read?")
    ds = dataset if dataset is not None else make_dataset(data, meta["preset"], horizon=int(meta.get("horizon", 5)),
                                                          threshold=float(meta.get("threshold", 0.5)))
    if ds.X.shape[1] != net.info.input_size:
        raise TrainingError(f"the data's features are {ds.X.shape[1]} wide; the model reads {net.info.input_size}")
    unseen = np.datetime64(target["unseen_from"], "D")
    first = np.datetime64(target["start"], "D") if target["start"] else ds.dates.min()
    dates = ds.dates.astype("datetime64[D]")
    ref_mask = (dates >= first) & (dates < unseen)
    lo = np.datetime64(start, "D") if start is not None else unseen
    hi = np.datetime64(end, "D") if end is not None else dates.max()
    cur_mask = (dates >= lo) & (dates <= hi)
    if ref_mask.sum() < 2 or cur_mask.sum() < 2:
        raise TrainingError(f"{int(ref_mask.sum())} training-window rows ({_day(first)}..{_day(unseen)}) and "
                            f"{int(cur_mask.sum())} current rows ({_day(lo)}..{_day(hi)}): drift needs both")
    ref, cur = ds.take(ref_mask), ds.take(cur_mask)
    # every row of a dataset has its label (its horizon's bars are in the frame): realised accuracy
    report = drift_report(ref.X, cur.X, ds.feature_names, model=net, y_reference=ref.y, y_current=cur.y)
    report["window"] = {"reference": [_day(ref.dates.min()), _day(ref.dates.max())],
                        "current": [_day(cur.dates.min()), _day(cur.dates.max())]}
    report["model_id"] = target["model_id"]
    if store:
        report["seq"] = registry.log_event(target["name"], "drift", report, version=target["version"])
    return {"name": target["name"], "version": target["version"], **report}


def watch_step(registry: Registry, name: str, data, *, recent_days: int = 60,
               out_of_range_above: float = OUT_OF_RANGE_ALERT, psi_above: float | None = None,
               on_accuracy_decay: bool = False, cooldown_days: int = 60, dataset=None, **learn_options) -> dict:
    """One day of a replay (or a cron run): drift of the champion on the last ``recent_days``
    dates of ``data`` (stored as a ``drift`` event); when the mean out-of-range share reaches
    ``out_of_range_above`` (:mod:`pymicro.lifecycle.drift`: why not PSI on daily market
    features), or (``psi_above`` given) the worst feature or prediction PSI reaches it, or
    (``on_accuracy_decay``) the realised accuracy decayed, and no round ran in the last
    ``cooldown_days`` dates of the data, one :func:`pymicro.lifecycle.learn.learn` round
    (promotion only on its paired out-of-sample test), recorded as a ``watch`` event with the
    data's last date. Returns ``{drift, fired, learned, skipped}`` (``learned``: learn's
    result; ``skipped``: why a fired step did not learn: cooldown, or too few new rows)."""
    from pymicro.lifecycle.learn import learn

    dates = np.unique(dataset.dates.astype("datetime64[D]") if dataset is not None
                      else np.asarray(data["date"], "datetime64[D]"))
    today, start = dates[-1], dates[max(0, len(dates) - recent_days)]
    report = drift_check(registry, name, data, start=start, dataset=dataset)
    worst = max([f["psi"] for f in report["features"].values()]
                + ([report["predictions"]["psi"]] if "predictions" in report else []))
    # accuracy decay is off by default: 60 dates of overlapping labels (each spans the horizon)
    # hold fewer independent outcomes than rows, so the Wilson interval is too narrow and
    # fired on calm days of the replay test
    decayed = bool(report.get("accuracy", {}).get("decayed", False))
    fired = bool(report["out_of_range"] >= out_of_range_above or (on_accuracy_decay and decayed)
                 or (psi_above is not None and worst >= psi_above))
    out = {"drift": {"status": report["status"], "max_psi": worst, "out_of_range": report["out_of_range"],
                     "accuracy_decayed": report.get("accuracy", {}).get("decayed"), "window": report["window"]},
           "fired": fired, "learned": None, "skipped": None}
    if not fired:
        return out
    last = registry.events(name, "watch", limit=1)
    if last:
        since = int(np.count_nonzero((dates > np.datetime64(last[0]["payload"]["as_of"], "D")) & (dates <= today)))
        if since < cooldown_days:
            out["skipped"] = f"cooldown: the last round ran {since} dates ago (< {cooldown_days})"
            return out
    try:
        out["learned"] = learn(registry, name, data, **learn_options)
    except TrainingError as e:  # too few new rows yet: wait for more bars
        out["skipped"] = str(e)
        return out
    d = out["learned"]["decision"]
    registry.log_event(name, "watch", {"as_of": str(today), "max_psi": worst, "out_of_range": report["out_of_range"],
                                       "challenger": d["challenger"],
                                       "promoted": d["promoted"]}, version=d["challenger"])
    return out
