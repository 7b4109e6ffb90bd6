"""The MCP server through real clients: the SDK's ClientSession over stdio and over
streamable HTTP on 127.0.0.1, plus raw stdio for messages no SDK client would send.

Each server runs in its own process with PYMICRO_HOME pointing at a temporary store that
holds one registered model.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import queue
import subprocess
import sys
import threading
from contextlib import asynccontextmanager, contextmanager

import numpy as np
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from netgen import perturbed

import pymicro
import pymicro.cli.models
from pymicro.agents import mcp_server
from pymicro.agents import server as S
from pymicro.agents.reasoning import DOMAINS
from pymicro.agents.tools_evaluation import MAX_WF_EPOCHS
from pymicro.agents.tools_news import MAX_HEADLINES
from pymicro.errors import PymicroError
from pymicro.store.registry import Registry

pytestmark = pytest.mark.anyio
CORE_TOOLS = {"neural_predict", "neural_model_status", "list_models", "verify_model"}
DATA_TOOLS = {"neural_evaluate", "neural_backtest", "analyze_news", "psycho_symbolic_reason", "validate_model"}
HEADLINES = [{"timestamp": "2010-05-03 14:30", "symbol": "AAPL", "headline": "Apple beats estimates on strong growth"},
             {"timestamp": "2010-05-03T21:00:00Z", "symbol": "AAPL", "headline": "Apple faces lawsuit over losses"},
             {"timestamp": "2010-05-08", "symbol": "IBM", "headline": "IBM outlook uncertain, not strong"}]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(PYMICRO_HOME, model id, blob) with one registered momentum model."""
    home = tmp_path_factory.mktemp("pymicro-home")
    blob = pymicro.freeze(perturbed(pymicro.preset("momentum"), seed=1), horizon="5d")
    model_id = Registry(home / "models").add(blob, "momentum", metrics={"accuracy": 0.41})
    return home, model_id, blob


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory):
    """(PYMICRO_HOME, model id, blob): a momentum model whose metadata says it was trained on
    SP500 with a test period from 2011-01-03, as pymicro.training.trainer writes it."""
    home = tmp_path_factory.mktemp("pymicro-home-trained")
    blob = pymicro.freeze(perturbed(pymicro.preset("momentum"), seed=4), preset="momentum", horizon=5,
                          threshold=0.5, symbols="SP500", train_end="2009-06-01", test_start="2011-01-03")
    return home, Registry(home / "models").add(blob, "momo"), blob


def server_env(home) -> dict:
    """What the server needs: stdio_client passes only HOME, PATH, ... unless told more."""
    env = {"PYMICRO_HOME": str(home)}
    env.update({k: os.environ[k] for k in ("CC", "DEV", "PYTHONPATH", "VIRTUAL_ENV") if k in os.environ})
    return env


@asynccontextmanager
async def stdio_session(home):
    params = StdioServerParameters(command=sys.executable, args=["-m", "pymicro.agents.mcp_server"],
                                   env=server_env(home), cwd=str(home))
    with open(home / "stdio-stderr.log", "a") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


