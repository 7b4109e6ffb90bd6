"""backend="cuda" (docs/cuda.md).

Every run, with or without a GPU: the per-sample code of cpp/cuda/pymicro_cuda.cuh compiled
for the host (_core._cuda_host_forward) against the native core; NVRTC compiling it to PTX
(the nvidia-cuda-nvrtc wheel, pymicro[cuda], is in the test extra); the errors on a machine
without a GPU, a driver or NVRTC. Where a GPU and driver are present, the tests marked
``gpu`` run the kernel itself against the native core.
"""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netgen import networks, perturbed, tiny_weight_cases

import pymicro
from pymicro import Attention, BackendError, Dense, InputError, MissingDependencyError, Spec, _core
from pymicro.runtime import bench, cuda

ROOT = Path(__file__).resolve().parents[1]
# The native build compiled, like the host build of the CUDA code, without FMA contraction.
NO_FMA_ISA = "sse2" if "sse2" in _core.isas() else None


def rows(n, width, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(0, scale, (n, width)).astype(np.float32)


def has_nvrtc() -> bool:
    try:
        cuda.nvrtc()
        return True
    except MissingDependencyError:
        return False


def has_gpu() -> bool:
    try:
        cuda.driver()
        return has_nvrtc()
    except BackendError:
        return False


needs_nvrtc = pytest.mark.skipif(not has_nvrtc(), reason="NVRTC (pip install 'pymicro[cuda]') is not installed")
gpu = pytest.mark.skipif(not has_gpu(), reason="no CUDA GPU and driver on this machine")


# ------------------------------------------------------------------ the host build, every run


def test_the_embedded_source_is_the_file_in_the_tree():
    # a stale build would test (and compile for the GPU) other code than the checkout's
    assert _core._cuda_source() == (ROOT / "cpp" / "cuda" / "pymicro_cuda.cuh").read_text()


@settings(max_examples=80, deadline=None)
@given(net=networks(), n=st.sampled_from([1, 3, 40]), seed=st.integers(0, 1000))
def test_host_build_of_the_device_code_matches_native(net, n, seed):
    blob = pymicro.freeze(net)
    x = rows(n, net.spec.input_size, seed)
    native = pymicro.load(blob)
    got, attn, bad = _core._cuda_host_forward(blob, x, True)
    assert got.shape == (n, net.spec.n_classes) and got.dtype == np.float32
    want = native.predict(x)
    assert bad == int(np.isnan(want[:, 0]).sum())
    # 1e-5 against the best ISA: its FMA contraction alone moves results by up to 1e-6 here
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    if NO_FMA_ISA:  # the same arithmetic, no FMA contraction on either side: the same bits
        assert np.array_equal(got, pymicro.load(blob, isa=NO_FMA_ISA).predict(x), equal_nan=True)
    if any(isinstance(layer, Attention) for layer in net.spec.layers):
        np.testing.assert_allclose(attn, native.explain(x), atol=1e-5, rtol=0)
        if NO_FMA_ISA:
            assert np.array_equal(attn, pymicro.load(blob, isa=NO_FMA_ISA).explain(x), equal_nan=True)
    else:
        assert attn is None


def test_host_build_matches_native_on_the_presets(preset_blob):
    x = rows(500, pymicro.load(preset_blob).input_size, seed=3, scale=3.0)
    got, _, bad = _core._cuda_host_forward(preset_blob, x)
    assert bad == 0
    # FMA contraction (avx2/avx512 builds) against none (this host build) differs by up to
    # 1.7e-6 here (reversal, inputs of scale 3); without FMA on both sides the bits agree.
    np.testing.assert_allclose(got, pymicro.load(preset_blob).predict(x), atol=5e-6, rtol=0)
    if NO_FMA_ISA:
        assert np.array_equal(got, pymicro.load(preset_blob, isa=NO_FMA_ISA).predict(x))


@settings(max_examples=30, deadline=None)
@given(case=tiny_weight_cases())
def test_host_build_gives_0_not_e80_for_tiny_weights(case):
    net, x = case
    blob = pymicro.freeze(net)
    got, _, _ = _core._cuda_host_forward(blob, x)
    np.testing.assert_allclose(got, pymicro.load(blob, "reference").predict(x), atol=1e-5, rtol=0)


def test_host_build_marks_nonfinite_rows_nan():
    blob = pymicro.freeze(perturbed(Spec(6, (Attention(3), Dense(5, "gelu")), 3), seed=1))
    x = rows(4, 6)
    x[1, 2], x[3, 0] = np.nan, np.inf
    got, attn, bad = _core._cuda_host_forward(blob, x, True)
    assert bad == 2
    assert np.isnan(got[[1, 3]]).all() and np.isnan(attn[[1, 3]]).all()
    assert np.isfinite(got[[0, 2]]).all()


def test_plan_and_weights_come_from_the_parser():
    blob = bench.preset_blob("momentum")
    plan = _core._cuda_plan(blob)
    described = _core.parse(blob)
    # attention is two ops (gate, values), dense one
    assert [op[0] for op in plan["ops"]] == [1, 2, 0, 0, 0]
    assert len(plan["weights"]) == 2 * plan["input_size"] + described["params"]
    assert plan["max_width"] == 24 and plan["attn_width"] == 24
    with pytest.raises(pymicro.BlobError):
        _core._cuda_plan(blob[:-1])


# ------------------------------------------------------------------ NVRTC (no GPU needed)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["compute_80", "compute_90"])
def test_nvrtc_compiles_the_kernel_to_ptx(preset_blob, arch):
    ptx = cuda.compile_ptx(preset_blob, arch)
    assert ".visible .entry pm_predict(" in ptx
    assert f".target sm_{arch.split('_')[1]}" in ptx
    assert ".const .align 4 .b8 pm_weights[" in ptx  # a micro network's weights: constant memory


@needs_nvrtc
def test_nvrtc_puts_weights_over_60kb_in_global_memory():
    spec = Spec(64, (Dense(128, "tanh"), Dense(128, "relu")), 4, allow_large=True)
    blob = pymicro.freeze(spec.init(seed=0))
    ptx = cuda.compile_ptx(blob)
    assert ".visible .entry pm_predict(" in ptx and "pm_weights" not in ptx


@needs_nvrtc
def test_nvrtc_reports_compile_errors_as_backend_errors():
    with pytest.raises(BackendError, match="NVRTC failed to compile"):
        cuda._compile("this is not C++", "compute_90", cubin=False)


# ------------------------------------------------------------------ without a GPU, driver, NVRTC


def test_no_driver_is_a_backend_error_saying_so(monkeypatch):
    monkeypatch.setattr(cuda, "_driver", None)
    monkeypatch.setattr(cuda, "_load_driver_library", lambda: None)
    with pytest.raises(BackendError, match=r"needs an NVIDIA GPU and its driver: no CUDA driver \(libcuda.so.1\)"):
        pymicro.load(bench.preset_blob("momentum"), "cuda")


@pytest.mark.skipif(has_gpu(), reason="this machine has a GPU")
def test_load_cuda_here_raises_backend_error_naming_the_missing_piece():
    with pytest.raises(BackendError) as e:
        pymicro.load(bench.preset_blob("momentum"), "cuda")
    assert any(s in str(e.value) for s in ("no CUDA driver", "found no GPU", "found none", "NVRTC"))


def test_no_nvrtc_is_a_missing_dependency_error_naming_the_extra(monkeypatch):
    monkeypatch.setattr(cuda, "driver", lambda: object())  # as if a GPU were there
    monkeypatch.setattr(cuda, "_nvrtc_lib", None)
    monkeypatch.setattr(cuda, "_nvrtc_candidates", lambda: [])
    with pytest.raises(MissingDependencyError, match=r"pip install 'pymicro\[cuda\]'") as e:
        pymicro.load(bench.preset_blob("momentum"), "cuda")
    assert e.value.extra == "cuda" and isinstance(e.value, ImportError)


def test_native_predictions_do_not_change_when_cuda_is_unavailable(monkeypatch):
    blob = bench.preset_blob("momentum")
    x = rows(10, 24)
    before = pymicro.load(blob).predict(x)
    monkeypatch.setattr(cuda, "_driver", None)
    monkeypatch.setattr(cuda, "_load_driver_library", lambda: None)
    with pytest.raises(BackendError):
        pymicro.load(blob, "cuda")
    assert np.array_equal(pymicro.load(blob).predict(x), before)


class FakeCudaArray:
    def __init__(self, shape, typestr="<f4", strides=None, ptr=0x1000):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "strides": strides,
                                         "data": (ptr, False), "version": 3}


