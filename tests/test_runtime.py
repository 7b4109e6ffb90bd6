"""The native core against the float64 numpy reference, and the Model API's contracts."""

import hashlib
import threading
import tracemalloc

import numpy as np
import pytest
from netgen import networks, perturbed
from hypothesis import given, settings
from hypothesis import strategies as st

import pymicro
from pymicro import BackendError, BlobError, InputError, _core

ISAS = _core.isas()


def rows(n, width, seed=0, scale=2.0):
    return np.random.default_rng(seed).normal(0, scale, (n, width)).astype(np.float32)


@settings(max_examples=60, deadline=None)
@given(net=networks(), n=st.sampled_from([1, 2, 7, 33, 130]), seed=st.integers(0, 1000))
def test_native_matches_reference_within_1e5_on_every_isa(net, n, seed):
    blob = pymicro.freeze(net)
    x = rows(n, net.spec.input_size, seed)
    want = pymicro.load(blob, "reference").predict(x)
    for isa in ISAS:
        got = pymicro.load(blob, isa=isa).predict(x)
        assert got.dtype == np.float32 and got.shape == (n, net.spec.n_classes)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@settings(max_examples=30, deadline=None)
@given(net=networks(), seed=st.integers(0, 1000))
def test_a_row_gives_bit_identical_results_alone_or_in_a_batch(net, seed):
    blob = pymicro.freeze(net)
    x = rows(53, net.spec.input_size, seed)  # more than one tile on every ISA (16 to 48 rows)
    for isa in ISAS:
        model = pymicro.load(blob, isa=isa)
        batch = model.predict(x)
        single = np.stack([model.predict(row) for row in x])
        assert np.array_equal(batch, single), isa
        if model.info.input_size and any(l.startswith("Attention") for l in model.info.layers):
            assert np.array_equal(model.explain(x), np.stack([model.explain(row) for row in x])), isa


def test_probabilities_are_distributions(preset_blob):
    model = pymicro.load(preset_blob)
    p = model.predict(rows(500, model.input_size, scale=5.0))
    assert np.all(p >= 0) and np.allclose(p.sum(axis=1), 1.0, atol=1e-6)


def test_shapes_one_row_batch_and_empty(preset_blob):
    model = pymicro.load(preset_blob)
    d, c = model.input_size, model.n_classes
    assert pymicro.predict(model, rows(1, d)[0]).shape == (c,)
    assert model.predict(rows(5, d)).shape == (5, c)
    assert model.predict(np.empty((0, d), np.float32)).shape == (0, c)


def test_other_dtypes_and_layouts_are_converted_to_the_same_answer(preset_blob):
    model = pymicro.load(preset_blob)
    x = rows(20, model.input_size)
    want = model.predict(x)
    np.testing.assert_array_equal(model.predict(x.astype(np.float64)), want)
    np.testing.assert_array_equal(model.predict(x.tolist()), want)
    np.testing.assert_array_equal(model.predict(x.astype(">f4")), want)  # big-endian float32
    np.testing.assert_array_equal(model.predict(np.asfortranarray(x)), want)
    wide = np.zeros((20, 2 * model.input_size), np.float32)
    wide[:, ::2] = x
    np.testing.assert_array_equal(model.predict(wide[:, ::2]), want)  # strided view
    ints = np.arange(model.input_size, dtype=np.int64)
    np.testing.assert_array_equal(model.predict(ints), model.predict(ints.astype(np.float32)))


@pytest.mark.parametrize("bad, match", [
    (lambda d: np.zeros(d + 1, np.float32), r"shape \(\d+,\)"),
    (lambda d: np.zeros((2, d - 1), np.float32), r"shape \(2, \d+\)"),
    (lambda d: np.zeros((2, 2, d), np.float32), r"shape \(2, 2, \d+\)"),
    (lambda d: np.zeros(d, np.complex64), "dtype complex64"),
    (lambda d: np.array(["a"] * d), "dtype <U1"),
    (lambda d: np.zeros(d, bool), "dtype bool"),
    (lambda d: [[1.0] * d, [1.0]], "not array-like"),
])
def test_wrong_shapes_and_dtypes_raise_input_error(preset_blob, bad, match):
    for backend in ("native", "reference"):
        model = pymicro.load(preset_blob, backend)
        with pytest.raises(InputError, match=match):
            model.predict(bad(model.input_size))


