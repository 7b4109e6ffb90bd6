"""pymicro.live.stream: the incremental features equal the batch pipeline; ticks -> signal.

The oracles are ``pymicro.market.technical.momentum_features`` and ``reversal_features(bars,
dropna=False)``: every row of every embedded symbol and of the E-mini tick bars, warm-up NaNs
included, must come out of the O(1) state.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import pymicro
from pymicro.errors import DataError, InputError
from pymicro.evaluation.backtest import positions_from_probabilities
from pymicro.live.stream import STREAM_FEATURES, STREAM_LOOKBACK, FeatureStream, NonTickInputsError, Pipeline
from pymicro.market.data import load_embedded
from pymicro.market.intraday import load_es_ticks, tick_bars
from pymicro.market.reasoning_features import SENTIMENT_FEATURES
from pymicro.market.technical import (MOMENTUM_FEATURES, MOMENTUM_LOOKBACK, REVERSAL_FEATURES, REVERSAL_LOOKBACK,
                                      momentum_features, reversal_features)

OHLCV = ["open", "high", "low", "close", "volume"]
RTOL, ATOL = 1e-6, 1e-12


@pytest.fixture(scope="module")
def bars():
    return load_embedded()


def _one(bars, symbol):
    return bars[bars.symbol == symbol].reset_index(drop=True)


def _assert_parity(got, ref):
    assert got.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))  # the warm-up, cell for cell
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL, equal_nan=True)


PRESETS = {"momentum": (MOMENTUM_FEATURES, momentum_features), "reversal": (REVERSAL_FEATURES, reversal_features)}


def test_the_stream_computes_momentum_then_the_rest_of_reversal():
    assert STREAM_FEATURES[:len(MOMENTUM_FEATURES)] == MOMENTUM_FEATURES
    assert set(REVERSAL_FEATURES) <= set(STREAM_FEATURES)
    assert len(STREAM_FEATURES) == len(set(MOMENTUM_FEATURES) | set(REVERSAL_FEATURES)) == 50
    assert STREAM_LOOKBACK == MOMENTUM_LOOKBACK == REVERSAL_LOOKBACK


@pytest.mark.parametrize("preset", PRESETS)
def test_every_row_of_every_embedded_symbol_equals_the_batch_pipeline(bars, preset):
    names, batch = PRESETS[preset]
    symbols = list(pd.unique(bars.symbol))
    assert len(symbols) >= 4
    for symbol in symbols:
        df = _one(bars, symbol)
        ref = batch(df, dropna=False).to_numpy()
        got = FeatureStream(names).update_many(df[OHLCV].to_numpy())
        _assert_parity(got, ref)
        assert np.isfinite(got[STREAM_LOOKBACK:]).all() and np.isnan(got[:STREAM_LOOKBACK]).any(axis=1).all()


@pytest.fixture(scope="module")
def es_bars():
    """The shipped E-mini ticks as 5-tick bars (100,000 of them: many flat closes and zero
    returns, prices on a 0.25 grid) and as 200-tick bars."""
    ticks = load_es_ticks()
    return {n: tick_bars(ticks, n) for n in (5, 200)}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_row_of_the_e_mini_tick_bars_equals_the_batch_pipeline(es_bars, preset):
    names, batch = PRESETS[preset]
    for n, frame in es_bars.items():
        ref = batch(frame, dropna=False).to_numpy()
        got = FeatureStream(names).update_many(frame[OHLCV].to_numpy())
        _assert_parity(got, ref)
    five = FeatureStream(["ret_1"]).update_many(es_bars[5][OHLCV].to_numpy())
    assert (five[1:] == 0).mean() > 0.2  # the flat stretches are really there


@pytest.mark.parametrize("preset", PRESETS)
def test_bar_by_bar_updates_equal_the_batch_rows(bars, preset):
    names, batch = PRESETS[preset]
    df = _one(bars, "IBM").iloc[:400]
    ref = batch(df, dropna=False).to_numpy()
    s = FeatureStream(names)
    got = np.array([s.update(*row) for row in df[OHLCV].itertuples(index=False)])
    _assert_parity(got, ref)
    assert s.bars == 400 and s.ready


def _degenerate(grid: bool):
    """Flat prices, zero ranges and zero volume: every "0 -> default" branch. grid: prices on
    a 0.25 grid (exact sums); otherwise arbitrary doubles, whose mean over a flat window can
    round one ulp off the price."""
    n = 300
    rng = np.random.default_rng(7)
    c = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    if grid:
        c = np.round(c * 4) / 4
    c[100:180] = c[99]  # a flat stretch: zero returns, RSI's 0/0, a zero std
    o = np.r_[c[0], c[:-1]]
    h, lo = np.maximum(o, c) * 1.001, np.minimum(o, c) * 0.999
    h[100:180] = lo[100:180] = o[100:180] = c[100:180]  # zero ranges: close_loc, stochastic
    v = rng.integers(0, 1000, n).astype(float)
    v[120:160] = 0.0  # zero volume: signed volume's 0/0
    return pd.DataFrame({"date": pd.date_range("2020-01-01", periods=n), "open": o, "high": h, "low": lo,
                         "close": c, "volume": v})


@pytest.mark.parametrize("grid", [False, True])
def test_degenerate_bars_take_the_reversal_default_branches(grid):
    df = _degenerate(grid)
    ref = reversal_features(df, dropna=False).to_numpy()
    got = FeatureStream(REVERSAL_FEATURES).update_many(df[OHLCV].to_numpy())
    _assert_parity(got, ref)
    row = dict(zip(REVERSAL_FEATURES, got[179]))  # 80 flat bars in
    assert row["zscore_close_10"] == row["zscore_close_50"] == 0.0 and row["bb_width_20"] == 0.0
    assert row["rsi_2"] == 0.5 and row["streak_10"] == 0.0 and row["down_frac_10"] == 0.0
    assert row["vol_ratio_5_60"] == 1.0 and row["autocorr_60"] == 0.0 and row["body_ratio_1"] == 0.0
    assert row["engulfing_1"] == 0.0 and row["stoch_k_5"] == 0.5 and row["range_pos_60"] == 0.5


def test_degenerate_bars_take_the_same_default_branches():
    """Flat prices, zero ranges and zero volume: every momentum "0 -> default" branch, exactly."""
    df = _degenerate(grid=False)
    ref = momentum_features(df, dropna=False).to_numpy()
    got = FeatureStream(MOMENTUM_FEATURES).update_many(df[OHLCV].to_numpy())
    _assert_parity(got, ref)
    i = MOMENTUM_FEATURES.index
    assert got[179, i("rsi_14")] == 0.5 and got[179, i("vol_20")] == 0.0 and got[159, i("signed_volume_20")] == 0.0


@pytest.mark.parametrize("preset", PRESETS)
def test_peek_is_the_row_the_bar_would_get_and_commits_nothing(bars, preset):
    names, batch = PRESETS[preset]
    df = _one(bars, "MSFT").iloc[:200]
    rows = df[OHLCV].to_numpy()
    ref = batch(df, dropna=False).to_numpy()
    s = FeatureStream(names)
    for t, row in enumerate(rows):
        forming = row * np.array([1.0, 1.02, 0.97, 1.01, 0.5])  # some other bar first
        s.peek(*forming)
        peeked = s.peek(*row)
        assert s.bars == t  # nothing committed
        committed = s.update(*row)
        np.testing.assert_array_equal(peeked, committed)
        _assert_parity(committed[None], ref[t:t + 1])


def test_a_subset_in_any_order_reads_the_same_columns(bars):
    df = _one(bars, "AAPL").iloc[:300]
    names = ["dist_high_60", "rsi_14", "ret_1", "stoch_k_14"]
    ref = momentum_features(df, dropna=False)[names].to_numpy()
    got = FeatureStream(names).update_many(df[OHLCV].to_numpy())
    _assert_parity(got, ref)
    mixed = ["autocorr_60", "ret_60", "stoch_d_14", "trend_slope_20", "engulfing_1"]  # both sets at once
    both = pd.concat([momentum_features(df, dropna=False), reversal_features(df, dropna=False)], axis=1)
    _assert_parity(FeatureStream(mixed).update_many(df[OHLCV].to_numpy()), both[mixed].to_numpy())


def test_reset_starts_a_new_history(bars):
    rows = _one(bars, "GOOG")[OHLCV].to_numpy()[:120]
    s = FeatureStream(MOMENTUM_FEATURES)
    first = s.update_many(rows)
    s.reset()
    assert s.bars == 0
    np.testing.assert_array_equal(s.update_many(rows), first)


@pytest.mark.parametrize("names, unknown", [
    (["ret_1", "zscore_ret_6"], "zscore_ret_6"),
    (["ret_1", "no_such_feature"], "It computes: ret_1, .*autocorr_60"),
    ([], "names no features"),
])
def test_names_it_cannot_compute_are_refused(names, unknown):
    with pytest.raises(DataError, match=unknown):
        FeatureStream(names)


@pytest.mark.parametrize("names, inputs", [
    (["ret_1", "news_tone_1"], ["news headlines"]),
    (["mkt_ret_5", "beta_60"], ["index bars"]),
    (["short_rate", "ret_1"], ["macro series"]),
    (list(SENTIMENT_FEATURES), ["news headlines", "index bars (S&P 500, NASDAQ) and macro series", "macro series"]),
])
def test_features_that_need_more_than_ticks_name_the_missing_inputs(names, inputs):
    with pytest.raises(NonTickInputsError) as e:
        FeatureStream(names)
    assert isinstance(e.value, DataError)
    assert all(any(i in have for have in e.value.inputs) for i in inputs), e.value.inputs
    assert set(e.value.features) == {n for n in names if n not in STREAM_FEATURES}
    assert "tick stream does not carry" in str(e.value)


def test_bad_bars_are_refused():
    s = FeatureStream(["ret_1"])
    with pytest.raises(InputError, match="prices > 0"):
        s.update(1.0, 1.0, -1.0, 1.0, 5.0)
    with pytest.raises(InputError, match="volume"):
        s.peek(1.0, 1.0, 1.0, 1.0, float("nan"))
    with pytest.raises(InputError, match=r"\(n, 5\)"):
        s.update_many(np.ones((3, 4)))
    assert s.bars == 0


# --------------------------------------------------------------------------- the pipeline


def _network(feature_names, rows):
    spec = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(feature_names))
    net = spec.init(seed=3)
    net.mean = np.nanmean(rows, axis=0).astype(np.float32)
    net.std = np.nanstd(rows, axis=0).astype(np.float32)
    return net


@pytest.fixture(scope="module")
def momentum_blob(bars):
    ref = momentum_features(_one(bars, "SP500"), dropna=True).to_numpy()
    return pymicro.freeze(_network(MOMENTUM_FEATURES, ref))


@pytest.fixture(scope="module")
def reversal_blob(bars):
    ref = reversal_features(_one(bars, "SP500"), dropna=True).to_numpy()
    spec = dataclasses.replace(pymicro.preset("reversal"), feature_names=REVERSAL_FEATURES)
    net = spec.init(seed=4)
    net.mean = np.nanmean(ref, axis=0).astype(np.float32)
    net.std = np.nanstd(ref, axis=0).astype(np.float32)
    return pymicro.freeze(net)


def test_a_blob_names_what_the_stream_computes(momentum_blob, reversal_blob):
    assert FeatureStream.for_model(momentum_blob).names == MOMENTUM_FEATURES
    assert FeatureStream.for_model(reversal_blob).names == REVERSAL_FEATURES
    assert Pipeline(reversal_blob).feature_names == REVERSAL_FEATURES
    sentiment = pymicro.freeze(dataclasses.replace(pymicro.preset("sentiment"),
                                                   feature_names=SENTIMENT_FEATURES).init(seed=0))
    with pytest.raises(NonTickInputsError, match="news headlines.*macro series") as e:
        Pipeline(sentiment)
    assert "the model's blob" in str(e.value) and "fear_greed_index" in e.value.features
    with pytest.raises(DataError, match="names no features"):
        Pipeline(pymicro.freeze(pymicro.preset("momentum").init(seed=0)))


@pytest.mark.parametrize("preset", PRESETS)
def test_on_bar_equals_batch_features_then_predict_then_positions(bars, momentum_blob, reversal_blob, preset):
    df = _one(bars, "AAPL")
    blob = momentum_blob if preset == "momentum" else reversal_blob
    model = pymicro.load(blob)
    X = PRESETS[preset][1](df, dropna=False).to_numpy()
    want_p = np.full((len(df), 3), np.nan, np.float32)
    want_p[STREAM_LOOKBACK:] = model.predict(X[STREAM_LOOKBACK:].astype(np.float32))
    want_pos = np.zeros(len(df))
    want_pos[STREAM_LOOKBACK:] = positions_from_probabilities(want_p[STREAM_LOOKBACK:], threshold=0.4)

    pipe = Pipeline(model, threshold=0.4)
    got = np.array([pipe.on_bar(*row) for row in df[OHLCV].itertuples(index=False)])
    assert pipe.ready and pipe.bars == len(df)
    np.testing.assert_array_equal(got, want_pos)
    assert len(set(want_pos)) == 3  # the test sees long, flat and short decisions
    np.testing.assert_allclose(pipe.probabilities, want_p[-1], rtol=1e-5)

    replay = Pipeline(blob, threshold=0.4)
    pos, probs = replay.replay_bars(df[OHLCV].to_numpy())
    np.testing.assert_array_equal(pos, want_pos)
    np.testing.assert_allclose(probs, want_p, rtol=1e-5, atol=1e-7, equal_nan=True)


def _ticks(n, seed=0):
    rng = np.random.default_rng(seed)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 5e-4, n)))
    size = rng.integers(1, 50, n).astype(float)
    ts = np.cumsum(rng.exponential(0.5, n))
    return price, size, ts


def _bars_of(price, size, group):
    """OHLCV rows of ticks grouped by consecutive equal `group` values (pandas, the oracle)."""
    df = pd.DataFrame({"p": price, "s": size, "g": group})
    g = df.groupby("g", sort=True)
    return np.column_stack([g.p.first(), g.p.max(), g.p.min(), g.p.last(), g.s.sum()])


@pytest.mark.parametrize("bar, bar_size", [("tick", 25), ("time", 10.0), ("volume", 500.0)])
def test_ticks_make_the_bars_a_batch_grouping_makes(momentum_blob, bar, bar_size):
    price, size, ts = _ticks(6000)
    pipe = Pipeline(momentum_blob, bar=bar, bar_size=bar_size, threshold=0.0)
    positions = np.array([pipe.on_tick(p, s, t) for p, s, t in zip(price, size, ts)])
    if bar == "tick":
        group = np.arange(len(price)) // bar_size
    elif bar == "time":
        group = np.floor(ts / bar_size)
    else:  # a bar closes on the tick that takes its volume to bar_size
        group, acc, g = np.empty(len(price)), 0.0, 0
        for i, s in enumerate(size):
            group[i] = g
            acc += s
            if acc >= bar_size:
                g, acc = g + 1, 0.0
    ohlcv = _bars_of(price, size, group)
    pipe.flush()
    assert pipe.bars == len(ohlcv) > 2 * MOMENTUM_LOOKBACK
    want = FeatureStream(MOMENTUM_FEATURES).update_many(ohlcv)[-1]
    np.testing.assert_allclose(pipe.features, want, rtol=RTOL, atol=ATOL)

    again = Pipeline(momentum_blob, bar=bar, bar_size=bar_size, threshold=0.0)
    pos, probs = again.replay_ticks(price, size, ts)
    np.testing.assert_array_equal(pos, positions)  # the C++ loop is the Python loop
    assert np.isnan(probs[0]).all() and np.isfinite(probs[-1]).all()
    assert (pos[:100] == 0).all() and (pos != 0).any()


def test_a_tick_decides_on_the_forming_bar(momentum_blob, bars):
    rows = _one(bars, "SP500")[OHLCV].to_numpy()[:200]
    pipe = Pipeline(momentum_blob, bar="tick", bar_size=3)
    for o, h, lo, c, v in rows[:-1]:  # each bar as three ticks: open, the extreme, close
        for p in (o, h, c):
            pipe.on_tick(p, v / 3, 0.0)
    stream = FeatureStream(MOMENTUM_FEATURES)
    stream.update_many(np.column_stack([rows[:-1, 0], rows[:-1, 1], np.minimum(rows[:-1, 0], rows[:-1, 3]),
                                        rows[:-1, 3], rows[:-1, 4]]))
    o = rows[-1, 0]
    pipe.on_tick(o, 10.0, 0.0)  # a forming bar of one tick
    np.testing.assert_allclose(pipe.features, stream.peek(o, o, o, o, 10.0), rtol=RTOL, atol=ATOL)
    assert pipe.bars == 199 and pipe.signal().bars == 199


def test_bad_ticks_are_refused(momentum_blob):
    pipe = Pipeline(momentum_blob, bar="time", bar_size=1.0)
    pipe.on_tick(100.0, 1.0, 10.0)
    with pytest.raises(InputError, match="must not decrease"):
        pipe.on_tick(100.0, 1.0, 9.0)
    with pytest.raises(InputError, match="price > 0"):
        pipe.on_tick(-1.0, 1.0, 11.0)
    with pytest.raises(InputError, match="bar must be"):
        Pipeline(momentum_blob, bar="renko")
    with pytest.raises(InputError, match="whole number"):
        Pipeline(momentum_blob, bar="tick", bar_size=2.5)
    with pytest.raises(ValueError, match="read-only"):
        pipe.probabilities[0] = 1.0


def test_cli_live_replays_ticks_from_a_csv(momentum_blob, tmp_path, capsys):
    from pymicro.cli import main

    blob = tmp_path / "m.pmb"
    blob.write_bytes(momentum_blob)
    price, size, ts = _ticks(3000)
    src = tmp_path / "ticks.csv"
    pd.DataFrame({"ts": pd.to_datetime(ts, unit="s"), "price": price, "volume": size}).to_csv(src, index=False)
    out = tmp_path / "signals.csv"
    assert main(["live", str(blob), "--source", str(src), "--bar", "tick", "--bar-size", "20",
                 "--threshold", "0", "--out", str(out)]) == 0
    assert "position changes" in capsys.readouterr().out
    got = pd.read_csv(out)
    want, _ = Pipeline(momentum_blob, bar="tick", bar_size=20, threshold=0.0).replay_ticks(price, size, ts)
    assert len(got) == 3000
    np.testing.assert_array_equal(got.position.to_numpy(), want)
    assert main(["live", str(blob), "--source", "redis://localhost:6379/ticks"]) == 2


# --------------------------------------------------------------------------- the same state in pymicro.wasm


@pytest.mark.parametrize("preset", PRESETS)
def test_the_wasm_module_streams_the_same_rows(bars, momentum_blob, reversal_blob, preset):
    """pymicro.wasm compiles the same header: its pm_stream_* exports give the batch rows too
    (to 1e-6, like the native state; measured within a few 1e-17 of the native rows), peek
    commits nothing there either, and the blob runs on the row inside the module."""
    from pymicro.live.stream import WasmFeatureStream

    names, batch = PRESETS[preset]
    blob = momentum_blob if preset == "momentum" else reversal_blob
    df = _one(bars, "NASDAQ").iloc[:700]
    rows = df[OHLCV].to_numpy()
    w = WasmFeatureStream(blob)
    assert w.names == names
    got = w.update_many(rows[:-1])
    forming = rows[-1] * np.array([1.0, 1.01, 0.99, 1.0, 0.5])
    peeked = w.peek(*forming)
    assert w.bars == len(rows) - 1
    got = np.vstack([got, w.update(*rows[-1])])
    _assert_parity(got, batch(df, dropna=False).to_numpy())
    native = FeatureStream(names)
    native_rows = native.update_many(rows)
    np.testing.assert_allclose(got, native_rows, rtol=1e-12, atol=1e-15, equal_nan=True)
    np.testing.assert_allclose(peeked, FeatureStream(names).update_many(np.vstack([rows[:-1], forming]))[-1],
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(w.probabilities(), pymicro.load(blob).predict(got[-1].astype(np.float32)),
                               rtol=1e-6)
    with pytest.raises(InputError, match="prices > 0"):
        w.update(1.0, 1.0, -1.0, 1.0, 1.0)
    assert w.bars == len(rows)


def test_the_wasm_stream_refuses_what_the_native_one_refuses():
    from pymicro.live.stream import WasmFeatureStream

    sentiment = pymicro.freeze(dataclasses.replace(pymicro.preset("sentiment"),
                                                   feature_names=SENTIMENT_FEATURES).init(seed=0))
    with pytest.raises(NonTickInputsError, match="news headlines"):
        WasmFeatureStream(sentiment)
    with pytest.raises(DataError, match="names no features"):
        WasmFeatureStream(pymicro.freeze(pymicro.preset("momentum").init(seed=0)))
