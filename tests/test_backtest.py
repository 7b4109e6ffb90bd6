"""pymicro.evaluation.backtest: signal timing, costs, baselines, walk-forward windows and embargo.

The walk-forward tests use a stand-in model (nearest class mean, written below in
numpy) so they run in milliseconds; one test runs the real tinygrad trainer.
"""

import argparse
import math

import numpy as np
import pandas as pd
import pytest

import pymicro
from pymicro.cli.backtest import add_parser
from pymicro.evaluation.backtest import (
    LabelledSeries,
    momentum_positions,
    plot_equity,
    positions_from_probabilities,
    run_backtest,
    tinygrad_fit,
    walk_forward,
)
from pymicro.errors import EvaluationError

# closes 100 -> 110 -> 99 -> 99 -> 108.9: bar returns +10 %, -10 %, 0 %, +10 %
CLOSE = np.array([100.0, 110.0, 99.0, 99.0, 108.9])
BAR_R = np.array([np.nan, 0.1, -0.1, 0.0, 0.1])


def reference_backtest(close, positions, bps):
    """The backtest written as a plain loop over periods, for comparison."""
    out, prev = [], 0.0
    for t in range(1, len(close)):
        held = positions[t - 1]  # decided at close t-1
        out.append(held * (close[t] / close[t - 1] - 1) - abs(held - prev) * bps / 1e4)
        prev = held
    return np.array(out)


# --------------------------------------------------------------------------- positions

def test_positions_from_probabilities():
    probs = np.array([
        [0.2, 0.2, 0.6],    # up is the largest and >= 0.5: long
        [0.6, 0.2, 0.2],    # down: short
        [0.45, 0.1, 0.45],  # tie between down and up: flat
        [0.3, 0.4, 0.3],    # flat is the largest: flat
        [0.1, 0.4, 0.5],    # exactly at the threshold: long
        [0.35, 0.2, 0.45],  # largest but below the threshold: flat
    ])
    assert positions_from_probabilities(probs, 0.5).tolist() == [1, -1, 0, 0, 1, 0]
    assert positions_from_probabilities(probs, 0.5, long_only=True).tolist() == [1, 0, 0, 0, 1, 0]
    assert positions_from_probabilities(probs, 0.0).tolist() == [1, -1, 0, 0, 1, 1]
    assert positions_from_probabilities([0.1, 0.1, 0.8], 0.5).tolist() == [1]
    five = [[0.1, 0.6, 0.1, 0.1, 0.1]]
    assert positions_from_probabilities(five, 0.5, class_positions=(-1, -0.5, 0, 0.5, 1)).tolist() == [-0.5]
    with pytest.raises(EvaluationError, match="class_positions"):
        positions_from_probabilities(five, 0.5)
    with pytest.raises(EvaluationError, match=r"probs\[0, 1\] is nan"):
        positions_from_probabilities([[0.5, np.nan, 0.5]], 0.5)


def test_momentum_rule_is_causal():
    close = np.array([10.0, 11, 12, 11, 10, 10, 12])
    # lookback 2: sign(C[t] / C[t-2] - 1) from t = 2 on
    assert momentum_positions(close, 2).tolist() == [0, 0, 1, 0, -1, -1, 1]
    assert momentum_positions(close, 2, long_only=True).tolist() == [0, 0, 1, 0, 0, 0, 1]
    # changing a later close never changes an earlier position
    later = close.copy()
    later[5:] = [50.0, 1.0]
    assert (momentum_positions(later, 2)[:5] == momentum_positions(close, 2)[:5]).all()


# --------------------------------------------------------------------------- timing

def test_perfect_foresight_position_earns_the_next_bar():
    # position at t = sign of the FUTURE return (t -> t+1): it must earn |r| every period
    foresight = np.r_[np.sign(BAR_R[1:]), 0.0]  # [1, -1, 0, 1, 0]
    res = run_backtest(CLOSE, foresight, 0.0, 0.0)
    assert res.returns == pytest.approx([0.1, 0.1, 0.0, 0.1], abs=1e-12)
    assert res.metrics["total_return"] == pytest.approx(1.1 ** 3 - 1, abs=1e-12)


