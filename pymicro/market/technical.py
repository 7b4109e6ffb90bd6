"""The momentum (24) and reversal (32) features: functions of the symbol's own bars only.

A feature at bar ``t`` reads bars ``t - lookback .. t``. Definitions: ``docs/features.md``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pymicro.market.bars import (BAR_COLUMNS, bars_of_one_symbol, lag, log_returns, rolling, safe_ratio,
                                 window_mean, window_std)

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

REVERSAL_FEATURES: tuple[str, ...] = (
    # short returns and standardised moves
    "ret_1", "ret_3", "zscore_ret_5", "zscore_ret_20",
    # price z-scores against moving averages
    "zscore_close_10", "zscore_close_20", "zscore_close_50",
    # oscillators and their extremes
    "rsi_2", "rsi_5", "rsi_14", "rsi_extreme_14", "stoch_k_5", "stoch_d_14",
    # distance from moving averages and from recent extremes
    "sma_dist_5", "sma_dist_20", "sma_dist_50", "sma_cross_10_50",
    "dist_high_20", "dist_low_20", "range_pos_60",
    # overextension
    "overext_atr_20", "bb_width_20", "streak_10", "down_frac_10",
    # reversal candles
    "body_ratio_1", "lower_wick_1", "upper_wick_1", "engulfing_1", "gap_1",
    # exhaustion: volatility and volume spikes, return autocorrelation
    "vol_ratio_5_60", "volume_ratio_20", "autocorr_60",
)

REVERSAL_LOOKBACK = 60
"""Bars before ``t`` that the reversal features read: rows 0..59 of a series are warm-up."""


# --------------------------------------------------------------------------- momentum (24)


def momentum_arrays(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    o, h, lo, c, v = (b[k] for k in BAR_COLUMNS)
    n = c.shape[0]
    log_c = np.log(c)
    r = log_returns(c)
    f: dict[str, np.ndarray] = {}

    for k in (1, 3, 5, 10, 20, 60):
        f[f"ret_{k}"] = log_c - lag(log_c, k)

    f["vol_5"] = rolling(r, 5, window_std)
    f["vol_20"] = rolling(r, 20, window_std)
    f["vol_60"] = rolling(r, 60, window_std)
    hl = np.log(h / lo)
    f["parkinson_20"] = np.sqrt(rolling(hl * hl, 20, window_mean) / (4.0 * np.log(2.0)))

    prev_c = lag(c, 1)
    f["range_1"] = hl
    f["gap_1"] = np.log(o / prev_c)
    f["body_1"] = np.log(c / o)
    f["close_loc_1"] = safe_ratio(c - lo, h - lo, 0.5)
    true_range = np.maximum(h, prev_c) - np.minimum(lo, prev_c)  # NaN at t = 0
    f["atr_14"] = rolling(true_range, 14, window_mean) / c

    v_mean_20 = rolling(v, 20, window_mean)
    f["volume_ratio_20"] = np.log((v + 1.0) / (v_mean_20 + 1.0))
    f["volume_trend_5_20"] = np.log((rolling(v, 5, window_mean) + 1.0) / (v_mean_20 + 1.0))
    signed = np.sign(r) * v  # NaN at t = 0
    f["signed_volume_20"] = safe_ratio(
        rolling(signed, 20, lambda w: w.sum(axis=1)),
        rolling(np.where(np.isnan(r), np.nan, v), 20, lambda w: w.sum(axis=1)),
        0.0,
    )

    f["sma_dist_10"] = log_c - np.log(rolling(c, 10, window_mean))
    f["sma_dist_50"] = log_c - np.log(rolling(c, 50, window_mean))
    k = np.arange(20, dtype=np.float64)
    weights = (k - k.mean()) / np.sum((k - k.mean()) ** 2)
    # slope of ln C over the window, measured relative to ln C_t (same slope, smaller numbers);
    # an elementwise product and a row sum, not a BLAS matmul, whose summation order
    # may change with the number of rows
    f["trend_slope_20"] = rolling(log_c, 20, lambda w: ((w - w[:, -1:]) * weights).sum(axis=1))

    dc = np.full(n, np.nan)
    dc[1:] = c[1:] - c[:-1]
    f["rsi_14"] = safe_ratio(
        rolling(np.maximum(dc, 0.0), 14, lambda w: w.sum(axis=1)),
        rolling(np.abs(dc), 14, lambda w: w.sum(axis=1)),
        0.5,
    )
    low_14 = rolling(lo, 14, lambda w: w.min(axis=1))
    high_14 = rolling(h, 14, lambda w: w.max(axis=1))
    f["stoch_k_14"] = safe_ratio(c - low_14, high_14 - low_14, 0.5)
    f["dist_high_60"] = log_c - np.log(rolling(h, 60, lambda w: w.max(axis=1)))
    return f


def momentum_features(df: pd.DataFrame, *, dropna: bool = True) -> pd.DataFrame:
    """The 24 momentum features of one symbol's daily bars.

    Returns a float64 DataFrame indexed by date with the columns
    :data:`MOMENTUM_FEATURES`. The first :data:`MOMENTUM_LOOKBACK` (60) rows have
    incomplete windows: they are dropped (``dropna=True``, the default) or kept
    as NaN (``dropna=False``, one row per input bar). Every other value is finite.
    """
    dates, bars = bars_of_one_symbol(df)
    f = momentum_arrays(bars)
    out = pd.DataFrame({name: f[name] for name in MOMENTUM_FEATURES}, index=dates)
    if dropna:
        out = out.iloc[MOMENTUM_LOOKBACK:]
    return out


# --------------------------------------------------------------------------- reversal (32)


def _rsi(c: np.ndarray, n: int) -> np.ndarray:
    """Cutler's RSI in [0, 1] over ``n`` close-to-close changes; 0.5 if the closes did not move."""
    dc = np.full(c.shape[0], np.nan)
    dc[1:] = c[1:] - c[:-1]
    return safe_ratio(
        rolling(np.maximum(dc, 0.0), n, lambda w: w.sum(axis=1)),
        rolling(np.abs(dc), n, lambda w: w.sum(axis=1)),
        0.5,
    )


