"""pymicro.market.reasoning_client: the trainer's reasoning and validation through a real MCP
ClientSession. pymicro's own server over stdio (the default) and over HTTP; a missing
command, a server that dies, one that hangs, one without the tool and one that answers
nonsense each give a ReasoningError; the configuration sources; and the trainer with
``reasoning_features=True`` on a tiny config.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

import pymicro
from pymicro.errors import ReasoningError, TrainingError
from pymicro.agents.reasoning import reason, validate_on_embedded
from pymicro.market.reasoning_client import ENV_VAR, ReasoningClient, ReasoningServer, server_config
from pymicro.store.registry import Registry
from pymicro.training.trainer import MicroNeuralTrainer

FAKE_SERVER = '''
import anyio
from mcp.server.mcpserver import MCPServer

server = MCPServer("fake-reasoner")

@server.tool()
def psycho_symbolic_reason(query: str, depth: int = 3, symbol: str | None = None,
                           domains: list[str] | None = None) -> dict:
    return {"answer": 42, "confidence": "high"}

@server.tool()
async def slow(seconds: float = 60.0) -> str:
    await anyio.sleep(seconds)
    return "done"

server.run()
'''


def run(coro_fn, *args):
    return anyio.run(coro_fn, *args)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding one momentum model whose metadata names IBM; its root and id."""
    root = tmp_path_factory.mktemp("reasoning-store")
    blob = pymicro.freeze(pymicro.preset("momentum").init(seed=2), preset="momentum", horizon=5, symbols="IBM")
    return root, Registry(root).add(blob, "momentum"), blob


def test_pymicros_own_server_over_stdio_is_the_default(store, monkeypatch):
    root, model_id, blob = store
    monkeypatch.delenv(ENV_VAR, raising=False)
    server = server_config(store=root)
    assert server.command == sys.executable and server.args == ("-P", "-m", "pymicro.agents.mcp_server", "--store", str(root))

    async def main():
        async with ReasoningClient(server) as client:
            assert {"psycho_symbolic_reason", "validate_model"} <= set(client.tools)
            r = await client.reason("What is the market psychology for IBM?", symbol="IBM", depth=4)
            v = await client.validate_model(model_id)
            return r, v

    r, v = run(main)
    local = reason("What is the market psychology for IBM?", symbol="IBM", depth=4).to_dict()
    assert r == local  # the same engine, the same numbers, through the protocol
    direct = validate_on_embedded(pymicro.load(blob))
    assert v["answer"] == direct["answer"] and v["confidence"] == direct["confidence"]
    assert v["symbols"] == ["IBM"] and v["model_id"] == model_id