def test_position_never_earns_its_own_bar():
    # position at t = sign of bar t's own return (known at close t): earns r[t+1], not r[t]
    own = np.r_[0.0, np.sign(BAR_R[1:])]  # [0, 1, -1, 0, 1]
    res = run_backtest(CLOSE, own, 0.0, 0.0)
    # periods end at bars 1..4: 0 * 0.1, 1 * -0.1, -1 * 0.0, 0 * 0.1
    assert res.returns == pytest.approx([0.0, -0.1, 0.0, 0.0], abs=1e-12)
    # one position at one bar j: only the period ending at bar j + 1 moves, by r[j + 1]
    rng = np.random.default_rng(1)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, 50))
    r = close[1:] / close[:-1] - 1  # r[k] ends at bar k + 1
    for j in (0, 7, 48):
        pos = np.zeros(50)
        pos[j] = 1.0
        gross = run_backtest(close, pos, 0.0, 0.0).strategy.gross_returns
        assert np.flatnonzero(gross).tolist() == [j]
        assert gross[j] == r[j]  # the return from close j to close j + 1
    # the last bar's position has nowhere to earn: no effect at all
    pos = np.zeros(50)
    pos[-1] = 1.0
    assert (run_backtest(close, pos, 5.0, 5.0).returns == 0).all()


def test_dates_and_lengths():
    dates = np.arange("2020-01-01", "2020-01-06", dtype="datetime64[D]")
    res = run_backtest(CLOSE, np.ones(5), 0.0, 0.0, dates=dates)
    assert res.start == dates[0]
    assert (res.dates == dates[1:]).all()
    assert len(res.returns) == len(res.equity) == len(res.positions) == 4
    assert res.equity[-1] == pytest.approx(1.1 * 0.9 * 1.0 * 1.1)
    # plain lists work (their .index is a method, not dates); a pandas Series lends its index
    assert (run_backtest(CLOSE.tolist(), [1] * 5, 0.0, 0.0).dates == np.arange(1, 5)).all()
    series = pd.Series(CLOSE, index=pd.DatetimeIndex(dates))
    assert (run_backtest(series, np.ones(5), 0.0, 0.0).dates == dates[1:]).all()


def test_returns_input_matches_prices_input():
    rng = np.random.default_rng(2)
    close = 50 * np.cumprod(1 + rng.normal(0, 0.02, 300))
    pos = np.sign(rng.normal(size=300))
    r = np.r_[np.nan, close[1:] / close[:-1] - 1]
    a = run_backtest(close, pos, 2.0, 1.0, majority_class=2)
    b = run_backtest(r, pos, 2.0, 1.0, kind="returns", majority_class=2)
    for la, lb in zip(a.legs(), b.legs()):
        assert la.name == lb.name
        np.testing.assert_allclose(la.returns, lb.returns, rtol=0, atol=1e-12)


def test_matches_a_plain_loop_on_ten_years():
    rng = np.random.default_rng(3)
    n = 2520
    close = 100 * np.cumprod(1 + rng.normal(0.0003, 0.012, n))
    pos = rng.choice([-1.0, 0.0, 0.5, 1.0], size=n)
    res = run_backtest(close, pos, 3.0, 2.0)
    np.testing.assert_allclose(res.returns, reference_backtest(close, pos, 5.0), rtol=0, atol=1e-15)
    assert res.metrics["periods"] == n - 1


# --------------------------------------------------------------------------- costs

def test_costs_by_hand():
    pos = np.array([0.0, 1.0, 1.0, -1.0, 0.0])
    res = run_backtest(CLOSE, pos, 3.0, 2.0)  # 5 bps per unit traded
    # held [0, 1, 1, -1]: traded 0, 1, 0, 2 -> costs 0, 5 bps, 0, 10 bps
    assert res.strategy.costs == pytest.approx([0.0, 0.0005, 0.0, 0.0010], abs=1e-18)
    # gross: 0 * 0.1, 1 * -0.1, 1 * 0.0, -1 * 0.1
    assert res.strategy.gross_returns == pytest.approx([0.0, -0.1, 0.0, -0.1], abs=1e-15)
    assert res.returns == pytest.approx([0.0, -0.1005, 0.0, -0.101], abs=1e-15)


