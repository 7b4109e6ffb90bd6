"""The reversal (32) and sentiment (48) feature sets, the reasoning features and their macro inputs.

The central property, as for the momentum features: changing anything dated after
``t`` (the symbol's bars, the index bars, exchange rates fixed on or after ``t``,
monthly values not yet published at ``t``) changes no feature at or before ``t``,
bit for bit; and the test is not vacuous (the change does move later features).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pymicro
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.errors import DataError
from pymicro.market.features import (
    FEATURE_SETS,
    NEWS_FEATURES,
    REASONING_FEATURES,
    REVERSAL_FEATURES,
    REVERSAL_LOOKBACK,
    SENTIMENT_FEATURES,
    SENTIMENT_LOOKBACK,
    compute_features,
    feature_set,
    reversal_features,
)
from pymicro.market.macro import (
    DAILY_MAX_STALE_DAYS,
    MONTHLY_MAX_STALE_DAYS,
    MacroInputs,
    asof_index,
    dollar_index,
    load_ecb_fx,
    take,
)
from pymicro.market.reasoning_features import reasoning_features, sentiment_features


@pytest.fixture(scope="module")
def embedded() -> pd.DataFrame:
    return load_embedded()


@pytest.fixture(scope="module")
def macro() -> MacroInputs:
    return MacroInputs.embedded()


@pytest.fixture(scope="module")
def bars(embedded) -> pd.DataFrame:
    """About 560 daily bars of IBM (mid-2007 to mid-2009: calm, crash, rebound)."""
    g = embedded[embedded["symbol"] == "IBM"]
    return g[(g["date"] >= "2007-06-01") & (g["date"] < "2009-08-01")].reset_index(drop=True)


@pytest.fixture(scope="module")
def full_reversal(bars) -> np.ndarray:
    return reversal_features(bars, dropna=False).to_numpy()


@pytest.fixture(scope="module")
def full_sentiment(bars, macro) -> np.ndarray:
    return sentiment_features(bars, macro=macro, dropna=False).to_numpy()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def perturb_rows(frame: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Change the OHLCV bars at the positions ``rows`` (a tail) at random, keeping them valid."""
    out = frame.copy()
    k = rows.size
    if k == 0:
        return out
    level = np.exp(rng.normal(0.0, 0.3, k).cumsum())
    c = out["close"].to_numpy()[rows] * level * rng.uniform(0.5, 2.0)
    o = c * np.exp(rng.normal(0.0, 0.05, k))
    hi = np.maximum(o, c) * np.exp(rng.uniform(0.0, 0.1, k))
    lo = np.minimum(o, c) * np.exp(-rng.uniform(0.0, 0.1, k))
    v = out["volume"].to_numpy()[rows] * rng.uniform(0.0, 10.0, k)
    for col, val in (("open", o), ("high", hi), ("low", lo), ("close", c), ("volume", v)):
        a = out[col].to_numpy(np.float64, copy=True)
        a[rows] = val
        out[col] = a
    return out


def after(frame: pd.DataFrame, day, col: str = "date", inclusive: bool = False) -> np.ndarray:
    d = pd.to_datetime(frame[col]).to_numpy("datetime64[ns]")
    day = np.datetime64(pd.Timestamp(day), "ns")
    return np.flatnonzero(d >= day if inclusive else d > day)


def with_macro(m: MacroInputs, **changes) -> MacroInputs:
    fields = {k: getattr(m, k) for k in ("market", "tech", "fx", "short_rate", "core_cpi")}
    fields.update(changes)
    return MacroInputs(**fields)


# --------------------------------------------------------------------------- the registry


def test_every_preset_has_its_named_feature_set():
    for preset, n in (("momentum", 24), ("reversal", 32), ("sentiment", 48)):
        fs = feature_set(preset)
        assert fs.size == n == len(set(fs.names)) == pymicro.preset(preset).input_size
    assert set(FEATURE_SETS) == {"momentum", "reversal", "sentiment"}
    assert REVERSAL_LOOKBACK == 60 and SENTIMENT_LOOKBACK == 158
    assert SENTIMENT_FEATURES[:12] == REASONING_FEATURES and SENTIMENT_FEATURES[12:24] == NEWS_FEATURES
    assert REASONING_FEATURES == (
        "fear_greed_index", "herd_behavior_strength", "contrarian_signal",
        "momentum_score", "volatility_regime", "correlation_stability",
        "interest_rate_impact", "dollar_strength", "economic_cycle_phase",
        "cross_domain_divergence", "signal_agreement_score", "regime_consistency",
    )
    with pytest.raises(DataError, match="unknown preset"):
        feature_set("nope")