def test_nan_and_inf_raise_by_default_naming_the_cell(preset_blob):
    for backend in ("native", "reference"):
        model = pymicro.load(preset_blob, backend)
        x = rows(40, model.input_size)
        x[17, 3] = np.nan
        with pytest.raises(InputError, match=r"x\[17, 3\] is nan"):
            model.predict(x)
        x[17, 3] = 0
        x[0, 1] = np.inf
        with pytest.raises(InputError, match=r"x\[0, 1\] is inf"):
            model.predict(x)
        with pytest.raises(InputError, match=r"x\[0, 1\]"):
            model.predict(x[0])


def _overflowing(layers, scale_first, seed=0):
    """A network whose first weight matrix is scaled up: rows of large inputs overflow."""
    from pymicro import Spec

    net = Spec(6, layers, 3).init(seed)
    first = net.params[0]
    key = "W_a" if "W_a" in first else "W"
    first[key] = (first[key] * np.float32(scale_first)).astype(np.float32)
    return pymicro.freeze(net)


OVERFLOW_ROWS = [5, 40]


@pytest.mark.parametrize("layers", [
    [pymicro.Dense(4, "relu")],         # hidden values become Inf, the head's sums NaN
    [pymicro.Attention(4)],             # gate logits become Inf: Inf - Inf inside the softmax
], ids=["dense-relu", "attention-gate"])
@pytest.mark.parametrize("backend", ["native", "wasm"])
def test_float32_overflow_inside_the_network_is_reported_never_a_silent_number(layers, backend):
    blob = _overflowing(layers, 1e36)
    x = rows(64, 6, scale=1.0)
    x[OVERFLOW_ROWS] *= np.float32(1e6)
    propagate = pymicro.load(blob, backend, nan_policy="propagate")
    got = propagate.predict(x)
    bad = np.isnan(got).any(axis=1)
    assert list(np.flatnonzero(bad)) == OVERFLOW_ROWS
    assert np.isnan(got[bad]).all()  # the whole row, not one class
    np.testing.assert_allclose(got[~bad].sum(axis=1), 1.0, atol=1e-5)
    for r in OVERFLOW_ROWS:  # a row alone says the same as inside the batch
        assert np.isnan(propagate.predict(x[r])).all()
    model = pymicro.load(blob, backend)
    with pytest.raises(pymicro.NumericsError, match=r"^row 5: the network's float32 arithmetic overflowed"):
        model.predict(x)
    with pytest.raises(pymicro.NumericsError, match=r"^row 0: "):
        model.predict(x[40])
    out = np.empty((64, 3), np.float32)
    with pytest.raises(pymicro.NumericsError, match="row 5"):
        model.predict_into(x, out)
    x[3, 2] = np.nan  # a bad input cell is named first, as before
    with pytest.raises(InputError, match=r"x\[3, 2\] is nan"):
        model.predict(x)


@pytest.mark.parametrize("backend", ["native", "wasm"])
def test_an_overflow_a_saturating_activation_absorbs_gives_the_float64_answer(backend):
    # tanh(+-Inf) is +-1, as tanh of the float64 value is: no NaN, nothing to report.
    blob = _overflowing([pymicro.Dense(4, "tanh"), pymicro.Dense(4, "gelu")], 1e36)
    x = rows(64, 6, scale=1.0)
    x[OVERFLOW_ROWS] *= np.float32(1e6)
    got = pymicro.load(blob, backend).predict(x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, pymicro.load(blob, "reference").predict(x), atol=1e-5)