def test_costs_reduce_returns_by_exactly_turnover_times_bps():
    rng = np.random.default_rng(4)
    n = 1000
    close = 20 * np.cumprod(1 + rng.normal(0, 0.01, n))
    pos = rng.choice([-1.0, 0.0, 1.0], size=n)
    free = run_backtest(close, pos, 0.0, 0.0)
    for cost_bps, slip_bps in ((1.0, 0.0), (0.0, 1.0), (2.5, 4.0)):
        paid = run_backtest(close, pos, cost_bps, slip_bps)
        rate = (cost_bps + slip_bps) / 1e4
        for leg_free, leg_paid in zip(free.legs(), paid.legs()):
            traded = np.abs(np.diff(leg_paid.positions, prepend=0.0))
            # period by period: gross minus |change in position| x bps
            np.testing.assert_allclose(leg_free.returns - leg_paid.returns, traded * rate, rtol=0, atol=1e-16)
            # in total: the turnover metric x bps
            assert (leg_free.returns - leg_paid.returns).sum() == pytest.approx(
                leg_paid.metrics["turnover"] * rate, rel=1e-12)
            assert leg_paid.metrics["turnover"] == leg_free.metrics["turnover"]


def test_buy_and_hold_pays_one_entry():
    res = run_backtest(CLOSE, np.zeros(5), 10.0, 0.0)
    bh = res.baselines["buy_and_hold"]
    assert bh.costs.tolist() == [0.001, 0.0, 0.0, 0.0]
    assert bh.returns == pytest.approx([0.099, -0.1, 0.0, 0.1], abs=1e-15)
    assert bh.metrics["turnover"] == 1.0
    # a strategy that never trades pays nothing and earns nothing
    assert res.metrics["total_return"] == 0.0 and res.metrics["turnover"] == 0.0


# --------------------------------------------------------------------------- baselines

def test_baselines_are_on_the_same_dates_and_net_of_the_same_costs():
    rng = np.random.default_rng(5)
    n = 300
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    dates = np.arange(n) + 1000
    res = run_backtest(close, np.sign(rng.normal(size=n)), 1.0, 1.0, dates=dates, majority_class=0,
                       momentum_lookback=20)
    assert list(res.baselines) == ["buy_and_hold", "majority_class", "momentum"]
    for leg in res.baselines.values():
        assert len(leg.returns) == len(res.dates) == n - 1
        np.testing.assert_allclose(leg.returns, reference_backtest(close, np.r_[leg.positions, 0.0], 2.0),
                                   atol=1e-15)
    # majority class 0 = down: short throughout (flat when long-only)
    assert (res.baselines["majority_class"].positions == -1).all()
    long_only = run_backtest(close, np.zeros(n), 1.0, 1.0, majority_class=0, long_only=True)
    assert (long_only.baselines["majority_class"].positions == 0).all()
    assert (long_only.baselines["momentum"].positions >= 0).all()
    # momentum: the rule on the same closes, held from the next bar
    assert (res.baselines["momentum"].positions == momentum_positions(close, 20)[:-1]).all()


def test_majority_baseline_needs_a_class():
    res = run_backtest(CLOSE, np.zeros(5), 0.0, 0.0)
    assert "majority_class" not in res.baselines
    assert any("majority-class" in note for note in res.notes)


def test_summary_and_dict():
    res = run_backtest(CLOSE, [0, 1, 1, -1, 0], 1.0, 1.0, majority_class=2)
    text = res.summary()
    for word in ("strategy", "buy_and_hold", "majority_class", "momentum", "Sharpe", "1 + slippage 1 bps"):
        assert word in text
    d = res.to_dict()
    assert set(d["metrics"]) == {"strategy", "buy_and_hold", "majority_class", "momentum"}
    assert d["periods"] == 4


