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
With ``periods=k`` the window is also cut into ``k`` consecutive stretches of (nearly) equal
numbers of decisions, each with the same figures for the model and the baseline.

:func:`performance_series` gives the curves behind the figures (equity and drawdown of the
model and the baseline, rolling hit rate and rolling Sharpe over ``roll`` decisions);
:func:`plot_performance` draws them into a PNG.
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


@dataclass(frozen=True)
class _Scored:
    ts: np.ndarray        # (n,) the decisions' times
    held: np.ndarray      # (n-1,) the position held from decision t to t+1
    move: np.ndarray      # (n-1,) the price's return over it
    strat: np.ndarray     # (n-1,) the model's return, net of costs
    base: np.ndarray      # (n-1,) always long's return, net of its one entry
    scored: np.ndarray    # (n-1,) bool: a position held over a price change
    periods_per_year: float


def _score(log: PredictionLog, model_id: str, window: int, cost_bps: float,
           periods_per_year: float | None) -> _Scored:
    if window < 2:
        raise InputError(f"window must be >= 2, got {window}")
    if not (cost_bps >= 0 and math.isfinite(cost_bps)):
        raise InputError(f"cost_bps must be finite and >= 0, got {cost_bps}")
    rows = log.recent(model_id, limit=window)
    if len(rows) < 3:
        raise InputError(f"{model_id!r} has {len(rows)} logged predictions; a report needs at least 3")
    ts = np.array([r.ts for r in rows])
    strat, held, move = strategy_returns(rows, cost_bps)
    if periods_per_year is None:
        span = (ts[-1] - ts[0]) / (365.25 * 86_400)
        periods_per_year = (len(ts) - 1) / span if span > 0 else 252.0
    base = move - np.r_[1.0, np.zeros(len(move) - 1)] * cost_bps * 1e-4
    return _Scored(ts, held, move, strat, base, (held != 0) & (move != 0), float(periods_per_year))


def _pair(sc: _Scored, sl: slice) -> tuple[dict, dict]:
    held, move, scored = sc.held[sl], sc.move[sl], sc.scored[sl]
    hits = np.sign(held[scored]) == np.sign(move[scored])
    return (_figures(sc.strat[sl], hits, sc.periods_per_year),
            _figures(sc.base[sl], move[scored] > 0, sc.periods_per_year))


