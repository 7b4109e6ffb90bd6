"""The native core against the float64 numpy reference, and the Model API's contracts."""

import hashlib
import threading
import tracemalloc

import numpy as np
import pytest
from netgen import networks, perturbed, tiny_weight_cases
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
    want = pymicro.load(blob, "reference", dtype=np.float64).predict(x)
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
    np.testing.assert_allclose(got, pymicro.load(blob, "reference", dtype=np.float64).predict(x), atol=1e-5)


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


@pytest.mark.parametrize("backend", ["native", "wasm"])
def test_predict_into_names_a_non_array_a_type_error_as_predict_does(preset_blob, backend):
    model = pymicro.load(preset_blob, backend)
    x = rows(2, model.input_size)
    out = np.empty((2, model.n_classes), np.float32)
    with pytest.raises(pymicro.InputTypeError, match="x as a float32"):
        model.predict_into(x.tolist(), out)  # a list: not an ndarray at all
    with pytest.raises(pymicro.InputTypeError, match="out must be a float32"):
        model.predict_into(x, "out")
    with pytest.raises(InputError, match="x as a float32") as e:  # an ndarray of the wrong layout
        model.predict_into(np.asfortranarray(x), out)
    assert not isinstance(e.value, TypeError)


def test_pymicro_predict_is_the_models_predict_and_refuses_a_non_model_by_type(preset_blob):
    model = pymicro.load(preset_blob)
    x = rows(3, model.input_size)
    assert np.array_equal(pymicro.predict(model, x), model.predict(x))
    assert np.array_equal(pymicro.predict(model, x, threads=2), model.predict(x))
    assert np.array_equal(pymicro.predict(model=model, x=x[0]), model.predict(x[0]))
    for not_a_model in (None, preset_blob, "momentum.pmb"):
        with pytest.raises(pymicro.InputTypeError, match="needs a pymicro model") as e:
            pymicro.predict(not_a_model, x)
        assert isinstance(e.value, TypeError)
    with pytest.raises(TypeError, match="missing required argument 'x'"):
        pymicro.predict(model)
    with pytest.raises(InputError, match="shape"):  # the model's own errors pass through unchanged
        pymicro.predict(model, x[:, :-1])


def test_explain_returns_the_attention_weights():
    net = perturbed(pymicro.preset("momentum"))
    blob = pymicro.freeze(net)
    x = rows(50, 24)
    for isa in ISAS:
        a = pymicro.load(blob, isa=isa).explain(x)
        assert a.shape == (50, 24)
        np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(a, pymicro.load(blob, "reference", dtype=np.float64).explain(x), atol=1e-5)
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
        model.predict_into(x, out, threads=1)  # one call into the core on one core, tens of ms
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


def _outs_inside(x, n, c):
    """out arrays (n, c) sharing bytes with x: inside its second half, at its start (exact
    aliasing), and one float past its start."""
    flat = x.reshape(-1)
    half = flat.size // 2
    return {"second half": flat[half:half + n * c].reshape(n, c),
            "exact alias": flat[:n * c].reshape(n, c),
            "one float in": flat[1:1 + n * c].reshape(n, c)}


@pytest.mark.parametrize("backend", ["native", "wasm", "reference"] + [f"native-{isa}" for isa in ISAS])
def test_predict_into_refuses_an_out_that_overlaps_x(preset_blob, backend):
    # 9,000 rows with out inside the second half of x's buffer once gave wrong rows with no
    # error (the kernels overwrite rows of x they have not read yet).
    name, _, isa = backend.partition("-")
    model = pymicro.load(preset_blob, name, **({"isa": isa} if isa else {}))
    n, d, c = 9000, model.input_size, model.n_classes
    x = rows(n, d)
    want = model.predict(x)
    for what in ("second half", "exact alias", "one float in"):
        buf = x.copy()
        out = _outs_inside(buf, n, c)[what]
        with pytest.raises(InputError, match=r"^predict_into: out overlaps x in memory"):
            model.predict_into(buf, out)
        assert np.array_equal(buf, x), what  # refused before anything was written
    one = x[0].copy()
    with pytest.raises(InputError, match="overlaps"):  # one row: out inside the row itself
        model.predict_into(one, one[4:4 + c])
    # Buffers side by side in one allocation share no byte: accepted, the right answer.
    big = np.empty(n * (d + c), np.float32)
    xa, oa = big[:n * d].reshape(n, d), big[n * d:].reshape(n, c)
    xa[...] = x
    model.predict_into(xa, oa)
    assert np.array_equal(oa, want.astype(np.float32))
    empty = np.empty(0, np.float32)  # no rows: no byte shared, though both start at one address
    model.predict_into(empty.reshape(0, d), empty.reshape(0, c))


