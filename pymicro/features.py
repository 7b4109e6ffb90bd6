"""Named, causal features computed from daily OHLCV bars, one feature set per preset.

A feature at bar ``t`` is a function of bars ``t - lookback .. t`` only: every
window ends at ``t`` (no centred windows, no forward or backward filling, no
normalisation over the whole series). Each window is evaluated on its own values
alone, so a feature at ``t`` is bit-for-bit the same whether the series ends at
``t`` or runs on, and whether it starts ``lookback`` bars before ``t`` or years
before. The definitions are in ``docs/features.md``.

    from pymicro.features import MOMENTUM_FEATURES, momentum_features
    X = momentum_features(bars_of_one_symbol)      # DataFrame, index = date, 24 columns
    X = compute_features(bars_of_one_symbol, "reversal")     # 32 columns
    X = compute_features(bars_of_one_symbol, "sentiment")    # 48 columns (market, macro, news)

The momentum (24) and reversal (32) features read the symbol's own bars only. The
sentiment features (48) add the market, macro and news inputs of
:mod:`pymicro.reasoning_features`, :mod:`pymicro.macro` and :mod:`pymicro.news`,
each used only from the date it is known.
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

REASONING_FEATURES: tuple[str, ...] = (
    # psychology
    "fear_greed_index", "herd_behavior_strength", "contrarian_signal",
    # quantitative
    "momentum_score", "volatility_regime", "correlation_stability",
    # macro
    "interest_rate_impact", "dollar_strength", "economic_cycle_phase",
    # synthesis
    "cross_domain_divergence", "signal_agreement_score", "regime_consistency",
)
"""The seed's twelve "reasoning" features, defined as price and macro composites (docs/features.md)."""

NEWS_FEATURES: tuple[str, ...] = (
    "news_mask_1", "news_count_1", "news_tone_1", "news_pos_1", "news_neg_1", "news_unc_1",
    "news_lit_1", "news_mask_5", "news_count_5", "news_tone_5", "news_mask_20", "news_tone_20",
)
"""Headline features from :func:`pymicro.news.analyze_news`; 0 with the masks at 0 on days with no news."""

SENTIMENT_CONTEXT_FEATURES: tuple[str, ...] = (
    # the symbol's own bars
    "ret_1", "ret_5", "ret_20", "vol_20", "volume_ratio_20", "rsi_14", "sma_dist_50",
    "dist_high_60", "gap_1", "close_loc_1",
    # the market (S&P 500) and the NASDAQ
    "mkt_ret_1", "mkt_ret_5", "mkt_ret_20", "mkt_vol_20", "beta_60", "corr_60",
    "rel_strength_20", "tech_vs_broad_20",
    # macro
    "usd_index_ret_20", "usd_index_vol_20", "short_rate", "short_rate_chg_12m",
    "core_inflation_yoy", "real_short_rate",
)

SENTIMENT_FEATURES: tuple[str, ...] = REASONING_FEATURES + NEWS_FEATURES + SENTIMENT_CONTEXT_FEATURES
"""The 48 inputs of the sentiment preset: 12 reasoning, 12 news, 24 market and macro context."""

SENTIMENT_LOOKBACK = 158
"""Bars of the symbol before ``t`` that the sentiment features read (the macro series are extra)."""

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


# --------------------------------------------------------------------------- reversal (32)


def _rsi(c: np.ndarray, n: int) -> np.ndarray:
    """Cutler's RSI in [0, 1] over ``n`` close-to-close changes; 0.5 if the closes did not move."""
    dc = np.full(c.shape[0], np.nan)
    dc[1:] = c[1:] - c[:-1]
    return _safe_ratio(
        _rolling(np.maximum(dc, 0.0), n, lambda w: w.sum(axis=1)),
        _rolling(np.abs(dc), n, lambda w: w.sum(axis=1)),
        0.5,
    )


def _zscore(x: np.ndarray, n: int) -> np.ndarray:
    """``(x_t - mean(x)) / std(x)`` over the last ``n`` values; 0 if they are all equal."""
    return _safe_ratio(x - _rolling(x, n, _mean), _rolling(x, n, _std), 0.0)


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
    return _safe_ratio((a * b).sum(axis=1), np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)), 0.0)


