"""neural_predict and psycho_symbolic_reason over MCP (stdio, the SDK's ClientSession) beside
the same work in-process (pymicro.predict, pymicro.agents.reasoning.reason), and the cost of opening
a reasoning session (pymicro.market.reasoning_client: spawn the server, initialize, list tools),
which the trainer pays once per run with reasoning_features=True.

The same momentum blob, the same rows, the same run. The MCP figure is a full round trip:
the client serialises the request, the server process (``python -m pymicro.agents.mcp_server``)
parses and validates it, looks the model up in the registry (SQLite), predicts, and sends
the structured result back, which the client parses and checks against the output schema.
The client runs in an event loop on a helper thread (anyio's blocking portal), as a
synchronous caller would use it; that hop is part of the figure.

Run with ``pytest benchmarks/test_bench_mcp.py``; the table is printed and written to
benchmarks/results/mcp-latest.md.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
from pathlib import Path

import anyio.from_thread
import numpy as np
import pytest
from budgets import MCP_ROUND_TRIP_MAX_S
from mcp import ClientSession, StdioServerParameters, stdio_client

import pymicro
from pymicro.runtime import bench
from pymicro.store.registry import Registry

RESULTS = Path(__file__).resolve().parent / "results" / "mcp-latest.md"
BATCH = 256
MEDIANS: dict[str, float] = {}
MCP_ROUNDS = pytest.mark.benchmark(min_rounds=200, max_time=3.0, warmup=True, warmup_iterations=20)
INPROC = pytest.mark.benchmark(min_time=2e-4, max_time=0.5, min_rounds=50, warmup=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(call, model, model_id, x, X): ``call(name, args)`` runs a tool over a live stdio session."""
    home = tmp_path_factory.mktemp("bench-mcp-home")
    blob = bench.preset_blob("momentum", seed=0)
    model_id = Registry(home / "models").add(blob, "momentum")
    model = pymicro.load(blob)
    x, X = bench.inputs(model.input_size, BATCH, seed=0)

    async def session_cm():
        params = StdioServerParameters(command=sys.executable, args=["-m", "pymicro.agents.mcp_server"],
                                       env={"PYMICRO_HOME": str(home)}, cwd=str(home))
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                await session.list_tools()  # the client caches output schemas from here
                yield session

    from contextlib import asynccontextmanager

    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        with portal.wrap_async_context_manager(asynccontextmanager(session_cm)()) as session:
            def call(name, args):
                result = portal.call(session.call_tool, name, args)
                assert not result.is_error, result
                return result

            yield call, model, model_id, x, X


def _record(benchmark, label: str) -> None:
    stats = getattr(benchmark, "stats", None)
    if not benchmark.disabled and stats is not None and stats.stats:
        MEDIANS[label] = stats.stats.median
        benchmark.extra_info.update(label=label, machine=bench.machine_name())


@INPROC
def test_inprocess_predict_single(benchmark, served):
    _, model, _, x, _ = served
    benchmark.group = "neural_predict vs pymicro.predict, one row"
    probs = benchmark(pymicro.predict, model, x)
    _record(benchmark, "pymicro.predict, 1 row")
    assert probs.shape == (3,)


@MCP_ROUNDS
def test_mcp_stdio_predict_single(benchmark, served):
    call, model, model_id, x, _ = served
    benchmark.group = "neural_predict vs pymicro.predict, one row"
    args = {"model_id": model_id, "input": [x.tolist()]}
    result = benchmark(call, "neural_predict", args)
    _record(benchmark, "MCP stdio neural_predict, 1 row")
    np.testing.assert_allclose(result.structured_content["probabilities"][0], model.predict(x), atol=1e-6)


@INPROC
def test_inprocess_predict_batch(benchmark, served):
    _, model, _, _, X = served
    benchmark.group = f"neural_predict vs pymicro.predict, {BATCH} rows"
    probs = benchmark(pymicro.predict, model, X)
    _record(benchmark, f"pymicro.predict, {BATCH} rows")
    assert probs.shape == (BATCH, 3)


