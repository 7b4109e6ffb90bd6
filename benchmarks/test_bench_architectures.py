"""pymicro against ONNX Runtime on architectures that are not presets (issue 16, item 3).

Seven networks chosen to cover every activation (relu, tanh, sigmoid, gelu, linear), narrow
and wide layers, deep and shallow stacks, with and without attention. Each runs the same
weights on both sides (ORT runs ``pymicro.export_onnx`` of the blob), one thread each, in
one paired measurement (``bench.interleaved``: the two sampled in turn, so a neighbour's
burst lands on both), on the best ISA of this CPU and, where the CPU has AVX-512, on the
AVX2 build too (the held-out figures the issue quotes came from an AVX2-only host).

Budgets and goals (benchmarks/budgets.py): batch throughput at least
ARCH_BATCH_MIN_SPEEDUP_VS_ORT x ORT's on every architecture (a budget), with the goal
GOAL_ARCH_BATCH_SPEEDUP_VS_ORT; single call at least ARCH_SINGLE_CALL_MIN_SPEEDUP_VS_ORT x
(a budget) with the goal GOAL_ARCH_SINGLE_CALL_SPEEDUP_VS_ORT. A goal not met is an XFAIL
carrying the measured figure. The table (ns/row both sides, ratios, machine) is printed and
written to benchmarks/results/architectures-latest.md.
"""

from __future__ import annotations

import datetime as _dt
import statistics
from functools import partial
from pathlib import Path

import budgets
import numpy as np
import pytest

import pymicro
from pymicro import Attention, Dense, Spec
from pymicro.runtime import bench

RESULTS = Path(__file__).resolve().parent / "results" / "architectures-latest.md"

# name -> spec; every activation appears, narrow (8, 16) and wide (64, 96), deep (8 layers)
# and shallow (1), attention with sigmoid behind it.
ARCHITECTURES = {
    "deep tanh 8x16": Spec(24, tuple(Dense(16, "tanh") for _ in range(8)), 3),
    "wide relu 64-64": Spec(32, (Dense(64, "relu"), Dense(64, "relu")), 3),
    "gelu 48-32": Spec(32, (Dense(48, "gelu"), Dense(32, "gelu")), 3),
    "sigmoid attention": Spec(32, (Attention(8), Dense(32, "sigmoid"), Dense(16, "sigmoid")), 5),
    "tiny 8-8-2": Spec(8, (Dense(8, "relu"),), 2),
    "linear-tanh 32-16": Spec(16, (Dense(32, "linear"), Dense(16, "tanh")), 4),
    "shallow wide gelu 96": Spec(64, (Dense(96, "gelu"),), 3),
}
ISAS = [pymicro._core.isas()[0]] + (["avx2"] if pymicro._core.isas()[0] == "avx512" else [])
PAIRED_BATCH = dict(repeats=11, target_s=0.02)
PAIRED_SINGLE = dict(repeats=41, target_s=0.001)  # short samples: fewer straddle a neighbour's time slice
_MEASURED: dict[tuple[str, str, str], tuple[float, float]] = {}  # (arch, isa, kind) -> (pymicro, ORT) s/call