def test_device_arrays_are_read_from_the_cuda_array_interface():
    ptr, shape, _ = cuda.device_array(FakeCudaArray((5, 24)), "x")
    assert (ptr, shape) == (0x1000, (5, 24))
    assert cuda.device_array(FakeCudaArray((5, 24), strides=(96, 4)), "x")[1] == (5, 24)
    assert cuda.device_array(np.zeros((5, 24), np.float32), "x") is None
    with pytest.raises(InputError, match="float32"):
        cuda.device_array(FakeCudaArray((5, 24), "<f8"), "x")
    with pytest.raises(InputError, match="C-contiguous"):
        cuda.device_array(FakeCudaArray((5, 24), strides=(4, 20)), "x")


# ------------------------------------------------------------------ on a GPU


@gpu
@settings(max_examples=40, deadline=None)
@given(net=networks(), n=st.sampled_from([1, 3, 40, 1000]), seed=st.integers(0, 1000))
def test_gpu_matches_native_within_1e5(net, n, seed):
    blob = pymicro.freeze(net)
    x = rows(n, net.spec.input_size, seed)
    model = pymicro.load(blob, "cuda", nan_policy="propagate")
    # 1e-5: the GPU contracts to FMA where the compiler chooses (as avx2/avx512 do, not alike)
    np.testing.assert_allclose(model.predict(x), pymicro.load(blob).predict(x), atol=1e-5, rtol=0)
    if any(isinstance(layer, Attention) for layer in net.spec.layers):
        np.testing.assert_allclose(model.explain(x), pymicro.load(blob).explain(x), atol=1e-5, rtol=0)