def test_predict_into_overlap_message_is_the_same_on_every_backend(preset_blob):
    from pymicro.runtime.inputs import OVERLAP_MESSAGE

    said = set()
    for backend in ("native", "wasm", "reference"):
        model = pymicro.load(preset_blob, backend)
        x = rows(64, model.input_size)
        with pytest.raises(InputError) as e:
            model.predict_into(x, x.reshape(-1)[:64 * model.n_classes].reshape(64, -1))
        said.add(str(e.value))
    assert said == {OVERLAP_MESSAGE}


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


EXP_MIN = np.float32(-87.33654)  # ln(FLT_MIN) rounded up: below it exp is subnormal or 0


@pytest.mark.parametrize("isa", ISAS)
def test_the_cores_own_exp_is_within_1_5_ulp_and_never_subnormal(isa):
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(EXP_MIN, 88.0, 1_000_003, dtype=np.float32),
                        rng.uniform(-5, 5, 200_000).astype(np.float32),
                        rng.uniform(EXP_MIN, -80.0, 100_000).astype(np.float32)])
    y = _core._exp(x, isa).astype(np.float64)
    truth = np.exp(x.astype(np.float64))
    ulps = np.abs(y - truth) / np.spacing(truth.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 1.5, f"{isa}: {ulps.max():.2f} ulp at x={x[ulps.argmax()]}"
    assert y.min() >= np.finfo(np.float32).tiny  # a normal float down to EXP_MIN
    # Below ln(FLT_MIN) the float64 value rounds to a subnormal or to 0 in float32: the
    # kernels' exp gives 0 (never a normal number such as e^-80, which a large input
    # multiplies back into view), and never a subnormal.
    below = np.concatenate([np.nextafter(EXP_MIN, np.float32(-np.inf), dtype=np.float32)[None],
                            np.float32([-87.5, -88.0, -90.0, -100.0, -103.3, -104.0, -1e4, -1e30,
                                        -np.inf]),
                            rng.uniform(-200.0, EXP_MIN, 100_000).astype(np.float32)])
    low = _core._exp(below, isa)
    assert np.all(low == 0.0), f"{isa}: exp({below[low != 0][0]}) = {low[low != 0][0]}, not 0"
    assert np.all(np.exp(below.astype(np.float64)) < np.finfo(np.float32).tiny)
    assert _core._exp(np.array([0.0], np.float32), isa)[0] == 1.0
    assert _core._exp(np.array([88.0, 1e30, np.inf], np.float32), isa).tolist() == [
        np.float32(np.exp(88.0))] * 3  # clamped at 88: finite
    assert np.isnan(_core._exp(np.array([np.nan], np.float32), isa)[0])  # NaN is not hidden


def _tiny_attention_weight_blob(gate_bias=-100.0):
    """The reproducer: a = softmax([0, gate_bias]) gates x = [0, 1e36]; a_1 * 1e36 is
    float64's 3.7e-8 for a bias of -100, so h ~ 0 and the head's two logits tie."""
    net = pymicro.Spec(2, (pymicro.Attention(1),), 2).init(0)
    att, head = net.params
    att["W_a"] = np.zeros((2, 2), np.float32)
    att["b_a"] = np.float32([0.0, gate_bias])
    att["W_v"] = np.float32([[1.0, 1.0]])
    att["b_v"] = np.zeros(1, np.float32)
    head["W"] = np.float32([[1.0], [-1.0]])
    head["b"] = np.zeros(2, np.float32)
    return pymicro.freeze(net)


@pytest.mark.parametrize("gate_bias", [-100.0, -110.0, -300.0])
@pytest.mark.parametrize("backend", ["native", "wasm"] + [f"native-{isa}" for isa in ISAS])
def test_a_tiny_attention_weight_times_a_large_input_stays_tiny(backend, gate_bias):
    # Once the kernels' exp stopped at e^-80: that weight times 1e36 gave [1.0, 2e-16].
    blob = _tiny_attention_weight_blob(gate_bias)
    x = np.float32([[0.0, 1e36], [0.0, -1e36], [5.0, 1e36]])
    want = pymicro.load(blob, "reference").predict(x)
    np.testing.assert_allclose(want[:2], 0.5, atol=1e-6)  # and [5, -5] through the head for row 2
    name, _, isa = backend.partition("-")
    model = pymicro.load(blob, name, **({"isa": isa} if isa else {}))
    got = model.predict(x)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(np.stack([model.predict(r) for r in x]), want, atol=1e-6)  # row path
    np.testing.assert_allclose(model.explain(x)[:, 1], 0.0, atol=0)  # the weight is 0, not e^-80


@settings(max_examples=60, deadline=None)
@given(case=tiny_weight_cases())
def test_tiny_weights_times_huge_values_match_the_reference_on_every_backend(case):
    net, x = case
    blob = pymicro.freeze(net)
    want = pymicro.load(blob, "reference").predict(x)
    assert np.isfinite(want).all()
    models = [pymicro.load(blob, isa=isa) for isa in ISAS] + [pymicro.load(blob, "wasm")]
    for model in models:
        got = model.predict(x)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=model.info.isa)
        np.testing.assert_allclose(model.predict(x[0]), want[0], atol=1e-5, rtol=0)
    fused = [m for m in models[:-1] if m.info.isa in ("avx2", "avx512")]  # wasm fuses as they do
    assert all(np.array_equal(models[-1].predict(x), m.predict(x)) for m in fused)


