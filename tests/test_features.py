"""Momentum features, direction labels and the chronological dataset split.

The causality tests are the point: a feature at bar t must be a function of bars
up to t only, bit for bit, and a label at t must come from later bars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pymicro
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset, split_chronological
from pymicro.errors import DataError
from pymicro.market.features import (
    FEATURE_SETS,
    MOMENTUM_FEATURES,
    MOMENTUM_LOOKBACK,
    compute_features,
    feature_set,
    momentum_features,
)
from pymicro.market.labels import direction_labels, label_details

LOOKBACK = MOMENTUM_LOOKBACK


@pytest.fixture(scope="module")
def embedded() -> pd.DataFrame:
    return load_embedded()


@pytest.fixture(scope="module")
def bars(embedded) -> pd.DataFrame:
    """About 400 daily bars of one symbol (IBM, 2008-2009: calm and crash)."""
    g = embedded[embedded["symbol"] == "IBM"]
    return g[(g["date"] >= "2008-01-01") & (g["date"] < "2009-08-01")].reset_index(drop=True)


@pytest.fixture(scope="module")
def full_features(bars) -> np.ndarray:
    return momentum_features(bars, dropna=False).to_numpy()


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-identical float arrays (NaN == NaN when its bits match)."""
    a, b = np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


def perturb_after(bars: pd.DataFrame, t: int, rng: np.random.Generator) -> pd.DataFrame:
    """Change every bar after t at random (prices, range, volume), keeping the bars valid."""
    out = bars.copy()
    k = len(out) - t - 1
    if k <= 0:
        return out
    level = np.exp(rng.normal(0.0, 0.3, k).cumsum())  # a different future path
    c = out["close"].to_numpy()[t + 1 :] * level * rng.uniform(0.5, 2.0)
    o = c * np.exp(rng.normal(0.0, 0.05, k))
    hi = np.maximum(o, c) * np.exp(rng.uniform(0.0, 0.1, k))
    lo = np.minimum(o, c) * np.exp(-rng.uniform(0.0, 0.1, k))
    v = out["volume"].to_numpy()[t + 1 :] * rng.uniform(0.0, 10.0, k)
    for col, val in (("open", o), ("high", hi), ("low", lo), ("close", c), ("volume", v)):
        out.loc[t + 1 :, col] = val
    return out


# --------------------------------------------------------------------------- feature set


def test_exactly_24_named_features_matching_the_preset():
    assert len(MOMENTUM_FEATURES) == 24 == len(set(MOMENTUM_FEATURES))
    assert pymicro.preset("momentum").input_size == len(MOMENTUM_FEATURES)
    fs = feature_set("momentum")
    assert fs.names == MOMENTUM_FEATURES and fs.lookback == LOOKBACK == 60 and fs.size == 24
    assert set(FEATURE_SETS) <= set(pymicro.PRESETS)
    assert feature_set("reversal").size == 32 and feature_set("sentiment").size == 48
    with pytest.raises(DataError, match="unknown preset"):
        feature_set("nope")


def test_features_are_finite_after_warmup_on_every_embedded_symbol(embedded):
    for sym, g in embedded.groupby("symbol"):
        f = momentum_features(g)
        assert list(f.columns) == list(MOMENTUM_FEATURES)
        assert len(f) == len(g) - LOOKBACK, sym
        assert f.index[0] == g["date"].iloc[LOOKBACK]
        assert np.isfinite(f.to_numpy()).all(), sym
        raw = momentum_features(g, dropna=False)
        assert len(raw) == len(g)
        assert raw.iloc[:LOOKBACK].isna().any(axis=1).all()  # warm-up rows are incomplete
        assert raw.iloc[LOOKBACK - 1].isna().sum() >= 1  # ret_60 / vol_60 need 61 bars
        pd.testing.assert_frame_equal(raw.iloc[LOOKBACK:], f)
    f = compute_features(g, "momentum")
    assert f.shape[1] == 24