def test_to_dict_is_strict_json():
    import json

    steady = 100 * 1.01 ** np.arange(30)  # buy-and-hold: +1 % every period, no volatility
    dates = np.datetime64("2021-03-01") + np.arange(30)
    res = run_backtest(steady, np.zeros(30), 0.0, 0.0, dates=dates)
    assert res.baselines["buy_and_hold"].metrics["sharpe"] == math.inf
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["metrics"]["buy_and_hold"]["sharpe"] == "inf"
    assert d["start"] == "2021-03-01" and d["end"] == "2021-03-30"


@pytest.mark.parametrize("kwargs, match", [
    (dict(data=CLOSE, positions=np.ones(4)), r"positions has shape \(4,\)"),
    (dict(data=CLOSE, positions=[0, 1, np.nan, 0, 0]), r"positions\[2\] is nan"),
    (dict(data=[100.0, -1.0, 2.0], positions=np.ones(3)), r"prices\[1\] is -1"),
    (dict(data=CLOSE[:1], positions=np.ones(1)), "at least 2 bars"),
    (dict(data=CLOSE, positions=np.ones(5), cost_bps=-1.0), "cost_bps"),
    (dict(data=CLOSE, positions=np.ones(5), kind="logs"), "kind"),
    (dict(data=[np.nan, 0.1, np.inf], positions=np.ones(3), kind="returns"), r"returns\[2\]"),
])
def test_bad_input(kwargs, match):
    kwargs = {"cost_bps": 0.0, "slippage_bps": 0.0, **kwargs}
    with pytest.raises(EvaluationError, match=match):
        run_backtest(**kwargs)


# --------------------------------------------------------------------------- walk-forward

