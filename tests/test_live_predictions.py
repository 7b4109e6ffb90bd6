"""The prediction log (append-only, bounded) and the performance report beside always-long."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from pymicro import metrics
from pymicro.errors import InputError
from pymicro.live.predictions import PredictionLog, performance_report, performance_series, plot_performance


def test_the_log_is_bounded_per_model_and_keeps_the_newest(tmp_path):
    log = PredictionLog(tmp_path / "p.db", capacity=100)
    n = 250
    probs = np.full((n, 3), 1 / 3)
    probs[0] = np.nan  # warm-up rows keep their NaN as null
    log.append_many("a", np.arange(n), 100 + np.arange(n), np.zeros(n), probs, ticks=[f"{i}-0" for i in range(n)])
    log.append("b", 0.0, 50.0, 1.0, [0.2, 0.3, 0.5])
    assert log.count("a") == 100 and log.count("b") == 1 and log.models() == ["a", "b"]
    last = log.recent("a", limit=3)
    assert [r.tick for r in last] == ["247-0", "248-0", "249-0"] and last[-1].price == 349
    log.append_many("a", [1.0], [1.0], [0.0], [[np.nan] * 3])
    assert log.recent("a", limit=1)[0].probabilities == [None, None, None]
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        sqlite3.connect(tmp_path / "p.db").execute("UPDATE predictions SET position = 1")
    with pytest.raises(InputError):
        log.append_many("a", [0.0], [-1.0], [0.0], [[0.1, 0.2, 0.7]])


def test_the_report_scores_each_decision_on_the_next_price_beside_always_long(tmp_path):
    log = PredictionLog(tmp_path / "p.db")
    price = np.array([100.0, 101.0, 100.0, 100.0, 102.0, 101.0])
    pos = np.array([1.0, -1.0, 1.0, 1.0, 0.0, 0.0])  # right, right, (no move), right, flat
    log.append_many("m", np.arange(6) * 60.0, price, pos, np.full((6, 3), 1 / 3))
    rep = performance_report(log, "m", window=10, cost_bps=0.0, periods_per_year=252)
    move = price[1:] / price[:-1] - 1
    strat = pos[:-1] * move
    assert rep["model"]["hit_rate"] == 1.0 and rep["model"]["decisions_scored"] == 3
    assert rep["model"]["total_return"] == pytest.approx(metrics.total_return(strat))
    assert rep["model"]["sharpe"] == pytest.approx(metrics.sharpe(strat, 252))
    assert rep["baseline_always_long"]["hit_rate"] == pytest.approx(2 / 3)  # up moves among the traded rows
    assert rep["baseline_always_long"]["max_drawdown"] == pytest.approx(metrics.max_drawdown(move))
    costly = performance_report(log, "m", window=10, cost_bps=10.0, periods_per_year=252)
    assert costly["model"]["total_return"] < rep["model"]["total_return"]
    with pytest.raises(InputError, match="at least 3"):
        performance_report(log, "nobody")


def test_pymicro_live_logs_every_decision(tmp_path, capsys):
    import dataclasses

    import pymicro
    from pymicro.cli import main
    from pymicro.market.intraday import load_es_ticks
    from pymicro.market.technical import MOMENTUM_FEATURES

    net = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(MOMENTUM_FEATURES)).init(seed=2)
    pymicro.freeze(net, tmp_path / "momo.pmb")
    load_es_ticks().iloc[:3000].to_csv(tmp_path / "ticks.csv", index=False)
    assert main(["live", str(tmp_path / "momo.pmb"), "--source", str(tmp_path / "ticks.csv"), "--bar", "tick",
                 "--bar-size", "20", "--log", str(tmp_path / "p.db")]) == 0
    assert "logged 3000 decisions as 'momo'" in capsys.readouterr().out
    log = PredictionLog(tmp_path / "p.db")
    assert log.count("momo") == 3000 and log.recent("momo", 1)[0].price == load_es_ticks().price[2999]


def _random_log(tmp_path, n=600, seed=3):
    rng = np.random.default_rng(seed)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    pos = rng.choice([-1.0, 0.0, 1.0], n)
    log = PredictionLog(tmp_path / "p.db")
    log.append_many("m", np.arange(n) * 5.0, price, pos, np.full((n, 3), 1 / 3))
    return log, price, pos


def test_periods_cut_the_window_and_add_up(tmp_path):
    log, price, pos = _random_log(tmp_path)
    rep = performance_report(log, "m", window=600, cost_bps=1.0, periods_per_year=1e5, periods=3)
    assert len(rep["periods"]) == 3 and rep["periods"][0]["from_ts"] == rep["from_ts"]
    assert rep["periods"][-1]["to_ts"] == rep["to_ts"]
    assert sum(p["model"]["decisions_scored"] for p in rep["periods"]) == rep["model"]["decisions_scored"]
    for who in ("model", "baseline_always_long"):
        growth = np.prod([1 + p[who]["total_return"] for p in rep["periods"]])
        assert growth == pytest.approx(1 + rep[who]["total_return"], rel=1e-12)
    assert "periods" not in performance_report(log, "m", window=600)
    for bad in (0, 2.5, True):
        with pytest.raises(InputError, match="periods"):
            performance_report(log, "m", periods=bad)


def test_the_series_are_the_reports_curves(tmp_path):
    log, price, pos = _random_log(tmp_path)
    s = performance_series(log, "m", window=600, cost_bps=0.0, periods_per_year=1e5, roll=50)
    move = price[1:] / price[:-1] - 1
    strat = pos[:-1] * move
    np.testing.assert_allclose(s["equity"], metrics.equity_curve(strat))
    np.testing.assert_allclose(s["baseline_equity"], metrics.equity_curve(move))
    assert (s["drawdown"] <= 0).all() and s["drawdown"].min() == pytest.approx(-metrics.max_drawdown(strat))
    scored = (pos[:-1] != 0) & (move != 0)
    hits = (np.sign(pos[:-1]) == np.sign(move))[scored]
    ends = np.flatnonzero(scored)
    # the last value: the hit rate of the scored decisions among the last 50 steps
    assert s["hit_rate"][-1] == pytest.approx(hits[ends >= len(move) - 50].mean())
    last = strat[-50:]
    assert s["sharpe"][-1] == pytest.approx(last.mean() / last.std(ddof=1) * np.sqrt(1e5), rel=1e-6)
    assert np.isnan(s["sharpe"][:49]).all() and np.isfinite(s["baseline_sharpe"][49:]).all()
    with pytest.raises(InputError, match="roll"):
        performance_series(log, "m", roll=1)


def test_the_plot_is_a_png(tmp_path):
    log, _, _ = _random_log(tmp_path)
    out = plot_performance(log, "m", tmp_path / "sub" / "perf.png", window=300)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    with pytest.raises(InputError, match="PNG"):
        plot_performance(log, "m", tmp_path / "perf.jpg")


def test_pymicro_performance_reads_the_log_by_strategy_and_period(tmp_path, capsys):
    from pymicro.cli import main

    log, _, _ = _random_log(tmp_path)
    log.append_many("other", np.arange(100) * 5.0, 100 + np.arange(100) * 0.01, np.ones(100), np.full((100, 3), 0.3))
    log.close()
    db = str(tmp_path / "p.db")
    assert main(["performance", db, "--strategy", "m", "--periods", "3", "--plot", str(tmp_path / "one.png"),
                 "--recent", "2", "--periods-per-year", "1e5"]) == 0
    out = capsys.readouterr().out
    assert "always long" in out and "period 3" in out and "wrote" in out and (tmp_path / "one.png").is_file()
    rep = performance_report(PredictionLog(db), "m", window=1000, periods_per_year=1e5)
    assert f"{rep['model']['total_return']:.2%}" in out
    assert main(["performance", db, "--plot", str(tmp_path / "all.png"), "--periods", "1"]) == 0
    out = capsys.readouterr().out
    assert "m: last" in out and "other: last" in out
    assert (tmp_path / "all-m.png").is_file() and (tmp_path / "all-other.png").is_file()
    assert main(["performance", str(tmp_path / "none.db")]) == 2
    assert "no prediction log" in capsys.readouterr().err