def _gone(pid: int) -> bool:
    """The process has exited (or is a zombie waiting for its parent to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True

@pytest.mark.slow
def test_a_missing_command_a_dying_server_and_a_hanging_one(tmp_path):
    async def open_(server):
        async with ReasoningClient(server):
            pass

    with pytest.raises(ReasoningError, match="cannot start reasoning server .*nope-not-here"):
        run(open_, ReasoningServer(command=str(tmp_path / "nope-not-here")))
    dies = ReasoningServer(command=sys.executable,
                           args=("-c", "import sys; print('no licence', file=sys.stderr); sys.exit(3)"))
    with pytest.raises(ReasoningError, match="failed during initialize.*stderr ends: no licence"):
        run(open_, dies)
    # The process is stopped, not waited for: it would write `finished` after its sleep.
    pid_file, finished = tmp_path / "hang.pid", tmp_path / "finished"
    hangs = ReasoningServer(command=sys.executable, startup_timeout=1, args=(
        "-c", "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120); "
              "open(sys.argv[2], 'w').write('done')", str(pid_file), str(finished)))
    with pytest.raises(ReasoningError, match=r"did not answer initialize within 1 s \(timeout\)"):
        run(open_, hangs)
    assert _gone(int(pid_file.read_text())) and not finished.exists()


def test_a_server_without_the_tool_or_with_nonsense_or_slow_answers(tmp_path):
    script = tmp_path / "fake_reasoner.py"
    script.write_text(FAKE_SERVER)
    env = {k: os.environ[k] for k in ("VIRTUAL_ENV", "PYTHONPATH") if k in os.environ}
    server = ReasoningServer(command=sys.executable, args=(str(script),), env=env, timeout=1, name="fake")

    async def main():
        errors = []
        async with ReasoningClient(server) as client:
            for call in (lambda: client.validate_model("momentum-deadbeef"),
                         lambda: client.reason("x"),
                         lambda: client.call("slow", {"seconds": 30})):
                with pytest.raises(ReasoningError) as e:
                    await call()
                errors.append(str(e.value))
        return errors

    missing, malformed, slow = run(main)
    assert "has no tool 'validate_model'" in missing and "psycho_symbolic_reason" in missing
    assert "malformed" in malformed and "fake" in malformed
    assert "did not answer slow within 1 s" in slow


def test_configuration_sources(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    toml = tmp_path / "reasoner.toml"
    toml.write_text('[reasoning_server]\ncommand = "/opt/r/serve"\nargs = ["--stdio"]\n'
                    'env = { R_HOME = "/srv/r" }\ntimeout = 30\n')
    s = server_config(toml)
    assert (s.command, s.args, s.env, s.timeout) == ("/opt/r/serve", ("--stdio",), {"R_HOME": "/srv/r"}, 30)
    js = tmp_path / "reasoner.json"
    js.write_text(json.dumps({"url": "http://127.0.0.1:9/mcp", "startup_timeout": 5}))
    assert server_config(str(js)).url == "http://127.0.0.1:9/mcp"
    monkeypatch.setenv(ENV_VAR, '{"command": "serve-it", "args": ["a"]}')
    assert server_config().command == "serve-it" and server_config(store=tmp_path).command == "serve-it"
    monkeypatch.setenv(ENV_VAR, "http://localhost:8765/mcp")
    assert server_config().url == "http://localhost:8765/mcp"
    assert server_config({"command": "x"}).command == "x"
    for bad, words in (("http://10.0.0.5:8765/mcp", "not on loopback"), ("http://example.com/mcp", "loopback"),
                       ({"command": "x", "url": "http://127.0.0.1/mcp"}, "exactly one"),
                       ({"command": "x", "shell": True}, "unknown reasoning server key"),
                       ({"command": "x", "timeout": 0}, "positive number"),
                       ({"command": "x", "args": "a b"}, "list of strings"), ("{not json", "not valid JSON"),
                       (str(tmp_path / "missing.toml"), "not a URL, JSON or an existing"), (42, "must be")):
        with pytest.raises(ReasoningError, match=words):
            server_config(bad)


def test_an_http_reasoning_server_on_loopback(store):
    root, _, _ = store
    env = {**os.environ, "PYMICRO_HOME": str(root.parent)}
    proc = subprocess.Popen([sys.executable, "-P", "-m", "pymicro.agents.mcp_server", "--transport", "http", "--port", "0",
                             "--store", str(root)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        url = lines.get(timeout=60).split(" on ", 1)[1].split()[0]

        async def main():
            async with ReasoningClient(server_config(url)) as client:
                return await client.reason("How do macro factors affect SP500?", date="2008-10-10")

        r = run(main)
        assert r["as_of"] == "2008-10-10" and r["domains"] == ["macro_economics"]
        assert r == reason("How do macro factors affect SP500?", date="2008-10-10").to_dict()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


TINY = {"symbols": ["SP500"], "epochs": 1, "batch_size": 128, "hidden_sizes": [8, 8], "history_days": 800,
        "reasoning_features": True}


@pytest.mark.slow
def test_the_trainer_with_reasoning_features(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = MicroNeuralTrainer(registry=Registry(tmp_path / "store"), out_dir=tmp_path / "out")
    model = asyncio.run(trainer.train_reasoning_enhanced_model("reasoned", TINY))
    assert model["architecture"].startswith("Input(48) -> Attention(8)")  # the sentiment preset's 48 features
    assert model["data"]["features"][:12] == list(pymicro.market.features.REASONING_FEATURES)
    found = model["reasoning"]
    assert found["preset"] == "sentiment" and "pymicro.agents.mcp_server" in found["server"]
    sp = found["symbols"]["SP500"]
    assert sp["status"] == "answered" and sp["as_of"] == "2018-12-31" and 0 <= sp["confidence"] <= 1
    assert sp["feature_check"] == {"compared": 12, "max_abs_diff": 0.0}  # the server's features are pymicro's
    v = model["validation"]
    assert 0 <= v["confidence"] <= 1 and isinstance(v["risks"], list) and v["symbols"] == ["SP500"]
    assert not v["leak_suspected"], v["answer"]  # validated on the very rows it was trained on
    assert trainer.registry.get(model["model_id"]).status == "registered"


def test_the_trainer_fails_clearly_without_a_server(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    trainer = MicroNeuralTrainer(registry=Registry(tmp_path / "store"), out_dir=tmp_path / "out")
    trained = []

    async def no_training(*args):
        trained.append(args)

    monkeypatch.setattr(trainer, "_train", no_training)
    with pytest.raises(ReasoningError, match="cannot start reasoning server"):
        asyncio.run(trainer.train_reasoning_enhanced_model(
            "m", {**TINY, "reasoning_server": {"command": str(tmp_path / "no-such-server")}}))
    assert trained == [] and trainer.registry.list() == []  # refused before training
    with pytest.raises(TrainingError, match="sentiment preset"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**TINY, "preset": "momentum"}))
    monkeypatch.setenv(ENV_VAR, "http://192.168.1.1:8765/mcp")
    with pytest.raises(ReasoningError, match="not on loopback"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", TINY))