def test_overflow_is_reported_alike_by_native_and_wasm_bit_for_bit():
    blob = _overflowing([pymicro.Attention(4), pymicro.Dense(5, "relu")], 1e36, seed=3)
    x = rows(100, 6, seed=4, scale=1.0)
    x[::7] *= np.float32(1e6)
    native = pymicro.load(blob, nan_policy="propagate").predict(x)
    wasm = pymicro.load(blob, "wasm", nan_policy="propagate").predict(x)
    assert np.isnan(native).any() and not np.isnan(native).all()
    assert np.array_equal(native, wasm, equal_nan=True)


def test_nan_policy_propagate_marks_only_the_bad_rows(preset_blob):
    clean = rows(40, 0 or pymicro.load(preset_blob).input_size)
    want = pymicro.load(preset_blob).predict(clean)
    x = clean.copy()
    x[[3, 21, 39], [0, 5, 1]] = [np.nan, np.inf, -np.inf]
    for backend in ("native", "reference"):
        got = pymicro.load(preset_blob, backend, nan_policy="propagate").predict(x)
        bad = np.isnan(got).all(axis=1)
        assert list(np.flatnonzero(bad)) == [3, 21, 39]
        np.testing.assert_allclose(got[~bad], want[~bad], atol=1e-5)
    with pytest.raises(InputError, match="nan_policy"):
        pymicro.load(preset_blob, nan_policy="ignore")


@pytest.mark.parametrize("backend", ["native", "wasm"])
def test_predict_into_writes_the_callers_buffer_without_allocating(preset_blob, backend):
    model = pymicro.load(preset_blob, backend)
    x = rows(64, model.input_size)
    out = np.empty((64, model.n_classes), np.float32)
    assert model.predict_into(x, out) is None
    np.testing.assert_array_equal(out, model.predict(x))
    one = np.empty(model.n_classes, np.float32)
    model.predict_into(x[5], one)
    np.testing.assert_array_equal(one, out[5])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            model.predict_into(x[5], one)
            model.predict_into(x, out)
        grown = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert grown < 1024, f"predict_into allocated {grown} bytes"


@pytest.mark.parametrize("make_x, make_out, match", [
    (lambda x: x.astype(np.float64), lambda o: o, "x as a float32"),
    (lambda x: np.asfortranarray(x), lambda o: o, "x as a float32"),
    (lambda x: x, lambda o: o.astype(np.float64), "out must be a float32"),
    (lambda x: x, lambda o: o[:-1], "wrong shape"),
    (lambda x: x, lambda o: o.reshape(-1), "wrong shape"),
])
def test_predict_into_refuses_what_it_would_have_to_copy(preset_blob, make_x, make_out, match):
    model = pymicro.load(preset_blob)
    x = rows(8, model.input_size)
    out = np.empty((8, model.n_classes), np.float32)
    with pytest.raises(InputError, match=match):
        model.predict_into(make_x(x), make_out(out))
    out.flags.writeable = False
    with pytest.raises(InputError, match="read-only"):
        model.predict_into(x, out)


def test_explain_returns_the_attention_weights():
    net = perturbed(pymicro.preset("momentum"))
    blob = pymicro.freeze(net)
    x = rows(50, 24)
    for isa in ISAS:
        a = pymicro.load(blob, isa=isa).explain(x)
        assert a.shape == (50, 24)
        np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(a, pymicro.load(blob, "reference").explain(x), atol=1e-5)
        assert np.array_equal(pymicro.load(blob, isa=isa).explain(x[7]), a[7])
    no_attention = pymicro.load(pymicro.freeze(pymicro.preset("reversal").init()))
    with pytest.raises(InputError, match="no attention"):
        no_attention.explain(x[:, :1].repeat(32, axis=1))


def test_info_describes_the_blob():
    spec = pymicro.Spec(6, (pymicro.Attention(4), pymicro.Dense(5, "gelu")), 3, name="demo",
                        labels=("down", "flat", "up"), feature_names=tuple("abcdef"))
    blob = pymicro.freeze(perturbed(spec), horizon=5, note="ünïcode")
    info = pymicro.load(blob).info
    assert (info.params, info.flops) == (spec.params, spec.flops)
    assert info.labels == ("down", "flat", "up") and info.feature_names == tuple("abcdef")
    assert info.input_size == 6 and info.n_classes == 3 and info.has_normalization
    assert info.content_hash == hashlib.sha256(blob).hexdigest() and info.blob_size == len(blob)
    assert info.metadata["horizon"] == "5" and info.metadata["note"] == "ünïcode"
    assert info.layers == ("Attention(6 -> 4)", "Dense(4 -> 5, gelu)", "Dense(5 -> 3, linear)")
    assert info.isa in ISAS and info.backend == "native"