def test_make_dataset_builds_both_new_presets(embedded):
    for preset, n in (("reversal", 32), ("sentiment", 48)):
        ds = make_dataset(embedded, preset=preset, horizon=5)
        assert ds.X.shape[1] == n and ds.feature_names == feature_set(preset).names
        assert np.isfinite(ds.X).all() and len(ds) > 15_000
        assert set(ds.symbols) == {"AAPL", "GOOG", "IBM", "MSFT", "NASDAQ", "SP500"}
        if preset == "sentiment":  # no news given: the news inputs are 0, masks included
            news = ds.X[:, 12:24]
            assert (news == 0).all()
            # the embedded market and macro series stop on 2018-12-31 (+7 days)
            assert ds.dates.max() <= np.datetime64("2019-01-07")


# --------------------------------------------------------------------------- reversal


def test_reversal_features_finite_after_warmup_on_every_embedded_symbol(embedded):
    for sym, g in embedded.groupby("symbol"):
        raw = reversal_features(g, dropna=False)
        assert list(raw.columns) == list(REVERSAL_FEATURES)
        assert np.isfinite(raw.iloc[REVERSAL_LOOKBACK:].to_numpy()).all(), sym
        assert raw.iloc[REVERSAL_LOOKBACK - 1].isna().any()  # 60-bar windows need 61 bars
        pd.testing.assert_frame_equal(raw.iloc[REVERSAL_LOOKBACK:], reversal_features(g))


def test_reversal_features_match_their_definitions(bars):
    f = reversal_features(bars)
    c, o, h, lo = (bars[k] for k in ("close", "open", "high", "low"))
    r = np.log(c).diff()
    ref = pd.DataFrame(index=bars["date"])
    ref["zscore_close_20"] = ((c - c.rolling(20).mean()) / c.rolling(20).std()).to_numpy()
    ref["zscore_ret_5"] = (np.log(c / c.shift(5)) / (r.rolling(60).std() * np.sqrt(5))).to_numpy()
    dc = c.diff()
    ref["rsi_2"] = (dc.clip(lower=0).rolling(2).sum() / dc.abs().rolling(2).sum()).to_numpy()
    ref["sma_cross_10_50"] = np.log(c.rolling(10).mean() / c.rolling(50).mean()).to_numpy()
    ref["dist_low_20"] = np.log(c / lo.rolling(20).min()).to_numpy()
    ref["bb_width_20"] = (4 * c.rolling(20).std() / c.rolling(20).mean()).to_numpy()
    ref["body_ratio_1"] = ((c - o) / (h - lo)).to_numpy()
    ref["down_frac_10"] = (r < 0).astype(float).rolling(10).mean().to_numpy()
    ref["autocorr_60"] = r.rolling(60).apply(lambda w: np.corrcoef(w[:-1], w[1:])[0, 1], raw=True).to_numpy()
    ref = ref.iloc[REVERSAL_LOOKBACK:]
    for name in ref.columns:
        np.testing.assert_allclose(f[name], ref[name], rtol=1e-9, atol=1e-12, err_msg=name)
    assert ((f["range_pos_60"] >= 0) & (f["range_pos_60"] <= 1)).all()
    assert (f["dist_high_20"] <= 0).all() and (f["dist_low_20"] >= 0).all()
    assert set(np.unique(f["engulfing_1"])) <= {-1.0, 0.0, 1.0}


