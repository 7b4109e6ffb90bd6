"""Intraday data shipped offline, ticks -> bars, and figures on any bar frequency."""

import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest

import pymicro
from pymicro import metrics as M
from pymicro.errors import DataError, EvaluationError
from pymicro.evaluation.backtest import momentum_positions, run_backtest
from pymicro.live.stream import FeatureStream, Pipeline
from pymicro.market import datasets
from pymicro.market.intraday import (load_es_ticks, load_eurusd_hourly, session_seconds, tick_bars, time_bars,
                                     volume_bars)
from pymicro.market.labels import direction_labels
from pymicro.market.technical import MOMENTUM_FEATURES, momentum_features


@pytest.fixture(scope="module")
def ticks():
    return load_es_ticks()


def test_the_shipped_files_are_the_originals_with_their_notice():
    notice = datasets.path("NOTICE.txt").read_text()
    for name in datasets.INTRADAY_FILES:
        meta = datasets.FILES[name]
        raw = datasets.path(name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == meta.sha256
        original = meta.origin_path.split("sha256 ")[1].rstrip(")")
        assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == original  # byte-for-byte inside
        assert name in notice and meta.package in notice
    assert notice.count("MIT License") >= 2 and "Robert Bach" in notice and "Haghpanah" in notice


def test_es_ticks(ticks):
    assert len(ticks) == 500_000 and list(ticks.columns) == ["ts", "price", "volume"]
    assert ticks.ts.is_monotonic_increasing and (ticks.price > 1500).all() and (ticks.volume >= 1).all()
    assert str(ticks.ts.iloc[0]) == "2013-09-01 17:00:00.083000"


def test_eurusd_hourly_is_valid_for_the_feature_code():
    fx = load_eurusd_hourly()
    assert len(fx) == 6225 and fx.date.is_monotonic_increasing
    assert 6000 < M.periods_per_year_of(fx.date) < 6500  # 24 h x 5 days x ~52 weeks
    f = momentum_features(fx)
    assert np.isfinite(f.to_numpy()).all() and len(f) == len(fx) - 60


@pytest.mark.parametrize("make, arg", [(tick_bars, 500), (volume_bars, 2000.0), (time_bars, 300.0)])
def test_bars_conserve_the_ticks(ticks, make, arg):
    bars = make(ticks, arg)
    assert bars.volume.sum() == ticks.volume.sum() and bars.ticks.sum() == len(ticks)
    assert bars.date.is_monotonic_increasing and bars.date.is_unique
    assert (bars.high >= bars[["open", "close"]].max(axis=1)).all() and (bars.low <= bars[["open", "close"]].min(axis=1)).all()
    assert bars.open.iloc[0] == ticks.price.iloc[0] and bars.close.iloc[-1] == ticks.price.iloc[-1]
    if make is volume_bars:
        assert (bars.volume.iloc[:-1] >= arg).all()
    if make is tick_bars:
        assert (bars.ticks.iloc[:-1] == arg).all()


@pytest.mark.parametrize("bar, arg, make", [("volume", 2000.0, volume_bars), ("time", 300.0, time_bars),
                                            ("tick", 500, tick_bars)])
def test_the_live_pipeline_sees_the_offline_bars(ticks, bar, arg, make):
    spec = pymicro.preset("momentum")
    import dataclasses
    blob = pymicro.freeze(dataclasses.replace(spec, feature_names=MOMENTUM_FEATURES).init(seed=1))
    part = ticks.iloc[:120_000]
    pipe = Pipeline(blob, bar=bar, bar_size=arg)
    pipe.replay_ticks(part.price.to_numpy(), part.volume.to_numpy(), session_seconds(part))
    pipe.flush()
    bars = make(part, arg)
    assert pipe.bars == len(bars) > 60
    want = FeatureStream(MOMENTUM_FEATURES).update_many(bars[["open", "high", "low", "close", "volume"]].to_numpy())
    np.testing.assert_allclose(pipe.features, want[-1], rtol=1e-9)


def test_labels_and_sharpe_on_intraday_bars(ticks):
    bars = volume_bars(ticks, 2000.0).assign(symbol="ES")
    labels = direction_labels(bars, horizon=10, vol_window=20)
    assert labels.notna().sum() == len(bars) - 10 - 20 and set(labels.dropna().unique()) == {0, 1, 2}
    P = M.periods_per_year_of(bars.date)
    day_bars = (len(bars) - 1) / ((bars.date.iloc[-1] - bars.date.iloc[0]) / pd.Timedelta(days=1))
    assert P == pytest.approx(day_bars * 365.25, rel=1e-3)
    close = bars.close.to_numpy()
    res = run_backtest(close, momentum_positions(close, 20), cost_bps=0.5, slippage_bps=0.0, periods_per_year=P)
    r = res.returns
    assert res.metrics["sharpe"] == pytest.approx(M.sharpe(r, P))
    assert M.sharpe(r, P) == pytest.approx(M.sharpe(r, 252) * np.sqrt(P / 252))  # the annualisation is the bars'


def test_bad_inputs():
    with pytest.raises(EvaluationError, match="two increasing"):
        M.periods_per_year_of(pd.to_datetime(["2020-01-01"]))
    t = pd.DataFrame({"ts": pd.to_datetime(["2020-01-01 10:00", "2020-01-01 09:00"]), "price": [1.0, 1.0],
                      "volume": [1.0, 1.0]})
    with pytest.raises(DataError, match="must not decrease"):
        tick_bars(t, 2)
    with pytest.raises(DataError, match="positive int"):
        tick_bars(t.iloc[:1], 0)