def test_freeze_is_deterministic_and_writes_atomically(tmp_path):
    net = perturbed(pymicro.preset("reversal"))
    path = tmp_path / "sub" / "reversal.pmb"
    blob = pymicro.freeze(net, path)
    assert path.read_bytes() == blob == pymicro.freeze(net)
    assert [p.name for p in path.parent.iterdir()] == ["reversal.pmb"]  # no temp file left
    for source in (path, str(path), blob, bytearray(blob), memoryview(blob)):
        assert pymicro.load(source).info.content_hash == hashlib.sha256(blob).hexdigest()


def test_load_errors_are_typed(tmp_path):
    blob = pymicro.freeze(pymicro.preset("momentum").init())
    with pytest.raises(BlobError, match="cannot read blob file"):
        pymicro.load(tmp_path / "missing.pmb")
    with pytest.raises(InputError, match="path or bytes"):
        pymicro.load(42)
    with pytest.raises(BackendError, match="unknown backend"):
        pymicro.load(blob, "tpu")
    with pytest.raises(BackendError, match="cuda"):
        pymicro.load(blob, "cuda")
    with pytest.raises(BackendError, match="not available"):
        pymicro.load(blob, isa="neon9000")
    with pytest.raises(BlobError, match="at byte"):
        pymicro.load(blob[:-1])


@pytest.mark.parametrize("backend", ["native", "wasm"])
def test_a_batch_releases_the_gil_so_python_threads_run_meanwhile(backend):
    import sys
    import time

    model = pymicro.load(pymicro.freeze(pymicro.preset("sentiment").init(0)), backend)
    x = rows(400_000 if backend == "native" else 100_000, model.input_size)
    out = np.empty((len(x), model.n_classes), np.float32)
    model.predict_into(x[:64], out[:64])
    ticks = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks[0] += 1

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # the caller gets the GIL back within 0.1 ms when it asks
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        start, before = time.perf_counter(), ticks[0]
        time.sleep(0.03)  # sleeping releases the GIL: the spinner's free-running rate
        rate = (ticks[0] - before) / (time.perf_counter() - start)
        before, start = ticks[0], time.perf_counter()
        model.predict_into(x, out)  # one call into the core, tens of ms
        seconds = time.perf_counter() - start
        during = ticks[0] - before
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(interval)
    # Held for the whole call, the GIL would leave the spinner ~0.1 ms of the call; released,
    # it spins nearly all along (both threads have a core: the test machines have two).
    assert seconds > 0.01, "the batch was too short to tell"
    share = during / (rate * seconds)
    assert share > 0.4, f"a Python thread ran for only {share:.0%} of a {seconds * 1e3:.0f} ms batch"


def test_load_refuses_bad_arguments_with_typed_errors(preset_blob):
    with pytest.raises(InputError, match="isa must be a string"):
        pymicro.load(preset_blob, isa=123)
    with pytest.raises(InputError, match="nan_policy must be"):
        pymicro.load(preset_blob, nan_policy=None)
    with pytest.raises(InputError, match="applies to backend='native' only"):
        pymicro.load(preset_blob, "reference", isa="bogus")
    with pytest.raises(BackendError, match="backend must be a string"):
        pymicro.load(preset_blob, backend=None)


@pytest.mark.parametrize("backend", ["native", "reference", "wasm"])
def test_a_float64_value_beyond_float32_range_is_named_not_turned_into_inf(preset_blob, backend):
    import warnings

    model = pymicro.load(preset_blob, backend, nan_policy="propagate")
    x = np.zeros((3, model.input_size))
    x[1, 5] = -1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning from the conversion either
        with pytest.raises(InputError, match=r"x\[1, 5\] = -1e\+300 is beyond float32's range"):
            model.predict(x)
        with pytest.raises(InputError, match=r"x\[5\] = -1e\+300"):
            model.predict(x[1])


