"""Named, causal features computed from daily OHLCV bars, one feature set per preset.

A feature at bar ``t`` is a function of bars ``t - lookback .. t`` only: every
window ends at ``t`` (no centred windows, no forward or backward filling, no
normalisation over the whole series). Each window is evaluated on its own values
alone, so a feature at ``t`` is bit-for-bit the same whether the series ends at
``t`` or runs on, and whether it starts ``lookback`` bars before ``t`` or years
before. The definitions are in ``docs/features.md``.

    from pymicro.features import MOMENTUM_FEATURES, momentum_features
    X = momentum_features(bars_of_one_symbol)      # DataFrame, index = date, 24 columns

Presets "reversal" (32 inputs) and "sentiment" (48) get their own entry in
:data:`FEATURE_SETS` when their features are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from .errors import DataError

MOMENTUM_FEATURES: tuple[str, ...] = (
    # returns over several horizons (log)
    "ret_1", "ret_3", "ret_5", "ret_10", "ret_20", "ret_60",
    # volatility
    "vol_5", "vol_20", "vol_60", "parkinson_20",
    # range and candle
    "range_1", "gap_1", "body_1", "close_loc_1", "atr_14",
    # volume
    "volume_ratio_20", "volume_trend_5_20", "signed_volume_20",
    # trend
    "sma_dist_10", "sma_dist_50", "trend_slope_20",
    # oscillators and position in range
    "rsi_14", "stoch_k_14", "dist_high_60",
)

MOMENTUM_LOOKBACK = 60
"""Bars before ``t`` that the momentum features read: rows 0..59 of a series are warm-up."""

BAR_COLUMNS = ("open", "high", "low", "close", "volume")


# --------------------------------------------------------------------------- window helpers


def _rolling(a: np.ndarray, window: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``out[t] = fn(a[t-window+1 .. t])`` row-wise, NaN while the window is incomplete.

    The windows are copied into a C-contiguous (n, window) block so each row is
    reduced from its own values only, in the same order whatever the series length.
    """
    n = a.shape[0]
    out = np.full(n, np.nan)
    if n >= window:
        win = np.ascontiguousarray(sliding_window_view(a, window))
        out[window - 1:] = fn(win)
    return out


def _lag(a: np.ndarray, k: int) -> np.ndarray:
    """``out[t] = a[t-k]``; NaN for t < k."""
    out = np.full(a.shape[0], np.nan)
    if k < a.shape[0]:
        out[k:] = a[: a.shape[0] - k]
    return out


def _mean(win: np.ndarray) -> np.ndarray:
    return win.mean(axis=1)


def _std(win: np.ndarray) -> np.ndarray:
    return win.std(axis=1, ddof=1)


def _log_returns(close: np.ndarray) -> np.ndarray:
    """``r[t] = ln(close[t] / close[t-1])``; ``r[0]`` is NaN."""
    r = np.full(close.shape[0], np.nan)
    r[1:] = np.log(close[1:] / close[:-1])
    return r