@contextmanager
def http_server(home, *extra):
    """`python -m pymicro.agents.mcp_server --transport http --port 0`; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "pymicro.agents.mcp_server", "--transport", "http", "--port", "0",
                             *extra], env={**os.environ, **server_env(home)}, cwd=str(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        first = lines.get(timeout=60)
        assert "streamable HTTP on http://127." in first, first
        yield first.split(" on ", 1)[1].split()[0]
        assert proc.poll() is None, "the server died"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
        assert out == "", f"the HTTP server wrote to stdout: {out[:200]!r}"


def error_text(result) -> str:
    assert result.is_error, result
    return result.content[0].text


# --------------------------------------------------------------------------- stdio


async def test_stdio_tool_schemas_carry_bounds_and_enums(store):
    """Over stdio: bounds and enums are in the schemas."""
    home, model_id, blob = store
    pymicro.load(blob)
    async with stdio_session(home) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert CORE_TOOLS <= set(tools)
        assert "neural_train" in tools

        # bounds and enums are in the schemas
        predict = tools["neural_predict"].input_schema["properties"]
        assert predict["model_id"]["pattern"] == S.ID_PATTERN and predict["model_id"]["maxLength"] == S.ID_MAX_LEN
        assert predict["input"]["maxItems"] == S.MAX_ROWS and predict["input"]["minItems"] == 1
        assert predict["input"]["items"]["maxItems"] == S.MAX_FEATURES
        assert predict["input"]["items"]["items"]["type"] == "number"
        assert predict["backend"]["enum"] == ["native", "reference"]
        limit = tools["list_models"].input_schema["properties"]["limit"]
        assert (limit["minimum"], limit["maximum"]) == (1, S.MAX_LIST)
        status_enum = tools["list_models"].input_schema["properties"]["status"]["anyOf"][0]["enum"]
        assert status_enum == list(pymicro.store.registry.STATUSES)
        n_samples = tools["verify_model"].input_schema["properties"]["n_samples"]
        assert (n_samples["minimum"], n_samples["maximum"]) == (16, S.MAX_VERIFY_SAMPLES)
        train = tools["neural_train"].input_schema["properties"]
        assert (train["epochs"]["minimum"], train["epochs"]["maximum"]) == (1, 500)
        assert set(train["symbols"]["anyOf"][0]["items"]["enum"]) >= {"AAPL", "SP500"}
        assert tools["neural_train"].annotations.read_only_hint is False
        assert all(t.output_schema for t in tools.values())  # structured output everywhere
        assert tools["neural_predict"].annotations.read_only_hint is True


async def test_stdio_predict_gives_this_process_numbers(store):
    """Over stdio: predict: the same numbers as pymicro in this process."""
    home, model_id, blob = store
    model = pymicro.load(blob)
    async with stdio_session(home) as s:
        # predict: the same numbers as pymicro in this process
        x = np.random.default_rng(0).normal(size=(5, 24)).astype(np.float32)
        result = await s.call_tool("neural_predict", {"model_id": model_id, "input": x.tolist()})
        assert not result.is_error, result
        out = result.structured_content
        np.testing.assert_allclose(out["probabilities"], model.predict(x), atol=1e-6)
        assert out["labels"] == ["down", "flat", "up"]
        assert out["predicted"] == [out["labels"][i] for i in model.predict(x).argmax(axis=1)]
        assert out["predicted_index"] == model.predict(x).argmax(axis=1).tolist()
        ref = await s.call_tool("neural_predict", {"model_id": model_id, "input": x[:1].tolist(),
                                                   "backend": "reference"})
        assert ref.structured_content["backend"] == "reference"
        np.testing.assert_allclose(ref.structured_content["probabilities"], model.predict(x[:1]), atol=1e-6)


async def test_stdio_status_list_and_resources(store):
    """Over stdio: status, list, resources."""
    home, model_id, blob = store
    pymicro.load(blob)
    async with stdio_session(home) as s:
        # status, list, resources
        status = (await s.call_tool("neural_model_status", {"model_id": model_id})).structured_content
        assert status["params"] == pymicro.preset("momentum").params == 1107
        assert status["status"] == "registered" and status["metrics"] == {"accuracy": 0.41}
        assert status["metadata"]["horizon"] == "5d" and status["has_normalization"] is True
        listed = (await s.call_tool("list_models", {})).structured_content
        assert [m["model_id"] for m in listed["models"]] == [model_id] and listed["total"] == 1
        assert (await s.call_tool("list_models", {"status": "deprecated"})).structured_content["total"] == 0

        uri = f"pymicro://models/{model_id}"
        assert uri in [str(r.uri) for r in (await s.list_resources()).resources]
        templates = (await s.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["pymicro://models/{model_id}", "pymicro://live/plots/{name}"]
        content = (await s.read_resource(uri)).contents[0]
        assert content.mime_type == "application/json" and json.loads(content.text) == status
        with pytest.raises(MCPError, match="unknown model id"):
            await s.read_resource("pymicro://models/nope-deadbeef")


async def test_stdio_progress_notifications_from_verify_model(store):
    """Over stdio: progress notifications from a real tool."""
    home, model_id, blob = store
    pymicro.load(blob)
    async with stdio_session(home) as s:
        # progress notifications from a real tool
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        result = await s.call_tool("verify_model", {"model_id": model_id, "n_samples": 10_000},
                                   progress_callback=on_progress)
        report = result.structured_content
        assert report["passed"] and report["samples"] == 10_000 and report["max_abs_diff"] < 1e-5
        assert [c["name"] for c in report["checks"]] == ["integrity", "native vs reference", "probabilities",
                                                          "determinism and NaN policy"]
        total = 4 + 3  # four checks and three chunks of 4096 rows
        assert [p for p, _, _ in seen] == list(range(1, total + 1))
        assert {t for _, t, _ in seen} == {total} and "parity: 10000/10000 rows" in [m for *_, m in seen]

def hostile_calls(model_id: str) -> list[tuple[str, dict]]:
    """200+ tool calls that must each get an error."""
    good_row = [0.0] * 24
    bad_ids = ["../x", "../../etc/passwd", "/etc/passwd", f"{model_id}/../../x", "..", "", "a\x00-deadbeef",
               "é-deadbeef", model_id.upper(), "nope-deadbeef", "x" * 5000, "C:\\Windows\\x-deadbeef",
               "%2e%2e%2fx-deadbeef", model_id + "\n", "momentum-１b925ee6", 123, None, [], {}, True, 1.5]
    calls = []
    for bad in bad_ids:
        calls += [("neural_predict", {"model_id": bad, "input": [good_row]}),
                  ("neural_model_status", {"model_id": bad}),
                  ("verify_model", {"model_id": bad})]
    deep: list = [1.0]
    for _ in range(60):
        deep = [deep]
    bad_inputs = ["abc", 5, None, [], [[]], {"a": 1}, [[0.0] * 23], [[0.0] * 25], [good_row, [0.0] * 23],
                  [["a"] * 24], [[True] * 24], [[None] * 24], [[float("nan")] * 24], [[float("inf")] * 24],
                  [[1e39] * 24], [[-1e39] * 24], "[[NaN]]", "[[1e400]]", [[{"x": 1}] * 24], [["1.0"] * 24],
                  [good_row] * (S.MAX_ROWS + 1), [[0.0] * (S.MAX_FEATURES + 1)], deep, [[[0.0] * 24]],
                  [[0.0] * 4096] * 65, [[0.123456789] * 24] * 40_000]  # the last is over 8 MiB
    calls += [("neural_predict", {"model_id": model_id, "input": bad}) for bad in bad_inputs]
    calls += [("neural_predict", {"model_id": model_id, "input": [good_row], "backend": bad})
              for bad in ("cuda", "wasm", "", "NATIVE", 1, None, ["native"])]
    calls += [("list_models", args) for args in (
        {"limit": 0}, {"limit": -1}, {"limit": 10**9}, {"limit": "ten"}, {"limit": 1.5}, {"status": "bogus"},
        {"status": 3}, {"name": "../x"}, {"name": "a" * 100}, {"name": "a/b"}, {"limit": None})]
    calls += [("verify_model", {"model_id": model_id, **args}) for args in (
        {"n_samples": 0}, {"n_samples": 15}, {"n_samples": 10**9}, {"n_samples": -5}, {"n_samples": "many"},
        {"seed": -1}, {"seed": 2**40}, {"tolerance": 0}, {"tolerance": -1}, {"tolerance": 1.0},
        {"tolerance": "NaN"}, {"tolerance": float("nan")})]
    calls += [("neural_train", args) for args in (
        {"epochs": 0}, {"epochs": 501}, {"epochs": 10**6}, {"epochs": -1}, {"epochs": "many"},
        {"symbols": ["XYZ"]}, {"symbols": []}, {"symbols": ["../etc"]}, {"symbols": "AAPL"},
        {"preset": "evil"}, {"learning_rate": 0}, {"learning_rate": 5}, {"batch_size": 0},
        {"horizon": 0}, {"horizon": 1000}, {"name": "../x"}, {"hidden_sizes": [0]}, {"hidden_sizes": []},
        {"hidden_sizes": [8] * 9}, {"hidden_sizes": [10**6]}, {"threshold": 0}, {"lookback_days": 5},
        {"use_attention": "maybe"}, {"patience": 0}, {"seed": -3})]
    calls += new_tool_abuse(model_id, bad_ids)
    calls += [(name, {}) for name in ("", "nope", "../neural_predict", "neural_predict\x00", "NEURAL_PREDICT",
                                      "x" * 1000, "list_models; rm -rf /", "neural_eval")]
    calls += [("neural_predict", {}), ("neural_predict", {"model_id": model_id}), ("neural_model_status", {}),
              ("verify_model", {}), ("neural_predict", {"input": [good_row]})]
    rng = np.random.default_rng(7)  # seeded junk of every JSON type where a model id or rows go
    junk = [lambda: int(rng.integers(-10**9, 10**9)), lambda: float(rng.normal()), lambda: None,
            lambda: bool(rng.integers(2)), lambda: "".join(map(chr, rng.integers(0, 0x2FF, 12))),
            lambda: {"k": int(rng.integers(9))}, lambda: [int(rng.integers(9))] * int(rng.integers(0, 30))]
    for i in range(30):
        calls.append(("neural_predict", {"model_id": model_id, "input": junk[i % len(junk)]()}))
        calls.append(("neural_model_status", {"model_id": junk[(i + 3) % len(junk)]()}))
    return calls


def new_tool_abuse(model_id: str, bad_ids: list) -> list[tuple[str, dict]]:
    """Hostile calls to neural_evaluate, neural_backtest, analyze_news, psycho_symbolic_reason and
    validate_model: wrong types, out-of-range values, huge lists, traversal ids and paths, NaN."""
    nan, inf = float("nan"), float("inf")
    calls = []
    for bad in bad_ids[:12] + [123, []]:
        calls += [("neural_evaluate", {"model_id": bad}), ("neural_backtest", {"model_id": bad}),
                  ("validate_model", {"model_id": bad}),
                  ("psycho_symbolic_reason", {"query": "x", "model_id": bad})]
    bad_dates = ["2010-13-01", "2010-02-30", "yesterday", "../../etc", "2010-1-1", 20100101, "", "2010-01-01T00:00"]
    for d in bad_dates:
        calls += [("neural_evaluate", {"model_id": model_id, "start": d}),
                  ("neural_backtest", {"model_id": model_id, "end": d}),
                  ("psycho_symbolic_reason", {"query": "x", "date": d})]
    calls += [("neural_evaluate", {"model_id": model_id, **a}) for a in (
        {"symbol": "../etc/passwd"}, {"symbol": "TSLA"}, {"symbol": ["AAPL"]}, {"start": "2012-01-01", "end": "2011-01-01"},
        {"start": "1990-01-01", "end": "1990-12-31"}, {"input": [[0.0] * 24], "labels": [0, 1]},
        {"input": [[0.0] * 24], "labels": [7]}, {"input": [[0.0] * 24], "labels": [-1]}, {"input": [[0.0] * 24]},
        {"labels": [0, 1]}, {"input": [[0.0] * 24], "labels": [0.5]}, {"input": [[nan] * 24], "labels": [0]},
        {"input": [[0.0] * 24], "labels": [0], "symbol": "SP500"}, {"confidence": 1.5}, {"confidence": nan},
        {"cost_bps": -1}, {"cost_bps": inf}, {"threshold": 2}, {"input": [[0.0] * 24] * 5000, "labels": [0] * 5000})]
    calls += [("neural_backtest", a) for a in (
        {}, {"model_id": model_id, "preset": "momentum"}, {"preset": "evil"}, {"preset": "momentum", "epochs": 0},
        {"preset": "momentum", "epochs": 51}, {"preset": "momentum", "step": 1},
        {"preset": "momentum", "step": 5},  # every 5 bars over the whole history: far more than 40 retrains
        {"preset": "momentum", "train_window": 10**7}, {"preset": "momentum", "walk_forward": False},
        {"preset": "momentum", "symbol": "../x"}, {"preset": "momentum", "slippage_bps": nan},
        {"preset": "momentum", "start": "2018-12-01"}, {"preset": "momentum", "horizon": 0},
        {"model_id": model_id, "threshold": -0.1}, {"model_id": model_id, "long_only": "maybe"})]
    good = {"timestamp": "2010-05-03 14:30", "symbol": "AAPL", "headline": "ok"}
    calls += [("analyze_news", a) for a in (
        {}, {"headlines": []}, {"headlines": "/etc/passwd"}, {"headlines": ["/etc/passwd"]},
        {"headlines": [good] * 5001}, {"headlines": [{**good, "headline": "x" * 1001}]},
        {"headlines": [{**good, "headline": ""}]}, {"headlines": [{**good, "symbol": "../x"}]},
        {"headlines": [{**good, "timestamp": "not a time, honestly"}]}, {"headlines": [{**good, "timestamp": nan}]},
        {"headlines": [{"timestamp": "2010-05-03"}]}, {"headlines": [good], "tz": "Mars/Olympus_Mons"},
        {"headlines": [good], "tz": "../../etc/localtime"}, {"headlines": [good], "close_time": "25:00"},
        {"headlines": [good], "calendar": "nyse"}, {"path": "/etc/passwd"})]
    calls += [("psycho_symbolic_reason", a) for a in (
        {}, {"query": ""}, {"query": "x" * 2001}, {"query": None}, {"query": 5}, {"query": "x", "depth": 0},
        {"query": "x", "depth": 6}, {"query": "x", "depth": 2.5}, {"query": "x", "domains": ["astrology"]},
        {"query": "x", "domains": []}, {"query": "x", "domains": ["synthesis"] * 6},
        {"query": "x", "domains": ["synthesis"], "force_domains": ["macro_economics"]},
        {"query": "x", "symbol": "../../etc/passwd"}, {"query": "x", "symbol": "A" * 40},
        {"query": "x", "symbol": "AAPL\x00"}, {"query": "x", "analogical_reasoning": "maybe"})]
    calls += [("validate_model", {"model_id": model_id, **a}) for a in (
        {"fit": "magic"}, {"shuffles": 11}, {"shuffles": -1}, {"n_trials": 0}, {"resamples": 10},
        {"symbols": ["XYZ"]}, {"symbols": []}, {"lookback_days": 5}, {"cost_bps": nan}, {"seed": -1})]
    return calls


async def test_stdio_abuse_every_request_gets_an_error_and_the_server_carries_on(store):
    home, model_id, _ = store
    calls = hostile_calls(model_id)
    assert len(calls) >= 200
    async with stdio_session(home) as s:
        for name, args in calls:
            try:
                result = await s.call_tool(name, args, read_timeout_seconds=30)
            except MCPError as e:  # a JSON-RPC error (the over-long request)
                assert "over this server's limit" in str(e), (name, str(args)[:80], e)
                continue
            assert result.is_error, (name, str(args)[:80], result)
            assert len(error_text(result)) <= S.MAX_ERROR_CHARS + 100
        # resources with hostile ids are refused too
        for uri in ("pymicro://models/../../etc/passwd", "pymicro://models/%2e%2e%2fx", "file:///etc/passwd",
                    "pymicro://models/" + "x" * 3000, "pymicro://models/nope-deadbeef"):
            with pytest.raises(MCPError):
                await s.read_resource(uri)
        # ... and a good request afterwards is answered
        result = await s.call_tool("neural_predict", {"model_id": model_id, "input": [[0.5] * 24]})
        assert not result.is_error and len(result.structured_content["probabilities"][0]) == 3
    errors = {e for e in (home / "stdio-stderr.log").read_text().splitlines() if "Traceback" in e}
    assert not errors, "a hostile request crashed inside a tool"


def test_stdio_malformed_messages_are_answered(store):
    """Lines no SDK client sends: not JSON, too deep, not JSON-RPC, too long, not UTF-8."""
    home, model_id, _ = store
    proc = subprocess.Popen([sys.executable, "-m", "pymicro.agents.mcp_server"], env={**os.environ, **server_env(home)},
                            cwd=str(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def send(message):
        proc.stdin.write((message if isinstance(message, bytes) else json.dumps(message).encode()) + b"\n")
        proc.stdin.flush()

    def call(i, name, arguments):
        return {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": arguments}}

    send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}})
    send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    predict = json.dumps(call(1, "neural_predict", {"model_id": model_id, "input": []})).encode()
    send(b"this is not json")  # no id: nothing to answer
    send(b'{"jsonrpc":"2.0","id":2, garbage')
    send(predict.replace(b"[]", b"[" * 300 + b"]" * 300).replace(b'"id": 1', b'"id": 3'))
    send(predict.replace(b"[]", b"[" * 220 + b"]" * 220).replace(b'"id": 1', b'"id": 4'))
    send({"jsonrpc": "2.0", "id": 5})
    send(b'{"jsonrpc":"2.0","id":6,"method":"tools/call","params":' + b"x" * (S.MAX_REQUEST_BYTES + 10) + b"}")
    send(b"\xff\xfe\x00{")
    send({"jsonrpc": "2.0", "id": 7, "method": "no/such/method"})
    send(b'{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"neural_predict","arguments":'
         b'{"model_id":"' + model_id.encode() + b'","input":[[NaN' + b",0" * 23 + b"]]}}}")
    send(call(9, "neural_predict", {"model_id": model_id, "input": [[0.25] * 24]}))
    answers = {}
    while 9 not in answers:
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode()[-2000:]
        message = json.loads(line)
        answers[message.get("id")] = message
    proc.stdin.close()
    assert proc.wait(timeout=20) == 0
    assert answers[2]["error"]["code"] == -32700 and "not valid JSON" in answers[2]["error"]["message"]
    assert answers[3]["error"]["code"] == -32700 and "recursion" in answers[3]["error"]["message"]
    assert answers[4]["error"]["code"] == -32700  # the SDK's own parser stops at a depth near 200
    assert answers[5]["error"]["code"] == -32600
    assert answers[6]["error"]["code"] == -32600 and "over this server's limit" in answers[6]["error"]["message"]
    assert answers[7]["error"]["code"] == -32601
    assert answers[8]["result"]["isError"] and "finite" in answers[8]["result"]["content"][0]["text"]
    assert not answers[9]["result"]["isError"]
    assert set(answers) == {0, 2, 3, 4, 5, 6, 7, 8, 9}


async def test_stdio_neural_train_progress_one_job_at_a_time_and_registered(store):
    import anyio

    home, _, _ = store
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    async with stdio_session(home) as s:
        outcome = {}

        async def train():
            outcome["result"] = await s.call_tool(
                "neural_train", {"symbols": ["AAPL"], "epochs": 2, "batch_size": 128, "patience": None,
                                 "name": "mcp-test"}, progress_callback=on_progress, read_timeout_seconds=300)

        async with anyio.create_task_group() as tg:
            tg.start_soon(train)
            with anyio.fail_after(120):
                while not seen and "result" not in outcome:  # the job has started (or failed)
                    await anyio.sleep(0.05)
            assert seen, outcome["result"]
            second = await s.call_tool("neural_train", {"epochs": 1})
            assert "already running" in error_text(second)
            listed = await s.call_tool("list_models", {})  # the server keeps answering meanwhile
            assert not listed.is_error
        result = outcome["result"]
        assert not result.is_error, result
        out = result.structured_content
        assert out["epochs_run"] == 2 and out["data"]["symbols"] == ["AAPL"]
        assert out["model_id"].startswith("mcp-test-") and out["params"] == 1107
        assert 0 <= out["performance"]["accuracy"] <= 1 and "majority_accuracy" in out["performance"]
        assert out["parity"]["max_abs_diff"] < 1e-4
        assert [p for p, _, _ in seen] == [0, 1, 2, 3] and {t for _, t, _ in seen} == {3}
        assert seen[1][2].startswith("epoch 1/2") and seen[-1][2].startswith("registered mcp-test-")

        status = (await s.call_tool("neural_model_status", {"model_id": out["model_id"]})).structured_content
        assert status["metrics"]["accuracy"] == out["performance"]["accuracy"] and status["has_report"]
        assert len(status["feature_names"]) == 24 and status["metadata"]["symbols"] == "AAPL"
        report = Registry(home / "models").read_report(out["model_id"])
        assert report["tool"] == "neural_train" and "blob_path" not in report and len(report["history"]["val_loss"]) == 2
        predicted = await s.call_tool("neural_predict", {"model_id": out["model_id"], "input": [[0.0] * 24]})
        assert not predicted.is_error
    Registry(home / "models").remove(out["model_id"])


async def test_stdio_data_tool_schemas(trained_store):
    """Over stdio: every data tool publishes its bounds, enums and an output schema."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset

    home, model_id, blob = trained_store
    pymicro.load(blob)
    bars = load_embedded(["SP500"])
    make_dataset(bars, "momentum", horizon=5)
    async with stdio_session(home) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert DATA_TOOLS <= set(tools) and all(tools[n].output_schema for n in DATA_TOOLS)
        props = {n: tools[n].input_schema["properties"] for n in DATA_TOOLS}
        assert props["neural_backtest"]["epochs"]["maximum"] == MAX_WF_EPOCHS
        assert props["analyze_news"]["headlines"]["anyOf"][0]["maxItems"] == MAX_HEADLINES
        assert (props["psycho_symbolic_reason"]["depth"]["minimum"], props["psycho_symbolic_reason"]["depth"]
                ["maximum"]) == (1, 5)
        assert props["psycho_symbolic_reason"]["domains"]["anyOf"][0]["items"]["enum"] == list(DOMAINS)
        assert props["validate_model"]["fit"]["enum"] == ["ridge", "tinygrad", "none"]
        assert tools["neural_evaluate"].annotations.read_only_hint is True