def test_features_match_their_definitions(bars):
    f = momentum_features(bars)
    c, o, h, lo, v = (bars[k] for k in ("close", "open", "high", "low", "volume"))
    r = np.log(c).diff()
    ref = pd.DataFrame(index=bars["date"])
    ref["ret_5"] = np.log(c / c.shift(5)).to_numpy()
    ref["ret_60"] = np.log(c / c.shift(60)).to_numpy()
    ref["vol_20"] = r.rolling(20).std().to_numpy()
    ref["gap_1"] = np.log(o / c.shift(1)).to_numpy()
    ref["close_loc_1"] = ((c - lo) / (h - lo)).to_numpy()
    tr = pd.concat([h - lo, (h - c.shift(1)).abs(), (lo - c.shift(1)).abs()], axis=1).max(axis=1)
    ref["atr_14"] = (tr.rolling(14).mean() / c).to_numpy()
    ref["volume_ratio_20"] = np.log((v + 1) / (v.rolling(20).mean() + 1)).to_numpy()
    ref["sma_dist_50"] = np.log(c / c.rolling(50).mean()).to_numpy()
    dc = c.diff()
    ref["rsi_14"] = (dc.clip(lower=0).rolling(14).sum() / dc.abs().rolling(14).sum()).to_numpy()
    ref["stoch_k_14"] = ((c - lo.rolling(14).min()) / (h.rolling(14).max() - lo.rolling(14).min())).to_numpy()
    ref["dist_high_60"] = np.log(c / h.rolling(60).max()).to_numpy()
    ref = ref.iloc[LOOKBACK:]
    for name in ref.columns:
        np.testing.assert_allclose(f[name], ref[name], rtol=1e-9, atol=1e-12, err_msg=name)
    logc = np.log(c.to_numpy())
    for t in (LOOKBACK, 200, len(bars) - 1):
        slope = np.polyfit(np.arange(20), logc[t - 19 : t + 1], 1)[0]
        assert f["trend_slope_20"].iloc[t - LOOKBACK] == pytest.approx(slope, rel=1e-9, abs=1e-12)
    unit = f[["rsi_14", "stoch_k_14", "close_loc_1"]].to_numpy()
    assert ((unit >= 0) & (unit <= 1)).all()
    assert (f["dist_high_60"] <= 0).all() and (f["vol_5"] >= 0).all()
    assert (f["signed_volume_20"].abs() <= 1).all()


def test_flat_bars_give_defined_values():
    n = 80
    flat = pd.DataFrame(
        {"date": pd.bdate_range("2020-01-01", periods=n), "open": 10.0, "high": 10.0, "low": 10.0,
         "close": 10.0, "volume": 0.0}
    )
    f = momentum_features(flat)
    assert np.isfinite(f.to_numpy()).all()
    assert (f["close_loc_1"] == 0.5).all() and (f["rsi_14"] == 0.5).all() and (f["ret_1"] == 0).all()


def test_feature_input_errors(bars):
    with pytest.raises(DataError, match="one symbol at a time"):
        momentum_features(pd.concat([bars.assign(symbol="A"), bars.assign(symbol="B")]))
    with pytest.raises(DataError, match="missing column"):
        momentum_features(bars.drop(columns="volume"))
    with pytest.raises(DataError, match="strictly increasing"):
        momentum_features(bars.iloc[::-1])
    bad = bars.copy()
    bad.loc[5, "close"] = 0.0
    with pytest.raises(DataError, match="close"):
        momentum_features(bad)


# --------------------------------------------------------------------------- causality


@settings(max_examples=40, deadline=None, derandomize=True)
@given(t=st.integers(min_value=0, max_value=399), seed=st.integers(0, 2**32 - 1))
def test_changing_bars_after_t_changes_no_feature_at_or_before_t(bars, full_features, t, seed):
    t = min(t, len(bars) - 2)
    changed = perturb_after(bars, t, np.random.default_rng(seed))
    again = momentum_features(changed, dropna=False).to_numpy()
    assert same_bits(again[: t + 1], full_features[: t + 1])
    if t + 1 >= LOOKBACK:  # the test is not vacuous: the future did change later features
        assert not same_bits(again[t + 1 :], full_features[t + 1 :])


def test_features_at_t_need_only_the_window(bars, full_features):
    """Truncating after t, or dropping all but the last 61 bars, leaves row t bit-identical."""
    rng = np.random.default_rng(7)
    for t in [LOOKBACK, LOOKBACK + 1, len(bars) - 1, *rng.integers(LOOKBACK, len(bars), 10)]:
        prefix = momentum_features(bars.iloc[: t + 1], dropna=False).to_numpy()
        assert same_bits(prefix, full_features[: t + 1]), t
        window = momentum_features(bars.iloc[t - LOOKBACK : t + 1]).to_numpy()
        assert window.shape == (1, 24)
        assert same_bits(window[0], full_features[t]), t