def performance_report(log: PredictionLog, model_id: str, *, window: int = 1000, cost_bps: float = 0.0,
                       periods_per_year: float | None = None, periods: int = 1) -> dict:
    """Hit rate, Sharpe, total return and max drawdown of the last ``window`` decisions, beside
    always-long; with ``periods > 1`` also per consecutive stretch (``"periods"``)."""
    if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
        raise InputError(f"periods must be a whole number >= 1, got {periods!r}")
    sc = _score(log, model_id, window, cost_bps, periods_per_year)
    model, base = _pair(sc, slice(None))
    out = {"model_id": model_id, "window": len(sc.ts), "from_ts": float(sc.ts[0]), "to_ts": float(sc.ts[-1]),
           "periods_per_year": sc.periods_per_year, "cost_bps": float(cost_bps),
           "exposure": float(np.mean(sc.held != 0)), "model": model, "baseline_always_long": base}
    if periods > 1:
        n = len(sc.held)
        if periods > n:
            raise InputError(f"periods={periods} needs at least {periods} scored steps; the window has {n}")
        cuts = np.linspace(0, n, periods + 1).round().astype(int)
        out["periods"] = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            m, bl = _pair(sc, slice(a, b))
            out["periods"].append({"from_ts": float(sc.ts[a]), "to_ts": float(sc.ts[b]),
                                   "exposure": float(np.mean(sc.held[a:b] != 0)), "model": m,
                                   "baseline_always_long": bl})
    return out


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    """Mean of the finite values among the last ``n``; NaN until ``n // 2`` of them were seen."""
    ok = np.isfinite(x)
    c = np.r_[0.0, np.cumsum(np.where(ok, x, 0.0))]
    k = np.r_[0, np.cumsum(ok)]
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(i - n, 0)
    cnt = k[i] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt >= max(n // 2, 1), (c[i] - c[lo]) / cnt, np.nan)


def performance_series(log: PredictionLog, model_id: str, *, window: int = 1000, cost_bps: float = 0.0,
                       periods_per_year: float | None = None, roll: int | None = None) -> dict[str, np.ndarray]:
    """The curves of :func:`performance_report`, one value per scored step: ``ts``, ``equity`` /
    ``baseline_equity`` (growth of 1), ``drawdown`` / ``baseline_drawdown`` (<= 0),
    ``hit_rate`` / ``baseline_hit_rate`` (rolling over ``roll`` decisions with a position and a
    price change; default a twentieth of the window, at least 20) and ``sharpe`` /
    ``baseline_sharpe`` (rolling over ``roll`` steps, annualised)."""
    sc = _score(log, model_id, window, cost_bps, periods_per_year)
    n = len(sc.held)
    roll = roll if roll is not None else max(20, n // 20)
    if isinstance(roll, bool) or not isinstance(roll, int) or not 2 <= roll <= n:
        raise InputError(f"roll must be a whole number in [2, {n}] (the scored steps), got {roll!r}")
    hit = np.where(sc.scored, (np.sign(sc.held) == np.sign(sc.move)).astype(float), np.nan)
    base_hit = np.where(sc.scored, (sc.move > 0).astype(float), np.nan)
    out = {"ts": sc.ts[1:], "roll": roll, "periods_per_year": sc.periods_per_year}
    for name, r, h in (("", sc.strat, hit), ("baseline_", sc.base, base_hit)):
        eq = metrics.equity_curve(r)
        out[f"{name}equity"] = eq
        out[f"{name}drawdown"] = -metrics.drawdown(r)
        out[f"{name}hit_rate"] = _rolling_mean(h, roll)
        out[f"{name}sharpe"] = metrics.rolling_sharpe(r, roll, sc.periods_per_year)
    return out


def plot_performance(log: PredictionLog, model_id: str, path, *, window: int = 1000, cost_bps: float = 0.0,
                     periods_per_year: float | None = None, roll: int | None = None) -> Path:
    """A PNG of :func:`performance_series`: equity beside always-long, drawdown, rolling hit rate
    and rolling Sharpe (four panels, one time axis); returns its path."""
    from pymicro.errors import require

    series = performance_series(log, model_id, window=window, cost_bps=cost_bps,
                                periods_per_year=periods_per_year, roll=roll)
    matplotlib = require("matplotlib", "plots", purpose="the performance plot")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InputError(f"the plot is a PNG: {path} should end in .png")
    t = series["ts"]
    fig, axes = plt.subplots(4, 1, figsize=(10, 10), dpi=100, sharex=True)
    try:
        panels = [("equity (growth of 1)", "equity", None), ("drawdown", "drawdown", None),
                  (f"hit rate (scored decisions in the last {series['roll']})", "hit_rate", 0.5),
                  (f"Sharpe (rolling {series['roll']}, annualised)", "sharpe", 0.0)]
        for ax, (title, key, ref) in zip(axes, panels):
            ax.plot(t, series[key], lw=1.0, label=model_id)
            ax.plot(t, series[f"baseline_{key}"], lw=1.0, color="0.5", label="always long (baseline)")
            if ref is not None:
                ax.axhline(ref, color="0.8", lw=0.8, zorder=0)
            ax.set_ylabel(title, fontsize=8)
            ax.grid(alpha=0.3)
        axes[0].legend(loc="best", fontsize=8)
        axes[0].set_title(f"{model_id}: last {len(t) + 1} logged decisions, {cost_bps:g} bps a change of position",
                          fontsize=10)
        axes[-1].set_xlabel("ts (s)")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


__all__ = ["Prediction", "PredictionLog", "performance_report", "performance_series", "plot_performance",
           "strategy_returns"]
