"""pymicro against its peers on the three presets: single-call latency and batch throughput.

Every runtime runs the same blob on one thread. The budget tests at the bottom fail
the run when a budget in benchmarks/budgets.py is not met, or cannot be verified on
this machine (ONNX Runtime missing); a goal not met is an XFAIL carrying its figure
(the policy at the top of budgets.py). Their verdicts come from a paired measurement
(pymicro and ONNX Runtime sampled in turn, in this run); see Lab.pair in conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import pymicro

PRESETS = pymicro.PRESETS
# The labels benchmarks/conftest.py knows (Case.call); "pymicro" is pymicro.predict(model, x).
RUNTIMES = ("pymicro", "pymicro predict_into", "numpy", "onnxruntime")

# Rounds of >= 0.2 ms (hundreds of calls each) for about half a second per case:
# thousands of rounds, so the median shrugs off a neighbour's burst.
SINGLE = pytest.mark.benchmark(min_time=2e-4, max_time=0.5, min_rounds=50, warmup=True,
                               warmup_iterations=20_000, disable_gc=True)
# One 65536-row call per round (3-40 ms), at least 9 rounds.
BATCH = pytest.mark.benchmark(min_time=1e-3, max_time=0.5, min_rounds=9, warmup=True,
                              warmup_iterations=1, disable_gc=True)


@SINGLE
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("preset", PRESETS)
def test_single_call(benchmark, lab, preset, runtime):
    case = lab.case(preset)
    fn, args = case.call(runtime, "single")
    benchmark.group = f"single call, {preset}"
    result = benchmark(fn, *args)
    lab.record(preset, runtime, "single", benchmark)
    probs = args[-1] if result is None else result  # predict_into returns None
    assert probs.shape == (case.model.n_classes,)
    np.testing.assert_allclose(probs, case.model.predict(case.x), atol=1e-5)


@BATCH
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("preset", PRESETS)
def test_batch_throughput(benchmark, lab, preset, runtime):
    case = lab.case(preset)
    fn, args = case.call(runtime, "batch")
    benchmark.group = f"batch {len(case.X)}, {preset}"
    result = benchmark(fn, *args)
    lab.record(preset, runtime, "batch", benchmark)
    probs = args[-1] if result is None else result
    assert probs.shape == (len(case.X), case.model.n_classes)
    np.testing.assert_allclose(probs[:64], case.model.predict(case.X[:64]), atol=1e-5)


# ------------------------------------------------------------------------- budgets


def _enforce(lab, prefix):
    name, status, detail = lab.check(prefix)
    if status == "pass":
        return
    if status == "not run":
        pytest.skip(f"budget '{name}' not checked: {detail}")
    if status == "goal not met":  # reported with its figure, never a red run (budgets.py)
        pytest.xfail(f"{name}: not met, {detail}")
    if status == "not measured":
        pytest.fail(f"budget '{name}' cannot be verified on this machine: {detail}", pytrace=False)
    pytest.fail(f"budget '{name}' not met: {detail}", pytrace=False)


def test_budget_momentum_single_call_latency(lab):
    lab.pair("momentum", "single")
    _enforce(lab, "momentum single call ≤")


def test_budget_momentum_single_call_vs_onnxruntime(lab):
    lab.pair("momentum", "single")
    _enforce(lab, "momentum single call ≥")


@pytest.mark.parametrize("preset", PRESETS)
def test_budget_batch_throughput_vs_onnxruntime(lab, preset):
    lab.pair(preset, "batch")
    _enforce(lab, f"{preset} batch throughput")


@pytest.mark.parametrize("preset", PRESETS)
def test_goal_batch_throughput_vs_onnxruntime(lab, preset):
    lab.pair(preset, "batch")
    _enforce(lab, f"goal: {preset} batch throughput")


def test_goal_momentum_single_call_through_predict(lab):
    lab.pair("momentum", "single")
    _enforce(lab, "goal: momentum pymicro.predict single call")


def test_goal_momentum_single_call_through_predict_into(lab):
    lab.pair("momentum", "single")
    _enforce(lab, "goal: momentum predict_into single call")


@pytest.mark.parametrize("preset", PRESETS)
def test_batch_against_the_fma_floor_or_2x_ort(lab, preset):
    """Attention presets: a goal stated as a share of the FMA + exp floor; dense presets: 2x ORT, a budget."""
    lab.pair(preset, "batch")
    _enforce(lab, f"goal: {preset} batch at" if any(
        layer["kind"] == "attention" for layer in pymicro._core.parse(lab.case(preset).blob)["layers"])
        else f"{preset} (dense) batch")