def nearest_mean_fit(X, y):
    """A stand-in model: class probabilities from distances to each class's mean row."""
    sd = X.std(axis=0) + 1e-9
    means = np.stack([X[y == c].mean(axis=0) if (y == c).any() else np.full(X.shape[1], 1e9)
                      for c in range(3)])

    def predict_proba(Xt):
        d = (((Xt[:, None, :] - means[None]) / sd) ** 2).sum(axis=2)
        z = -d + d.min(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    return predict_proba


class RecordingFit:
    """A fit that records which bars it trained on (column 0 of X holds the bar index) and
    hands the other columns to the stand-in model."""

    def __init__(self):
        self.seen = []

    def __call__(self, X, y):
        self.seen.append(X[:, 0].astype(int).copy())
        predict = nearest_mean_fit(X[:, 1:], y)
        return lambda Xt: predict(Xt[:, 1:])


def synthetic_series(n=400, h=3, warmup=10, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 * np.cumprod(1 + rng.normal(0.0002, 0.01, n))
    fwd = np.full(n, np.nan)
    fwd[:-h] = close[h:] / close[:-h] - 1
    y = np.where(np.isnan(fwd), -1, np.where(fwd > 0.004, 2, np.where(fwd < -0.004, 0, 1)))
    trailing = np.full(n, np.nan)
    trailing[5:] = close[5:] / close[:-5] - 1
    X = np.column_stack([np.arange(n), trailing, rng.normal(size=n)])
    X[:warmup] = np.nan
    return LabelledSeries(np.arange(n), close, X, y, h)


@pytest.mark.parametrize("mode", ["expanding", "rolling"])
def test_walk_forward_never_trains_on_the_test_block_or_its_embargo(mode):
    series = synthetic_series()
    h, W, step = series.horizon, 100, 40
    fit = RecordingFit()
    res = walk_forward(series, fit=fit, train_window=W, step=step, mode=mode, threshold=0.0,
                       cost_bps=1.0, slippage_bps=1.0)
    first = 10  # the first row with features and a label
    s0 = first + W + h
    starts = [w["test_start"] for w in res.windows]
    assert starts == list(range(s0, 400, step))
    assert len(fit.seen) == len(starts)
    for s, seen, w in zip(starts, fit.seen, res.windows):
        # embargo: every training row's label (bars i+1..i+h) ends before the block starts
        assert seen.max() < s - h
        assert seen.max() + h < s
        assert w["train_end"] == seen.max() and w["train_rows"] == seen.size
        if mode == "rolling":
            assert seen.min() == s - h - W and seen.size == W
        else:
            assert seen.min() == first and seen.size == s - h - first
    # out-of-sample only: the backtest starts at the first block
    assert res.start == s0 and (res.dates == np.arange(s0 + 1, 400)).all()
    assert all(len(leg.returns) == 400 - s0 - 1 for leg in res.legs())


def test_walk_forward_positions_come_from_each_blocks_own_model():
    series = synthetic_series(seed=1)
    calls = []

    def constant_model(X, y):
        k = len(calls)
        calls.append(k)
        # block k predicts "up" when k is even, "down" when odd
        p = np.array([0.0, 0.1, 0.9]) if k % 2 == 0 else np.array([0.9, 0.1, 0.0])
        return lambda Xt: np.tile(p, (len(Xt), 1))

    res = walk_forward(series, fit=constant_model, train_window=100, step=50, threshold=0.5,
                       cost_bps=0.0, slippage_bps=0.0)
    s0 = res.windows[0]["test_start"]
    held = res.positions  # held[k] was decided at bar s0 + k
    for k, w in enumerate(res.windows):
        block = slice(w["test_start"] - s0, w["test_end"] - s0 + 1)
        expected = 1.0 if k % 2 == 0 else -1.0
        assert (held[block] == expected).all()
    # majority baseline: the training majority of each block, mapped to a position
    maj = res.baselines["majority_class"].positions
    for w in res.windows:
        i = w["test_start"] - s0
        assert maj[i] == {0: -1.0, 1: 0.0, 2: 1.0}[w["majority_class"]]
    c = res.classification
    assert c is not None and 0 <= c["accuracy"] <= 1
    assert c["n"] == int(((np.arange(400) >= s0) & (series.y >= 0)).sum())


def test_walk_forward_long_only_and_bad_windows():
    series = synthetic_series(seed=2)
    res = walk_forward(series, fit=nearest_mean_fit, train_window=100, step=50, long_only=True,
                       threshold=0.0)
    assert (res.positions >= 0).all()
    for leg in res.baselines.values():
        assert (leg.positions >= 0).all()
    with pytest.raises(EvaluationError, match="too few"):
        walk_forward(series, fit=nearest_mean_fit, train_window=390, step=10)
    with pytest.raises(EvaluationError, match="mode"):
        walk_forward(series, fit=nearest_mean_fit, train_window=100, step=10, mode="sliding")
    with pytest.raises(EvaluationError, match="needs a spec"):
        walk_forward(series, None, train_window=100, step=10)
    with pytest.raises(EvaluationError, match="takes 24 inputs"):  # the default fit trains the spec
        walk_forward(series, "momentum", train_window=100, step=10)
    with pytest.raises(EvaluationError, match="horizon=5"):
        walk_forward(series, fit=nearest_mean_fit, train_window=100, step=10, horizon=5)


def test_walk_forward_on_embedded_bars_and_on_a_dataset():
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset

    bars = load_embedded("SP500")
    bars = bars[(bars["date"] >= "2009-01-01") & (bars["date"] < "2013-01-01")].reset_index(drop=True)
    from_bars = walk_forward(bars, "momentum", fit=nearest_mean_fit, train_window=250, step=125, horizon=5)
    ds = make_dataset(bars, "momentum", horizon=5)
    prices = bars.set_index("date")["close"]
    from_ds = walk_forward(ds, "momentum", fit=nearest_mean_fit, train_window=250, step=125, prices=prices)
    for res in (from_bars, from_ds):
        assert res.classification["n"] > 0
        for w in res.windows:
            gap = np.busday_count(np.datetime64(w["train_end"], "D"), np.datetime64(w["test_start"], "D"))
            assert gap > 5  # more than the horizon's bars between the last label and the block
    # the dataset drops the last 5 bars (no label): its backtest ends 5 bars earlier
    assert from_ds.dates[-1] < from_bars.dates[-1]
    assert from_bars.dates[-1] == bars["date"].iloc[-1]
    with pytest.raises(EvaluationError, match="prices="):
        walk_forward(ds, "momentum", fit=nearest_mean_fit, train_window=250, step=125)


@pytest.mark.slow
def test_tinygrad_fit_predicts_through_the_frozen_blob():
    from pymicro.training.train import tinygrad_predict

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 24)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) * 2  # down or up, from the first feature
    fit = tinygrad_fit(pymicro.preset("momentum"), horizon=5, epochs=2, batch_size=64, seed=0)
    predict = fit(X, y)  # ziglang (a dependency) gives tinygrad a compiler everywhere: no skip
    probs = predict(X[:20])
    assert probs.shape == (20, 3)
    np.testing.assert_allclose(probs, tinygrad_predict(fit.last, X[:20]), atol=1e-5)
    # it trained on the first rows only: 300 - 60 validation - 5 purged
    assert fit.last.settings["epochs"] == 2


