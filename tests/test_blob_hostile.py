"""Hostile blobs: every malformed byte string is a BlobError naming the byte at fault.

The layout used here (offsets of header fields, records, strings, tensors) is the
one docs/blob-format.md specifies; the CRC is recomputed wherever a test needs
the parser to get past the checksum to the check it is aiming at.
"""

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pymicro
from pymicro import BlobError, PymicroError, _core
from pymicro.runtime.spec import Dense, Spec


def _normalised(name):
    net = pymicro.preset(name).init(0)
    n = net.spec.input_size
    net.mean = np.linspace(-1.0, 1.0, n, dtype=np.float32)
    net.std = np.linspace(0.5, 2.0, n, dtype=np.float32)
    return net


BLOBS = {name: pymicro.freeze(pymicro.preset(name).init(0)) for name in pymicro.PRESETS}
BLOBS["momentum+norm"] = pymicro.freeze(_normalised("momentum"))
NAMES = list(BLOBS)

HEADER = struct.Struct("<4sIII Q IIII QQQQQQ 40x")
FIELDS = ("magic version header_size flags total_size input_size n_classes n_layers n_tensors "
          "layers_offset tensors_offset strings_offset strings_size data_offset data_size").split()


def header(blob):
    return dict(zip(FIELDS, HEADER.unpack_from(blob)))


def layer_records(blob):
    """[(record offset, (kind, activation, in, out, first_tensor, n_tensors))]"""
    h = header(blob)
    return [(128 + 32 * i, struct.unpack_from("<6I", blob, 128 + 32 * i)) for i in range(h["n_layers"])]


def tensor_records(blob):
    """[(record offset, (role, dtype, rows, cols, offset, nbytes))]"""
    h = header(blob)
    at = h["tensors_offset"]
    return [(at + 32 * i, struct.unpack_from("<IIIIQQ", blob, at + 32 * i)) for i in range(h["n_tensors"])]


def with_crc(buf):
    """The bytes with the footer's CRC-32 recomputed."""
    buf = bytearray(buf)
    struct.pack_into("<I", buf, len(buf) - 8, zlib.crc32(memoryview(buf)[:-8]))
    return bytes(buf)


def patch(blob, offset, fmt, value):
    buf = bytearray(blob)
    struct.pack_into("<" + fmt, buf, offset, value)
    return with_crc(buf)


def rejected(data, offset=None, match=None, check_crc=True):
    """Asserts both entry points refuse ``data`` as a BlobError at ``offset``; returns the error."""
    with pytest.raises(BlobError, match=match) as parsed:
        _core.parse(data, check_crc=check_crc)
    if offset is not None:
        assert parsed.value.offset == offset, str(parsed.value)
    if check_crc:
        with pytest.raises(BlobError) as loaded:
            pymicro.load(data)
        assert loaded.value.offset == parsed.value.offset
    return parsed.value


def row(model, seed=0):
    return np.random.default_rng(seed).normal(0, 2, model.input_size).astype(np.float32)


# Predictions of the pristine blobs, taken before any hostile input was parsed.
BASELINE = {}
for _name, _blob in BLOBS.items():
    _model = pymicro.load(_blob)
    BASELINE[_name] = (_model.predict(row(_model)), _model.predict(np.stack([row(_model, s) for s in range(9)])))


@pytest.fixture(params=NAMES)
def blob(request):
    return BLOBS[request.param]


# ---------------------------------------------------------------- truncation and size

def test_truncation_at_every_byte_offset_is_refused(blob):
    view = memoryview(blob)
    for n in range(len(blob)):
        with pytest.raises(BlobError) as e:
            _core.parse(view[:n])
        # Shorter than the smallest blob: reported at the end; else total_size disagrees.
        assert e.value.offset == (n if n < 136 else 16)
        with pytest.raises(BlobError):
            pymicro.load(view[:n])


def test_trailing_bytes_are_refused(blob):
    for extra in (b"\0", b"\0" * 64, b"PMBE"):
        rejected(blob + extra, offset=16)


# ---------------------------------------------------------------- bit flips

