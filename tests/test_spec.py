import numpy as np
import pytest

import pymicro
from pymicro import Attention, Dense, Dropout, ParameterBudgetError, Spec, SpecError


def by_hand(n_in, layers, n_classes):
    total, width = 0, n_in
    for kind, size in layers:
        if kind == "dense":
            total += width * size + size
            width = size
        elif kind == "attention":
            total += width * width + width + width * size + size
            width = size
    return total + width * n_classes + n_classes


def test_preset_parameter_counts_follow_the_layer_formulas():
    assert pymicro.preset("momentum").params == by_hand(24, [("attention", 8), ("dense", 16), ("dense", 8)], 3)
    assert pymicro.preset("reversal").params == by_hand(32, [("dense", 24), ("dense", 12), ("dense", 6)], 3)
    assert pymicro.preset("sentiment").params == by_hand(
        48, [("attention", 16), ("dense", 32), ("dense", 16), ("dense", 8)], 5)
    for name in pymicro.PRESETS:
        assert pymicro.preset(name).params < 10_000


def test_flops_count_dense_and_attention():
    spec = Spec(4, (Dense(3, "relu"),), 2)
    # dense 4->3: 2*12 MACs + 3 relu; head 3->2 linear: 12; softmax: 4*2
    assert spec.flops == 24 + 3 + 12 + 8
    att = Spec(4, (Attention(2),), 2)
    # logits 2*16, softmax 4*4, gate 4, values 2*4*2, head 2*2*2, softmax 8
    assert att.flops == 32 + 16 + 4 + 16 + 8 + 8


def test_more_than_ten_thousand_parameters_is_refused_unless_allowed():
    with pytest.raises(ParameterBudgetError, match="10,000"):
        Spec(100, (Dense(100),), 3)
    big = Spec(100, (Dense(100),), 3, allow_large=True)
    assert big.params == 100 * 100 + 100 + 100 * 3 + 3
    assert isinstance(ParameterBudgetError("x"), pymicro.PymicroError)


@pytest.mark.parametrize("bad, match", [
    (lambda: Spec(0, (), 3), "input_size"),
    (lambda: Spec(4, (), 1), "n_classes"),
    (lambda: Spec(4, (Dense(3, "swish"),), 2), "layer 0.*activation"),
    (lambda: Spec(4, (Dense(2), Dense(0)), 2), "layer 1"),
    (lambda: Spec(4, (Attention(0),), 2), "k must"),
    (lambda: Spec(4, (Dropout(1.5),), 2), "dropout"),
    (lambda: Spec(4, ("dense",), 2), "not a layer"),
    (lambda: Spec(4, (), 2, labels=("a",)), "labels"),
    (lambda: Spec(4, (), 2, feature_names=("a",)), "feature_names"),
    (lambda: pymicro.preset("nope"), "unknown preset"),
    (lambda: Spec(4, (Dropout("x"),), 2), "dropout p must be a number"),
    (lambda: Spec(4, None, 2), "layers must be a sequence"),
    (lambda: pymicro.preset("momentum").init(-1), "seed must be a non-negative int"),
    (lambda: pymicro.preset("momentum").init(1.5), "seed must be a non-negative int"),
])
def test_bad_specs_raise_spec_error_naming_the_problem(bad, match):
    with pytest.raises(SpecError, match=match):
        bad()


def test_init_is_seeded_and_shapes_follow_the_spec():
    spec = pymicro.preset("momentum")
    a, b, c = spec.init(seed=3), spec.init(seed=3), spec.init(seed=4)
    assert all(np.array_equal(p[k], q[k]) for p, q in zip(a.params, b.params) for k in p)
    assert not np.array_equal(a.params[0]["W_a"], c.params[0]["W_a"])
    assert a.params[0]["W_a"].shape == (24, 24) and a.params[0]["W_v"].shape == (8, 24)
    assert a.params[-1]["W"].shape == (3, 8) and a.params[-1]["W"].dtype == np.float32
    assert sum(v.size for p in a.params for v in p.values()) == spec.params


def test_describe_draws_the_architecture():
    assert pymicro.preset("reversal").describe() == (
        "Input(32) -> Dense(24, relu) -> Dropout(0.2) -> Dense(12, relu) -> Dense(6, relu) -> Softmax(3)")


def test_a_blob_over_the_budget_loads_only_when_allowed_too():
    big = pymicro.freeze(Spec(100, (Dense(100),), 3, allow_large=True).init(0))
    with pytest.raises(ParameterBudgetError, match="10,403 parameters.*allow_large=True"):
        pymicro.load(big)
    for backend in ("native", "reference", "wasm"):
        assert pymicro.load(big, backend, allow_large=True).info.params == 10_403


def test_freeze_refuses_what_the_parser_would_refuse():
    net = pymicro.preset("momentum").init(0)
    net.mean, net.std = np.zeros(24, np.float32), np.ones(24, np.float32)
    net.std[7] = 1e-40  # subnormal: the parser takes normal floats only
    with pytest.raises(pymicro.BlobError, match="input 7"):
        pymicro.freeze(net)
    names = tuple(f"{i:04d}" + "x" * 251 for i in range(4096))  # 4096 x 255 bytes > 1 MiB
    wide = Spec(4096, (), 2, feature_names=names).init(0)
    with pytest.raises(pymicro.BlobError, match="1 MiB"):
        pymicro.freeze(wide)


def test_the_python_and_cpp_activation_tables_agree():
    """pymicro/activations.py and PM_ACTIVATIONS (cpp/pymicro/format.hpp) name the same
    activations with the same blob codes, in the same order; every module reads its own."""
    from pymicro import _core
    from pymicro.runtime import activations, blob, reference
    from pymicro.runtime.spec import ACTIVATIONS

    python = tuple((a.name, a.code) for a in activations.TABLE)
    assert python == _core.ACTIVATIONS
    assert ACTIVATIONS == tuple(name for name, _ in _core.ACTIVATIONS)
    assert blob.ACTIVATION_CODES == dict(_core.ACTIVATIONS)
    assert set(reference._ACTIVATIONS) == set(ACTIVATIONS)
    z = np.linspace(-6, 6, 97)
    for a in activations.TABLE:  # the float32 numpy version is the float64 one, rounded
        np.testing.assert_allclose(a.numpy32(z.astype(np.float32)), a.reference(z), atol=1e-6,
                                   err_msg=a.name)


@pytest.mark.parametrize("code", [5, 6, 100, 101, 2**31, 2**32 - 1])
def test_an_activation_code_outside_the_table_is_refused_at_its_byte(code):
    """Every code past the table's (the attention ops' old internal 100 and 101 included) is
    a BlobError at the layer record's activation field, never a layer run as linear."""
    import struct
    import zlib

    from pymicro import BlobError, _core

    data = bytearray(pymicro.freeze(Spec(3, (Dense(4, "tanh"),), 2).init(0)))
    field = 128 + 4  # layer 0's record starts at layers_offset = 128; activation at +4
    assert struct.unpack_from("<I", data, field)[0] == dict(_core.ACTIVATIONS)["tanh"]
    struct.pack_into("<I", data, field, code)
    struct.pack_into("<I", data, len(data) - 8, zlib.crc32(bytes(data[:-8])))
    for backend in ("native", "reference", "wasm"):
        with pytest.raises(BlobError, match=f"layer 0: invalid activation {code}") as e:
            pymicro.load(bytes(data), backend)
        assert e.value.offset == field