def test_the_bar_at_t_does_matter(bars, full_features):
    t = 300
    changed = bars.copy()
    changed.loc[t, ["close", "high"]] = changed.loc[t, "close"] * 1.01, changed.loc[t, "high"] * 1.01
    again = momentum_features(changed, dropna=False).to_numpy()
    assert same_bits(again[:t], full_features[:t])
    moved = [MOMENTUM_FEATURES[j] for j in np.flatnonzero(again[t] != full_features[t])]
    assert "ret_1" in moved and "sma_dist_10" in moved and "rsi_14" in moved


# --------------------------------------------------------------------------- labels


def test_labels_follow_their_definition(bars):
    h, k, w = 5, 0.5, 20
    lab = direction_labels(bars, horizon=h, threshold=k, vol_window=w)
    assert str(lab.dtype) == "Int64" and len(lab) == len(bars)
    assert lab.iloc[-h:].isna().all() and lab.iloc[:w].isna().all()
    assert lab.iloc[w : len(bars) - h].notna().all()
    c = bars["close"].to_numpy()
    r = np.diff(np.log(c))
    for t in range(w, len(bars) - h):
        fwd = np.log(c[t + h] / c[t])
        band = k * np.std(r[t - w : t], ddof=1) * np.sqrt(h)
        want = 2 if fwd > band * (1 + 1e-12) else 0 if fwd < -band * (1 + 1e-12) else 1
        if abs(abs(fwd) - band) > 1e-12:
            assert lab.iloc[t] == want, t
    assert set(lab.dropna().unique()) == {0, 1, 2}
    d = label_details(bars, h, k, w)
    assert list(d.columns) == ["fwd_return", "sigma", "band", "label"]


def test_labels_use_only_the_close_h_bars_later(bars):
    h = 5
    base = direction_labels(bars, horizon=h)
    rng = np.random.default_rng(3)
    for t in (30, 150, 333):
        # bars after t+h: no effect on labels at <= t
        later = direction_labels(perturb_after(bars, t + h, rng), horizon=h)
        pd.testing.assert_series_equal(later.iloc[: t + 1], base.iloc[: t + 1])
        # open/high/low/volume of any bar: no effect at all
        other = bars.copy()
        other["open"] = other["low"] = other["close"] * 0.9
        other["high"] = other["close"] * 1.1
        other["volume"] = 1.0
        pd.testing.assert_series_equal(direction_labels(other, horizon=h), base)
        # the close at t+h decides
        up, down = bars.copy(), bars.copy()
        up.loc[t + h, ["close", "high"]] = bars.loc[t, "close"] * 1.5
        down.loc[t + h, ["close", "low"]] = bars.loc[t, "close"] / 1.5
        assert direction_labels(up, horizon=h).iloc[t] == 2
        assert direction_labels(down, horizon=h).iloc[t] == 0
        # ...and the features at t never see it
        assert same_bits(momentum_features(up, dropna=False).to_numpy()[: t + 1],
                         momentum_features(bars, dropna=False).to_numpy()[: t + 1])


def test_label_argument_errors(bars):
    for kw in ({"horizon": 0}, {"horizon": 2.5}, {"threshold": -1}, {"threshold": float("nan")},
               {"vol_window": 1}):
        with pytest.raises(DataError):
            direction_labels(bars, **kw)


# --------------------------------------------------------------------------- dataset and split


@pytest.fixture(scope="module")
def ds(embedded):
    return make_dataset(embedded, preset="momentum", horizon=5)


def test_dataset_arrays(ds, embedded):
    n = len(ds)
    assert ds.X.shape == (n, 24) and ds.X.dtype == np.float32 and ds.X.flags.c_contiguous
    assert ds.y.dtype == np.int64 and set(np.unique(ds.y)) == {0, 1, 2}
    assert ds.feature_names == MOMENTUM_FEATURES and ds.label_names == ("down", "flat", "up")
    assert np.isfinite(ds.X).all()
    assert np.all(ds.dates[1:] >= ds.dates[:-1])  # chronological, never shuffled
    assert np.all(ds.label_end > ds.dates)
    want = sum(len(g) - LOOKBACK - ds.horizon for _, g in embedded.groupby("symbol"))
    assert n == want
    # a row is exactly the features and label of its (symbol, date)
    i = n // 2
    g = embedded[embedded["symbol"] == ds.symbols[i]]
    f = momentum_features(g)
    np.testing.assert_array_equal(ds.X[i], f.loc[ds.dates[i]].to_numpy(np.float32))
    assert ds.y[i] == direction_labels(g).loc[ds.dates[i]]
    counts = ds.class_counts()
    assert sum(counts.values()) == n and min(counts.values()) > 0.15 * n


