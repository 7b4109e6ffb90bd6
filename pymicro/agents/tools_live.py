"""The live tools, with the seed's names: ``realtime_subscribe``, ``execute_trade`` (paper),
``get_recent_predictions``, ``performance_report``, ``create_syndicate_tool``,
``add_syndicate_member`` and ``allocate_syndicate_funds`` (:mod:`pymicro.live`), and
``settle_syndicate_allocation`` (an allocation's P&L shared into the members' capital).

``performance_report(plot=true)`` also draws its PNG into ``<live>/plots/`` and returns the
file's path and a resource URI, ``pymicro://live/plots/<file>``, that reads it back as
``image/png`` (a client never names a path).

Their files live in ``<store>/../live/`` (``$PYMICRO_HOME/live`` for the default store):
``predictions.db`` (the bounded prediction log) and ``syndicates.db`` (the ledger). Paper
trading only: no tool sends an order anywhere. ``realtime_subscribe`` with
``source="redis"`` reads the Redis server the operator configured (``PYMICRO_REDIS_URL``,
``redis://host:port``); a client names only the stream, never a host.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
import numpy as np
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from pydantic import BaseModel, Field

from pymicro.agents.server import ModelId, resource, server_of, tool
from pymicro.live.paper import PaperBroker, paper_trade
from pymicro.live.predictions import PredictionLog, performance_report as report_of, plot_performance
from pymicro.live.sizing import Sizer
from pymicro.live.stream import Pipeline
from pymicro.live.syndicate import ID_PATTERN, Ledger

MAX_TICKS = 200_000
MAX_PREDICTIONS = 1000
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
SyndicateId = Annotated[str, Field(pattern=ID_PATTERN.pattern, description="e.g. 'micro_traders'")]
Ticks = Annotated[int, Field(ge=100, le=MAX_TICKS, description="ticks to read")]
Bar = Literal["time", "tick", "volume"]
BarSize = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
Unit = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


def live_dir(server) -> Path:
    d = Path(server.registry.root).parent / "live"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _clean(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_clean(v) for v in x]
    return x


def _es(start: int, n: int):
    from pymicro.market.intraday import load_es_ticks, session_seconds

    t = load_es_ticks().iloc[start:start + n]
    if len(t) < 100:
        raise ToolError(f"the shipped E-mini ticks have {len(load_es_ticks())} rows; start={start} leaves {len(t)}")
    return t.price.to_numpy(float), t.volume.to_numpy(float), session_seconds(t)


class Subscription(BaseModel):
    model_id: str
    source: str
    ticks: int
    bars: int
    ticks_with_signal: int
    long: int
    short: int
    flat: int
    last_position: float
    last_probabilities: dict[str, float | None]
    signals_stream: str | None = Field(description="Redis: the stream the signals went to (one per tick, under "
                                                   "the tick's id).")
    logged: int = Field(description="Decisions appended to the prediction log (get_recent_predictions).")


@tool("Subscribe a model to ticks (shipped E-mini replay or a Redis stream)", read_only=False, idempotent=False)
async def realtime_subscribe(model_id: ModelId, source: Literal["es", "redis"] = "es",
                             stream: Annotated[str | None, Field(pattern=NAME)] = None,
                             max_ticks: Ticks = 20_000, start: Annotated[int, Field(ge=0, le=10**7)] = 0,
                             bar: Bar = "tick", bar_size: BarSize = 100.0, threshold: Unit = 0.5,
                             idle_exit_s: Annotated[float, Field(gt=0, le=60)] = 1.0, *,
                             ctx: Context) -> Subscription:
    """Run ticks through a registered model's live pipeline (bars, features, model, position, in the
    C++ core) and log every decision. source "es": ``max_ticks`` of the shipped E-mini S&P 500 ticks
    from ``start``; "redis": the stream ``stream`` on the server's Redis (PYMICRO_REDIS_URL), read
    through a consumer group (resumes where it stopped; signals to another stream) until
    ``max_ticks`` or ``idle_exit_s`` seconds without a tick."""
    server = server_of(ctx)
    _, model = server.models.get(model_id)
    log = PredictionLog(live_dir(server) / "predictions.db")

    def work():
        if source == "es":
            p, s, t = _es(start, max_ticks)
            pipe = Pipeline(model, bar=bar, bar_size=bar_size, threshold=threshold)
            t0 = time.perf_counter()
            pos, probs = pipe.replay_ticks(p, s, t)
            per_tick = (time.perf_counter() - t0) / max(len(pos), 1)  # the C++ replay's mean per decision
            log.append_many(model_id, t, p, pos, probs, latency_s=per_tick)
            return pipe, pos, probs, None
        if not stream:
            raise ToolError("source 'redis' needs a stream name")
        url = os.environ.get("PYMICRO_REDIS_URL")
        if not url:
            raise ToolError("this server has no Redis configured: its operator sets PYMICRO_REDIS_URL=redis://host:port")
        from pymicro.live.redis_stream import RedisSignals, connect

        client, _ = connect(url.rstrip("/") + "/" + stream)
        got = {"pos": [], "probs": []}

        def keep(ids, price, ts, pos, probs):
            log.append_many(model_id, ts, price, pos, probs, ticks=ids)
            got["pos"].append(pos)
            got["probs"].append(probs)

        c = RedisSignals(client, model, stream=stream, bar=bar, bar_size=bar_size, threshold=threshold,
                         on_signals=keep)
        c.run(idle_exit=idle_exit_s, max_ticks=max_ticks)
        k = len(model.labels)
        pos = np.concatenate(got["pos"]) if got["pos"] else np.zeros(0)
        probs = np.concatenate(got["probs"]) if got["probs"] else np.zeros((0, k))
        return c.pipe, pos, probs, c.signals

    try:
        pipe, pos, probs, signals = await anyio.to_thread.run_sync(work)
    finally:
        log.close()
    ready = np.isfinite(probs).all(axis=1) if len(probs) else np.zeros(0, bool)
    last = probs[-1] if len(probs) else np.full(len(model.labels), np.nan)
    return Subscription(model_id=model_id, source=source if source == "es" else f"redis:{stream}", ticks=len(pos),
                        bars=pipe.bars, ticks_with_signal=int(ready.sum()), long=int((pos > 0).sum()),
                        short=int((pos < 0).sum()), flat=int((pos == 0).sum()),
                        last_position=float(pos[-1]) if len(pos) else 0.0,
                        last_probabilities=_clean(dict(zip(model.labels, map(float, last)))),
                        signals_stream=signals, logged=len(pos))


class TradeResult(BaseModel):
    model_id: str
    paper: bool = Field(True, description="Always true: pymicro only paper trades.")
    ticks: int
    decisions: int
    fills: int
    costs: float
    start_equity: float
    end_equity: float
    total_return: float
    max_drawdown: float
    halted: str | None = Field(description="'daily loss' or 'drawdown' if a cap stopped trading.")
    baseline_buy_and_hold_return: float
    rules: dict[str, str]


@tool("Paper trade a model over the shipped E-mini ticks (fractional Kelly, caps)", read_only=False,
      idempotent=False)
async def execute_trade(model_id: ModelId, max_ticks: Ticks = 50_000, start: Annotated[int, Field(ge=0)] = 0,
                        bar: Bar = "tick", bar_size: BarSize = 100.0, threshold: Unit = 0.0,
                        kelly_fraction: Annotated[float, Field(gt=0, le=1)] = 0.25,
                        max_position: Annotated[float, Field(gt=0, le=5)] = 1.0,
                        max_daily_loss: Annotated[float, Field(gt=0, le=1)] = 0.02,
                        max_drawdown: Annotated[float, Field(gt=0, le=1)] = 0.10,
                        cost_bps: Annotated[float, Field(ge=0, le=100)] = 0.5,
                        slippage_bps: Annotated[float, Field(ge=0, le=100)] = 1.0,
                        cash: Annotated[float, Field(gt=0, le=1e12)] = 100_000.0, *, ctx: Context) -> TradeResult:
    """Paper trading only. Ticks through the model; at each committed bar a fractional-Kelly target
    (docs/live.md) is ordered and filled at the next tick with slippage and costs; every decision is
    logged (get_recent_predictions, performance_report)."""
    server = server_of(ctx)
    _, model = server.models.get(model_id)
    log = PredictionLog(live_dir(server) / "predictions.db")

    def work():
        p, s, t = _es(start, max_ticks)
        pipe = Pipeline(model, bar=bar, bar_size=bar_size, threshold=threshold)
        sizer = Sizer(fraction=kelly_fraction, max_position=max_position, max_daily_loss=max_daily_loss,
                      max_drawdown=max_drawdown, cost=cost_bps * 1e-4, labels=tuple(model.labels))
        broker = PaperBroker(cash, cost_bps=cost_bps, slippage_bps=slippage_bps)
        return p, paper_trade(pipe, p, s, t, sizer, broker, log=log, model_id=model_id)

    try:
        p, run = await anyio.to_thread.run_sync(work)
    finally:
        log.close()
    eq = run.equity
    dd = float(np.max(1 - eq / np.maximum.accumulate(np.r_[cash, eq])[1:]))
    return TradeResult(model_id=model_id, ticks=len(p), decisions=len(run.targets), fills=len(run.fills),
                       costs=run.costs, start_equity=cash, end_equity=float(eq[-1]),
                       total_return=float(eq[-1] / cash - 1), max_drawdown=max(dd, 0.0), halted=run.halted,
                       baseline_buy_and_hold_return=float(p[-1] / p[0] - 1),
                       rules={"fill": "next tick's price, moved against the order by slippage_bps",
                              "cost": "cost_bps of each fill's notional",
                              "size": "kelly_fraction x Kelly(p_up, p_down, mean |bar return| of 20 bars, cost), "
                                      "capped at max_position; flat after max_daily_loss in a day or "
                                      "max_drawdown from the peak"})


class LoggedPrediction(BaseModel):
    seq: int
    ts: float
    price: float
    position: float
    probabilities: list[float | None]
    tick: str | None


class RecentPredictions(BaseModel):
    model_id: str
    total_logged: int
    predictions: list[LoggedPrediction] = Field(description="Oldest first.")


@tool("Recent predictions of a model from the prediction log")
async def get_recent_predictions(model_id: ModelId,
                                 limit: Annotated[int, Field(ge=1, le=MAX_PREDICTIONS)] = 100, *,
                                 ctx: Context) -> RecentPredictions:
    """The last ``limit`` decisions logged for ``model_id`` by realtime_subscribe or execute_trade."""
    log = PredictionLog(live_dir(server_of(ctx)) / "predictions.db")
    try:
        rows = log.recent(model_id, limit)
        return RecentPredictions(model_id=model_id, total_logged=log.count(model_id),
                                 predictions=[LoggedPrediction(seq=r.seq, ts=r.ts, price=r.price, position=r.position,
                                                               probabilities=r.probabilities, tick=r.tick)
                                              for r in rows])
    finally:
        log.close()


class Figures(BaseModel):
    hit_rate: float | None
    decisions_scored: int
    total_return: float | None
    sharpe: float | None
    max_drawdown: float | None


class Period(BaseModel):
    from_ts: float
    to_ts: float
    exposure: float
    model: Figures
    baseline_always_long: Figures


class PerformanceReport(BaseModel):
    model_id: str
    window: int
    from_ts: float
    to_ts: float
    periods_per_year: float
    cost_bps: float
    exposure: float
    model: Figures
    baseline_always_long: Figures
    periods: list[Period] = Field(default_factory=list, description="The window cut into `periods` consecutive "
                                                                    "stretches (empty for periods=1).")
    plot_path: str | None = Field(None, description="plot=true: the PNG (equity and drawdown beside always "
                                                    "long, rolling hit rate and Sharpe) on the server.")
    plot_uri: str | None = Field(None, description="plot=true: the same PNG as an image/png resource.")


PLOT_URI = "pymicro://live/plots/"
PLOT_NAME = r"^performance-[A-Za-z0-9][A-Za-z0-9_.-]{0,80}\.png$"


@tool("Performance of a model's logged decisions beside always-long", read_only=False)
async def performance_report(strategy: ModelId, window: Annotated[int, Field(ge=3, le=100_000)] = 1000,
                             cost_bps: Annotated[float, Field(ge=0, le=100)] = 0.0,
                             periods_per_year: Annotated[float | None, Field(gt=0, le=1e9)] = None,
                             periods: Annotated[int, Field(ge=1, le=50)] = 1, plot: bool = False, *,
                             ctx: Context) -> PerformanceReport:
    """Hit rate, Sharpe, total return and max drawdown of the last ``window`` logged decisions of
    ``strategy`` (a model id), each scored on the next decision's price, beside always-long on the same rows;
    ``periods`` > 1 adds the same figures per consecutive stretch. ``plot``: also a PNG of the equity and
    drawdown beside always-long and the rolling hit rate and Sharpe, written into the server's live folder
    and returned as ``plot_uri`` (an image/png resource)."""
    d = live_dir(server_of(ctx))
    log = PredictionLog(d / "predictions.db")

    def work():
        rep = _clean(report_of(log, strategy, window=window, cost_bps=cost_bps, periods_per_year=periods_per_year,
                               periods=periods))
        if plot:
            name = f"performance-{strategy}-{window}.png"
            path = plot_performance(log, strategy, d / "plots" / name, window=window, cost_bps=cost_bps,
                                    periods_per_year=periods_per_year)
            rep.update(plot_path=str(path), plot_uri=PLOT_URI + name)
        return rep

    try:
        return PerformanceReport(**await anyio.to_thread.run_sync(work))
    finally:
        log.close()


@resource(PLOT_URI + "{name}", name="live_plot", title="A performance plot",
          description="A PNG performance_report(plot=true) drew (equity, drawdown, rolling hit rate and Sharpe "
                      "beside always-long).", mime_type="image/png")
async def live_plot_resource(name: str, ctx: Context) -> bytes:
    """``pymicro://live/plots/{name}``: the PNG bytes of a plot in the server's live folder."""
    import re

    if not re.match(PLOT_NAME, name):
        raise ResourceNotFoundError(f"no plot {name!r}: plot names look like performance-<model id>-<window>.png")
    path = live_dir(server_of(ctx)) / "plots" / name
    if not path.is_file():
        raise ResourceNotFoundError(f"no plot {name!r}: performance_report(plot=true) draws one")
    return path.read_bytes()