@pytest.mark.parametrize("name", NAMES)
def test_random_bit_flips_never_pass_the_checksum(name):
    blob = BLOBS[name]
    rng = random.Random(f"flips-{name}")
    size = len(blob)
    # Checks that run before the CRC: magic, version, header_size, flags, total_size, footer magic.
    allowed = {0, 4, 8, 12, 16, size - 4, size - 8}
    for _ in range(300):
        buf = bytearray(blob)
        for _ in range(rng.randint(1, 3)):
            bit = rng.randrange(8 * size)
            buf[bit // 8] ^= 1 << (bit % 8)
        if buf == blob:
            continue
        e = rejected(bytes(buf))
        assert e.offset in allowed, str(e)


def _probabilities_ok(p, n_classes):
    assert p.shape == (n_classes,) and p.dtype == np.float32
    finite = p[~np.isnan(p)]
    assert np.all((finite >= 0) & (finite <= 1 + 1e-6))


def _parse_or_refuse(data):
    """Parses without the CRC: a valid view, or a BlobError. Valid ones must load and run."""
    try:
        described = _core.parse(data, check_crc=False)
    except BlobError as e:
        assert e.offset is not None and 0 <= e.offset <= len(data), str(e)
        return False
    model = pymicro.load(with_crc(data))
    assert model.info.params == described["params"]
    try:
        _probabilities_ok(model.predict(row(model)), model.n_classes)
    except pymicro.InputError:
        pass  # a mutated mean/std can overflow a row after normalisation: refused, not crashed
    return True


@pytest.mark.parametrize("name", NAMES)
def test_random_bit_flips_without_the_checksum_parse_or_are_refused(name):
    blob = BLOBS[name]
    rng = random.Random(f"deep-{name}")
    accepted = 0
    for _ in range(300):
        buf = bytearray(blob)
        for _ in range(rng.randint(1, 4)):
            bit = rng.randrange(8 * len(blob))
            buf[bit // 8] ^= 1 << (bit % 8)
        accepted += _parse_or_refuse(bytes(buf))
    assert accepted > 0  # most flips land in weights, which stay valid floats


@settings(max_examples=300, deadline=None, derandomize=True)
@given(name=st.sampled_from(NAMES), data=st.data())
def test_byte_overwrites_without_the_checksum_parse_or_are_refused(name, data):
    blob = bytearray(BLOBS[name])
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(blob) - 1))
        value = data.draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]) | st.integers(0, 255))
        blob[at] = value
    _parse_or_refuse(bytes(blob))


# ---------------------------------------------------------------- the header

def test_wrong_magic_and_the_reserved_container_magic(blob):
    rejected(b"GGUF" + blob[4:], offset=0, match="bad magic")
    # the single-model parser names a container; pymicro.load hands it to the container
    # parser (tests/test_ensemble_hostile.py), which refuses them as containers
    rejected(b"PMBC" + blob[4:], offset=0, match="container", check_crc=False)
    rejected(b"PMBC" + b"\0" * 200, offset=0, match="container", check_crc=False)
    with pytest.raises(BlobError, match="container"):
        pymicro.load(b"PMBC" + blob[4:])


HEADER_CASES = [
    # (field offset, struct format, value, expected error offset)
    (4, "I", 2, 4),                    # version from the future
    (4, "I", 0, 4),
    (8, "I", 64, 8),                   # header_size
    (12, "I", 2, 12),                  # unknown flag bit
    (12, "I", 1 << 31, 12),
    (16, "Q", 1 << 63, 16),            # total_size
    (24, "I", 10**9, 24),              # input_size
    (24, "I", 0, 24),
    (24, "I", 4097, 24),
    (28, "I", 1, 28),                  # n_classes
    (28, "I", 257, 28),
    (32, "I", 10**6, 32),              # n_layers
    (32, "I", 0, 32),
    (32, "I", 65, 32),
    (36, "I", 10**6, 36),              # n_tensors
    (36, "I", 1, 36),
    (40, "Q", 0, 40),                  # layers_offset
    (48, "Q", 1 << 63, 48),            # tensors_offset
    (56, "Q", 1 << 63, 56),            # strings_offset
    (64, "Q", 1 << 63, 64),            # strings_size
    (64, "Q", 2**64 - 1, 64),
    (64, "Q", (1 << 20) + 1, 64),
    (72, "Q", 0, 72),                  # data_offset
    (72, "Q", 1 << 63, 72),
    (80, "Q", 1 << 63, 80),            # data_size
    (80, "Q", 2**64 - 64, 80),
    (80, "Q", 64 * 10**9, 80),
    (100, "B", 1, 100),                # reserved bytes
    (127, "B", 0x80, 127),
]