@pytest.mark.parametrize("embargo", [None, 0, 12])
def test_split_is_chronological_with_embargo(ds, embargo):
    sp = ds.split(train=0.7, validation=0.15, embargo=embargo)
    train, val, test = sp
    gap = ds.horizon if embargo is None else embargo
    assert sp.embargo == gap
    for part in (train, val, test):
        assert len(part) > 0 and set(part.symbols) == set(ds.symbols)
    # ordered, non-overlapping date ranges, with the same cut dates for every symbol
    assert train.dates.max() < sp.validation_start <= val.dates.min()
    assert val.dates.max() < sp.test_start <= test.dates.min()
    assert not (set(train.dates) & set(val.dates)) and not (set(val.dates) & set(test.dates))
    # no label of an earlier part reads a bar of a later part
    assert train.label_end.max() < val.dates.min()
    assert val.label_end.max() < test.dates.min()
    # the embargo: `gap` trading dates (or more) between the parts
    days = np.unique(ds.dates)
    between = lambda lo, hi: int(((days > lo) & (days < hi)).sum())  # noqa: E731
    assert between(train.dates.max(), val.dates.min()) >= max(gap, ds.horizon)
    assert between(val.dates.max(), test.dates.min()) >= max(gap, ds.horizon)
    # about the requested fractions of rows; nothing else is lost
    assert abs(len(train) / len(ds) - 0.7) < 0.01 and abs(len(test) / len(ds) - 0.15) < 0.01
    lost = len(ds) - len(train) - len(val) - len(test)
    assert 0 < lost <= 2 * max(gap, ds.horizon) * len(set(ds.symbols))


def test_split_and_dataset_errors(ds, embedded):
    with pytest.raises(DataError, match="test part"):
        split_chronological(ds, train=0.8, validation=0.2)
    with pytest.raises(DataError, match="train"):
        ds.split(train=1.5)
    with pytest.raises(DataError, match="embargo"):
        ds.split(embargo=-1)
    tiny = ds.take(np.arange(30))
    with pytest.raises(DataError, match="too few dates"):
        tiny.split()
    short = embedded[embedded["symbol"] == "IBM"].iloc[: LOOKBACK + 5]
    with pytest.raises(DataError, match="no usable rows"):
        make_dataset(short)
    with pytest.raises(DataError, match="unknown preset"):
        make_dataset(embedded, preset="nope")
    one = make_dataset(embedded[embedded["symbol"] == "IBM"].drop(columns="symbol"), symbol="IBM")
    assert set(one.symbols) == {"IBM"} and one.X.shape[1] == 24


def test_five_class_labels_split_the_tails_at_twice_the_band():
    bars = load_embedded("SP500")
    d3 = label_details(bars, 5, 0.5, 20)
    d5 = label_details(bars, 5, 0.5, 20, classes=5)
    ok = d3["label"].notna().to_numpy()
    l3, l5 = d3["label"].to_numpy("int64", na_value=-1)[ok], d5["label"].to_numpy("int64", na_value=-1)[ok]
    fwd, band = d5["fwd_return"].to_numpy()[ok], d5["band"].to_numpy()[ok]
    assert set(np.unique(l5)) == {0, 1, 2, 3, 4}
    # the 5-class label refines the 3-class one, and the outer classes are beyond 2 bands
    assert np.array_equal(np.select([l5 <= 1, l5 == 2], [0, 1], 2), l3)
    assert np.all(fwd[l5 == 4] > 2 * band[l5 == 4]) and np.all(fwd[l5 == 0] < -2 * band[l5 == 0])
    ds = make_dataset(load_embedded(["SP500", "NASDAQ"]), preset="sentiment")
    assert ds.X.shape[1] == 48 and ds.label_names == ("strong_down", "down", "flat", "up", "strong_up")
    assert set(np.unique(ds.y)) <= set(range(5))
