"""The live path end to end on shipped data, paper only: `python examples/live_paper.py`.

E-mini S&P 500 ticks -> tick bars -> momentum features (C++, incremental) -> a seeded
micro network -> fractional-Kelly target -> paper fills at the next tick -> prediction log ->
performance beside always-long -> a syndicate ledger settling the run's P&L.

The network is seeded, not trained: this shows the plumbing, not an edge.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

import pymicro
from pymicro.live.paper import PaperBroker, paper_trade
from pymicro.live.predictions import PredictionLog, performance_report
from pymicro.live.sizing import Sizer
from pymicro.live.stream import Pipeline
from pymicro.live.syndicate import Ledger
from pymicro.market.intraday import load_es_ticks, session_seconds, tick_bars
from pymicro.market.technical import MOMENTUM_FEATURES, momentum_features


def main(folder: Path, n_ticks: int = 100_000, bar_size: int = 100) -> dict:
    ticks = load_es_ticks().iloc[:n_ticks]
    rows = momentum_features(tick_bars(ticks, bar_size), dropna=True).to_numpy()
    net = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(MOMENTUM_FEATURES)).init(seed=7)
    net.mean, net.std = rows.mean(0).astype(np.float32), rows.std(0).astype(np.float32)
    pipe = Pipeline(pymicro.freeze(net), bar="tick", bar_size=bar_size, threshold=0.0)

    log = PredictionLog(folder / "predictions.db")
    broker = PaperBroker(cash=100_000, cost_bps=0.25, slippage_bps=0.5)
    sizer = Sizer(fraction=0.25, max_position=1.0, max_daily_loss=0.02, max_drawdown=0.10, cost=0.25e-4)
    run = paper_trade(pipe, ticks.price.to_numpy(float), ticks.volume.to_numpy(float), session_seconds(ticks),
                      sizer, broker, log=log, model_id="example")
    report = performance_report(log, "example", window=len(run.targets), cost_bps=0.25)

    ledger = Ledger(folder / "syndicates.db")
    ledger.create_syndicate("micro_traders", "Micro Model Syndicate")
    ledger.add_member("micro_traders", "Alice", "alice@example.org", "trader", 60_000)
    ledger.add_member("micro_traders", "Bob", "bob@example.org", "member", 40_000)
    alloc = ledger.allocate("micro_traders", [{"id": "es", "p_up": 0.40, "p_down": 0.35, "move": 0.001}])
    if alloc:
        ledger.settle("micro_traders", alloc[0].seq, pnl=round(broker.equity - 100_000, 2))
    out = {"ticks": n_ticks, "bars": pipe.bars, "fills": len(run.fills), "costs": round(run.costs, 2),
           "equity": round(broker.equity, 2), "halted": run.halted, "report": report,
           "members": [(b.name, b.capital) for b in ledger.balances("micro_traders")],
           "ledger_entries_verified": ledger.verify()}
    return out


if __name__ == "__main__":
    import json

    with tempfile.TemporaryDirectory() as d:
        json.dump(main(Path(d)), sys.stdout, indent=2, default=str)
        print()