def _zscore(x: np.ndarray, n: int) -> np.ndarray:
    """``(x_t - mean(x)) / std(x)`` over the last ``n`` values; 0 if they are all equal.

    "All equal" is tested as such: the mean of n equal values can round one ulp off them,
    which would leave a ratio of two rounding errors (about +-0.95) instead of 0.
    """
    z = safe_ratio(x - rolling(x, n, window_mean), rolling(x, n, window_std), 0.0)
    flat = rolling(x, n, lambda w: (w.max(axis=1) == w.min(axis=1)).astype(np.float64))
    z[flat == 1.0] = 0.0
    return z


def _streak(win: np.ndarray) -> np.ndarray:
    """Signed length of the run of same-sign returns ending at the window's last value, / window."""
    s = np.sign(win)
    last = s[:, -1:]
    same = (s == last) & (last != 0)
    # length of the run of True at the end of each row
    run = np.where(same.all(axis=1), win.shape[1], np.argmin(same[:, ::-1], axis=1))
    return np.where(np.isnan(win).any(axis=1), np.nan, last[:, 0] * run / win.shape[1])


def _down_frac(win: np.ndarray) -> np.ndarray:
    """Fraction of negative values in each row (NaN if the row holds a NaN)."""
    return np.where(np.isnan(win).any(axis=1), np.nan, (win < 0).mean(axis=1))


def _lag1_autocorr(win: np.ndarray) -> np.ndarray:
    """Correlation of consecutive values within each row; 0 if either leg is constant."""
    a, b = win[:, :-1], win[:, 1:]
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return safe_ratio((a * b).sum(axis=1), np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)), 0.0)