@pytest.mark.parametrize("field,fmt,value,where", HEADER_CASES)
def test_absurd_header_fields_are_refused_at_the_field(blob, field, fmt, value, where):
    data = patch(blob, field, fmt, value)
    rejected(data, offset=where)
    rejected(data, offset=where, check_crc=False)


def test_section_offsets_must_follow_from_the_counts(blob):
    h = header(blob)
    rejected(patch(blob, 48, "Q", h["tensors_offset"] + 32), offset=48)
    rejected(patch(blob, 56, "Q", h["strings_offset"] - 32), offset=56)
    rejected(patch(blob, 72, "Q", h["data_offset"] + 64), offset=72)
    # A self-consistent but absurd layout still stops at the count it starts from.
    buf = bytearray(blob)
    struct.pack_into("<II", buf, 32, 64, 258)
    struct.pack_into("<QQQ", buf, 40, 128, 128 + 32 * 64, 128 + 32 * 64 + 32 * 258)
    strings_end = 128 + 32 * 64 + 32 * 258 + h["strings_size"]
    # The strings no longer fit (small blobs), or data_offset no longer follows (large ones).
    rejected(with_crc(buf), offset=64 if strings_end + 8 > len(blob) else 72)


def test_a_layer_chain_too_long_for_the_blob_is_refused():
    blob = BLOBS["reversal"]
    h = header(blob)
    # One more layer and two more tensors than written: offsets made consistent, CRC fixed.
    buf = bytearray(blob)
    struct.pack_into("<II", buf, 32, h["n_layers"] + 1, h["n_tensors"] + 2)
    struct.pack_into("<QQ", buf, 48, h["tensors_offset"] + 32, h["strings_offset"] + 96)
    rejected(with_crc(buf), offset=72)  # data_offset no longer follows


# ---------------------------------------------------------------- layer and tensor records

def test_layer_record_fields_are_checked():
    blob = BLOBS["momentum"]  # layer 0 is attention, then dense relu layers, then the head
    (a0, _), (d1, (_, _, _, out1, _, _)), *_, (head, _) = layer_records(blob)
    rejected(patch(blob, a0, "I", 3), offset=a0, match="unknown kind")
    rejected(patch(blob, a0 + 4, "I", 1), offset=a0 + 4, match="activation")   # attention has none
    rejected(patch(blob, d1 + 4, "I", 5), offset=d1 + 4, match="activation")
    rejected(patch(blob, d1 + 8, "I", 7), offset=d1 + 8, match="in_size")
    rejected(patch(blob, d1 + 12, "I", 0), offset=d1 + 12, match="out_size")
    rejected(patch(blob, d1 + 12, "I", 4097), offset=d1 + 12, match="out_size")
    rejected(patch(blob, d1 + 12, "I", out1 + 1), offset=d1 + 32 + 8)  # the next layer's in_size
    rejected(patch(blob, d1 + 16, "I", 0), offset=d1 + 16, match="first_tensor")
    rejected(patch(blob, d1 + 20, "I", 4), offset=d1 + 20, match="tensors")
    rejected(patch(blob, d1 + 24, "I", 1), offset=d1 + 24, match="reserved")
    rejected(patch(blob, head + 4, "I", 1), offset=head, match="last layer")      # a relu head
    rejected(patch(blob, a0, "I", 1), offset=a0 + 20)  # attention relabelled dense: 4 tensors


