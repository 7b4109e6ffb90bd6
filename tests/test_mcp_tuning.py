"""neural_optimize over a real stdio server: the seed's hyper-parameter search tool."""

from __future__ import annotations

import pytest
from test_mcp import error_text, stdio_session, store  # noqa: F401  (the store fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_neural_optimize_searches_freezes_registers_and_compares(store):  # noqa: F811
    home, model_id, _ = store
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total))

    async with stdio_session(home) as s:
        refused = await s.call_tool("neural_optimize", {"trials": 2})
        assert "model_id" in error_text(refused) and "preset" in error_text(refused)
        bad = await s.call_tool("neural_optimize", {"preset": "momentum", "trials": 2,
                                                    "parameter_ranges": {"bogus": [1, 2]}})
        assert "bogus" in error_text(bad)
        result = await s.call_tool(
            "neural_optimize", {"preset": "momentum", "trials": 2, "epochs": 2,
                                "optimization_metric": "balanced_accuracy",
                                "parameter_ranges": {"learning_rate": [1e-3, 1e-2]}},
            progress_callback=on_progress, read_timeout_seconds=900)
        assert not result.is_error, error_text(result)
        out = result.structured_content
        assert out["optimization_metric"] == "balanced_accuracy"
        assert 1e-3 <= out["best_params"]["learning_rate"] <= 1e-2
        assert out["result"]["n_trials"]["complete"] + out["result"]["n_trials"]["pruned"] >= 2
        comparison = out["result"]["comparison"]
        assert {"tuned", "default", "baselines"} <= set(comparison)
        assert out["tuned_model_id"].startswith("momentum-tuned-")
        status = await s.call_tool("neural_model_status", {"model_id": out["tuned_model_id"]})
        assert not status.is_error, error_text(status)
    assert seen and seen[-1][0] == 2 and all(t == 2 for _, t in seen)