def _reversal_arrays(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    o, h, lo, c = (b[k] for k in ("open", "high", "low", "close"))
    log_c = np.log(c)
    r = _log_returns(c)
    m = _momentum_arrays(b)  # shares ret_1, gap_1, rsi_14, sma_dist_50, volume_ratio_20, vol_5, vol_60
    f: dict[str, np.ndarray] = {}

    f["ret_1"] = m["ret_1"]
    f["ret_3"] = m["ret_3"]
    vol60 = m["vol_60"]
    f["zscore_ret_5"] = _safe_ratio(m["ret_5"], vol60 * np.sqrt(5.0), 0.0)
    f["zscore_ret_20"] = _safe_ratio(m["ret_20"], vol60 * np.sqrt(20.0), 0.0)
    for n in (10, 20, 50):
        f[f"zscore_close_{n}"] = _zscore(c, n)

    f["rsi_2"] = _rsi(c, 2)
    f["rsi_5"] = _rsi(c, 5)
    f["rsi_14"] = m["rsi_14"]
    f["rsi_extreme_14"] = np.maximum(m["rsi_14"] - 0.7, 0.0) - np.maximum(0.3 - m["rsi_14"], 0.0)
    low_5 = _rolling(lo, 5, lambda w: w.min(axis=1))
    high_5 = _rolling(h, 5, lambda w: w.max(axis=1))
    f["stoch_k_5"] = _safe_ratio(c - low_5, high_5 - low_5, 0.5)
    f["stoch_d_14"] = _rolling(m["stoch_k_14"], 3, _mean)

    sma = {n: _rolling(c, n, _mean) for n in (5, 10, 20, 50)}
    f["sma_dist_5"] = log_c - np.log(sma[5])
    f["sma_dist_20"] = log_c - np.log(sma[20])
    f["sma_dist_50"] = m["sma_dist_50"]
    f["sma_cross_10_50"] = np.log(sma[10] / sma[50])
    f["dist_high_20"] = log_c - np.log(_rolling(h, 20, lambda w: w.max(axis=1)))
    f["dist_low_20"] = log_c - np.log(_rolling(lo, 20, lambda w: w.min(axis=1)))
    low_60 = _rolling(lo, 60, lambda w: w.min(axis=1))
    f["range_pos_60"] = _safe_ratio(c - low_60, _rolling(h, 60, lambda w: w.max(axis=1)) - low_60, 0.5)

    prev_c = _lag(c, 1)
    true_range = np.maximum(h, prev_c) - np.minimum(lo, prev_c)
    f["overext_atr_20"] = _safe_ratio(c - sma[20], _rolling(true_range, 14, _mean), 0.0)
    f["bb_width_20"] = 4.0 * _rolling(c, 20, _std) / sma[20]
    f["streak_10"] = _rolling(r, 10, _streak)
    f["down_frac_10"] = _rolling(r, 10, _down_frac)

    rng = h - lo
    f["body_ratio_1"] = _safe_ratio(c - o, rng, 0.0)
    f["lower_wick_1"] = _safe_ratio(np.minimum(o, c) - lo, rng, 0.0)
    f["upper_wick_1"] = _safe_ratio(h - np.maximum(o, c), rng, 0.0)
    prev_o = _lag(o, 1)
    bull = (prev_c < prev_o) & (c > o) & (o <= prev_c) & (c >= prev_o)
    bear = (prev_c > prev_o) & (c < o) & (o >= prev_c) & (c <= prev_o)
    eng = bull.astype(np.float64) - bear.astype(np.float64)
    eng[np.isnan(prev_c)] = np.nan
    f["engulfing_1"] = eng
    f["gap_1"] = m["gap_1"]

    f["vol_ratio_5_60"] = _safe_ratio(m["vol_5"], vol60, 1.0)
    f["volume_ratio_20"] = m["volume_ratio_20"]
    f["autocorr_60"] = _rolling(r, 60, _lag1_autocorr)
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


def _sentiment_compute(df: pd.DataFrame, *, dropna: bool = True, **options) -> pd.DataFrame:
    from .reasoning_features import sentiment_features  # imports this module: load it lazily

    return sentiment_features(df, dropna=dropna, **options)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FeatureSet:
    """The features of one preset: names (in model-input order), warm-up and the function."""

    preset: str
    names: tuple[str, ...]
    lookback: int
    compute: Callable[..., pd.DataFrame]
    options: tuple[str, ...] = ()  # keyword arguments ``compute`` accepts besides ``dropna``

    @property
    def size(self) -> int:
        return len(self.names)


FEATURE_SETS: dict[str, FeatureSet] = {
    "momentum": FeatureSet("momentum", MOMENTUM_FEATURES, MOMENTUM_LOOKBACK, momentum_features),
    "reversal": FeatureSet("reversal", REVERSAL_FEATURES, REVERSAL_LOOKBACK, reversal_features),
    "sentiment": FeatureSet(
        "sentiment", SENTIMENT_FEATURES, SENTIMENT_LOOKBACK, _sentiment_compute, ("news", "macro", "symbol")
    ),
}
"""Feature sets by preset name: momentum (24), reversal (32), sentiment (48).

The sentiment set's ``compute`` also takes ``news=`` (the output of
:func:`pymicro.news.analyze_news`), ``macro=`` (a :class:`pymicro.macro.MacroInputs`)
and ``symbol=``; without ``news`` its news features are 0 with their masks at 0.
"""


def feature_set(preset: str) -> FeatureSet:
    """The :class:`FeatureSet` registered for ``preset``; :class:`DataError` if there is none."""
    try:
        return FEATURE_SETS[preset]
    except (KeyError, TypeError):
        raise DataError(f"unknown preset {preset!r}; feature sets exist for {sorted(FEATURE_SETS)}") from None


def compute_features(df: pd.DataFrame, preset: str = "momentum", *, dropna: bool = True, **options) -> pd.DataFrame:
    """The features of ``preset`` for one symbol's bars (see :func:`momentum_features`).

    ``options`` go to the preset's compute function (``news=``, ``macro=``, ``symbol=``
    for "sentiment"; the other presets take none).
    """
    fs = feature_set(preset)
    unknown = sorted(set(options) - set(fs.options))
    if unknown:
        raise DataError(
            f"preset {preset!r} takes no option(s) {unknown}; it accepts {list(fs.options) or 'none'}"
        )
    return fs.compute(df, dropna=dropna, **options)


__all__ = [
    "FEATURE_SETS",
    "MOMENTUM_FEATURES",
    "MOMENTUM_LOOKBACK",
    "NEWS_FEATURES",
    "REASONING_FEATURES",
    "REVERSAL_FEATURES",
    "REVERSAL_LOOKBACK",
    "SENTIMENT_CONTEXT_FEATURES",
    "SENTIMENT_FEATURES",
    "SENTIMENT_LOOKBACK",
    "FeatureSet",
    "compute_features",
    "feature_set",
    "momentum_features",
    "reversal_features",
    "rolling_volatility",
]