@pytest.mark.parametrize("backend", ["native", "wasm"])
def test_a_strongly_negative_sigmoid_input_gives_0_as_the_reference_does(backend):
    # sigmoid(-100) is 3.7e-44 in float64; a sigmoid floored at 1 / (1 + e^80) = 1.8e-35
    # times a weight of 1e36 once put 18 into the head's logit.
    net = pymicro.Spec(1, (pymicro.Dense(1, "sigmoid"),), 2).init(0)
    net.params[0]["W"] = np.float32([[1.0]])
    net.params[0]["b"] = np.float32([0.0])
    net.params[1]["W"] = np.float32([[1e36], [0.0]])
    net.params[1]["b"] = np.zeros(2, np.float32)
    blob = pymicro.freeze(net)
    x = np.float32([[-100.0], [-1e30], [-110.0], [0.0], [-20.0], [-60.0]])
    want = pymicro.load(blob, "reference").predict(x)
    got = pymicro.load(blob, backend, nan_policy="propagate").predict(x)
    np.testing.assert_allclose(got[:3], [[0.5, 0.5]] * 3, atol=1e-6)
    np.testing.assert_allclose(got, want, atol=1e-5)


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
    functions |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}  # constants
    functions |= {n.name for n in tree.body if isinstance(n, ast.ClassDef) and n.name != "NativeModel"}
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "NativeModel")
    methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)} - {"__init__"}
    public = {name for name in dir(_core) if not name.startswith("__") and name != "NativeModel"}
    assert functions == public
    assert methods == {name for name in dir(_core.NativeModel) if not name.startswith("_")}
    assert (Path(pymicro.__file__).parent / "py.typed").exists()


def _hostile(kind, exc):
    """An object whose own conversion to an array raises ``exc``: from __array__, from
    __getitem__ (a sequence of the right length) or from __len__."""
    if kind == "__array__":
        class Obj:
            def __array__(self, *args, **kwargs):
                raise exc("broken __array__")
    elif kind == "__getitem__":
        class Obj:
            def __len__(self):
                return 24

            def __getitem__(self, i):
                raise exc("broken __getitem__")
    else:
        class Obj:
            def __len__(self):
                raise exc("broken __len__")

            def __getitem__(self, i):
                return 1.0
    return Obj()