def test_reversal_candles_and_streaks_on_crafted_bars():
    n = 70
    close = 100.0 + np.arange(n, dtype=float) * 0.1  # 69 rising closes in a row
    o = close - 0.05
    bars = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=n), "open": o, "high": close + 0.1,
                         "low": o - 0.1, "close": close, "volume": 1000.0})
    # bar n-2 falls (a down candle), bar n-1 engulfs it going up
    bars.loc[n - 2, ["open", "close", "low", "high"]] = [107.0, 106.0, 105.9, 107.1]
    bars.loc[n - 1, ["open", "close", "low", "high"]] = [105.8, 107.5, 105.7, 107.6]
    f = reversal_features(bars, dropna=False)
    assert f["engulfing_1"].iloc[-1] == 1.0 and f["engulfing_1"].iloc[-3] == 0.0
    assert f["streak_10"].iloc[-3] == 1.0  # ten up days in a row (capped)
    assert f["streak_10"].iloc[-2] == -0.1 and f["streak_10"].iloc[-1] == 0.1
    flat = bars.assign(open=10.0, high=10.0, low=10.0, close=10.0, volume=0.0)
    g = reversal_features(flat)
    assert np.isfinite(g.to_numpy()).all() and (g["rsi_2"] == 0.5).all() and (g["zscore_close_20"] == 0).all()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(t=st.integers(min_value=0, max_value=560), seed=st.integers(0, 2**32 - 1))
def test_changing_bars_after_t_changes_no_reversal_feature_at_or_before_t(bars, full_reversal, t, seed):
    t = min(t, len(bars) - 2)
    changed = perturb_rows(bars, np.arange(t + 1, len(bars)), np.random.default_rng(seed))
    again = reversal_features(changed, dropna=False).to_numpy()
    assert same_bits(again[: t + 1], full_reversal[: t + 1])
    if t + 1 >= REVERSAL_LOOKBACK:
        assert not same_bits(again[t + 1 :], full_reversal[t + 1 :])


def test_reversal_features_at_t_need_only_the_window(bars, full_reversal):
    for t in (REVERSAL_LOOKBACK, 200, len(bars) - 1):
        window = reversal_features(bars.iloc[t - REVERSAL_LOOKBACK : t + 1]).to_numpy()
        assert window.shape == (1, 32) and same_bits(window[0], full_reversal[t]), t


# --------------------------------------------------------------------------- sentiment / reasoning


def test_sentiment_features_cover_the_embedded_history(embedded, macro):
    for sym, g in embedded.groupby("symbol"):
        raw = sentiment_features(g, macro=macro, dropna=False)
        assert list(raw.columns) == list(SENTIMENT_FEATURES)
        ok = np.isfinite(raw.to_numpy()).all(axis=1)
        first = int(np.flatnonzero(ok)[0])
        assert ok[first:].all(), sym  # no holes once defined
        # stocks start in 2000 (own warm-up decides); the indices in 1999 (the market's 252+ bar windows)
        assert first == SENTIMENT_LOOKBACK if sym in ("AAPL", "GOOG", "IBM", "MSFT") else first > SENTIMENT_LOOKBACK
        assert len(sentiment_features(g, macro=macro)) == ok.sum()
    f = sentiment_features(embedded[embedded["symbol"] == "MSFT"], macro=macro)
    unit = f[["fear_greed_index", "contrarian_signal", "momentum_score", "interest_rate_impact",
              "dollar_strength", "economic_cycle_phase", "signal_agreement_score"]].to_numpy()
    assert (np.abs(unit) <= 1).all()
    for name in ("herd_behavior_strength", "volatility_regime", "correlation_stability", "regime_consistency"):
        assert ((f[name] >= 0) & (f[name] <= 1)).all(), name
    assert set(np.round(np.unique(f["signal_agreement_score"]) * 3).astype(int)) <= {-3, -1, 1, 3}
    r = reasoning_features(embedded[embedded["symbol"] == "MSFT"], macro=macro)
    pd.testing.assert_frame_equal(r, f[list(REASONING_FEATURES)])


