"""Intraday data shipped with pymicro, and ticks turned into time, tick or volume bars.

    from pymicro.market.intraday import load_es_ticks, volume_bars, load_eurusd_hourly
    ticks = load_es_ticks()               # 500,000 E-mini S&P 500 trades (ts, price, volume)
    bars = volume_bars(ticks, 1000)       # OHLCV frames the feature code accepts
    fx = load_eurusd_hourly()             # 6,225 hourly EURUSD bars of 2017

Sources and licences: ``pymicro/market/datasets/NOTICE.txt`` (both MIT). The bars are
grouped exactly as :class:`pymicro.live.stream.Pipeline` groups ticks (``bar="tick"``,
``"volume"``, ``"time"``), so a live replay and an offline dataset see the same bars:

* tick bars: every ``n`` consecutive ticks (the last bar may be shorter);
* volume bars: a bar closes on the tick that takes its volume to at least ``v`` (ticks are
  not split across bars);
* time bars: ticks with the same ``floor(seconds since the first tick's midnight / s)``.

Each bar is stamped with the time of its last tick (when it is known), nudged by 1 ns
where two bars would share a stamp, so stamps increase strictly as the feature and label
code require. Windows, horizons and annualisation then count bars: use
:func:`pymicro.metrics.periods_per_year_of` for the bars' own frequency.
"""

from __future__ import annotations

import gzip
import hashlib
import io

import numpy as np
import pandas as pd

from pymicro.errors import DataError
from pymicro.market.datasets import FILES, path

ES_TICKS = "mlfinpy_es_ticks.csv.gz"
EURUSD_1H = "anytrading_eurusd_1h.csv.gz"


def _read(filename: str) -> bytes:
    raw = path(filename).read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != FILES[filename].sha256:  # pragma: no cover - only a corrupted install
        raise DataError(f"embedded file {filename} is corrupted: sha256 {digest}, expected {FILES[filename].sha256}")
    return gzip.decompress(raw)


def load_es_ticks() -> pd.DataFrame:
    """E-mini S&P 500 trades, 2013-09-01 .. 09-03: columns ``ts`` (datetime64[ns]), ``price``, ``volume``."""
    df = pd.read_csv(io.BytesIO(_read(ES_TICKS)))
    return pd.DataFrame({"ts": pd.to_datetime(df["DateTime"]), "price": df["Price"].astype(np.float64),
                         "volume": df["Volume"].astype(np.float64)})


def load_eurusd_hourly() -> pd.DataFrame:
    """EURUSD hourly ask bars of 2017: ``date``, ``symbol`` (EURUSD), open, high, low, close, volume."""
    df = pd.read_csv(io.BytesIO(_read(EURUSD_1H)))
    out = pd.DataFrame({"date": pd.to_datetime(df["Time"], format="%d.%m.%Y %H:%M:%S.%f"), "symbol": "EURUSD"})
    for c in ("Open", "High", "Low", "Close", "Volume"):
        out[c.lower()] = df[c].astype(np.float64)
    return out


def _check_ticks(ticks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(ticks, pd.DataFrame) or not {"ts", "price", "volume"} <= set(ticks.columns):
        raise DataError("ticks must be a DataFrame with columns ts, price, volume")
    ts = pd.to_datetime(ticks["ts"]).to_numpy("datetime64[ns]").astype(np.int64)
    price = ticks["price"].to_numpy(np.float64)
    vol = ticks["volume"].to_numpy(np.float64)
    if len(ts) and (np.diff(ts) < 0).any():
        raise DataError("tick timestamps must not decrease")
    if not (np.isfinite(price).all() and (price > 0).all() and np.isfinite(vol).all() and (vol >= 0).all()):
        raise DataError("tick prices must be finite and > 0, volumes finite and >= 0")
    return ts, price, vol


def _bars(ts, price, vol, group) -> pd.DataFrame:
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)] - 1
    stamp = ts[ends].copy()
    for i in range(1, len(stamp)):  # strictly increasing stamps (ties: bars closing in the same ns)
        if stamp[i] <= stamp[i - 1]:
            stamp[i] = stamp[i - 1] + 1
    return pd.DataFrame({
        "date": pd.to_datetime(stamp), "open": price[starts], "high": np.maximum.reduceat(price, starts),
        "low": np.minimum.reduceat(price, starts), "close": price[ends], "volume": np.add.reduceat(vol, starts),
        "ticks": ends - starts + 1})


def tick_bars(ticks: pd.DataFrame, n: int) -> pd.DataFrame:
    """OHLCV bars of ``n`` consecutive ticks (a ``ticks`` column counts them)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n must be a positive int (ticks per bar), got {n!r}")
    ts, price, vol = _check_ticks(ticks)
    return _bars(ts, price, vol, np.arange(len(ts)) // n)


def volume_bars(ticks: pd.DataFrame, v: float) -> pd.DataFrame:
    """OHLCV bars that close on the tick taking their volume to at least ``v``."""
    if not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v > 0):
        raise DataError(f"v must be a volume > 0, got {v!r}")
    ts, price, vol = _check_ticks(ticks)
    group = np.empty(len(vol), np.int64)
    g, acc = 0, 0.0
    for i, s in enumerate(vol.tolist()):  # sequential by nature: a bar's end moves the next start
        group[i] = g
        acc += s
        if acc >= v:
            g, acc = g + 1, 0.0
    return _bars(ts, price, vol, group)


def time_bars(ticks: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """OHLCV bars of the ticks in each ``seconds``-long interval (empty intervals make no bar).

    Intervals are counted from midnight of the first tick's day, in the ticks' own clock; a
    bar is stamped with its last tick (a live feed learns it has ended at the next tick).
    """
    if not (isinstance(seconds, (int, float, np.integer, np.floating)) and np.isfinite(seconds) and seconds > 0):
        raise DataError(f"seconds must be > 0, got {seconds!r}")
    ts, price, vol = _check_ticks(ticks)
    return _bars(ts, price, vol, np.floor(_seconds(ts) / seconds))


def session_seconds(ticks: pd.DataFrame) -> np.ndarray:
    """Seconds since midnight of the first tick's day, per tick: the ``ts`` to feed ``Pipeline.on_tick``."""
    return _seconds(_check_ticks(ticks)[0])


def _seconds(t: np.ndarray) -> np.ndarray:
    if not len(t):
        return np.zeros(0)
    day0 = t[0] - t[0] % (86_400 * 10**9)
    return (t - day0) / 1e9


__all__ = ["load_es_ticks", "load_eurusd_hourly", "session_seconds", "tick_bars", "time_bars", "volume_bars"]