def test_tensor_record_fields_are_checked(blob):
    size = len(blob)
    for at, (role, dtype, rows, cols, offset, nbytes) in tensor_records(blob)[:3]:
        rejected(patch(blob, at, "I", 9), offset=at, match="role")
        rejected(patch(blob, at + 4, "I", 2), offset=at + 4, match="dtype")
        rejected(patch(blob, at + 8, "I", rows + 1), offset=at + 8, match="shape")
        rejected(patch(blob, at + 12, "I", 2**32 - 1), offset=at + 8, match="shape")
        rejected(patch(blob, at + 16, "Q", size + 64), offset=at + 16, match="offset")   # past the end
        rejected(patch(blob, at + 16, "Q", 1 << 63), offset=at + 16)
        rejected(patch(blob, at + 16, "Q", offset - 64), offset=at + 16)
        rejected(patch(blob, at + 24, "Q", 1 << 62), offset=at + 24, match="nbytes")
        rejected(patch(blob, at + 24, "Q", nbytes - 4), offset=at + 24)


# ---------------------------------------------------------------- tensor values

NONFINITE = {"nan": 0x7FC00000, "signalling nan": 0x7F800001, "negative nan": 0xFFC00000,
             "inf": 0x7F800000, "-inf": 0xFF800000}


@pytest.mark.parametrize("bits", NONFINITE.values(), ids=NONFINITE.keys())
def test_nonfinite_weights_are_refused_at_the_element(blob, bits):
    records = tensor_records(blob)
    for at, (role, _, rows, cols, offset, _) in (records[0], records[len(records) // 2], records[-1]):
        for element in (0, rows * cols - 1):
            where = offset + 4 * element
            rejected(patch(blob, where, "I", bits), offset=where, match="NaN or Inf")


BAD_STD = {"zero": 0.0, "negative zero": -0.0, "negative": -1.0, "denormal": 1e-45,
           "inf": float("inf"), "nan": float("nan")}


@pytest.mark.parametrize("value", BAD_STD.values(), ids=BAD_STD.keys())
def test_bad_normalisation_std_is_refused_at_the_element(value):
    blob = BLOBS["momentum+norm"]
    (_, mean), (_, std) = tensor_records(blob)[:2]
    assert (mean[0], std[0]) == (1, 2)  # roles: normalisation mean, std
    for element in (0, 5, std[2] - 1):
        where = std[4] + 4 * element
        rejected(patch(blob, where, "f", value), offset=where)


def test_nonfinite_normalisation_mean_is_refused_but_any_finite_one_loads():
    blob = BLOBS["momentum+norm"]
    offset = tensor_records(blob)[0][1][4]
    rejected(patch(blob, offset + 12, "f", float("nan")), offset=offset + 12)
    model = pymicro.load(patch(blob, offset + 12, "f", -1e30))
    assert model.predict(row(model)).shape == (3,)


def test_nonzero_padding_is_refused_at_the_byte(blob):
    h = header(blob)
    # after the string section
    end = h["strings_offset"] + h["strings_size"]
    assert end < h["data_offset"]
    rejected(patch(blob, h["data_offset"] - 1, "B", 1), offset=h["data_offset"] - 1, match="padding")
    # between tensors: find one whose data is not a multiple of 64 bytes
    for _, (_, _, _, _, offset, nbytes) in tensor_records(blob)[:-1]:
        if nbytes % 64:
            rejected(patch(blob, offset + nbytes, "B", 1), offset=offset + nbytes, match="padding")
            break
    else:
        pytest.fail("no padded tensor in this blob")


# ---------------------------------------------------------------- strings

def test_string_section_is_checked_at_the_byte():
    blob = BLOBS["momentum"]
    s = header(blob)["strings_offset"]
    n_first = struct.unpack_from("<H", blob, s + 4)[0]  # labels: "down", "flat", "up"
    assert blob[s + 6:s + 6 + n_first] == b"down"
    rejected(patch(blob, s, "I", 4), offset=s, match="labels")              # wrong label count
    rejected(patch(blob, s, "I", 2**32 - 1), offset=s, match="labels")
    rejected(patch(blob, s + 6 + 2, "B", 0), offset=s + 6 + 2, match="NUL")  # NUL inside a label
    rejected(patch(blob, s + 6, "B", 0xFF), offset=s + 4, match="UTF-8")    # the label's length field
    rejected(patch(blob, s + 6, "2s", b"\xed\xa0"), offset=s + 4, match="UTF-8")  # a surrogate
    rejected(patch(blob, s + 6, "2s", b"\xc0\xa4"), offset=s + 4, match="UTF-8")  # overlong
    rejected(patch(blob, s + 4, "H", 0), offset=s + 4, match="length")       # empty label
    rejected(patch(blob, s + 4, "H", 0xFFFF), offset=s + 4, match="length")
    # feature name count: the presets have none, so it follows the three labels directly
    features = s + 4 + sum(2 + len(x) for x in (b"down", b"flat", b"up"))
    assert struct.unpack_from("<I", blob, features)[0] == 0
    rejected(patch(blob, features, "I", 5), offset=features, match="feature name count")
    rejected(patch(blob, features + 4, "I", 65), offset=features + 4, match="metadata count")
    rejected(patch(blob, features + 4, "I", 1), offset=None, match="trailing")


# ---------------------------------------------------------------- no shared state was harmed

def test_pristine_blobs_still_load_and_predict_identically():
    for name, blob in BLOBS.items():
        for _ in range(3):  # interleave hostile parses with valid loads
            with pytest.raises(BlobError):
                _core.parse(patch(blob, 24, "I", 10**9))
            with pytest.raises(BlobError):
                pymicro.load(blob[:-1])
            model = pymicro.load(blob)
            one, batch = BASELINE[name]
            assert np.array_equal(model.predict(row(model)), one)
            assert np.array_equal(model.predict(np.stack([row(model, s) for s in range(9)])), batch)
            assert _core.parse(blob)["checksum"] == zlib.crc32(blob[:-8])


# ---------------------------------------------------------------- the writer refuses bad input

def test_writer_refuses_non_finite_weights_and_wrong_shapes():
    for bad in (np.nan, np.inf, -np.inf):
        net = pymicro.preset("momentum").init(0)
        net.params[1]["W"][3, 2] = bad
        with pytest.raises(PymicroError, match="NaN or Inf"):
            pymicro.freeze(net)
    net = pymicro.preset("momentum").init(0)
    net.params[0]["W_v"] = net.params[0]["W_v"].T
    with pytest.raises(PymicroError, match="shape"):
        pymicro.freeze(net)
    net = pymicro.preset("reversal").init(0)
    del net.params[2]["b"]
    with pytest.raises(PymicroError, match="missing"):
        pymicro.freeze(net)


def test_writer_refuses_bad_normalisation():
    net = _normalised("momentum")
    net.std[4] = 0.0
    with pytest.raises(PymicroError, match="std"):
        pymicro.freeze(net)
    net = _normalised("momentum")
    net.mean[0] = np.nan
    with pytest.raises(PymicroError, match="NaN or Inf"):
        pymicro.freeze(net)
    net = _normalised("momentum")
    net.std = None
    with pytest.raises(PymicroError, match="both"):
        pymicro.freeze(net)


def test_writer_bounds_metadata():
    net = pymicro.preset("momentum").init(0)
    # The writer adds "name" and "architecture": 62 more entries reach the limit of 64.
    blob = pymicro.freeze(net, **{f"k{i}": "v" for i in range(62)})
    assert len(_core.parse(blob)["metadata"]) == 64
    with pytest.raises(PymicroError, match="metadata"):
        pymicro.freeze(net, **{f"k{i}": "v" for i in range(63)})
    with pytest.raises(PymicroError, match="metadata value"):
        pymicro.freeze(net, note="x" * 4097)
    with pytest.raises(PymicroError, match="without NUL"):
        pymicro.freeze(net, note="a\0b")


def test_writer_refuses_bad_strings():
    for labels in (("a\0b", "c"), ("", "c"), ("x" * 256, "c")):
        net = Spec(4, (Dense(3),), 2, labels=labels).init(0)
        with pytest.raises(PymicroError, match="label"):
            pymicro.freeze(net)
    net = Spec(2, (), 2, feature_names=("ok", "nul\0")).init(0)
    with pytest.raises(PymicroError, match="feature name"):
        pymicro.freeze(net)
    # The limits are bytes of UTF-8, not characters: 127 two-byte letters fit, 128 do not.
    pymicro.freeze(Spec(2, (), 2, labels=("é" * 127, "b")).init(0))
    with pytest.raises(PymicroError, match="label"):
        pymicro.freeze(Spec(2, (), 2, labels=("é" * 128, "b")).init(0))
