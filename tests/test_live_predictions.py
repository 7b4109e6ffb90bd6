"""The prediction log (append-only, bounded) and the performance report beside always-long."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from pymicro import metrics
from pymicro.errors import InputError
from pymicro.live.predictions import PredictionLog, performance_report


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