def rolling_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the last ``window`` daily log returns, ending at t."""
    return _rolling(_log_returns(np.asarray(close, np.float64)), window, _std)


def _safe_ratio(num: np.ndarray, den: np.ndarray, default: float) -> np.ndarray:
    """num / den, ``default`` where den == 0 (NaN stays NaN)."""
    out = np.full(num.shape, np.nan)
    ok = den != 0
    np.divide(num, den, out=out, where=ok)
    out[(den == 0) & ~np.isnan(num)] = default
    return out


# --------------------------------------------------------------------------- input checks


def bars_of_one_symbol(df: pd.DataFrame) -> tuple[pd.DatetimeIndex | pd.Index, dict[str, np.ndarray]]:
    """Validate one symbol's bars; return (dates, {column: float64 array}).

    Accepts a frame with a ``date`` column or a date index, and the columns open,
    high, low, close, volume. Dates must be strictly increasing; prices finite and
    positive; volume finite and non-negative. A ``symbol`` column, if present,
    must hold one symbol.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of bars, got {type(df).__name__}")
    cols = {str(c).lower(): c for c in df.columns}
    missing = [c for c in BAR_COLUMNS if c not in cols]
    if missing:
        raise DataError(f"bars are missing column(s) {', '.join(missing)} (found: {list(df.columns)})")
    if "symbol" in cols:
        symbols = pd.unique(df[cols["symbol"]])
        if len(symbols) > 1:
            raise DataError(
                f"features are computed one symbol at a time; got {len(symbols)} symbols "
                f"({list(symbols[:5])}); group by symbol first or use pymicro.dataset.make_dataset"
            )
    if "date" in cols:
        dates = pd.DatetimeIndex(pd.to_datetime(df[cols["date"]]), name="date")
    else:
        dates = df.index
        if isinstance(dates, pd.DatetimeIndex):
            dates = dates.rename("date")
    if len(dates) > 1:
        d = np.asarray(dates)
        try:
            ok = bool(np.all(d[1:] > d[:-1]))
        except TypeError:
            raise DataError("bar dates are not comparable (mixed types?)") from None
        if not ok:
            i = int(np.flatnonzero(~(d[1:] > d[:-1]))[0])
            raise DataError(
                f"bar dates must be strictly increasing: {d[i + 1]} (row {i + 1}) follows {d[i]} (row {i})"
            )
    arrays: dict[str, np.ndarray] = {}
    for c in BAR_COLUMNS:
        try:
            a = np.asarray(df[cols[c]], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"column {c!r} is not numeric") from None
        if not np.all(np.isfinite(a)):
            i = int(np.flatnonzero(~np.isfinite(a))[0])
            raise DataError(f"column {c!r} has a non-finite value {a[i]} at row {i}")
        bad = (a < 0) if c == "volume" else (a <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"column {c!r} has an invalid value {a[i]} at row {i} (prices > 0, volume >= 0)")
        arrays[c] = a
    return dates, arrays


# --------------------------------------------------------------------------- momentum (24)