def test_reasoning_features_follow_their_definitions(bars, macro):
    f = sentiment_features(bars, macro=macro, dropna=False)
    c = bars["close"]
    r = np.log(c).diff()
    t = 400
    vol60 = r.iloc[t - 59 : t + 1].std()
    mom = np.mean([np.tanh(np.log(c[t] / c[t - k]) / (vol60 * np.sqrt(k))) for k in (20, 60, 120)])
    assert f["momentum_score"].iloc[t] == pytest.approx(mom, rel=1e-9)
    vol20 = r.rolling(20).std()
    assert f["volatility_regime"].iloc[t] == pytest.approx((vol20.iloc[t - 119 : t + 1] <= vol20.iloc[t]).mean())
    cols = macro.aligned(bars["date"])
    mr = np.log(cols["market_close"])
    mr = pd.Series(mr).diff()
    corr = [np.corrcoef(r.iloc[t - k - 19 : t - k + 1], mr.iloc[t - k - 19 : t - k + 1])[0, 1] for k in range(0, 101, 20)]
    assert f["correlation_stability"].iloc[t] == pytest.approx(1 - np.std(corr), rel=1e-9)
    p, q = f["fear_greed_index"].iloc[t], f["momentum_score"].iloc[t]
    m = (f["interest_rate_impact"].iloc[t] + f["economic_cycle_phase"].iloc[t] - f["dollar_strength"].iloc[t]) / 3
    assert f["cross_domain_divergence"].iloc[t] == pytest.approx(np.std([p, q, m]), rel=1e-12)
    assert f["signal_agreement_score"].iloc[t] == pytest.approx((np.sign(p) + np.sign(q) + np.sign(m)) / 3)
    assert f["real_short_rate"].iloc[t] == pytest.approx(f["short_rate"].iloc[t] - f["core_inflation_yoy"].iloc[t])
    # 2008-10: the crash reads as fear, a falling market, cutting rates
    crash = f.loc["2008-10-06":"2008-10-31"]
    assert (crash["fear_greed_index"] < -0.5).all() and (crash["momentum_score"] < 0).all()
    assert (crash["short_rate_chg_12m"] < 0).all()


@settings(max_examples=20, deadline=None, derandomize=True)
@given(t=st.integers(min_value=SENTIMENT_LOOKBACK, max_value=560), seed=st.integers(0, 2**32 - 1))
def test_changing_bars_after_t_changes_no_sentiment_feature_at_or_before_t(bars, macro, full_sentiment, t, seed):
    t = min(t, len(bars) - 2)
    changed = perturb_rows(bars, np.arange(t + 1, len(bars)), np.random.default_rng(seed))
    again = sentiment_features(changed, macro=macro, dropna=False).to_numpy()
    assert same_bits(again[: t + 1], full_sentiment[: t + 1])
    assert not same_bits(again[t + 1 :], full_sentiment[t + 1 :])


@settings(max_examples=15, deadline=None, derandomize=True)
@given(t=st.integers(min_value=SENTIMENT_LOOKBACK, max_value=560), seed=st.integers(0, 2**32 - 1))
def test_changing_index_bars_after_t_changes_no_feature_at_or_before_t(bars, macro, full_sentiment, t, seed):
    t = min(t, len(bars) - 2)
    day = bars["date"].iloc[t]
    rng = np.random.default_rng(seed)
    changed = with_macro(
        macro,
        market=perturb_rows(macro.market, after(macro.market, day), rng),
        tech=perturb_rows(macro.tech, after(macro.tech, day), rng),
    )
    again = sentiment_features(bars, macro=changed, dropna=False).to_numpy()
    assert same_bits(again[: t + 1], full_sentiment[: t + 1])
    assert not same_bits(again[t + 1 :], full_sentiment[t + 1 :])