@gpu
def test_gpu_predict_into_host_and_device_arrays(preset_blob):
    model = pymicro.load(preset_blob, "cuda")
    native = pymicro.load(preset_blob)
    x = rows(70_000, model.input_size)
    want = native.predict(x)
    out = np.empty_like(want)
    model.predict_into(x, out)
    np.testing.assert_allclose(out, want, atol=1e-5, rtol=0)
    rows_before = model._impl._rows
    model.predict(x[:100])  # a smaller batch reuses the device buffers
    assert model._impl._rows == rows_before
    impl, d = model._impl, cuda.driver()
    dx, dout = impl._alloc(x.nbytes), impl._alloc(out.nbytes)
    try:
        d.check(d.lib.cuMemcpyHtoD_v2(dx, x.ctypes.data, x.nbytes), "copy")
        model.predict_into(FakeCudaArray(x.shape, ptr=dx), FakeCudaArray(out.shape, ptr=dout))
        got = np.empty_like(out)
        d.check(d.lib.cuMemcpyDtoH_v2(got.ctypes.data, dout, got.nbytes), "copy")
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    finally:
        d.lib.cuMemFree_v2(dx)
        d.lib.cuMemFree_v2(dout)


@gpu
def test_gpu_nonfinite_rows_raise_as_native(preset_blob):
    model = pymicro.load(preset_blob, "cuda")
    x = rows(100, model.input_size)
    x[17, 3] = np.nan
    with pytest.raises(InputError, match="17"):
        model.predict(x)


