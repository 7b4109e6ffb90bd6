"""Model.predict(x, threads=N): a batch split across threads, bit-identical to one thread."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from netgen import networks

import pymicro
from pymicro import InputError, NumericsError, _core
from pymicro.runtime import bench


def rows(n, width, seed=0):
    return np.random.default_rng(seed).normal(0, 2.0, (n, width)).astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(net=networks(), n=st.sampled_from([2, 17, 100, 1000, 3001]), threads=st.integers(2, 9),
       seed=st.integers(0, 1000))
def test_threads_give_the_same_bits_as_one_thread_on_every_isa(net, n, threads, seed):
    blob = pymicro.freeze(net)
    x = rows(n, net.spec.input_size, seed)
    for isa in _core.isas():
        model = pymicro.load(blob, isa=isa, nan_policy="propagate")
        one = model.predict(x, threads=1)
        assert np.array_equal(model.predict(x, threads=threads), one, equal_nan=True), isa
        out = np.empty_like(one)
        model.predict_into(x, out, threads=threads)
        assert np.array_equal(out, one, equal_nan=True), isa


def test_the_default_splits_large_batches_with_the_same_bits():
    model = pymicro.load(bench.preset_blob("sentiment"))
    x = rows(40_000, model.input_size)  # over the 16,384 rows where threads=None splits
    one = model.predict(x, threads=1)
    assert np.array_equal(model.predict(x), one)
    assert np.array_equal(pymicro.predict(model, x), one)
    assert np.array_equal(pymicro.Model.predict(model, x, threads=3), one)  # the documented method


def test_a_bad_row_in_a_later_part_is_named_by_its_row_in_the_whole_batch():
    model = pymicro.load(bench.preset_blob("momentum"))
    x = rows(10_000, model.input_size)
    x[9_001, 5] = np.nan
    with pytest.raises(InputError, match="9001"):
        model.predict(x, threads=4)
    propagate = pymicro.load(bench.preset_blob("momentum"), nan_policy="propagate")
    got = propagate.predict(x, threads=4)
    assert np.isnan(got[9_001]).all() and np.isfinite(np.delete(got, 9_001, axis=0)).all()


def test_threads_argument_is_checked_on_every_backend():
    blob = bench.preset_blob("momentum")
    x = rows(4, 24)
    for backend in ("native", "reference", "wasm"):
        model = pymicro.load(blob, backend)
        out = np.empty(model.n_classes, np.float32)
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(InputError, match="threads"):
                model.predict(x, threads=bad)
            with pytest.raises(InputError, match="threads"):  # one row too (native: its shortcut)
                model.predict(x[0], threads=bad)
            with pytest.raises(InputError, match="threads"):
                model.predict_into(x[0], out, threads=bad)
        assert np.allclose(model.predict(x, threads=2), model.predict(x), atol=0)
        model.predict_into(x[1], out, threads=3)
        assert np.array_equal(out, model.predict(x[1], threads=None)) and np.array_equal(out, model.predict(x)[1])
    with pytest.raises(TypeError):
        pymicro.load(blob).predict(x, 2)  # keyword-only: a second positional is an error


def test_python_threads_sharing_the_pool_all_get_their_own_answers():
    # Several callers at once: one holds the pool, the others run on their own thread.
    model = pymicro.load(bench.preset_blob("reversal"))
    xs = [rows(20_000, model.input_size, seed=s) for s in range(6)]
    want = [model.predict(x, threads=1) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(5):
            got[i] = model.predict(xs[i], threads=2)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