@pytest.mark.parametrize("exc", [RuntimeError, KeyError, ZeroDivisionError, AttributeError])
@pytest.mark.parametrize("kind", ["__array__", "__getitem__", "__len__"])
@pytest.mark.parametrize("backend", ["native", "reference", "wasm"])
def test_an_input_whose_conversion_raises_is_an_input_error_chained_to_it(backend, kind, exc):
    if backend == "wasm":
        pytest.importorskip("wasmtime")
    model = pymicro.load(pymicro.freeze(pymicro.preset("momentum").init(0)), backend)
    x = _hostile(kind, exc)
    for call in (model.predict, model.explain):
        with pytest.raises(InputError) as e:
            call(x)
        if kind == "__array__":  # numpy calls it and lets its exception through: chained
            assert type(e.value.__cause__) is exc and "broken __array__" in str(e.value)
    with pytest.raises(InputError, match="predict_into needs x as a float32"):
        model.predict_into(x, np.empty(3, np.float32))  # never converts: refused untouched


@pytest.mark.parametrize("backend", ["native", "reference", "wasm"])
def test_a_memory_error_while_converting_an_input_is_not_wrapped(backend):
    if backend == "wasm":
        pytest.importorskip("wasmtime")
    model = pymicro.load(pymicro.freeze(pymicro.preset("momentum").init(0)), backend)
    for kind in ("__array__", "__getitem__"):
        for call in (model.predict, model.explain):
            with pytest.raises(MemoryError) as e:
                call(_hostile(kind, MemoryError))
            assert not isinstance(e.value, pymicro.PymicroError)


@pytest.mark.parametrize("backend", ["native", "reference", "wasm"])
def test_non_numeric_inputs_are_input_type_errors_so_also_type_errors(backend):
    if backend == "wasm":
        pytest.importorskip("wasmtime")
    model = pymicro.load(pymicro.freeze(pymicro.preset("momentum").init(0)), backend)
    for bad in (np.array(["a"] * 24), np.zeros(24, np.complex64), np.zeros(24, bool),
                np.array([object()] * 24), [[1.0] * 24, [1.0]], "not an array", None):
        with pytest.raises(pymicro.InputTypeError) as e:
            model.predict(bad)
        assert isinstance(e.value, TypeError) and isinstance(e.value, InputError)


def test_the_model_methods_are_documented_on_the_class_and_the_instances_keep_the_fast_calls(preset_blob):
    import inspect
    import pydoc

    for name, params in (("predict", ["self", "x", "threads"]), ("predict_into", ["self", "x", "out", "threads"]),
                         ("explain", ["self", "x"])):
        method = getattr(pymicro.Model, name)
        assert inspect.isfunction(method) and len(method.__doc__) > 100
        assert list(inspect.signature(method).parameters) == params
        assert "Returns" in method.__doc__ or "returns" in method.__doc__
    assert "Class probabilities" in pydoc.render_doc(pymicro.Model.predict)
    model = pymicro.load(preset_blob)
    # the instance's own attribute is the core's vectorcall function, not the Python method
    assert type(model.predict).__name__ == "builtin_function_or_method"
    x = rows(7, model.input_size)
    want = model.predict(x)
    assert np.array_equal(pymicro.Model.predict(model, x), want)
    out = np.empty_like(want)
    assert pymicro.Model.predict_into(model, x, out) is None and np.array_equal(out, want)
    if model._impl.attn_width:
        assert np.array_equal(pymicro.Model.explain(model, x), model.explain(x))


@pytest.mark.parametrize("backend", ["native", "reference", "wasm"])
def test_every_backend_returns_float32_by_default(preset_blob, backend):
    if backend == "wasm":
        pytest.importorskip("wasmtime")
    model = pymicro.load(preset_blob, backend)
    x = rows(5, model.input_size)
    assert model.dtype == np.float32 and model.info.dtype == "float32"
    assert model.predict(x).dtype == np.float32 and model.predict(x[0]).dtype == np.float32
    if model._impl.attn_width:
        assert model.explain(x).dtype == np.float32
    out = np.empty((5, model.n_classes), np.float32)
    model.predict_into(x, out)
    np.testing.assert_allclose(out, model.predict(x), atol=1e-5)