def test_walk_forward_default_fit_trains_freezes_and_predicts_natively(monkeypatch):
    """The default fit, with pymicro.training.train.train replaced by a recorder (no tinygrad): the
    train/validation split and its purge, the train_kwargs, and predictions through the blob."""
    import pymicro.training.train

    calls, made = [], []

    def fake_train(spec, X_train, y_train, X_val, y_val, **kwargs):
        calls.append((X_train[:, 0].astype(int), X_val[:, 0].astype(int), kwargs))
        made.append(spec.init(seed=len(calls)))
        return type("R", (), {"network": made[-1]})()

    monkeypatch.setattr(pymicro.evaluation.backtest, "train", fake_train)  # patched where walk_forward calls it
    base = synthetic_series(n=300, h=3, seed=3)
    X = np.column_stack([base.X, np.random.default_rng(0).normal(size=(300, 21))])
    series = LabelledSeries(base.dates, base.close, X, base.y, base.horizon)
    res = walk_forward(series, "momentum", train_window=100, step=40, threshold=0.0, val_fraction=0.2,
                       train_kwargs={"epochs": 9, "patience": 5, "learning_rate": 0.01}, warm_chain=2)
    assert len(calls) == len(res.windows) >= 4
    for k, ((tr, va, kwargs), w) in enumerate(zip(calls, res.windows)):
        n = w["train_rows"]
        assert va.size == round(0.2 * n) and tr.size == n - va.size - 3
        assert tr.max() + 3 < va.min()  # purge: no training label reads a validation bar
        assert va.max() + 3 < w["test_start"]  # embargo before the test block: early stopping never sees it
        assert kwargs["learning_rate"] == 0.01 and kwargs["seed"] == 0
        if k % 2 == 0:  # the first block of a chain of 2 trains from scratch, all epochs
            assert "init" not in kwargs and kwargs["epochs"] == 9 and not w["warm_start"]
        else:  # the next starts from the network its predecessor fitted (on earlier rows), fewer epochs
            assert kwargs["init"] is made[k - 1] and kwargs["epochs"] == 3 and kwargs["patience"] == 3
            # what the starting network saw (its training and early-stopping rows) ends before this block
            assert w["warm_start"] and max(calls[k - 1][0].max(), calls[k - 1][1].max()) + 3 < w["test_start"]
    # block k was predicted by the blob of network spec.init(seed=k + 1)
    s0 = res.windows[0]["test_start"]
    for k, w in enumerate(res.windows):
        rows = np.arange(w["test_start"], min(w["test_end"] + 1, 299))  # bar 299's position earns nothing
        ref = pymicro.load(pymicro.freeze(pymicro.preset("momentum").init(seed=k + 1)), "reference",
                           dtype=np.float64)
        expected = positions_from_probabilities(ref.predict(X[rows].astype(np.float32)), 0.0)
        assert (res.positions[rows - s0] == expected).all()


