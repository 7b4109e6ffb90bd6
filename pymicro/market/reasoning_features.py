"""The twelve "reasoning" features of the seed guide, and the 48 inputs of the sentiment preset.

The seed asks a reasoning service for market psychology, quantitative patterns and
macro factors. pymicro computes each of those twelve names as a **defined composite of
real, causal inputs** instead: the symbol's own bars, the S&P 500 and NASDAQ indices,
ECB exchange rates, a T-bill rate and core CPI (:mod:`pymicro.market.macro`). They are price
and macro measures named after what they approximate, not sentiment data and not the
output of any reasoning model. Definitions: ``docs/features.md``.

    from pymicro.market.reasoning_features import sentiment_features
    X = sentiment_features(bars_of_one_symbol)                  # 48 columns, no news: masks 0
    X = sentiment_features(bars_of_one_symbol, news=daily)      # daily = pymicro.market.news.analyze_news(...)

A value at bar ``t`` uses the symbol's bars up to ``t``, index bars dated up to ``t``,
exchange rates fixed before ``t``, monthly data published (by the rule in
:mod:`pymicro.market.macro`) by ``t`` and headlines timestamped before the close of ``t``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pymicro.errors import DataError
from pymicro.market.bars import lag, log_returns, rolling, safe_ratio, window_std, bars_of_one_symbol
from pymicro.market.news import NEWS_FEATURES, news_features
from pymicro.market.technical import momentum_arrays
from pymicro.market.macro import MacroInputs

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

CORR_WINDOW = 20
VOL_REGIME_WINDOW = 120
STABILITY_LAGS = (0, 20, 40, 60, 80, 100)
REGIME_WINDOW = 20


def _pair_windows(x: np.ndarray, y: np.ndarray, n: int, fn) -> np.ndarray:
    """``out[t] = fn(x[t-n+1..t], y[t-n+1..t])`` row-wise (copied windows), NaN while incomplete."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] >= n:
        wx = np.ascontiguousarray(sliding_window_view(x, n))
        wy = np.ascontiguousarray(sliding_window_view(y, n))
        out[n - 1 :] = fn(wx, wy)
    return out


def _corr(wx: np.ndarray, wy: np.ndarray) -> np.ndarray:
    a = wx - wx.mean(axis=1, keepdims=True)
    b = wy - wy.mean(axis=1, keepdims=True)
    return safe_ratio((a * b).sum(axis=1), np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1)), 0.0)


def _beta(wx: np.ndarray, wm: np.ndarray) -> np.ndarray:
    a = wx - wx.mean(axis=1, keepdims=True)
    b = wm - wm.mean(axis=1, keepdims=True)
    return safe_ratio((a * b).sum(axis=1), (b * b).sum(axis=1), 0.0)


def _rank_last(win: np.ndarray) -> np.ndarray:
    """Fraction of each row's values that are <= its last value (NaN if the row holds a NaN)."""
    frac = (win <= win[:, -1:]).mean(axis=1)
    return np.where(np.isnan(win).any(axis=1), np.nan, frac)


def _share_equal_last(win: np.ndarray) -> np.ndarray:
    frac = (win == win[:, -1:]).mean(axis=1)
    return np.where(np.isnan(win).any(axis=1), np.nan, frac)