# ------------------------------------------------------------------ what ptxas makes of it (no GPU needed)


@needs_nvrtc
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", ["momentum", "reversal"])
def test_micro_networks_compile_with_their_activations_in_registers(name, arch):
    # ptxas' own report of the CUBIN NVRTC builds for an A100 / H100: unrolled, no stack
    # frame and no spills, so no activation goes through local memory.
    blob = bench.preset_blob(name)
    assert bench.multiply_adds_per_row(blob) <= cuda.UNROLL_MAX_MACS
    r = cuda.resources(blob, arch)
    assert r["unrolled"], r
    assert r["stack_bytes"] == 0 and r["spill_store_bytes"] == 0 and r["spill_load_bytes"] == 0, r
    assert 0 < r["registers"] <= 255, r


@needs_nvrtc
def test_networks_too_large_to_unroll_keep_their_loops():
    blob = bench.preset_blob("sentiment")  # 4,264 multiply-adds: NVRTC would take ~20 s unrolling it
    assert bench.multiply_adds_per_row(blob) > cuda.UNROLL_MAX_MACS
    r = cuda.resources(blob, "sm_90")
    assert not r["unrolled"] and r["stack_bytes"] > 0, r  # scratch in local memory


@needs_nvrtc
def test_resources_names_a_bad_architecture_as_a_backend_error():
    with pytest.raises(BackendError, match="NVRTC failed to compile"):
        cuda.resources(bench.preset_blob("momentum"), "sm_1")


@needs_nvrtc
def test_compiled_kernels_are_cached_per_source_architecture_and_nvrtc(tmp_path, monkeypatch):
    monkeypatch.setenv("PYMICRO_CUDA_CACHE", str(tmp_path))
    calls = []
    real = cuda._compile
    monkeypatch.setattr(cuda, "_compile", lambda *a, **k: (calls.append(a[1]), real(*a, **k))[1])
    spec = Spec(6, (Dense(5, "tanh"),), 3)
    src = cuda.source(_core._cuda_plan(pymicro.freeze(spec.init(seed=0))))
    first = cuda.cubin(src, "sm_90")
    assert first[:4] == b"\x7fELF" and calls == ["sm_90"]
    assert cuda.cubin(src, "sm_90") == first and calls == ["sm_90"]  # a hit: no NVRTC
    # Other weights, same architecture: the same source (weights are uploaded, not compiled in).
    assert cuda.source(_core._cuda_plan(pymicro.freeze(spec.init(seed=1)))) == src
    cuda.cubin(src, "sm_80")  # another GPU architecture: its own entry
    assert calls == ["sm_90", "sm_80"]
    assert len(list(tmp_path.glob("*.cubin"))) == 2 and not list(tmp_path.glob("*.tmp"))
    cuda.forget_cubin(src, "sm_90")  # what load does with an entry the driver refuses
    assert cuda.cubin(src, "sm_90")[:4] == b"\x7fELF" and calls == ["sm_90", "sm_80", "sm_90"]
    monkeypatch.setenv("PYMICRO_CUDA_CACHE", "")  # empty: no cache at all
    cuda.cubin(src, "sm_90")
    cuda.cubin(src, "sm_90")
    assert len(calls) == 5
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("PYMICRO_CUDA_CACHE", str(blocked))  # unusable: no cache, no error
    assert cuda.cubin(src, "sm_90")[:4] == b"\x7fELF" and len(calls) == 6


def test_the_cache_lives_under_xdg_cache_home_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("PYMICRO_CUDA_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cuda.cache_dir() == str(tmp_path / "pymicro" / "cuda")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cuda.cache_dir() == str(tmp_path / ".cache" / "pymicro" / "cuda")
