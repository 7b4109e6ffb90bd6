"""Fractional Kelly sizing with caps, and the paper broker (fills at the next tick, with costs)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pymicro.errors import InputError
from pymicro.live.paper import PaperBroker
from pymicro.live.sizing import Sizer, kelly_fraction


@pytest.mark.parametrize("p_up, p_down, move, cost", [(0.45, 0.30, 0.001, 0.0), (0.45, 0.30, 0.001, 0.0001),
                                                      (0.20, 0.50, 0.002, 0.0002), (0.5, 0.5, 0.001, 0.0)])
def test_kelly_maximises_the_expected_log_growth(p_up, p_down, move, cost):
    a, b = move - cost, move + cost
    f = np.linspace(0, 1 / b - 1e-6, 400_001)                     # the size of a bet on either side
    long = p_up * np.log1p(f * a) + p_down * np.log1p(-f * b)     # a long wins a when up, loses b when down
    short = p_down * np.log1p(f * a) + p_up * np.log1p(-f * b)    # a short the other way round
    best_long, best_short = f[np.argmax(long)], -f[np.argmax(short)]
    k = kelly_fraction(p_up, p_down, move, cost)
    if k > 0:
        assert k == pytest.approx(best_long, abs=2 * (f[1] - f[0]))
    elif k < 0:
        assert k == pytest.approx(best_short, abs=2 * (f[1] - f[0]))
    else:  # no edge on either side after costs: the best is not to bet (f = 0 within a step)
        assert best_long == 0 and best_short == 0


def test_kelly_without_cost_is_the_textbook_formula_and_costs_shrink_it():
    assert kelly_fraction(0.45, 0.30, 0.001) == pytest.approx((0.45 - 0.30) / (0.75 * 0.001))
    assert kelly_fraction(0.30, 0.45, 0.001) == pytest.approx(-(0.45 - 0.30) / (0.75 * 0.001))
    assert 0 < kelly_fraction(0.45, 0.30, 0.001, cost=0.0001) < kelly_fraction(0.45, 0.30, 0.001)
    assert kelly_fraction(0.40, 0.39, 0.001, cost=0.0005) == 0.0  # the edge does not pay the costs
    for bad in [(1.2, 0.0, 0.001), (0.5, 0.6, 0.001), (0.5, 0.2, 0.0), (0.5, 0.2, math.nan)]:
        with pytest.raises(InputError):
            kelly_fraction(*bad)


def test_the_sizer_scales_caps_and_stops():
    s = Sizer(fraction=0.25, max_position=0.5, max_daily_loss=0.02, max_drawdown=0.05)
    p = [0.30, 0.25, 0.45]
    assert s.target(p, 0.001, equity=100.0, day=1) == 0.5          # 0.25 * 200 capped at 0.5
    assert s.target([0.45, 0.25, 0.30], 0.2, equity=100.0, day=1) == pytest.approx(-0.25 * 0.15 / 0.75 / 0.2)
    assert s.target([np.nan] * 3, 0.001, equity=100.0, day=1) == 0.0  # warm-up
    assert s.target(p, 0.001, equity=97.9, day=1) == 0.0 and s.halted == "daily loss"
    assert s.target(p, 0.001, equity=98.5, day=2) == 0.5 and s.halted is None  # a new day
    assert s.target(p, 0.001, equity=94.9, day=3) == 0.0 and s.halted == "drawdown"  # 5.1 % off the 100 peak
    assert s.target(p, 0.001, equity=99.0, day=4) == 0.0  # a drawdown stop outlives the day
    s.resume()
    assert s.target(p, 0.001, equity=99.0, day=4) == 0.5
    with pytest.raises(InputError):
        Sizer(fraction=0)
    with pytest.raises(InputError):
        s.target([0.5, 0.5], 0.001, equity=1.0)


def test_paper_orders_fill_at_the_next_tick_with_slippage_and_costs():
    b = PaperBroker(cash=10_000, cost_bps=1.0, slippage_bps=2.0)
    assert b.on_tick(100.0, 0.0) is None
    b.order(0.5)
    assert b.units == 0  # nothing fills on the tick the decision was made on
    fill = b.on_tick(101.0, 1.0)
    assert fill.price == pytest.approx(101.0 * 1.0002) and fill.quantity == pytest.approx(0.5 * 10_000 / 101.0)
    assert fill.cost == pytest.approx(fill.quantity * fill.price * 1e-4)
    assert b.equity == pytest.approx(10_000 - fill.quantity * 101.0 * 0.0002 - fill.cost)
    b.order(0.0)
    sell = b.on_tick(102.0, 2.0)
    assert sell.quantity == pytest.approx(-fill.quantity) and sell.price == pytest.approx(102.0 * 0.9998)
    assert b.units == pytest.approx(0.0) and b.costs == pytest.approx(fill.cost + sell.cost)
    gross = fill.quantity * (sell.price - fill.price)
    assert b.equity == pytest.approx(10_000 + gross - b.costs)
    with pytest.raises(InputError):
        b.on_tick(-1.0)
    with pytest.raises(InputError):
        b.order(math.inf)


def test_paper_trading_the_shipped_ticks_fills_after_each_decision_and_logs_it(tmp_path):
    import dataclasses

    import pymicro
    from pymicro.live.paper import paper_trade
    from pymicro.live.predictions import PredictionLog
    from pymicro.live.stream import Pipeline
    from pymicro.market.intraday import load_es_ticks, session_seconds, tick_bars
    from pymicro.market.technical import MOMENTUM_FEATURES, momentum_features

    t = load_es_ticks().iloc[:8000]
    rows = momentum_features(tick_bars(t, 40), dropna=True).to_numpy()
    net = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(MOMENTUM_FEATURES)).init(seed=2)
    net.mean, net.std = rows.mean(0).astype(np.float32), rows.std(0).astype(np.float32)
    pipe = Pipeline(pymicro.freeze(net), bar="tick", bar_size=40, threshold=0.0)
    price, size, ts = t.price.to_numpy(float), t.volume.to_numpy(float), session_seconds(t)
    broker = PaperBroker(cash=100_000, cost_bps=0.5, slippage_bps=1.0)
    log = PredictionLog(tmp_path / "p.db")
    run = paper_trade(pipe, price, size, ts, Sizer(fraction=0.25, max_position=1.0, max_drawdown=0.5),
                      broker, log=log, model_id="m")
    assert len(run.targets) == pipe.bars == 8000 // 40 and any(run.targets)  # it traded after the warm-up
    assert all(f.ts in {ts[i + 1] for i in run.decided_at if i + 1 < len(ts)} for f in run.fills)  # each fill at the tick after
    assert len(run.fills) >= 1 and run.costs > 0
    assert run.equity[-1] == pytest.approx(broker.equity)
    assert log.count("m") == len(run.targets) and [r.position for r in log.recent("m", 5)] == run.targets[-5:]
