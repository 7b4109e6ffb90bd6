"""The prediction log (append-only, bounded) and a performance report read from it.

    from pymicro.live.predictions import PredictionLog, performance_report
    log = PredictionLog("predictions.db", capacity=100_000)
    log.append_many("es-momo", ts, price, position, probabilities)   # one row per decision
    log.recent("es-momo", limit=50)
    performance_report(log, "es-momo", window=500)

Each row is a decision made at ``ts`` on a market at ``price``: the position taken and the
class probabilities behind it, and optionally ``latency_s``, the seconds the decision took
(what ``pymicro monitor`` turns into a latency histogram; a log written before that column
gets it, NULL, when opened). Rows are never updated (a trigger refuses it); once a model has
more than ``capacity`` rows its oldest are dropped in the same transaction as the append, so
the file stays bounded.

:func:`performance_report` scores each decision on the next row's price (the position held
from one decision to the next): return ``position * (p[t+1] / p[t] - 1)`` less
``cost_bps`` of each change of position. It reports, over the last ``window`` decisions,
the hit rate (of decisions with a position and a price change, the share whose sign was
right), Sharpe, total return and maximum drawdown, **beside a baseline**: always long over
the same rows (its hit rate is the share of up moves among the rows the model traded).
Annualisation: ``periods_per_year`` if given, else the pace of the rows' ``ts`` (seconds).
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pymicro import metrics
from pymicro.errors import InputError

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (seq INTEGER PRIMARY KEY AUTOINCREMENT, model_id TEXT NOT NULL,
  ts REAL NOT NULL, price REAL NOT NULL, position REAL NOT NULL, probabilities TEXT NOT NULL, tick TEXT);
CREATE INDEX IF NOT EXISTS predictions_model ON predictions (model_id, seq);
CREATE TRIGGER IF NOT EXISTS predictions_append_only BEFORE UPDATE ON predictions
  BEGIN SELECT RAISE(ABORT, 'the prediction log is append-only'); END;
"""


def _add_latency_column(db: sqlite3.Connection) -> None:
    """Logs written before the latency column get it (NULL: not measured)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
    if "latency_s" not in columns:
        try:
            db.execute("ALTER TABLE predictions ADD COLUMN latency_s REAL")
        except sqlite3.OperationalError as e:  # another process added it first
            if "duplicate column" not in str(e):
                raise


@dataclass(frozen=True)
class Prediction:
    seq: int
    model_id: str
    ts: float
    price: float
    position: float
    probabilities: list[float | None]
    tick: str | None
    latency_s: float | None = None


class PredictionLog:
    def __init__(self, path: str | Path, capacity: int = 100_000):
        if capacity < 2:
            raise InputError(f"capacity must be >= 2, got {capacity}")
        self.path, self.capacity = Path(path), int(capacity)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        _add_latency_column(self._db)

    def close(self) -> None:
        self._db.close()

    def append_many(self, model_id: str, ts, price, position, probabilities, ticks=None, latency_s=None) -> int:
        """Append one row per decision (arrays of one length; probabilities (n, classes), NaN kept as null;
        ``latency_s`` seconds per decision, one number for all or one each, >= 0)."""
        if not isinstance(model_id, str) or not 0 < len(model_id) <= 200:
            raise InputError("model_id must be a string of 1..200 characters")
        ts, price, position = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (ts, price, position))
        probs = np.asarray(probabilities, dtype=np.float64).reshape(len(ts), -1)
        if not (len(ts) == len(price) == len(position)):
            raise InputError("ts, price, position and probabilities must have one row per decision")
        if not (np.isfinite(ts).all() and np.isfinite(price).all() and (price > 0).all() and np.isfinite(position).all()):
            raise InputError("ts, position must be finite and price finite and > 0")
        ticks = [None] * len(ts) if ticks is None else [str(t) for t in ticks]
        if latency_s is None:
            lat = [None] * len(ts)
        else:
            arr = np.broadcast_to(np.asarray(latency_s, dtype=np.float64), (len(ts),))
            if not (np.isfinite(arr).all() and (arr >= 0).all()):
                raise InputError("latency_s must be finite and >= 0")
            lat = arr.tolist()
        rows = [(model_id, float(t), float(p), float(q), json.dumps([x if math.isfinite(x) else None for x in pr]), k,
                 la) for t, p, q, pr, k, la in zip(ts, price, position, probs.tolist(), ticks, lat)]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO predictions (model_id, ts, price, position, probabilities, tick, latency_s) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            last = db.execute("SELECT MAX(seq) FROM predictions WHERE model_id = ?", (model_id,)).fetchone()[0]
            cut = db.execute("SELECT seq FROM predictions WHERE model_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                             (model_id, self.capacity)).fetchone()
            if cut is not None:
                db.execute("DELETE FROM predictions WHERE model_id = ? AND seq <= ?", (model_id, cut[0]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return int(last)

    def append(self, model_id: str, ts: float, price: float, position: float, probabilities, tick=None,
               latency_s: float | None = None) -> int:
        return self.append_many(model_id, [ts], [price], [position], [list(probabilities)],
                                None if tick is None else [tick], latency_s)

    def count(self, model_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", (model_id,)).fetchone()[0]

    def models(self) -> list[str]:
        return [m for (m,) in self._db.execute("SELECT DISTINCT model_id FROM predictions ORDER BY model_id")]

    def recent(self, model_id: str, limit: int = 100) -> list[Prediction]:
        """The last ``limit`` decisions of ``model_id``, oldest first."""
        if limit < 1:
            raise InputError(f"limit must be >= 1, got {limit}")
        rows = self._db.execute("SELECT seq, model_id, ts, price, position, probabilities, tick, latency_s "
                                "FROM predictions WHERE model_id = ? ORDER BY seq DESC LIMIT ?",
                                (model_id, int(limit))).fetchall()
        return [Prediction(s, m, t, p, q, json.loads(pr), k, la) for s, m, t, p, q, pr, k, la in reversed(rows)]

    def latencies(self, model_id: str) -> np.ndarray:
        """The measured ``latency_s`` of ``model_id``'s logged decisions (rows without one left out)."""
        rows = self._db.execute("SELECT latency_s FROM predictions WHERE model_id = ? AND latency_s IS NOT NULL",
                                (model_id,)).fetchall()
        return np.array([r[0] for r in rows], dtype=np.float64)