@settings(max_examples=15, deadline=None, derandomize=True)
@given(t=st.integers(min_value=SENTIMENT_LOOKBACK, max_value=560), seed=st.integers(0, 2**32 - 1))
def test_changing_fx_and_monthly_data_not_yet_known_at_t_changes_nothing_at_t(bars, macro, full_sentiment, t, seed):
    t = min(t, len(bars) - 2)
    day = pd.Timestamp(bars["date"].iloc[t])
    rng = np.random.default_rng(seed)
    fx = macro.fx.copy()
    late = after(fx, day, inclusive=True)  # a fixing dated t is used only after t
    for cur in ("USD", "JPY", "GBP", "CAD", "SEK", "CHF"):
        a = fx[cur].to_numpy(np.float64, copy=True)
        a[late] *= np.exp(rng.normal(0.0, 0.05, late.size).cumsum())
        fx[cur] = a
    rate, cpi = macro.short_rate.copy(), macro.core_cpi.copy()
    # month m is published on the first day of month m + 2: later ones are unknown at t
    for frame, col in ((rate, "rate"), (cpi, "level")):
        usable_from = (frame["month"].to_numpy("datetime64[M]") + np.timedelta64(2, "M")).astype("datetime64[ns]")
        unknown = usable_from > np.datetime64(day, "ns")
        a = frame[col].to_numpy(np.float64, copy=True)
        a[unknown] = a[unknown] * rng.uniform(0.5, 2.0, unknown.sum()) + 0.5
        frame[col] = a
    again = sentiment_features(bars, macro=with_macro(macro, fx=fx, short_rate=rate, core_cpi=cpi), dropna=False)
    assert same_bits(again.to_numpy()[: t + 1], full_sentiment[: t + 1])
    later = again.iloc[t + 1 :][["usd_index_ret_20", "dollar_strength"]].to_numpy()
    assert not same_bits(later, pd.DataFrame(full_sentiment, columns=SENTIMENT_FEATURES)
                         .iloc[t + 1 :][["usd_index_ret_20", "dollar_strength"]].to_numpy())


def test_the_latest_known_macro_values_do_matter(bars, macro, full_sentiment):
    """Non-vacuity: the fixing of the ECB day before t and the month published by t move row t."""
    t = 400
    day = np.datetime64(pd.Timestamp(bars["date"].iloc[t]), "ns")
    col = {name: j for j, name in enumerate(SENTIMENT_FEATURES)}
    fx = macro.fx.copy()
    i = int(np.flatnonzero(fx["date"].to_numpy("datetime64[ns]") < day)[-1])
    fx.loc[i, "USD"] = fx.loc[i, "USD"] * 1.05
    again = sentiment_features(bars, macro=with_macro(macro, fx=fx), dropna=False).to_numpy()
    known = int((bars["date"] <= fx["date"].iloc[i]).sum())  # bars on or before the fixing's date
    assert same_bits(again[:known], full_sentiment[:known])
    assert again[t, col["usd_index_ret_20"]] != full_sentiment[t, col["usd_index_ret_20"]]
    rate = macro.short_rate.copy()
    usable = (rate["month"].to_numpy("datetime64[M]") + np.timedelta64(2, "M")).astype("datetime64[ns]")
    k = int(np.flatnonzero(usable <= day)[-1])
    rate.loc[k, "rate"] += 1.0
    again = sentiment_features(bars, macro=with_macro(macro, short_rate=rate), dropna=False).to_numpy()
    assert again[t, col["short_rate"]] == full_sentiment[t, col["short_rate"]] + 1.0


def test_sentiment_features_at_t_need_only_the_symbol_window(bars, macro, full_sentiment):
    for t in (SENTIMENT_LOOKBACK, 300, len(bars) - 1):
        window = sentiment_features(bars.iloc[t - SENTIMENT_LOOKBACK : t + 1], macro=macro).to_numpy()
        assert window.shape == (1, 48) and same_bits(window[0], full_sentiment[t]), t
    assert len(sentiment_features(bars.iloc[: SENTIMENT_LOOKBACK], macro=macro)) == 0


def test_dates_the_macro_series_do_not_cover_are_missing_not_filled(embedded, macro):
    """Past the shipped series (2019-01-07 for the indices), rows are NaN and dropped; never backfilled."""
    g = embedded[embedded["symbol"] == "SP500"].tail(300)
    later = g.assign(date=g["date"] + pd.Timedelta(days=7 * 52 * 2))  # the same bars two years later
    raw = sentiment_features(later, macro=macro, dropna=False)
    beyond = raw.index > pd.Timestamp("2019-01-07")
    assert raw.loc[beyond, "fear_greed_index"].isna().all() and raw.loc[beyond, "mkt_ret_1"].isna().all()
    assert raw.loc[raw.index > pd.Timestamp("2019-02-15"), "short_rate"].isna().all()
    assert raw.loc[beyond, "dollar_strength"].notna().all()  # the ECB file runs to 2026
    with pytest.raises(DataError, match="no usable rows"):
        make_dataset(later[later["date"] > "2019-03-01"], preset="sentiment")
    # with the caller's own (here: shifted) index and rate series the same dates are covered
    shift = pd.Timedelta(days=7 * 52 * 2)
    own = with_macro(
        macro,
        market=macro.market.assign(date=macro.market["date"] + shift),
        tech=macro.tech.assign(date=macro.tech["date"] + shift),
        short_rate=pd.concat([macro.short_rate, pd.DataFrame(
            {"month": pd.date_range("2018-12-01", "2021-12-01", freq="MS"), "rate": 2.0})], ignore_index=True),
        core_cpi=pd.concat([macro.core_cpi, pd.DataFrame(
            {"month": pd.date_range("2018-12-01", "2021-12-01", freq="MS"), "level": 260.0})], ignore_index=True),
    )
    assert len(sentiment_features(later, macro=own)) > 100
    # before a series starts: nothing (no backward fill)
    early = embedded[embedded["symbol"] == "SP500"].head(40)
    assert sentiment_features(early, macro=macro, dropna=False)["fear_greed_index"].isna().all()


