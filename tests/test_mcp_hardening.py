"""Hardening of the MCP server (issue 11): each test here failed on the server before the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pandas as pd
import pytest
from netgen import perturbed
from test_mcp import error_text, http_server, server_env, stdio_session

import pymicro
from pymicro.errors import DataError
from pymicro.market.data import load_embedded
from pymicro.market.news import validate_headlines
from pymicro.agents.reasoning import reason, symbol_from_query
from pymicro.store.registry import Registry

pytestmark = pytest.mark.anyio
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """PYMICRO_HOME with one registered momentum model and a data folder."""
    home = tmp_path_factory.mktemp("pymicro-home-hardening")
    blob = pymicro.freeze(perturbed(pymicro.preset("momentum"), seed=1), horizon="5d")
    model_id = Registry(home / "models").add(blob, "momentum")
    (home / "data").mkdir()
    return home, model_id


def post(url, headers):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


# --------------------------------------------------------------------------- 6: HTTP


def test_dns_rebinding_refused_on_127_0_0_2(home):
    with http_server(home[0], "--host", "127.0.0.2") as url:
        assert post(url, {"Host": "evil.example.com"}) == 421
        assert post(url, {"Origin": "http://evil.example.com"}) == 403


def test_http_token_required_when_set(home):
    with http_server(home[0], "--token", TOKEN) as url:
        assert post(url, {}) == 401
        assert post(url, {"Authorization": "Bearer wrong-token-wrong-token"}) == 401
        assert post(url, {"Authorization": f"Bearer {TOKEN}"}) != 401


def test_http_token_from_the_environment(home, monkeypatch):
    monkeypatch.setenv("PYMICRO_MCP_TOKEN", TOKEN)
    with http_server(home[0]) as url:
        assert post(url, {}) == 401


# --------------------------------------------------------------------------- 9: stdio framing

MALFORMED = {  # id -> (line, the id the answer carries, the error code)
    10: (b'{"jsonrpc":"1.0","id":10,"method":"ping"}', 10, -32600),
    11: (b'{"jsonrpc":"2.0","id":11,"method":5}', 11, -32600),
    12: (b'{"jsonrpc":"2.0","id":12,"method":"tools/list","params":[]}', 12, -32602),
    13: (b'[{"jsonrpc":"2.0","id":13,"method":"ping"}]', 13, -32600),
}
NULL_ID = [b'{"jsonrpc":"2.0","id":null,"method":"ping"}', b'{"jsonrpc":"2.0","id":true,"method":"ping"}',
           b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}']


def raw_stdio(home, lines: list[bytes], last_id: int) -> list[dict]:
    proc = subprocess.Popen([sys.executable, "-m", "pymicro.agents.mcp_server"], env={**os.environ, **server_env(home)},
                            cwd=str(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    for line in [json.dumps(init).encode(), b'{"jsonrpc":"2.0","method":"notifications/initialized"}', *lines,
                 json.dumps({"jsonrpc": "2.0", "id": last_id, "method": "ping"}).encode()]:
        proc.stdin.write(line + b"\n")
    proc.stdin.flush()
    answers = []
    while True:
        line = proc.stdout.readline()
        assert line, proc.stderr.read().decode()[-2000:]
        answers.append(json.loads(line))
        if answers[-1].get("id") == last_id:
            break
    proc.stdin.close()
    proc.wait(timeout=20)
    return answers[1:-1]  # without the initialize and the final ping


@pytest.mark.parametrize("request_id", sorted(MALFORMED))
def test_stdio_malformed_request_with_a_readable_id_is_answered(home, request_id):
    line, answer_id, code = MALFORMED[request_id]
    answers = raw_stdio(home[0], [line], 99)
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(answer_id, code)]


@pytest.mark.parametrize("line", NULL_ID)
def test_stdio_unusable_id_is_answered_with_id_null(home, line):
    answers = raw_stdio(home[0], [line], 99)
    assert len(answers) == 1 and answers[0]["id"] is None and answers[0]["error"]["code"] == -32600


# --------------------------------------------------------------------------- 10, 12: arguments

HOSTILE_ARGUMENTS = [  # each was accepted (or answered with advice for a Python caller) before
    ("list_models", {"bogus": 1}, "Extra inputs"),
    ("list_models", {"limit": "10"}, "valid integer"),
    ("list_models", {"limit": 10.0}, "valid integer"),
    ("verify_model", {"n_samples": "100"}, "valid integer"),
    ("neural_train", {"epochs": "5"}, "valid integer"),
    ("neural_train", {"use_attention": "true"}, "valid boolean"),
    ("analyze_news", {"headlines": [{"timestamp": "2010-05-03", "symbol": "A", "headline": "x", "extra": 1}]},
     "Extra inputs"),
    ("psycho_symbolic_reason", {"query": "x", "depth": "3"}, "valid integer"),
    ("neural_train", {"model_id": "momentum-1b925ee6", "new_data": [[1, 0, "x"]], "epochs": 5},
     "continuous learning"),
    ("neural_train", {"data_path": "../../etc/passwd"}, "outside"),
    ("neural_train", {"data_path": "/etc/passwd"}, "outside"),
    ("neural_train", {"data_path": "missing.csv"}, "no such file"),
    ("neural_train", {"validation_split": 0.9}, "validation_split"),
    ("neural_evaluate", {"test_data": "[[0.0] * 24]"}, "test_data must be"),
    ("neural_evaluate", {"test_data": "[1, 2]"}, "test_data"),
    ("neural_evaluate", {"test_data": {"input": [[0.0] * 24], "labels": [0], "bogus": 1}}, "bogus"),
    ("analyze_news", {"symbol": "AAPL", "lookback_hours": 24}, "headlines.csv"),
    ("analyze_news", {}, "give either headlines"),
]


async def test_hostile_arguments_are_refused_in_words(home):
    _, model_id = home
    async with stdio_session(home[0]) as s:
        for name, args, expected in HOSTILE_ARGUMENTS:
            if name in ("neural_evaluate",):
                args = {"model_id": model_id, **args}
            text = error_text(await s.call_tool(name, args))
            assert expected in text, (name, args, text)


async def test_predict_beyond_float32_is_worded_for_the_caller(home):
    _, model_id = home
    async with stdio_session(home[0]) as s:
        text = error_text(await s.call_tool("neural_predict", {"model_id": model_id,
                                                               "input": [[1e39] + [0.0] * 23]}))
    assert "input[0][0]" in text and "32-bit" in text and "nan_policy" not in text


async def test_input_schemas_forbid_unknown_arguments(home):
    async with stdio_session(home[0]) as s:
        tools = (await s.list_tools()).tools
    assert all(t.input_schema.get("additionalProperties") is False for t in tools)


# --------------------------------------------------------------------------- 7: news dates


@pytest.mark.parametrize("timestamp", ["2300-01-01", "9999-12-31", "1500-06-01T10:00:00Z"])
def test_headline_dates_outside_the_range_are_refused(timestamp):
    frame = pd.DataFrame({"timestamp": [timestamp], "symbol": ["AAPL"], "headline": ["x"]})
    with pytest.raises(DataError, match="outside the supported range"):
        validate_headlines(frame)


async def test_analyze_news_refuses_an_out_of_range_date(home):
    async with stdio_session(home[0]) as s:
        text = error_text(await s.call_tool("analyze_news", {"headlines": [
            {"timestamp": "2300-01-01", "symbol": "AAPL", "headline": "Apple beats estimates"}]}))
    assert "outside the supported range" in text


# --------------------------------------------------------------------------- 11: the seed's arguments


async def test_analyze_news_reads_the_stored_headlines_of_a_symbol(home, tmp_path):
    now = pd.Timestamp.now(tz="America/New_York").tz_localize(None)
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"timestamp": [(now - pd.Timedelta(hours=2)).strftime("%Y-%m-%d %H:%M"), "2010-05-03 14:30"],
                  "symbol": ["AAPL", "AAPL"], "headline": ["Apple beats estimates on strong growth", "old"]}
                 ).to_csv(data / "headlines.csv", index=False)
    env_home = tmp_path
    (env_home / "models").mkdir()
    async with stdio_session(env_home) as s:
        out = (await s.call_tool("analyze_news", {"symbol": "AAPL", "lookback_hours": 24,
                                                  "sentiment_model": "enhanced", "use_gpu": True}))
        assert not out.is_error, out
        result = out.structured_content
        assert result["headlines"] == 1 and result["days"][0]["n_positive"] >= 1
        assert "enhanced" in result["rules"]["sentiment_model"] and "no GPU" in result["rules"]["use_gpu"]


async def test_neural_evaluate_returns_top_level_accuracy_and_sharpe(home):
    _, model_id = home
    async with stdio_session(home[0]) as s:
        out = (await s.call_tool("neural_evaluate", {"model_id": model_id, "symbol": "SP500",
                                                     "start": "2015-01-02"})).structured_content
        assert out["accuracy"] == out["classification"]["accuracy"]
        assert out["sharpe"] == out["trading"]["metrics"]["strategy"]["sharpe"]
        assert out["buy_and_hold_sharpe"] == out["trading"]["metrics"]["buy_and_hold"]["sharpe"]
        rows = [[0.1 * i] * 24 for i in range(5)]
        given = (await s.call_tool("neural_evaluate", {"model_id": model_id, "test_data": json.dumps(
            {"input": rows, "labels": [0, 1, 2, 1, 0]}), "metrics": ["accuracy", "sharpe"]})).structured_content
        direct = (await s.call_tool("neural_evaluate", {"model_id": model_id, "input": rows,
                                                        "labels": [0, 1, 2, 1, 0]})).structured_content
        assert given["accuracy"] == direct["accuracy"] and given["n"] == 5 and given["sharpe"] is None


async def test_neural_train_use_gpu_without_a_gpu_is_a_clear_error(home):
    from pymicro.training.toolchain import select_device

    if select_device("auto") != "CPU":
        pytest.skip("this machine has a GPU")
    async with stdio_session(home[0]) as s:
        text = error_text(await s.call_tool("neural_train", {"use_gpu": True, "epochs": 1}, read_timeout_seconds=120))
    assert "no GPU" in text


# --------------------------------------------------------------------------- 14: the symbol in the query


@pytest.mark.parametrize("query, symbol", [("What is the market psychology for AAPL?", "AAPL"),
                                           ("How is Apple doing?", "AAPL"), ("Is MSFT overbought?", "MSFT"),
                                           ("What does the S&P 500 say?", "SP500"), ("Will TSLA rise?", "TSLA"),
                                           ("Does 72% accuracy make sense?", None)])
def test_symbol_from_query(query, symbol):
    assert symbol_from_query(query) == symbol


def test_reason_answers_about_the_symbol_the_query_names():
    assert reason("What is the market psychology for AAPL?").symbol == "AAPL"
    assert reason("What did AAPL look like on 2011-08-08?").as_of == "2011-08-08"
    unknown = reason("Will TSLA rise next week?")
    assert unknown.symbol == "TSLA" and unknown.status == "cannot_know"


# --------------------------------------------------------------------------- 13, 15: trained models


@pytest.fixture(scope="module")
def leak_csv(tmp_path_factory):
    """SP500 from 2008 with its open replaced by the close five bars ahead: a planted leak."""
    bars = load_embedded(["SP500"])
    bars = bars[bars.date >= "2008-01-01"].copy()
    bars["open"] = bars["close"].shift(-5)
    bars = bars.dropna()
    bars["high"] = bars[["high", "open", "close"]].max(axis=1)
    bars["low"] = bars[["low", "open", "close"]].min(axis=1)
    path = tmp_path_factory.mktemp("leak") / "leak.csv"
    bars.to_csv(path, index=False)
    return path


def test_pymicro_train_prints_the_leak_verdict(leak_csv, tmp_path):
    out = subprocess.run([sys.executable, "-c", "import sys; from pymicro.cli import main; sys.exit(main())", "train", "--data", str(leak_csv), "--epochs", "3",
                          "--batch-size", "128", "--no-plot", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CRITICAL: a leak is suspected" in out.stdout


async def test_neural_train_returns_the_leak_checks_and_verify_passes_a_trained_model(leak_csv, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "leak.csv").write_bytes(leak_csv.read_bytes())
    async with stdio_session(tmp_path) as s:
        trained = await s.call_tool("neural_train", {"data_path": "leak.csv", "epochs": 3, "batch_size": 128,
                                                     "validation_split": 0.2, "use_gpu": False},
                                    read_timeout_seconds=300)
        assert not trained.is_error, trained
        out = trained.structured_content
        assert out["leak_checks"]["status"] == "critical" and out["data"]["symbols"] == ["SP500"]
        report = Registry(tmp_path / "models").read_report(out["model_id"])
        assert report["settings"]["validation_split"] == 0.2 and report["settings"]["device"] == "CPU"
        verified = (await s.call_tool("verify_model", {"model_id": out["model_id"]})).structured_content
        assert verified["passed"], verified["checks"]


async def test_verify_model_fails_a_corrupted_model(home, tmp_path):
    registry = Registry(tmp_path / "models")
    blob = bytearray(pymicro.freeze(perturbed(pymicro.preset("momentum"), seed=2)))
    model_id = registry.add(bytes(blob), "momentum")
    path = next((tmp_path / "models").rglob("*.pmb"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # flip one bit of a weight
    path.write_bytes(bytes(data))
    async with stdio_session(tmp_path) as s:
        result = await s.call_tool("verify_model", {"model_id": model_id})
    assert result.is_error or not result.structured_content["passed"]