# --------------------------------------------------------------------------- plot and CLI

def test_plot_equity_writes_a_png(tmp_path):
    rng = np.random.default_rng(6)
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, 200))
    dates = np.datetime64("2020-01-01") + np.arange(200)
    res = run_backtest(close, np.sign(rng.normal(size=200)), 1.0, 1.0, dates=dates, majority_class=1)
    path = tmp_path / "equity.png"
    plot_equity(res, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _parser():
    parser = argparse.ArgumentParser(prog="pymicro")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(["backtest", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--train-window", "--step", "--mode", "--cost-bps", "--slippage-bps", "--threshold", "--plot"):
        assert flag in out


def test_cli_backtest_of_a_frozen_blob(tmp_path, capsys):
    blob = tmp_path / "m.pmb"
    pymicro.freeze(pymicro.preset("momentum").init(seed=0), blob)
    args = _parser().parse_args(["backtest", "--symbol", "SP500", "--start", "2015-01-01", "--blob", str(blob),
                                 "--threshold", "0.34", "--json", str(tmp_path / "r.json")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "buy_and_hold" in out and "momentum" in out and "no retraining" in out
    assert (tmp_path / "r.json").exists()


def test_class_positions_may_be_an_array_for_five_classes():
    close = 100 * np.cumprod(1 + np.random.default_rng(3).normal(0, 0.01, 300))
    positions = np.zeros(300)
    cp = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    res = run_backtest(close, positions, 1.0, 1.0, majority_class=4, class_positions=cp)
    # always predicting "strong up" holds a full long position: buy-and-hold less the entry cost
    majority = res.baselines["majority_class"]
    assert np.allclose(majority.positions, 1.0)
    assert np.isclose(majority.returns.sum(), res.baselines["buy_and_hold"].returns.sum())


def test_walk_forward_cold_start_trains_every_block_from_scratch(monkeypatch):
    import pymicro.training.train

    calls = []

    def fake_train(spec, X_train, y_train, X_val, y_val, **kwargs):
        calls.append(kwargs)
        return type("R", (), {"network": spec.init(seed=len(calls))})()

    monkeypatch.setattr(pymicro.evaluation.backtest, "train", fake_train)
    base = synthetic_series(n=300, h=3, seed=3)
    X = np.column_stack([base.X, np.random.default_rng(0).normal(size=(300, 21))])
    series = LabelledSeries(base.dates, base.close, X, base.y, base.horizon)
    res = walk_forward(series, "momentum", train_window=100, step=40, threshold=0.0, warm_start=False,
                       train_kwargs={"epochs": 9})
    assert len(calls) == len(res.windows) >= 4
    assert all("init" not in kw and kw["epochs"] == 9 for kw in calls)
    assert not any(w["warm_start"] for w in res.windows)
    with pytest.raises(EvaluationError, match="warm_chain"):
        walk_forward(series, "momentum", train_window=100, step=40, warm_chain=0)


def test_walk_forward_features_sliced_from_the_whole_history_equal_those_of_the_truncated_history():
    """The walk-forward computes features and labels once, on the whole history, and slices them per
    block. That is honest only if every feature row equals the one computed on the bars up to it:
    recompute on truncated histories (at several block starts) and compare, and labels wherever the
    truncated history knows them."""
    from pymicro.market.data import load_embedded

    bars = load_embedded(["SP500"]).tail(1200).reset_index(drop=True)
    full = LabelledSeries.from_bars(bars, "momentum", horizon=5)
    for s in (300, 517, 800, 1199):
        part = LabelledSeries.from_bars(bars.iloc[:s], "momentum", horizon=5)
        np.testing.assert_array_equal(part.X, full.X[:s])  # NaN warm-up rows in the same places
        known = part.y >= 0
        assert not known[s - 5:].any()  # the last h labels read bars beyond the truncated history
        np.testing.assert_array_equal(known[:s - 5], full.y[:s - 5] >= 0)  # the rest are known in both
        assert known.sum() > s // 2
        np.testing.assert_array_equal(part.y[known], full.y[:s][known])
