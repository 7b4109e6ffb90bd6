"""The live tools through the server's in-process API (PymicroServer.call_tool): the seed's names,
typed arguments, paper trading, the prediction log and the ledger in <store>/../live."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_live_redis import redis_url  # noqa: F401  (the real redis-server fixture)

import pymicro
from pymicro.agents import server as S
from pymicro.agents.mcp_server import build_server
from pymicro.live.redis_stream import connect, publish_ticks, read_signals
from pymicro.live.stream import Pipeline
from pymicro.market.intraday import load_es_ticks, session_seconds, tick_bars
from pymicro.market.technical import MOMENTUM_FEATURES, momentum_features
from pymicro.store.registry import Registry

pytestmark = pytest.mark.anyio
LIVE_TOOLS = ["realtime_subscribe", "execute_trade", "get_recent_predictions", "performance_report",
              "create_syndicate_tool", "add_syndicate_member", "allocate_syndicate_funds", "settle_syndicate_allocation"]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    t = load_es_ticks().iloc[:20_000]
    rows = momentum_features(tick_bars(t, 100), dropna=True).to_numpy()
    net = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(MOMENTUM_FEATURES)).init(seed=2)
    net.mean, net.std = rows.mean(0).astype(np.float32), rows.std(0).astype(np.float32)
    blob = pymicro.freeze(net)
    registry = Registry(home / "models")
    return build_server(registry), registry.add(blob, "momo"), blob, home


async def _ok(server, name, args):
    r = await server.call_tool(name, args)
    assert not r.is_error, r.content[0].text
    return r.structured_content


async def _error(server, name, args) -> str:
    try:
        r = await server.call_tool(name, args)
    except Exception as e:  # the SDK raises ToolError for argument errors in-process
        return str(e)
    assert r.is_error, r.structured_content
    return r.content[0].text


def test_the_live_tools_are_registered_with_the_seeds_names():
    names = [t.fn.__name__ for t in S.TOOLS]
    assert all(n in names for n in LIVE_TOOLS)


async def test_subscribe_logs_decisions_and_the_report_scores_them(served):
    server, model_id, blob, home = served
    out = await _ok(server, "realtime_subscribe", {"model_id": model_id, "max_ticks": 20_000, "bar_size": 100.0,
                                                   "threshold": 0.4})
    t = load_es_ticks().iloc[:20_000]
    pos, probs = Pipeline(blob, bar="tick", bar_size=100, threshold=0.4).replay_ticks(
        t.price.to_numpy(float), t.volume.to_numpy(float), session_seconds(t))
    assert (out["ticks"], out["bars"], out["long"], out["short"]) == (20_000, 200, int((pos > 0).sum()),
                                                                      int((pos < 0).sum()))
    recent = await _ok(server, "get_recent_predictions", {"model_id": model_id, "limit": 5})
    assert recent["total_logged"] == 20_000 and [r["position"] for r in recent["predictions"]] == list(pos[-5:])
    assert (home / "live" / "predictions.db").is_file()
    rep = await _ok(server, "performance_report", {"strategy": model_id, "window": 5000, "periods_per_year": 1e6})
    assert rep["window"] == 5000 and set(rep["baseline_always_long"]) == set(rep["model"])
    assert rep["model"]["decisions_scored"] > 0 and 0 <= rep["model"]["hit_rate"] <= 1
    assert rep["periods"] == [] and rep["plot_uri"] is None

    by = await _ok(server, "performance_report", {"strategy": model_id, "window": 5000, "periods_per_year": 1e6,
                                                  "periods": 4, "plot": True})
    assert len(by["periods"]) == 4 and by["model"] == rep["model"]
    assert sum(p["model"]["decisions_scored"] for p in by["periods"]) == rep["model"]["decisions_scored"]
    assert by["plot_uri"] == f"pymicro://live/plots/performance-{model_id}-5000.png"
    png = home / "live" / "plots" / f"performance-{model_id}-5000.png"
    assert by["plot_path"] == str(png) and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    content = list(await server.read_resource(by["plot_uri"]))[0]
    assert content.mime_type == "image/png" and content.content == png.read_bytes()
    for bad, why in [("performance-../../x.png", "Unknown resource"), ("performance-..x.png", "no plot"),
                     ("nothing.png", "no plot"), ("performance-nobody-1.png", "draws one")]:
        with pytest.raises(Exception, match=why):
            await server.read_resource(f"pymicro://live/plots/{bad}")


async def test_execute_trade_is_paper_and_sized(served):
    server, model_id, _, _ = served
    out = await _ok(server, "execute_trade", {"model_id": model_id, "max_ticks": 20_000, "cost_bps": 0.0})
    assert out["paper"] is True and out["decisions"] == 200 and out["fills"] > 0
    assert out["end_equity"] == pytest.approx(out["start_equity"] * (1 + out["total_return"]))
    assert "next tick" in out["rules"]["fill"]
    # a seeded random network's edge does not pay 20 bps a trade: Kelly after costs says stay out
    dear = await _ok(server, "execute_trade", {"model_id": model_id, "max_ticks": 20_000, "cost_bps": 20.0})
    assert dear["fills"] == 0 and dear["end_equity"] == dear["start_equity"]


async def test_a_syndicate_through_the_tools(served):
    server, _, _, _ = served
    await _ok(server, "create_syndicate_tool", {"syndicate_id": "micro_traders", "name": "Micro Model Syndicate"})
    a = await _ok(server, "add_syndicate_member", {"syndicate_id": "micro_traders", "name": "Model_x",
                                                   "email": "model@ai.trading", "role": "trader",
                                                   "initial_contribution": 10_000})
    assert a["capital"] == 10_000 and a["entries"][0]["kind"] == "contribution"
    out = await _ok(server, "allocate_syndicate_funds", {
        "syndicate_id": "micro_traders", "strategy": "kelly_criterion",
        "opportunities": [{"id": "es", "p_up": 0.45, "p_down": 0.30, "move": 0.004}]})
    # 0.25 x (0.15 / 0.75 / 0.004) = 12.5 of capital, capped at 20 %
    assert [(e["kind"], e["amount"]) for e in out["entries"]] == [("allocation", 2000.0)]
    assert out["verified_entries"] == 2
    assert "exists" in await _error(server, "create_syndicate_tool", {"syndicate_id": "micro_traders", "name": "x"})
    assert "no syndicate" in await _error(server, "add_syndicate_member", {"syndicate_id": "nope", "name": "x",
                                                                           "email": "a@b"})
    assert out["open_allocations"] == out["entries"]

    b = await _ok(server, "add_syndicate_member", {"syndicate_id": "micro_traders", "name": "Late", "email": "l@x.y",
                                                   "initial_contribution": 30_000})  # after the allocation
    seq = out["entries"][0]["seq"]
    settled = await _ok(server, "settle_syndicate_allocation", {"syndicate_id": "micro_traders",
                                                                "allocation_seq": seq, "pnl": 123.45})
    assert [(e["kind"], e["member_id"], e["amount"]) for e in settled["entries"]] == [
        ("pnl", None, 123.45), ("profit_share", a["members"][0]["member_id"], 123.45)]  # the late member: none
    members = {m["name"]: m for m in settled["members"]}
    assert members["Model_x"]["capital"] == 10_123.45 and members["Late"]["profit"] == 0.0
    assert settled["open_allocations"] == [] and settled["capital"] == 40_123.45
    assert settled["verified_entries"] == b["verified_entries"] + 2
    assert "already settled" in await _error(server, "settle_syndicate_allocation", {
        "syndicate_id": "micro_traders", "allocation_seq": seq, "pnl": 1.0})
    assert "not an allocation" in await _error(server, "settle_syndicate_allocation", {
        "syndicate_id": "micro_traders", "allocation_seq": 1, "pnl": 1.0})


@pytest.mark.parametrize("name, args, expected", [
    ("execute_trade", {"model_id": "momo-00000000", "max_ticks": 10}, "greater than or equal"),
    ("allocate_syndicate_funds", {"syndicate_id": "s", "opportunities": [{"id": "x", "p_up": 2, "p_down": 0,
                                                                          "move": 0.1}]}, "less than or equal"),
    ("realtime_subscribe", {"model_id": "momo-00000000", "source": "redis", "stream": "a b"}, "pattern"),
    ("performance_report", {"strategy": "momo-00000000", "bogus": 1}, "Extra inputs"),
    ("settle_syndicate_allocation", {"syndicate_id": "s", "allocation_seq": 3, "pnl": "NaN"}, "valid number"),
    ("settle_syndicate_allocation", {"syndicate_id": "s", "allocation_seq": 0, "pnl": 1.0}, "greater than or equal"),
])
async def test_bad_arguments_are_refused_in_words(served, name, args, expected):
    assert expected in await _error(served[0], name, args)


async def test_subscribe_to_a_redis_stream_on_the_operators_server(served, redis_url, monkeypatch):  # noqa: F811
    server, model_id, blob, _ = served
    monkeypatch.delenv("PYMICRO_REDIS_URL", raising=False)
    assert "PYMICRO_REDIS_URL" in await _error(server, "realtime_subscribe", {
        "model_id": model_id, "source": "redis", "stream": "mcp-ticks"})
    monkeypatch.setenv("PYMICRO_REDIS_URL", redis_url)
    client, stream = connect(f"{redis_url}/mcp-ticks")
    client.delete(stream)
    t = load_es_ticks().iloc[:5000]
    ids = publish_ticks(client, stream, t.price.to_numpy(float), t.volume.to_numpy(float), session_seconds(t))
    out = await _ok(server, "realtime_subscribe", {"model_id": model_id, "source": "redis", "stream": stream,
                                                   "max_ticks": 100_000, "idle_exit_s": 0.3})
    assert out["ticks"] == 5000 and out["logged"] == 5000
    got_ids, pos, _ = read_signals(client, out["signals_stream"])
    assert got_ids == ids and out["long"] == int((pos > 0).sum())