@pytest.mark.parametrize("backend", ["native", "reference", "wasm"])
def test_predict_into_never_converts_on_any_backend(preset_blob, backend):
    model = pymicro.load(preset_blob, backend)
    out = np.empty((4, model.n_classes), np.float32)
    with pytest.raises(InputError, match="predict_into needs x as a float32"):
        model.predict_into(np.zeros((4, model.input_size)), out)
    with pytest.raises(InputError, match="out must be a float32"):
        model.predict_into(np.zeros((4, model.input_size), np.float32), out.astype(np.float64))


def test_overflow_messages_are_word_for_word_the_same_on_native_and_wasm():
    blob = _overflowing([pymicro.Dense(4, "relu")], 1e36)
    x = rows(8, 6, scale=1.0)
    x[3] *= np.float32(1e6)
    said = []
    for backend in ("native", "wasm"):
        with pytest.raises(pymicro.NumericsError) as e:
            pymicro.load(blob, backend).predict(x)
        said.append(str(e.value))
    assert said[0] == said[1] and said[0].startswith("row 3: ")


@pytest.mark.parametrize("isa", ISAS)
def test_the_cores_own_exp_is_within_1_5_ulp_and_never_subnormal(isa):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-80.0, 88.0, 1_000_003, dtype=np.float32),
                        rng.uniform(-5, 5, 200_000).astype(np.float32)])
    y = _core._exp(x, isa).astype(np.float64)
    truth = np.exp(x.astype(np.float64))
    ulps = np.abs(y - truth) / np.spacing(truth.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.5, f"{isa}: {ulps.max():.2f} ulp at x={x[ulps.argmax()]}"
    # Far below: clamped at exp(-80), a normal float; so no denormal ever comes out.
    low = _core._exp(np.array([-80.0, -100.0, -1e30, -np.inf], np.float32), isa)
    assert np.all(low == low[0]) and low[0] >= np.finfo(np.float32).tiny
    assert _core._exp(np.array([0.0], np.float32), isa)[0] == 1.0
    assert np.isnan(_core._exp(np.array([np.nan], np.float32), isa)[0])  # NaN is not hidden


def test_the_native_hot_calls_take_keywords_keep_their_model_alive_and_leak_nothing(preset_blob):
    import gc
    import sys

    model = pymicro.load(preset_blob)
    x = rows(5, model.input_size)
    want = model.predict(x)
    out = np.empty_like(want)
    assert np.array_equal(model.predict(x=x), want)
    model.predict_into(out=out, x=x)
    assert np.array_equal(out, want)
    with pytest.raises(TypeError, match="unexpected or repeated argument 'y'"):
        model.predict(y=x)
    with pytest.raises(TypeError, match="missing required argument 'out'"):
        model.predict_into(x)
    with pytest.raises(TypeError, match="takes 1 arguments"):
        model.predict(x, x)
    predict = model.predict
    del model
    gc.collect()
    assert np.array_equal(predict(x), want)  # the function holds its model
    impl = pymicro.load(preset_blob)._impl
    before = sys.getrefcount(impl)
    for _ in range(1000):
        p, q = impl.fast_calls()
        p(x[0])
        del p, q
    gc.collect()
    assert sys.getrefcount(impl) == before


def test_the_core_type_stubs_name_exactly_what_the_module_has():
    import ast
    from pathlib import Path

    tree = ast.parse((Path(pymicro.__file__).parent / "_core.pyi").read_text(encoding="utf-8"))
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NativeModel")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
    public = {name for name in dir(_core) if not name.startswith("__") and name != "NativeModel"}
    assert functions == public
    assert methods == {name for name in dir(_core.NativeModel) if not name.startswith("_")}
    assert (Path(pymicro.__file__).parent / "py.typed").exists()