def reasoning_arrays(
    bars: dict[str, np.ndarray], macro_cols: dict[str, np.ndarray], m: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """The twelve reasoning features (and the context the sentiment set shares) as arrays.

    ``bars``: one symbol's validated bars (:func:`pymicro.market.features.bars_of_one_symbol`);
    ``macro_cols``: :meth:`pymicro.market.macro.MacroInputs.aligned` on the same dates;
    ``m``: the symbol's momentum arrays, if already computed.
    """
    c = bars["close"]
    m = momentum_arrays(bars) if m is None else m
    r = log_returns(c)
    log_c = np.log(c)
    mc = macro_cols["market_close"]
    log_mc = np.log(mc)
    rm = log_mc - lag(log_mc, 1)  # market return between the symbol's consecutive bars
    f: dict[str, np.ndarray] = {}

    # ---- quantitative
    vol60 = m["vol_60"]
    mom = [np.tanh(safe_ratio(log_c - lag(log_c, k), vol60 * np.sqrt(k), 0.0)) for k in (20, 60, 120)]
    f["momentum_score"] = (mom[0] + mom[1] + mom[2]) / 3.0
    f["volatility_regime"] = rolling(m["vol_20"], VOL_REGIME_WINDOW, _rank_last)
    corr20 = _pair_windows(r, rm, CORR_WINDOW, _corr)
    lagged = np.stack([lag(corr20, k) for k in STABILITY_LAGS], axis=1)
    f["correlation_stability"] = 1.0 - lagged.std(axis=1)  # NaN if any lag is NaN

    # ---- psychology
    fear_greed = macro_cols["fear_greed_index"]
    f["fear_greed_index"] = fear_greed
    f["herd_behavior_strength"] = 0.5 * np.maximum(corr20, 0.0) + 0.5 * np.abs(m["signed_volume_20"])
    z5 = np.tanh(safe_ratio(m["ret_5"], vol60 * np.sqrt(5.0), 0.0))
    f["contrarian_signal"] = -(fear_greed + (2.0 * m["rsi_14"] - 1.0) + z5) / 3.0

    # ---- macro
    f["interest_rate_impact"] = macro_cols["interest_rate_impact"]
    f["dollar_strength"] = macro_cols["dollar_strength"]
    f["economic_cycle_phase"] = (
        macro_cols["market_trend_200"]
        + np.tanh(macro_cols["short_rate_chg_12m"] / 1.0)
        + np.tanh(macro_cols["core_inflation_chg_12m"] / 0.5)
    ) / 3.0

    # ---- synthesis: three domain scores
    psych = fear_greed
    quant = f["momentum_score"]
    macro_score = (f["interest_rate_impact"] + f["economic_cycle_phase"] - f["dollar_strength"]) / 3.0
    domains = np.stack([psych, quant, macro_score], axis=1)
    f["cross_domain_divergence"] = domains.std(axis=1)
    f["signal_agreement_score"] = (np.sign(psych) + np.sign(quant) + np.sign(macro_score)) / 3.0  # NaN stays NaN
    regime = 2.0 * (quant > 0) + (f["volatility_regime"] > 0.5)
    regime[np.isnan(quant) | np.isnan(f["volatility_regime"])] = np.nan
    f["regime_consistency"] = rolling(regime, REGIME_WINDOW, _share_equal_last)

    # ---- context shared with the sentiment set
    mret = {k: log_mc - lag(log_mc, k) for k in (1, 5, 20)}
    f["mkt_ret_1"], f["mkt_ret_5"], f["mkt_ret_20"] = mret[1], mret[5], mret[20]
    f["mkt_vol_20"] = rolling(rm, 20, window_std)
    f["beta_60"] = _pair_windows(r, rm, 60, _beta)
    f["corr_60"] = _pair_windows(r, rm, 60, _corr)
    f["rel_strength_20"] = m["ret_20"] - mret[20]
    log_tc = np.log(macro_cols["tech_close"])
    f["tech_vs_broad_20"] = (log_tc - lag(log_tc, 20)) - mret[20]
    for k in ("usd_index_ret_20", "usd_index_vol_20", "short_rate", "short_rate_chg_12m", "core_inflation_yoy"):
        f[k] = macro_cols[k]
    f["real_short_rate"] = macro_cols["short_rate"] - macro_cols["core_inflation_yoy"]
    for k in ("ret_1", "ret_5", "ret_20", "vol_20", "volume_ratio_20", "rsi_14", "sma_dist_50",
              "dist_high_60", "gap_1", "close_loc_1"):
        f[k] = m[k]
    return f


def _symbol_of(df: pd.DataFrame, symbol: str | None) -> str | None:
    if symbol is not None:
        return str(symbol)
    cols = {str(c).lower(): c for c in df.columns}
    if "symbol" in cols and len(df):
        return str(df[cols["symbol"]].iloc[0])
    return None


def reasoning_features(
    df: pd.DataFrame, *, macro: MacroInputs | None = None, dropna: bool = True
) -> pd.DataFrame:
    """The twelve reasoning features (:data:`pymicro.market.features.REASONING_FEATURES`) of one symbol.

    Float64, indexed by date. A row is NaN where an input is missing (warm-up, or a date
    that a market or macro series does not cover: see :mod:`pymicro.market.macro`);
    ``dropna=True`` (default) drops those rows.
    """
    dates, bars = bars_of_one_symbol(df)
    macro = MacroInputs.embedded() if macro is None else macro
    f = reasoning_arrays(bars, macro.aligned(np.asarray(dates, "datetime64[ns]")))
    out = pd.DataFrame({k: f[k] for k in REASONING_FEATURES}, index=dates)
    return out.dropna() if dropna else out


def sentiment_features(
    df: pd.DataFrame,
    *,
    news: pd.DataFrame | None = None,
    macro: MacroInputs | str | None = None,
    symbol: str | None = None,
    dropna: bool = True,
) -> pd.DataFrame:
    """The 48 inputs of the sentiment preset (:data:`pymicro.market.features.SENTIMENT_FEATURES`).

    ``df``: one symbol's daily bars. ``news``: per-day headline aggregates from
    :func:`pymicro.market.news.analyze_news` (rows of other symbols are ignored); without it,
    or on days with no headlines, the news features are 0 and their masks 0. ``macro``:
    the market and macro inputs (default: the shipped series, which end in 2019-01: rows after
    them are NaN); ``macro="none"`` drops them explicitly: every feature that reads a market or
    macro input is 0 on every row (listed in ``out.attrs["dropped_inputs"]``), so a history
    of any dates keeps all its rows. ``symbol``: the
    symbol to pick from ``news`` when ``df`` has no ``symbol`` column.

    Float64, indexed by date. The first :data:`pymicro.market.features.SENTIMENT_LOOKBACK`
    (158) rows are warm-up; rows on dates that a market or macro input does not cover
    are NaN too. ``dropna=True`` (default) drops every row with a NaN;
    ``dropna=False`` keeps one row per bar.
    """

    dates, bars = bars_of_one_symbol(df)
    d64 = np.asarray(dates, "datetime64[ns]")
    drop = isinstance(macro, str) and macro == "none"
    macro = MacroInputs.embedded() if macro is None or drop else macro
    if not isinstance(macro, MacroInputs):
        raise DataError(f"macro must be a pymicro.market.macro.MacroInputs or 'none', got {macro!r}")
    aligned = macro.aligned(d64)
    dropped: list[str] = []
    if drop:
        blank = {k: np.full(np.shape(v), np.nan) if np.issubdtype(np.asarray(v).dtype, np.floating) else v
                 for k, v in aligned.items()}
        with np.errstate(all="ignore"):
            probe = reasoning_arrays(bars, blank)
        dropped = [k for k, v in probe.items() if np.ndim(v) == 1 and len(v) and
                   not np.isfinite(np.asarray(v, np.float64)[SENTIMENT_LOOKBACK:]).any()]
        f = {k: (np.zeros(len(d64)) if k in dropped else v) for k, v in probe.items()}
    else:
        f = reasoning_arrays(bars, aligned)
    sym = _symbol_of(df, symbol)
    if news is not None and sym is None:
        raise DataError("news was given but the bars have no symbol column; pass symbol='NAME'")
    f.update(news_features(news, d64, sym))
    out = pd.DataFrame({k: f[k] for k in SENTIMENT_FEATURES}, index=dates)
    out.attrs["dropped_inputs"] = dropped
    if dropna:
        out = out.iloc[SENTIMENT_LOOKBACK:]
        out = out[np.isfinite(out.to_numpy()).all(axis=1)]
    return out


__all__ = [
    "REASONING_FEATURES",
    "SENTIMENT_CONTEXT_FEATURES",
    "SENTIMENT_FEATURES",
    "reasoning_arrays",
    "reasoning_features",
    "sentiment_features",
]