async def test_stdio_neural_evaluate(trained_store):
    """Over stdio: neural_evaluate on embedded dates that overlap the model's training period."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset

    home, model_id, blob = trained_store
    model = pymicro.load(blob)
    bars = load_embedded(["SP500"])
    ds = make_dataset(bars, "momentum", horizon=5)
    async with stdio_session(home) as s:
        # neural_evaluate on embedded dates that overlap the model's training period
        ev = (await s.call_tool("neural_evaluate", {"model_id": model_id, "start": "2010-01-04",
                                                    "end": "2012-12-31"})).structured_content
        rows = (ds.dates >= np.datetime64("2010-01-04")) & (ds.dates <= np.datetime64("2012-12-31"))
        pred = model.predict(ds.X[rows]).argmax(axis=1)
        assert ev["symbol"] == "SP500" and ev["n"] == rows.sum() and ev["period"] == ["2010-01-04", "2012-12-31"]
        assert ev["classification"]["accuracy"] == pytest.approx(np.mean(pred == ds.y[rows]))
        for key in ("balanced_accuracy", "accuracy_ci", "majority_accuracy", "p_value_vs_majority"):
            assert key in ev["classification"]
        oos = ev["out_of_sample"]
        later = ds.dates[rows] >= np.datetime64("2011-01-03")
        assert oos["status"] == "overlaps_training" and oos["rows_before_test_start"] == (~later).sum()
        assert oos["classification_from_test_start"]["n"] == later.sum() and "in-sample" in oos["caveat"]
        assert set(ev["trading"]["metrics"]) == {"strategy", "buy_and_hold", "majority_class", "momentum"}
        later_only = (await s.call_tool("neural_evaluate", {"model_id": model_id, "start": "2011-01-03"}))
        assert later_only.structured_content["out_of_sample"]["status"] == "out_of_sample"
        given = (await s.call_tool("neural_evaluate", {"model_id": model_id, "input": ds.X[:300].tolist(),
                                                       "labels": ds.y[:300].tolist()})).structured_content
        assert given["source"] == "rows" and given["out_of_sample"]["status"] == "unknown"
        assert given["classification"]["accuracy"] == pytest.approx(
            np.mean(model.predict(ds.X[:300]).argmax(axis=1) == ds.y[:300]))


async def test_stdio_neural_backtest(trained_store):
    """Over stdio: neural_backtest: the frozen model, then a walk-forward with one notification per block."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset

    home, model_id, blob = trained_store
    pymicro.load(blob)
    bars = load_embedded(["SP500"])
    make_dataset(bars, "momentum", horizon=5)
    async with stdio_session(home) as s:
        # neural_backtest: the frozen model, then a walk-forward with one notification per block
        bt = (await s.call_tool("neural_backtest", {"model_id": model_id, "start": "2011-01-03", "end": "2012-12-31",
                                                    "cost_bps": 2.0})).structured_content
        span = bars.set_index("date")["close"].loc["2011-01-03":"2012-12-31"]
        assert bt["mode"] == "frozen" and bt["metrics"]["buy_and_hold"]["total_return"] == pytest.approx(
            span.iloc[-1] / span.iloc[0] - 1 - 3e-4, rel=1e-3)  # entry cost: 2 + 1 bps
        assert bt["settings"]["cost_bps"] == 2.0 and any("out of sample: out_of_sample" in n for n in bt["notes"])
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        wf = (await s.call_tool("neural_backtest", {
            "preset": "momentum", "symbol": "SP500", "start": "2010-01-01", "end": "2011-03-31", "train_window": 200,
            "step": 60, "epochs": 1, "patience": None}, progress_callback=on_progress,
            read_timeout_seconds=300)).structured_content
        blocks = len(wf["windows"])
        assert wf["mode"] == "walk_forward" and blocks == 2 and wf["settings"]["blocks"] == 2
        assert [p for p, _, _ in seen] == list(range(blocks + 2)) and {t for _, t, _ in seen} == {blocks + 1}
        assert seen[1][2].startswith("block 1/2: trained on 2010-01-04..") and wf["classification"]["n"] > 0
        assert all(w["train_end"] < w["test_start"] for w in wf["windows"])


