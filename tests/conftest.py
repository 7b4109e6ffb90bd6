"""Shared fixtures, and the ``slow`` marker of the tests in files other work is editing."""

import pytest
from netgen import perturbed

import pymicro

# The slowest tests (pytest --durations=25) carry @pytest.mark.slow in their files, so
# `pytest -m "not slow"` is a quick loop; plain `pytest` (and CI) runs them all. These
# are marked here instead, by node id, to keep their files' diffs empty.
SLOW = {
    "tests/test_mcp.py::test_stdio_evaluate_backtest_news_reason_validate",
    "tests/test_mcp.py::test_stdio_neural_train_progress_one_job_at_a_time_and_registered",
    "tests/test_wasm.py::test_a_process_that_used_wasm_exits_without_finaliser_tracebacks",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("[")[0] in SLOW:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", params=pymicro.PRESETS)
def preset_blob(request) -> bytes:
    return pymicro.freeze(perturbed(pymicro.preset(request.param)))