def _momentum_arrays(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    o, h, lo, c, v = (b[k] for k in BAR_COLUMNS)
    n = c.shape[0]
    log_c = np.log(c)
    r = _log_returns(c)
    f: dict[str, np.ndarray] = {}

    for k in (1, 3, 5, 10, 20, 60):
        f[f"ret_{k}"] = log_c - _lag(log_c, k)

    f["vol_5"] = _rolling(r, 5, _std)
    f["vol_20"] = _rolling(r, 20, _std)
    f["vol_60"] = _rolling(r, 60, _std)
    hl = np.log(h / lo)
    f["parkinson_20"] = np.sqrt(_rolling(hl * hl, 20, _mean) / (4.0 * np.log(2.0)))

    prev_c = _lag(c, 1)
    f["range_1"] = hl
    f["gap_1"] = np.log(o / prev_c)
    f["body_1"] = np.log(c / o)
    f["close_loc_1"] = _safe_ratio(c - lo, h - lo, 0.5)
    true_range = np.maximum(h, prev_c) - np.minimum(lo, prev_c)  # NaN at t = 0
    f["atr_14"] = _rolling(true_range, 14, _mean) / c

    v_mean_20 = _rolling(v, 20, _mean)
    f["volume_ratio_20"] = np.log((v + 1.0) / (v_mean_20 + 1.0))
    f["volume_trend_5_20"] = np.log((_rolling(v, 5, _mean) + 1.0) / (v_mean_20 + 1.0))
    signed = np.sign(r) * v  # NaN at t = 0
    f["signed_volume_20"] = _safe_ratio(
        _rolling(signed, 20, lambda w: w.sum(axis=1)),
        _rolling(np.where(np.isnan(r), np.nan, v), 20, lambda w: w.sum(axis=1)),
        0.0,
    )

    f["sma_dist_10"] = log_c - np.log(_rolling(c, 10, _mean))
    f["sma_dist_50"] = log_c - np.log(_rolling(c, 50, _mean))
    k = np.arange(20, dtype=np.float64)
    weights = (k - k.mean()) / np.sum((k - k.mean()) ** 2)
    # slope of ln C over the window, measured relative to ln C_t (same slope, smaller numbers);
    # an elementwise product and a row sum, not a BLAS matmul, whose summation order
    # may change with the number of rows
    f["trend_slope_20"] = _rolling(log_c, 20, lambda w: ((w - w[:, -1:]) * weights).sum(axis=1))

    dc = np.full(n, np.nan)
    dc[1:] = c[1:] - c[:-1]
    f["rsi_14"] = _safe_ratio(
        _rolling(np.maximum(dc, 0.0), 14, lambda w: w.sum(axis=1)),
        _rolling(np.abs(dc), 14, lambda w: w.sum(axis=1)),
        0.5,
    )
    low_14 = _rolling(lo, 14, lambda w: w.min(axis=1))
    high_14 = _rolling(h, 14, lambda w: w.max(axis=1))
    f["stoch_k_14"] = _safe_ratio(c - low_14, high_14 - low_14, 0.5)
    f["dist_high_60"] = log_c - np.log(_rolling(h, 60, lambda w: w.max(axis=1)))
    return f


def momentum_features(df: pd.DataFrame, *, dropna: bool = True) -> pd.DataFrame:
    """The 24 momentum features of one symbol's daily bars.

    Returns a float64 DataFrame indexed by date with the columns
    :data:`MOMENTUM_FEATURES`. The first :data:`MOMENTUM_LOOKBACK` (60) rows have
    incomplete windows: they are dropped (``dropna=True``, the default) or kept
    as NaN (``dropna=False``, one row per input bar). Every other value is finite.
    """
    dates, bars = bars_of_one_symbol(df)
    f = _momentum_arrays(bars)
    out = pd.DataFrame({name: f[name] for name in MOMENTUM_FEATURES}, index=dates)
    if dropna:
        out = out.iloc[MOMENTUM_LOOKBACK:]
    return out


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FeatureSet:
    """The features of one preset: names (in model-input order), warm-up and the function."""

    preset: str
    names: tuple[str, ...]
    lookback: int
    compute: Callable[..., pd.DataFrame]

    @property
    def size(self) -> int:
        return len(self.names)


FEATURE_SETS: dict[str, FeatureSet] = {
    "momentum": FeatureSet("momentum", MOMENTUM_FEATURES, MOMENTUM_LOOKBACK, momentum_features),
}
"""Feature sets by preset name. "reversal" (32) and "sentiment" (48) are not written yet."""

_PLANNED = {"reversal": 32, "sentiment": 48}


def feature_set(preset: str) -> FeatureSet:
    """The :class:`FeatureSet` registered for ``preset``; :class:`DataError` if there is none."""
    try:
        return FEATURE_SETS[preset]
    except (KeyError, TypeError):
        if preset in _PLANNED:
            raise DataError(
                f"no feature set for preset {preset!r} yet ({_PLANNED[preset]} inputs planned); "
                f"available: {sorted(FEATURE_SETS)}"
            ) from None
        raise DataError(f"unknown preset {preset!r}; feature sets exist for {sorted(FEATURE_SETS)}") from None


def compute_features(df: pd.DataFrame, preset: str = "momentum", *, dropna: bool = True) -> pd.DataFrame:
    """The features of ``preset`` for one symbol's bars (see :func:`momentum_features`)."""
    return feature_set(preset).compute(df, dropna=dropna)


__all__ = [
    "FEATURE_SETS",
    "FeatureSet",
    "MOMENTUM_FEATURES",
    "MOMENTUM_LOOKBACK",
    "compute_features",
    "feature_set",
    "momentum_features",
    "rolling_volatility",
]