@MCP_ROUNDS
def test_mcp_stdio_predict_batch(benchmark, served):
    call, model, model_id, _, X = served
    benchmark.group = f"neural_predict vs pymicro.predict, {BATCH} rows"
    args = {"model_id": model_id, "input": X.tolist()}
    result = benchmark(call, "neural_predict", args)
    _record(benchmark, f"MCP stdio neural_predict, {BATCH} rows")
    np.testing.assert_allclose(result.structured_content["probabilities"], model.predict(X), atol=1e-6)


REASON_QUERY = "What is the market psychology for SP500?"
REASON_ROUNDS = pytest.mark.benchmark(min_rounds=50, max_time=3.0, warmup=True, warmup_iterations=5)


@INPROC
def test_inprocess_reason(benchmark):
    from pymicro.agents.reasoning import reason

    benchmark.group = "psycho_symbolic_reason vs pymicro.agents.reasoning.reason, depth 3"
    result = benchmark(reason, REASON_QUERY, depth=3)
    _record(benchmark, "pymicro.agents.reasoning.reason, depth 3")
    assert result.status == "answered"


@REASON_ROUNDS
def test_mcp_stdio_reason(benchmark, served):
    call = served[0]
    benchmark.group = "psycho_symbolic_reason vs pymicro.agents.reasoning.reason, depth 3"
    result = benchmark(call, "psycho_symbolic_reason", {"query": REASON_QUERY, "depth": 3})
    _record(benchmark, "MCP stdio psycho_symbolic_reason, depth 3")
    assert result.structured_content["status"] == "answered"


def test_reasoning_session_startup(benchmark, tmp_path):
    """Spawn pymicro's server, initialize, list the tools, close: what a trainer run pays once."""
    from pymicro.market.reasoning_client import ReasoningClient, ReasoningServer

    async def open_close():
        async with ReasoningClient(ReasoningServer.pymicro(tmp_path / "store")) as client:
            assert "psycho_symbolic_reason" in client.tools

    benchmark.group = "reasoning session"
    benchmark.pedantic(anyio.run, args=(open_close,), rounds=3, iterations=1)
    _record(benchmark, "ReasoningClient open + close (stdio)")


def test_report():
    """The table, with each MCP round trip as a multiple of the in-process call (same run)."""
    if not MEDIANS:
        pytest.skip("nothing was timed (benchmarks disabled or deselected)")
    pairs = [("MCP stdio neural_predict, 1 row", "pymicro.predict, 1 row"),
             (f"MCP stdio neural_predict, {BATCH} rows", f"pymicro.predict, {BATCH} rows"),
             ("MCP stdio psycho_symbolic_reason, depth 3", "pymicro.agents.reasoning.reason, depth 3"),
             ("ReasoningClient open + close (stdio)", "ReasoningClient open + close (stdio)")]
    lines = ["# pymicro's tools over MCP stdio beside the same calls in-process", "",
             f"- When: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
             f"- Machine: {bench.machine_name()}; Python {sys.version.split()[0]}; pid {os.getpid()}",
             ("- Same momentum blob and rows; the same reasoning query (SP500, its latest date); medians of "
              "pytest-benchmark rounds."), "",
             "| call | median | × in-process |", "|---|---:|---:|"]
    for mcp_label, local_label in pairs:
        for label in (local_label, mcp_label):
            if label in MEDIANS:
                ratio = ("—" if mcp_label == local_label else f"{MEDIANS[label] / MEDIANS[local_label]:,.0f}×"
                         if label == mcp_label and local_label in MEDIANS else "1×")
                if mcp_label == local_label and lines[-1].startswith(f"| {label} "):
                    continue  # a figure without an in-process twin, listed once
                lines.append(f"| {label} | {MEDIANS[label] * 1e6:,.1f} µs | {ratio} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    try:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
    except OSError:
        pass
    single = MEDIANS.get("MCP stdio neural_predict, 1 row")
    if single is not None:  # a sanity bound (budgets.py): a local round trip is milliseconds
        assert single < MCP_ROUND_TRIP_MAX_S, (f"an MCP round trip took {single * 1e3:.1f} ms, budget "
                                               f"{MCP_ROUND_TRIP_MAX_S * 1e3:.0f} ms")