def _blob(spec: Spec, seed: int = 0) -> bytes:
    """spec.init(seed) with noise on every tensor (biases matter) and a normalisation."""
    net = spec.init(seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in net.params:
        for key in layer:
            layer[key] = (layer[key] + rng.normal(0.0, 0.2, layer[key].shape)).astype(np.float32)
    net.mean = rng.normal(0.0, 1.0, spec.input_size).astype(np.float32)
    net.std = rng.uniform(0.5, 2.0, spec.input_size).astype(np.float32)
    return pymicro.freeze(net)


@pytest.fixture(scope="module")
def peers():
    cache = {}

    def get(arch: str, isa: str):
        if (arch, isa) not in cache:
            blob = _blob(ARCHITECTURES[arch])
            model = pymicro.load(blob, isa=isa)
            try:
                ort = bench.onnxruntime_peer(blob)
            except pymicro.BackendError as e:
                pytest.fail(f"ONNX Runtime cannot run here, the budget cannot be verified: {e}", pytrace=False)
            x, X = bench.inputs(model.input_size, budgets.BATCH, seed=0)
            np.testing.assert_allclose(model.predict(X[:256]), ort(X[:256]), atol=1e-5)  # same network
            cache[arch, isa] = model, ort, x, X
        return cache[arch, isa]

    with bench.single_thread_blas():
        yield get
    _write()


def _measure(peers, arch: str, isa: str, kind: str) -> tuple[float, float]:
    key = (arch, isa, kind)
    if key not in _MEASURED:
        model, ort, x, X = peers(arch, isa)
        arg = x if kind == "single" else X
        samples = bench.interleaved({"pymicro": (partial(pymicro.predict, model, threads=1), arg),
                                     "ort": (ort, arg)},
                                    **(PAIRED_SINGLE if kind == "single" else PAIRED_BATCH))
        _MEASURED[key] = statistics.median(samples["pymicro"]), statistics.median(samples["ort"])
    return _MEASURED[key]


def _figure(arch, isa, kind, pm, ort) -> str:
    if kind == "batch":
        n = budgets.BATCH
        return (f"{arch} [{isa}] batch: pymicro {pm / n * 1e9:.1f} ns/row, ORT {ort / n * 1e9:.1f} ns/row, "
                f"{ort / pm:.2f}x on {bench.machine_name()}")
    return (f"{arch} [{isa}] single call: pymicro {pm * 1e6:.3f} µs, ORT {ort * 1e6:.2f} µs, "
            f"{ort / pm:.1f}x on {bench.machine_name()}")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batch_throughput_vs_onnxruntime(peers, arch, isa):
    pm, ort = _measure(peers, arch, isa, "batch")
    figure = _figure(arch, isa, "batch", pm, ort)
    print("\n" + figure)
    assert ort / pm >= budgets.ARCH_BATCH_MIN_SPEEDUP_VS_ORT, f"budget not met: {figure}"
    budgets.goal(f"{arch} [{isa}] batch vs ORT", ort / pm, budgets.GOAL_ARCH_BATCH_SPEEDUP_VS_ORT, why=figure)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_single_call_vs_onnxruntime(peers, arch, isa):
    pm, ort = _measure(peers, arch, isa, "single")
    figure = _figure(arch, isa, "single", pm, ort)
    print("\n" + figure)
    assert ort / pm >= budgets.ARCH_SINGLE_CALL_MIN_SPEEDUP_VS_ORT, f"budget not met: {figure}"
    budgets.goal(f"{arch} [{isa}] single call vs ORT", ort / pm, budgets.GOAL_ARCH_SINGLE_CALL_SPEEDUP_VS_ORT,
                 why=figure)


def _write() -> None:
    if not _MEASURED:
        return
    n = budgets.BATCH
    lines = [f"# Non-preset architectures vs ONNX Runtime ({_dt.date.today()}, {bench.machine_name()})", "",
             "One thread each side, same weights (ORT runs pymicro.export_onnx of the blob), paired medians.",
             "", "| architecture | ISA | batch ns/row pymicro | ORT | ratio | single µs pymicro | ORT | ratio |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for arch in ARCHITECTURES:
        for isa in ISAS:
            b, s = _MEASURED.get((arch, isa, "batch")), _MEASURED.get((arch, isa, "single"))
            if not (b or s):
                continue
            cells = [f"{b[0] / n * 1e9:.1f}", f"{b[1] / n * 1e9:.1f}", f"{b[1] / b[0]:.2f}x"] if b else ["", "", ""]
            cells += [f"{s[0] * 1e6:.3f}", f"{s[1] * 1e6:.2f}", f"{s[1] / s[0]:.1f}x"] if s else ["", "", ""]
            lines.append(f"| {arch} | {isa} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    try:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
    except OSError:
        pass
