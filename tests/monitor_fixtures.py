"""A store and a prediction log with known contents, for the monitor, alert and browser tests."""

from __future__ import annotations

import numpy as np
from test_registry import blob_of

from pymicro.lifecycle.drift import drift_report
from pymicro.live.predictions import PredictionLog
from pymicro.store.registry import Registry

DAY = 86_400.0


def decisions(n: int, right: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily ts, a random-walk price, and positions whose sign matches the next move with
    probability ``right``."""
    rng = np.random.default_rng(seed)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    move = np.sign(np.diff(price))
    pos = np.where(rng.random(n - 1) < right, move, -move)
    return 1.7e9 + DAY * np.arange(n), price, np.r_[pos, 0.0]


def build(root) -> tuple[Registry, PredictionLog]:
    """``trader``: v1 champion, v2 challenger promoted, a drift report with one shifted feature;
    the log: ``good`` (right 75 %), ``bad`` (right 25 %), with latencies."""
    reg = Registry(root / "models")
    reg.add_version(blob_of(1), "trader", data_window={"start": "2010-01-04", "unseen_from": "2015-01-02"},
                    aliases=["champion"])
    reg.add_version(blob_of(2), "trader", parent=1, data_window={"start": "2013-01-02", "unseen_from": "2016-01-04"},
                    aliases=["challenger"])
    reg.promote("trader", reason="test")
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(2000, 3))
    cur = np.c_[rng.normal(size=2000), rng.normal(size=2000) * 3 + 1, rng.normal(size=2000)]
    report = drift_report(ref, cur, ["ret_1", "vol_20", "rsi_14"])
    report["window"] = {"reference": ["2010-01-04", "2015-01-01"], "current": ["2015-01-02", "2015-12-31"]}
    reg.log_event("trader", "drift", report, version=2)
    log = PredictionLog(root / "live" / "predictions.db")
    for model_id, right, seed in (("good", 0.75, 1), ("bad", 0.25, 2)):
        ts, price, pos = decisions(400, right, seed)
        probs = np.full((400, 3), 1 / 3)
        log.append_many(model_id, ts, price, pos, probs, latency_s=np.linspace(2e-7, 4e-5, 400))
    return reg, log