def _figures(returns: np.ndarray, hits: np.ndarray, periods_per_year: float) -> dict:
    return {"hit_rate": float(hits.mean()) if hits.size else None,
            "decisions_scored": int(hits.size),
            "total_return": metrics.total_return(returns),
            "sharpe": metrics.sharpe(returns, periods_per_year),
            "max_drawdown": metrics.max_drawdown(returns)}


def strategy_returns(rows, cost_bps: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per decision after the first: the return of the position held until the next row, net of
    ``cost_bps`` per change of position; with the position held and the price move."""
    price = np.array([r.price for r in rows])
    pos = np.array([r.position for r in rows])
    move = price[1:] / price[:-1] - 1.0
    held = pos[:-1]
    change = np.abs(np.diff(np.r_[0.0, held]))
    return held * move - change * cost_bps * 1e-4, held, move


def performance_report(log: PredictionLog, model_id: str, *, window: int = 1000, cost_bps: float = 0.0,
                       periods_per_year: float | None = None) -> dict:
    """Hit rate, Sharpe, total return and max drawdown of the last ``window`` decisions, beside always-long."""
    if window < 2:
        raise InputError(f"window must be >= 2, got {window}")
    rows = log.recent(model_id, limit=window)
    if len(rows) < 3:
        raise InputError(f"{model_id!r} has {len(rows)} logged predictions; a report needs at least 3")
    ts = np.array([r.ts for r in rows])
    strat, held, move = strategy_returns(rows, cost_bps)
    if periods_per_year is None:
        span = (ts[-1] - ts[0]) / (365.25 * 86_400)
        periods_per_year = (len(ts) - 1) / span if span > 0 else 252.0
    scored = (held != 0) & (move != 0)
    hits = np.sign(held[scored]) == np.sign(move[scored])
    base_hits = move[scored] > 0
    return {"model_id": model_id, "window": len(rows), "from_ts": float(ts[0]), "to_ts": float(ts[-1]),
            "periods_per_year": float(periods_per_year), "cost_bps": float(cost_bps),
            "exposure": float(np.mean(held != 0)),
            "model": _figures(strat, hits, periods_per_year),
            "baseline_always_long": _figures(move - np.r_[1.0, np.zeros(len(move) - 1)] * cost_bps * 1e-4,
                                             base_hits, periods_per_year)}


__all__ = ["Prediction", "PredictionLog", "performance_report", "strategy_returns"]