async def test_stdio_analyze_news(trained_store):
    """Over stdio: analyze_news: the same as pymicro.market.news in-process, with the licence note."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.market.news import analyze_news, validate_headlines

    home, model_id, blob = trained_store
    pymicro.load(blob)
    bars = load_embedded(["SP500"])
    make_dataset(bars, "momentum", horizon=5)
    async with stdio_session(home) as s:
        # analyze_news: the same as pymicro.market.news in-process, with the licence note
        news = (await s.call_tool("analyze_news", {"headlines": HEADLINES, "calendar": "embedded"})).structured_content
        local = analyze_news(validate_headlines(__import__("pandas").DataFrame(HEADLINES)),
                             calendar=bars["date"].to_numpy())
        local = local[local["has_news"] > 0]
        assert [(d["date"], d["symbol"], d["n_positive"], d["n_negative"], d["tone"]) for d in news["days"]] == [
            (str(r.date.date()), r.symbol, r.n_positive, r.n_negative, r.tone) for r in local.itertuples()]
        assert news["days"][1]["date"] == "2010-05-04"  # after the close: the next session
        assert "individual researchers" in news["licence"] and news["headlines"] == 3


async def test_stdio_reason_then_validate_model(trained_store):
    """Over stdio: psycho_symbolic_reason and validate_model."""
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.agents.reasoning import reason, validate_on_embedded

    home, model_id, blob = trained_store
    model = pymicro.load(blob)
    bars = load_embedded(["SP500"])
    make_dataset(bars, "momentum", horizon=5)
    async with stdio_session(home) as s:
        # psycho_symbolic_reason: the engine's answer, through the protocol
        args = {"query": "What is the market psychology for AAPL?", "force_domains": ["market_psychology"],
                "depth": 5, "symbol": "AAPL", "date": "2011-08-08"}
        r = (await s.call_tool("psycho_symbolic_reason", args)).structured_content
        assert r == reason(args["query"], domains=args["force_domains"], depth=5, symbol="AAPL",
                           date="2011-08-08").to_dict()
        future = (await s.call_tool("psycho_symbolic_reason", {"query": "Will AAPL rise?", "date": "2099-01-02",
                                                               "symbol": "AAPL"})).structured_content
        assert future["status"] == "cannot_know" and future["confidence"] == 0
        judged = (await s.call_tool("psycho_symbolic_reason", {"query": "Does this model make sense?",
                                                               "model_id": model_id})).structured_content
        assert judged["validation"]["symbols"] == ["SP500"] and judged["intent"] == ["validation"]

        # validate_model: pymicro.evaluation.validation on the embedded data of the model's symbols
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))

        v = (await s.call_tool("validate_model", {"model_id": model_id}, progress_callback=on_progress))
        direct = validate_on_embedded(model)
        assert v.structured_content["answer"] == direct["answer"] and v.structured_content["symbols"] == ["SP500"]
        assert v.structured_content["confidence"] == judged["confidence"] == direct["confidence"]
        assert [p for p, _, _ in seen] == [0, 1]


# --------------------------------------------------------------------------- streamable HTTP

async def test_http_session_on_loopback(store):
    home, model_id, blob = store
    with http_server(home) as url:
        async with streamable_http_client(url) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                assert CORE_TOOLS <= {t.name for t in (await s.list_tools()).tools}
                x = np.random.default_rng(1).normal(size=(3, 24)).astype(np.float32)
                result = await s.call_tool("neural_predict", {"model_id": model_id, "input": x.tolist()})
                np.testing.assert_allclose(result.structured_content["probabilities"],
                                           pymicro.load(blob).predict(x), atol=1e-6)
                status = (await s.call_tool("neural_model_status", {"model_id": model_id})).structured_content
                assert status["model_id"] == model_id
                text = (await s.read_resource(f"pymicro://models/{model_id}")).contents[0].text
                assert json.loads(text) == status

                seen = []

                async def on_progress(progress, total, message):
                    seen.append(progress)

                result = await s.call_tool("verify_model", {"model_id": model_id, "n_samples": 5000},
                                           progress_callback=on_progress)
                assert result.structured_content["passed"] and seen == [1, 2, 3, 4, 5, 6]

                assert "model_id: String should match pattern" in error_text(await s.call_tool(
                    "neural_predict", {"model_id": "../../etc/passwd-deadbeef", "input": [[0.0] * 24]}))
                assert "unknown model id" in error_text(await s.call_tool("neural_model_status",
                                                                          {"model_id": "nope-deadbeef"}))
                assert "finite" in error_text(await s.call_tool("neural_predict", {
                    "model_id": model_id, "input": "[[NaN" + ",0" * 23 + "]]"}))
                assert "Unknown tool" in error_text(await s.call_tool("rm_rf", {}))
                r = (await s.call_tool("psycho_symbolic_reason", {"query": "How do macro factors affect SP500?",
                                                                  "date": "2008-10-10"})).structured_content
                assert r["status"] == "answered" and r["domains"] == ["macro_economics"]
                news = await s.call_tool("analyze_news", {"headlines": HEADLINES})
                assert len(news.structured_content["days"]) == 3
                assert "String should match pattern" in error_text(await s.call_tool(
                    "psycho_symbolic_reason", {"query": "x", "symbol": "../../etc/passwd"}))
                with pytest.raises(MCPError):  # over the 8 MiB body limit: HTTP 413
                    await s.call_tool("neural_predict", {"model_id": model_id,
                                                         "input": [[0.123456789] * 24] * 40_000})
                result = await s.call_tool("neural_predict", {"model_id": model_id, "input": [[0.5] * 24]})
                assert not result.is_error


def test_http_refuses_a_foreign_host_header(store):
    import urllib.error
    import urllib.request

    home, _, _ = store
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    with http_server(home) as url:
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Host": "evil.example.com", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(request, timeout=10)
        assert e.value.code == 421  # DNS-rebinding protection


def test_http_listens_on_loopback_only(capsys):
    assert S.check_host("127.0.0.1") == "127.0.0.1" and S.check_host("::1") == "::1"
    assert S.check_host("localhost") == "127.0.0.1"
    for host in ("0.0.0.0", "::", "10.1.2.3", "example.com", "127.0.0.1.nip.io"):
        with pytest.raises(PymicroError, match="loopback only"):
            S.check_host(host)
    assert S.check_host("0.0.0.0", allow_remote=True) == "0.0.0.0"
    assert mcp_server.main(["--transport", "http", "--host", "0.0.0.0"]) == 2
    captured = capsys.readouterr()
    assert "loopback only" in captured.err and captured.out == ""


# --------------------------------------------------------------------------- pieces


def test_bounded_lines_skip_an_over_long_line_and_answer_its_id():
    import anyio

    data = (b'{"jsonrpc":"2.0","id":1,"method":"ping"}\n'
            b'{"jsonrpc":"2.0","id":"abc","method":"tools/call","params":{"x":"' + b"y" * 5000 + b'"}}\n'
            b'{"method":"tools/call","params":{"x":"' + b"y" * 5000 + b'"},"id":9}\n'
            b'{"jsonrpc":"2.0","id":2,"method":"ping"}')
    lines = S._BoundedLines(io.BufferedReader(io.BytesIO(data)), limit=1000)

    async def collect():
        return [line async for line in lines]

    out = anyio.run(collect)
    assert len(out) == 3  # the third line's id comes after its params: dropped
    assert json.loads(out[0])["id"] == 1 and json.loads(out[2])["id"] == 2
    stand_in = json.loads(out[1])
    assert stand_in["id"] == "abc" and stand_in["method"] == S.REFUSED_METHOD
    assert "over this server's limit of 1000 bytes" in stand_in["params"]["message"]
    assert S._leading_id(b'{"id": "x\\"y"') is None and S._leading_id(b'{"id":-3,') == -3


def test_tool_list_and_cli_wiring():
    assert [t.fn.__name__ for t in S.TOOLS][:4] == ["neural_predict", "neural_model_status", "list_models",
                                                     "verify_model"]
    from pymicro.cli import mcp as mcp_cli

    parser = argparse.ArgumentParser(prog="pymicro")
    sub = parser.add_subparsers(dest="command")
    mcp_cli.add_parser(sub)
    pymicro.cli.models.add_parser(sub)
    args = parser.parse_args(["mcp", "--transport", "http", "--port", "0"])
    assert args.func is mcp_cli.run and (args.transport, args.host, args.port) == ("http", "127.0.0.1", 0)
    assert parser.parse_args(["models", "list"]).func.__name__ == "_cmd_models"


def test_progress_rises_and_stops_the_work_when_the_request_is_cancelled():
    import anyio

    sent, steps, stopped = [], [], threading.Event()

    class FakeContext:  # what Progress uses of the SDK's Context
        async def report_progress(self, progress, total=None, message=None):
            sent.append((progress, total, message))

    def work(report, n):
        try:
            for i in range(1, n + 1):
                steps.append(i)
                report(i, f"step {i}")
                report(i, "again")  # not above the last one: skipped
                threading.Event().wait(0.01)
            return "done"
        finally:
            stopped.set()

    async def main():
        assert await S.Progress(FakeContext(), total=3).run(work, 3) == "done"
        assert sent == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]
        sent.clear(), steps.clear(), stopped.clear()
        with anyio.move_on_after(0.1):
            await S.Progress(FakeContext(), total=10_000).run(work, 10_000)
        assert stopped.is_set() and len(steps) < 10_000  # the worker stopped at its next report

    anyio.run(main)