class Opportunity(BaseModel):
    id: Annotated[str, Field(pattern=ID_PATTERN.pattern)]
    p_up: Annotated[float, Field(ge=0, le=1)]
    p_down: Annotated[float, Field(ge=0, le=1)]
    move: Annotated[float, Field(gt=0, le=1, description="expected absolute return over the holding period")]
    cost: Annotated[float, Field(ge=0, le=0.1)] = 0.0


class SyndicateState(BaseModel):
    syndicate_id: str
    capital: float
    members: list[dict[str, Any]]
    entries: list[dict[str, Any]] = Field(description="The ledger entries this call appended.")
    open_allocations: list[dict[str, Any]] = Field(default_factory=list, description="Allocations not settled yet "
                                                   "(settle_syndicate_allocation with their seq).")
    verified_entries: int = Field(description="Entries whose hash chain and invariants verify() checked.")


def _ledger(ctx) -> Ledger:
    return Ledger(live_dir(server_of(ctx)) / "syndicates.db")


def _state(lg: Ledger, syndicate_id: str, entries) -> SyndicateState:
    return SyndicateState(syndicate_id=syndicate_id, capital=lg.capital(syndicate_id),
                          members=[b.__dict__ for b in lg.balances(syndicate_id)],
                          entries=[e.__dict__ for e in entries],
                          open_allocations=[e.__dict__ for e in lg.open_allocations(syndicate_id)],
                          verified_entries=lg.verify())