def test_asof_alignment_rules():
    avail = np.array(["2020-01-01", "2020-01-10", "2020-01-20"], "datetime64[ns]")
    dates = np.array(["2019-12-31", "2020-01-01", "2020-01-08", "2020-01-17", "2020-01-18", "2020-02-01"],
                     "datetime64[ns]")
    idx = asof_index(avail, dates, 7)
    assert idx.tolist() == [-1, 0, 0, 1, -1, -1]  # none before; latest past value; stale after 7 days
    assert np.isnan(take(np.array([1.0, 2.0, 3.0]), idx)[[0, 4, 5]]).all()
    assert DAILY_MAX_STALE_DAYS == 7 and MONTHLY_MAX_STALE_DAYS == 45


def test_dollar_index_is_the_ice_formula_on_ecb_rates(macro):
    fx = load_ecb_fx()
    row = fx[fx["date"] == "2008-07-15"].iloc[0]
    usd = row["USD"]
    want = 50.14348112 * usd ** -0.576 * (row["JPY"] / usd) ** 0.136 * (usd / row["GBP"]) ** -0.119 * (
        row["CAD"] / usd) ** 0.091 * (row["SEK"] / usd) ** 0.042 * (row["CHF"] / usd) ** 0.036
    got = dollar_index(fx[fx["date"] == "2008-07-15"])[0]
    assert got == pytest.approx(want, rel=1e-12)
    assert 70 < got < 75  # the 2008 low of the dollar (ICE's index: about 71-73 then)
    cov = macro.coverage()
    assert cov.loc["fx", "last_observation"] == pd.Timestamp("2026-10-30")
    assert cov.loc["market", "last_usable"] == pd.Timestamp("2019-01-07")
    assert cov.loc["short_rate", "last_usable"] == pd.Timestamp("2019-01-01") + pd.Timedelta(days=45)


def test_monthly_values_are_used_from_their_publication_rule_on(macro):
    rate = macro.short_rate
    sep08 = float(rate.loc[rate["month"] == "2008-09-01", "rate"].iloc[0])
    aug08 = float(rate.loc[rate["month"] == "2008-08-01", "rate"].iloc[0])
    cols = macro.aligned(pd.to_datetime(["2008-10-31", "2008-11-03"]))
    assert cols["short_rate"][0] == aug08 and cols["short_rate"][1] == sep08


def test_macro_input_errors(macro):
    with pytest.raises(DataError, match="fx: missing column"):
        with_macro(macro, fx=macro.fx.drop(columns="SEK"))
    with pytest.raises(DataError, match="first day of a month"):
        with_macro(macro, short_rate=macro.short_rate.assign(month=macro.short_rate["month"] + pd.Timedelta(days=3)))
    with pytest.raises(DataError, match="market"):
        with_macro(macro, market=macro.market.drop(columns="close"))
    with pytest.raises(DataError, match="strictly increasing"):
        with_macro(macro, fx=macro.fx.iloc[::-1])
    with pytest.raises(DataError, match="MacroInputs"):
        sentiment_features(load_embedded("IBM"), macro="embedded")
    assert compute_features(load_embedded("IBM"), "sentiment").shape[1] == 48
    with pytest.raises(DataError, match="takes no option"):
        compute_features(load_embedded("IBM"), "reversal", news=None)
