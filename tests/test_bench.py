"""pymicro.runtime.bench: peers compute the same function; timing helpers and the table behave.

No timing thresholds here: speed budgets live in benchmarks/ (run by path).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import pymicro
from pymicro.runtime import bench
from pymicro.runtime.spec import Attention, Dense, Dropout, Spec

TOL = 1e-5


def _reference(blob):
    return pymicro.load(blob, backend="reference", dtype=np.float64).predict


def _all_activations_blob() -> bytes:
    """Every activation, an attention layer after a dense one, and input normalisation."""
    spec = Spec(10, (Dense(12, "gelu"), Attention(9), Dense(8, "tanh"), Dropout(0.1),
                     Dense(7, "sigmoid"), Dense(6, "linear"), Dense(5, "relu")), 4, name="mixed")
    net = spec.init(seed=3)
    rng = np.random.default_rng(7)
    for layer in net.params:
        for key in layer:
            if key.startswith("b"):
                layer[key] = rng.normal(0, 0.5, layer[key].shape).astype(np.float32)
    net.mean = rng.normal(0, 1, 10).astype(np.float32)
    net.std = rng.uniform(0.5, 2.0, 10).astype(np.float32)
    return pymicro.freeze(net)


@pytest.fixture(scope="module", params=pymicro.PRESETS)
def preset_case(request):
    blob = bench.preset_blob(request.param)
    x, X = bench.inputs(pymicro.load(blob).input_size, batch=200, seed=1)
    return request.param, blob, x, X


def test_preset_blob_has_non_trivial_outputs(preset_case):
    _, blob, _, X = preset_case
    probs = pymicro.load(blob).predict(X)
    # Perturbed biases: classes differ, and rows differ from each other.
    assert np.ptp(probs.mean(axis=0)) > 0.01
    assert probs.std(axis=0).max() > 1e-3


def test_numpy_peer_matches_reference(preset_case):
    _, blob, x, X = preset_case
    peer, ref = bench.numpy_peer(blob), _reference(blob)
    got_row, got_batch = peer(x), peer(X)
    assert got_row.shape == ref(x).shape and got_row.dtype == np.float32
    assert got_batch.shape == ref(X).shape and got_batch.dtype == np.float32
    np.testing.assert_allclose(got_row, ref(x), atol=TOL, rtol=0)
    np.testing.assert_allclose(got_batch, ref(X), atol=TOL, rtol=0)


def test_numpy_peer_accepts_model_and_path(tmp_path, preset_case):
    name, blob, x, _ = preset_case
    path = tmp_path / f"{name}.pmb"
    path.write_bytes(blob)
    want = _reference(blob)(x)
    for source in (pymicro.load(blob), str(path), path):
        np.testing.assert_allclose(bench.numpy_peer(source)(x), want, atol=TOL, rtol=0)


def test_numpy_peer_every_activation_and_normalisation():
    blob = _all_activations_blob()
    x, X = bench.inputs(10, batch=300, seed=2)
    X = X * 3  # reach the saturating parts of tanh/sigmoid/gelu
    peer, ref = bench.numpy_peer(blob), _reference(blob)
    np.testing.assert_allclose(peer(X), ref(X), atol=TOL, rtol=0)
    np.testing.assert_allclose(peer(x), ref(x), atol=TOL, rtol=0)


def test_numpy_peer_does_not_modify_its_input(preset_case):
    _, blob, x, X = preset_case
    x0, X0 = x.copy(), X.copy()
    peer = bench.numpy_peer(blob)
    peer(x), peer(X)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(X, X0)


def test_numpy_peer_rejects_wrong_width():
    peer = bench.numpy_peer(bench.preset_blob("momentum"))
    with pytest.raises(pymicro.InputError, match="24"):
        peer(np.zeros(23, np.float32))


def test_onnxruntime_peer_matches_reference(preset_case):
    pytest.importorskip("onnxruntime")
    _, blob, x, X = preset_case
    ref = _reference(blob)
    peer = bench.onnxruntime_peer(blob, reuse_output=False)
    np.testing.assert_allclose(peer(x), ref(x), atol=TOL, rtol=0)
    np.testing.assert_allclose(peer(X), ref(X), atol=TOL, rtol=0)
    np.testing.assert_allclose(peer(X[:7]), ref(X[:7]), atol=TOL, rtol=0)  # another batch size
    assert peer(x).shape == (pymicro.load(blob).n_classes,)


def test_onnxruntime_peer_reuses_its_output_buffer_by_default():
    pytest.importorskip("onnxruntime")
    blob = bench.preset_blob("momentum")
    x, X = bench.inputs(24, batch=4, seed=5)
    peer = bench.onnxruntime_peer(blob)
    first = peer(x)
    kept = first.copy()
    second = peer(X[1])
    assert np.shares_memory(first, second)
    np.testing.assert_allclose(second, _reference(blob)(X[1]), atol=TOL, rtol=0)
    assert not np.allclose(first, kept)  # documented: overwritten by the next call


def test_missing_onnxruntime_raises_backend_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(pymicro.BackendError, match="onnxruntime is not installed"):
        bench.onnxruntime_peer(bench.preset_blob("momentum"))


def test_missing_onnxruntime_is_reported_not_dropped(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    rows = bench.compare(["momentum"], batch=64, single_repeats=2, batch_repeats=2,
                         single_target_s=1e-4, batch_target_s=1e-4)
    by_runtime = {r.runtime: r for r in rows}
    assert set(by_runtime) == {"pymicro", "numpy", "onnxruntime"}
    ort = by_runtime["onnxruntime"]
    assert ort.single_us is None and ort.batch_mps is None and ort.single_ratio is None
    assert ort.note.startswith("not measured") and "onnxruntime" in ort.note
    assert "not measured" in bench.format_table(rows, machine="test machine")


def _positive_finite(v) -> bool:
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_timing_helpers_return_positive_finite_numbers():
    model = pymicro.load(bench.preset_blob("reversal"))
    x, X = bench.inputs(model.input_size, batch=128)
    assert _positive_finite(bench.single_call_latency(model.predict, x, repeats=3, target_s=1e-4))
    assert _positive_finite(bench.batch_throughput(model.predict, X, repeats=3, target_s=1e-4))
    samples = bench.per_call_samples(model.predict, x, repeats=4, target_s=1e-4)
    assert len(samples) == 4 and all(_positive_finite(s) for s in samples)
    got = bench.interleaved({"a": (model.predict, x), "b": (bench.numpy_peer(model), x)},
                            repeats=3, target_s=1e-4)
    assert set(got) == {"a", "b"} and all(_positive_finite(s) for v in got.values() for s in v)
    assert bench.calibrate(model.predict, x, target_s=1e-4) >= 1


def test_timing_helpers_call_the_function_with_the_argument():
    seen = []
    bench.single_call_latency(seen.append, "arg", repeats=2, target_s=1e-5)
    assert seen and set(seen) == {"arg"}
    with pytest.raises(pymicro.InputError):
        bench.per_call_samples(seen.append, "arg", repeats=0)


def test_compare_table_has_the_expected_rows():
    rows = bench.compare(["momentum", "sentiment"], batch=256, single_repeats=2, batch_repeats=2,
                         single_target_s=1e-4, batch_target_s=1e-4)
    assert [(r.preset, r.runtime) for r in rows] == [
        (p, rt) for p in ("momentum", "sentiment") for rt in bench.RUNTIMES]
    for r in rows:
        if r.note.startswith("not measured"):  # onnxruntime absent from this environment
            assert r.runtime == "onnxruntime" and r.single_us is None
            continue
        assert _positive_finite(r.single_us) and _positive_finite(r.batch_mps)
        assert _positive_finite(r.single_ratio) and _positive_finite(r.batch_ratio)
        if r.runtime == "pymicro":
            assert r.single_ratio == 1.0 and r.batch_ratio == 1.0
        assert len(r.as_tuple()) == 7
    table = bench.format_table(rows, machine="test machine")
    lines = table.splitlines()
    assert lines[0] == "Machine: test machine"
    assert sum(line.startswith("| momentum |") for line in lines) == 3
    assert sum(line.startswith("| sentiment |") for line in lines) == 3
    assert "single call" in table and "batch" in table


def test_compare_without_batch_and_unknown_runtime():
    rows = bench.compare("reversal", batch=0, runtimes=("numpy",), single_repeats=2,
                         single_target_s=1e-4)
    assert [r.runtime for r in rows] == ["pymicro", "numpy"]  # pymicro is always the baseline
    assert all(r.batch_mps is None and r.batch_ratio is None for r in rows)
    with pytest.raises(pymicro.InputError, match="unknown runtime"):
        bench.compare("reversal", batch=0, runtimes=("tensorflow",))


def test_machine_name_names_cpu_and_cores():
    name = bench.machine_name()
    assert isinstance(name, str) and "core" in name and len(name) > 8


def test_single_thread_blas_restores_the_thread_count():
    controls = bench._openblas_controls()
    before = controls[1]() if controls else None
    with bench.single_thread_blas() as note:
        if controls is None:
            assert "not controlled" in note
            return
        assert note == "" and controls[1]() == 1
    assert controls[1]() == before


def test_multiply_adds_per_row_counts_dense_and_attention_layers():
    spec = Spec(6, [Attention(4), Dense(5, "relu"), Dropout(0.1)], 3)
    blob = pymicro.freeze(spec.init(0))
    assert bench.multiply_adds_per_row(blob) == 6 * 6 + 6 * 4 + 4 * 5 + 5 * 3
    momentum = bench.preset_blob("momentum")  # 24 -> Attention(8) -> 16 -> 8 -> 3
    assert bench.multiply_adds_per_row(momentum) == 24 * 24 + 24 * 8 + 8 * 16 + 16 * 8 + 8 * 3
    assert bench.multiply_adds_per_row(pymicro.load(momentum)) == 1048


@pytest.mark.parametrize("rate", ["fma_rate", "exp_rate"])
def test_peak_rates_are_measured_per_isa_and_refuse_unknown_ones(rate):
    # How fast, and AVX2 against SSE2, is judged in benchmarks/test_bench_isa.py: no timing here.
    fn = getattr(pymicro._core, rate)
    rates = {isa: fn(isa, 0.01) for isa in pymicro._core.isas()}
    assert all(isinstance(r, float) and math.isfinite(r) and r > 0 for r in rates.values()), rates
    with pytest.raises(pymicro.InputError, match=f"{rate}: isa 'vax'"):
        fn("vax", 0.05)
    for bad in (0.0, -1.0, 61.0):
        with pytest.raises(pymicro.InputError, match="seconds"):
            fn("auto", bad)


def test_roofline_floor_and_fractions_follow_from_peak_and_work():
    roof = bench.roofline(bench.preset_blob("sentiment"))
    assert roof.isa == pymicro._core.isas()[0]
    assert roof.macs_per_row == 48 * 48 + 48 * 16 + 16 * 32 + 32 * 16 + 16 * 8 + 8 * 5
    assert roof.floor_rows_per_s == pytest.approx(roof.peak_macs / roof.macs_per_row)
    assert roof.fraction(roof.floor_rows_per_s / 4) == pytest.approx(0.25)
    # The FMA + exp floor: the multiply-adds' time plus the exponentials' (48 gate terms, 5 classes).
    assert roof.exps_per_row == 48 + 5 and roof.exp_rate > 0
    per_row = roof.macs_per_row / roof.peak_macs + roof.exps_per_row / roof.exp_rate
    assert roof.exp_floor_rows_per_s == pytest.approx(1 / per_row)
    assert roof.exp_floor_rows_per_s < roof.floor_rows_per_s
    assert roof.exp_fraction(roof.exp_floor_rows_per_s / 2) == pytest.approx(0.5)
    # Without a measured exp rate the two floors are the same.
    bare = bench.Roofline(roof.isa, roof.peak_macs, roof.macs_per_row)
    assert bare.exp_floor_rows_per_s == pytest.approx(bare.floor_rows_per_s)


def test_exps_per_row_counts_softmax_terms_and_sigmoids_only():
    from pymicro import Attention, Dense, Spec

    blob = pymicro.freeze(Spec(6, (Attention(4), Dense(5, "sigmoid"), Dense(3, "tanh"), Dense(4, "gelu")), 2).init(0))
    assert bench.exps_per_row(blob) == 6 + 5 + 2  # gate over 6 inputs, 5 sigmoids, the head
    assert bench.exps_per_row(bench.preset_blob("reversal")) == 3  # dense relu: the head only
    assert bench.exps_per_row(pymicro.load(bench.preset_blob("momentum"))) == 24 + 3


def test_format_roofline_places_each_batch_figure_under_its_presets_floor():
    roof = bench.roofline(bench.preset_blob("reversal"))
    half = roof.floor_rows_per_s / 2 / 1e6
    rows = [bench.Row("reversal", "pymicro", 0.4, half, 1.0, 1.0),
            bench.Row("reversal", "numpy", 12.0, None, 30.0, None, "not measured: x")]
    text = bench.format_roofline(rows)
    lines = [line for line in text.splitlines() if line.startswith("| reversal")]
    share_of_exp_floor = f"{half * 1e6 / roof.exp_floor_rows_per_s:.0%}"
    assert len(lines) == 1 and lines[0].endswith(f"| 50% | {roof.exp_floor_rows_per_s / 1e6:.1f} | "
                                                  f"{share_of_exp_floor} |"), text
    assert f"{roof.floor_rows_per_s / 1e6:.1f}" in lines[0]
    assert bench.format_roofline(rows[1:]) == ""
