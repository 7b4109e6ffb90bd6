"""MCP: neural_train(model_id) runs continuous learning; neural_model_status shows versions,
aliases and drift; neural_model_promote and neural_model_rollback move the champion."""

from __future__ import annotations

import pytest
from netgen import perturbed
from test_mcp import stdio_session

import pymicro
from pymicro.store.registry import Registry

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_neural_train_fine_tunes_and_promote_rollback(tmp_path):
    home = tmp_path / "home"
    blob = pymicro.freeze(perturbed(pymicro.preset("momentum"), seed=4), preset="momentum", horizon=5,
                          threshold=0.5, symbols="SP500", train_end="2009-06-01", test_start="2011-01-03")
    model_id = Registry(home / "models").add(blob, "momo")
    async with stdio_session(home) as s:
        refused = await s.call_tool("neural_train", {"new_data": [{"date": "2020-01-01"}]})
        assert refused.is_error and "model_id" in refused.content[0].text
        result = await s.call_tool("neural_train", {"model_id": model_id, "epochs": 2})
        assert not result.is_error, result.content[0].text
        trained = result.structured_content
        out = trained["learning"]
        assert trained["model_id"] == out["candidate"]["model_id"] and trained["epochs_run"] <= 2
        assert out["parent"]["version"] == 1 and out["candidate"]["version"] == 2
        assert out["candidate"]["parent_hash"] == out["parent"]["content_hash"]
        decision = out["decision"]
        assert decision["promoted"] == (decision["test"]["interval"][0] > 0)
        assert out["aliases"]["champion"] == (2 if decision["promoted"] else 1)

        status = (await s.call_tool("neural_model_status", {"model_id": model_id})).structured_content
        assert [v["version"] for v in status["versions"]] == [1, 2]
        assert status["drift"]["status"] in ("stable", "moderate", "significant")
        assert status["last_decision"]["challenger"] == 2

        promoted = (await s.call_tool("neural_model_promote", {"name": "momo", "version": 2})).structured_content
        assert promoted["aliases"]["champion"] == 2
        back = (await s.call_tool("neural_model_rollback", {"name": "momo"})).structured_content
        assert back["version"] == 1 and back["content_hash"] == pymicro.load(blob).info.content_hash
        missing = await s.call_tool("neural_model_rollback", {"name": "nothing"})
        assert missing.is_error and "no earlier version" in missing.content[0].text


async def test_model_status_shows_drift_and_alerts(tmp_path):
    from monitor_fixtures import build

    from pymicro.lifecycle.alerts import AlertRules
    from pymicro.lifecycle.monitor import snapshot

    home = tmp_path / "home"
    reg, log = build(home)  # home/models: 'trader' v1, v2 (champion), a drift report; home/live: the log
    snapshot(reg, log, AlertRules(sharpe_window=300))  # evaluates the rules: the drift alert fires
    champion = reg.get_version("trader", "champion")
    async with stdio_session(home) as s:
        status = (await s.call_tool("neural_model_status", {"model_id": champion.model_id})).structured_content
    drift = reg.events("trader", "drift")[-1]
    assert status["aliases"] == {"champion": 2} and [v["version"] for v in status["versions"]] == [1, 2]
    assert status["drift"]["version"] == 2 and status["drift"]["max_psi"] == drift["payload"]["max_psi"]
    assert status["drift"]["psi"] == {f: v["psi"] for f, v in drift["payload"]["features"].items()}
    assert status["drift"]["out_of_range"] == drift["payload"]["out_of_range"]
    assert [(a["rule"], a["state"]) for a in status["alerts"]] == [("drift", "firing"), ("range", "firing")]
    assert status["alerts"][0]["value"] == drift["payload"]["max_psi"] and status["alerts"][0]["threshold"] == 0.25