def _reversal_arrays(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    o, h, lo, c = (b[k] for k in ("open", "high", "low", "close"))
    log_c = np.log(c)
    r = log_returns(c)
    m = momentum_arrays(b)  # shares ret_1, gap_1, rsi_14, sma_dist_50, volume_ratio_20, vol_5, vol_60
    f: dict[str, np.ndarray] = {}

    f["ret_1"] = m["ret_1"]
    f["ret_3"] = m["ret_3"]
    vol60 = m["vol_60"]
    f["zscore_ret_5"] = safe_ratio(m["ret_5"], vol60 * np.sqrt(5.0), 0.0)
    f["zscore_ret_20"] = safe_ratio(m["ret_20"], vol60 * np.sqrt(20.0), 0.0)
    for n in (10, 20, 50):
        f[f"zscore_close_{n}"] = _zscore(c, n)

    f["rsi_2"] = _rsi(c, 2)
    f["rsi_5"] = _rsi(c, 5)
    f["rsi_14"] = m["rsi_14"]
    f["rsi_extreme_14"] = np.maximum(m["rsi_14"] - 0.7, 0.0) - np.maximum(0.3 - m["rsi_14"], 0.0)
    low_5 = rolling(lo, 5, lambda w: w.min(axis=1))
    high_5 = rolling(h, 5, lambda w: w.max(axis=1))
    f["stoch_k_5"] = safe_ratio(c - low_5, high_5 - low_5, 0.5)
    f["stoch_d_14"] = rolling(m["stoch_k_14"], 3, window_mean)

    sma = {n: rolling(c, n, window_mean) for n in (5, 10, 20, 50)}
    f["sma_dist_5"] = log_c - np.log(sma[5])
    f["sma_dist_20"] = log_c - np.log(sma[20])
    f["sma_dist_50"] = m["sma_dist_50"]
    f["sma_cross_10_50"] = np.log(sma[10] / sma[50])
    f["dist_high_20"] = log_c - np.log(rolling(h, 20, lambda w: w.max(axis=1)))
    f["dist_low_20"] = log_c - np.log(rolling(lo, 20, lambda w: w.min(axis=1)))
    low_60 = rolling(lo, 60, lambda w: w.min(axis=1))
    f["range_pos_60"] = safe_ratio(c - low_60, rolling(h, 60, lambda w: w.max(axis=1)) - low_60, 0.5)

    prev_c = lag(c, 1)
    true_range = np.maximum(h, prev_c) - np.minimum(lo, prev_c)
    f["overext_atr_20"] = safe_ratio(c - sma[20], rolling(true_range, 14, window_mean), 0.0)
    f["bb_width_20"] = 4.0 * rolling(c, 20, window_std) / sma[20]
    f["streak_10"] = rolling(r, 10, _streak)
    f["down_frac_10"] = rolling(r, 10, _down_frac)

    rng = h - lo
    f["body_ratio_1"] = safe_ratio(c - o, rng, 0.0)
    f["lower_wick_1"] = safe_ratio(np.minimum(o, c) - lo, rng, 0.0)
    f["upper_wick_1"] = safe_ratio(h - np.maximum(o, c), rng, 0.0)
    prev_o = lag(o, 1)
    bull = (prev_c < prev_o) & (c > o) & (o <= prev_c) & (c >= prev_o)
    bear = (prev_c > prev_o) & (c < o) & (o >= prev_c) & (c <= prev_o)
    eng = bull.astype(np.float64) - bear.astype(np.float64)
    eng[np.isnan(prev_c)] = np.nan
    f["engulfing_1"] = eng
    f["gap_1"] = m["gap_1"]

    f["vol_ratio_5_60"] = safe_ratio(m["vol_5"], vol60, 1.0)
    f["volume_ratio_20"] = m["volume_ratio_20"]
    f["autocorr_60"] = rolling(r, 60, _lag1_autocorr)
    return f


def reversal_features(df: pd.DataFrame, *, dropna: bool = True) -> pd.DataFrame:
    """The 32 mean-reversion features of one symbol's daily bars (:data:`REVERSAL_FEATURES`).

    Like :func:`momentum_features`: float64, indexed by date; the first
    :data:`REVERSAL_LOOKBACK` (60) rows are warm-up, dropped by default or kept as NaN
    with ``dropna=False``. Every other value is finite.
    """
    dates, bars = bars_of_one_symbol(df)
    f = _reversal_arrays(bars)
    out = pd.DataFrame({name: f[name] for name in REVERSAL_FEATURES}, index=dates)
    if dropna:
        out = out.iloc[REVERSAL_LOOKBACK:]
    return out