def test_the_reference_gives_float64_on_request_and_only_the_reference(preset_blob):
    from pymicro.runtime.reference import forward

    r32 = pymicro.load(preset_blob, "reference")
    r64 = pymicro.load(preset_blob, "reference", dtype=np.float64)
    x = rows(9, r64.input_size)
    p64 = r64.predict(x)
    assert p64.dtype == np.float64 and r64.dtype == np.float64 and r64.info.dtype == "float64"
    assert np.array_equal(p64, forward(r64.described, x)[0])  # the float64 values themselves
    assert np.array_equal(r32.predict(x), p64.astype(np.float32))
    assert r64.predict(x[0]).dtype == np.float64
    out = np.empty((9, r64.n_classes), np.float64)
    r64.predict_into(x, out)
    assert np.array_equal(out, p64)
    with pytest.raises(InputError, match="out must be a float64"):
        r64.predict_into(x, out.astype(np.float32))
    assert pymicro.load(preset_blob, "reference", dtype="float64").dtype == np.float64
    assert pymicro.load(preset_blob, dtype=np.float32).dtype == np.float32
    for backend in ("native", "wasm"):
        with pytest.raises(InputError, match="backend='reference' only"):
            pymicro.load(preset_blob, backend, dtype=np.float64)
    with pytest.raises(InputError, match="np.float32 or np.float64"):
        pymicro.load(preset_blob, "reference", dtype=np.int32)
    with pytest.raises(pymicro.InputTypeError, match="np.float32 or np.float64"):
        pymicro.load(preset_blob, "reference", dtype=object())


def test_single_row_results_are_recycled_only_when_nothing_else_can_see_them(preset_blob):
    """predict hands a one-row result array out again once only its own cache holds it
    (module.cpp, single_result): never one a caller, a view or a weak reference still sees."""
    import gc
    import weakref

    model = pymicro.load(preset_blob)
    xs = rows(8, model.input_size, seed=3)
    want = model.predict(xs)
    # Results held at once, and a name rebound in a loop: each keeps its own values.
    held = [pymicro.predict(model, r) for r in xs]
    for h, w in zip(held, want):
        np.testing.assert_array_equal(h, w)
    p = None
    for r, w in zip(xs, want):
        p = model.predict(r)
        np.testing.assert_array_equal(p, w)
    assert len({h.ctypes.data for h in held}) == len(held)
    # A discarded result's memory is what the next call returns (the point of the cache).
    first = model.predict(xs[0])
    addr = first.ctypes.data
    del first
    second = model.predict(xs[1])
    assert second.ctypes.data == addr
    np.testing.assert_array_equal(second, want[1])
    del second
    # A view keeps its base alive and unchanged.
    view = model.predict(xs[2])[1:]
    for r in xs:
        model.predict(r)
    np.testing.assert_array_equal(view, want[2][1:])
    # A result frozen, reshaped or weakly referenced by its last user is never written again.
    frozen = model.predict(xs[3])
    frozen.flags.writeable = False
    reshaped = model.predict(xs[4])
    reshaped.shape = (1, model.n_classes)
    ref = weakref.ref(model.predict(xs[5]))
    del frozen, reshaped
    gc.collect()
    for r in xs:
        out = model.predict(r)
        assert out.flags.writeable and out.shape == (model.n_classes,)
    if ref() is not None:
        np.testing.assert_array_equal(ref(), want[5])


def test_one_row_fast_paths_raise_propagate_and_compute_as_the_general_path(preset_blob):
    """predict(row) and predict_into(row, out) run a shortcut (module.cpp, predict_row*);
    a bad row falls through to the general path, which raises what it always raised."""
    model = pymicro.load(preset_blob)
    batch = rows(5, model.input_size, seed=11)
    want = model.predict(batch)
    out = np.zeros(model.n_classes, np.float32)
    for r, w in zip(batch, want):
        model.predict_into(r, out)
        np.testing.assert_array_equal(out, w)
        np.testing.assert_array_equal(pymicro.predict(model, r), w)
    x = batch[0].copy()
    x[2] = np.nan
    with pytest.raises(InputError, match="is nan"):
        model.predict_into(x, out)
    with pytest.raises(InputError, match="is nan"):
        pymicro.predict(model, x)
    with pytest.raises(InputError, match="is nan"):
        model.predict(x)
    prop = pymicro.load(preset_blob, nan_policy="propagate")
    prop.predict_into(x, out)
    assert np.isnan(out).all() and np.isnan(prop.predict(x)).all()
    prop.predict_into(batch[1], out)  # a good row after a bad one: nothing left over
    np.testing.assert_array_equal(out, want[1])