@tool("Create a syndicate (paper)", read_only=False, idempotent=False)
async def create_syndicate_tool(syndicate_id: SyndicateId, name: Annotated[str, Field(min_length=1, max_length=200)],
                                *, ctx: Context) -> SyndicateState:
    """A new syndicate in the ledger (SQLite, append-only, hash-chained)."""
    lg = _ledger(ctx)
    try:
        lg.create_syndicate(syndicate_id, name)
        return _state(lg, syndicate_id, [])
    finally:
        lg.close()


@tool("Add a member to a syndicate", read_only=False, idempotent=False)
async def add_syndicate_member(syndicate_id: SyndicateId, name: Annotated[str, Field(min_length=1, max_length=200)],
                               email: Annotated[str, Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")],
                               role: Literal["trader", "member", "analyst", "manager"] = "member",
                               initial_contribution: Annotated[float, Field(ge=0, le=1e12)] = 0.0, *,
                               ctx: Context) -> SyndicateState:
    """A member and their first contribution (one transaction each, in the ledger)."""
    lg = _ledger(ctx)
    try:
        member = lg.add_member(syndicate_id, name, email, role, initial_contribution)
        mine = [e for e in lg.entries(syndicate_id, limit=5) if e.member_id == member]
        return _state(lg, syndicate_id, mine)
    finally:
        lg.close()


@tool("Allocate a syndicate's capital to opportunities (fractional Kelly, paper)", read_only=False,
      idempotent=False)
async def allocate_syndicate_funds(syndicate_id: SyndicateId,
                                   opportunities: Annotated[list[Opportunity], Field(min_length=1, max_length=100)],
                                   strategy: Literal["kelly_criterion", "equal"] = "kelly_criterion",
                                   fraction: Annotated[float, Field(gt=0, le=1)] = 0.25,
                                   max_position: Annotated[float, Field(gt=0, le=1)] = 0.2,
                                   max_total: Annotated[float, Field(gt=0, le=1)] = 1.0, *,
                                   ctx: Context) -> SyndicateState:
    """Records one allocation per opportunity with an edge: fraction x Kelly of the free capital, each
    capped at max_position, all at max_total (signed: < 0 is a short). Nothing is traded."""
    lg = _ledger(ctx)
    try:
        made = lg.allocate(syndicate_id, [o.model_dump() for o in opportunities], strategy=strategy,
                           fraction=fraction, max_position=max_position, max_total=max_total)
        return _state(lg, syndicate_id, made)
    finally:
        lg.close()


@tool("Settle a syndicate allocation: its P&L shared into the members' capital (paper)", read_only=False,
      idempotent=False)
async def settle_syndicate_allocation(syndicate_id: SyndicateId,
                                      allocation_seq: Annotated[int, Field(ge=1, le=2**62, description=
                                          "the allocation's entry number (seq), as allocate_syndicate_funds or "
                                          "open_allocations give it")],
                                      pnl: Annotated[float, Field(ge=-1e12, le=1e12, allow_inf_nan=False,
                                                                  description="profit (> 0) or loss (< 0)")],
                                      note: Annotated[str | None, Field(max_length=500)] = None, *,
                                      ctx: Context) -> SyndicateState:
    """Closes an allocation with its (paper) P&L: one pnl entry and a profit_share per member, pro rata to
    their capital just before the allocation (exact in cents), credited to their capital, in one
    transaction. An allocation is settled once; a second call is refused and writes nothing."""
    lg = _ledger(ctx)
    try:
        made = lg.settle(syndicate_id, allocation_seq, pnl, note=note)
        return _state(lg, syndicate_id, made)
    finally:
        lg.close()


__all__ = ["live_dir"]
