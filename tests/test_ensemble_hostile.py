"""Hostile ensemble containers (PMBC): every malformed container is a BlobError naming the
byte at fault, as docs/blob-format.md ("Ensembles", "Validation") specifies.

The CRC is recomputed wherever a test needs the parser to get past the checksum.
"""

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pymicro
from pymicro import BlobError, _core
from pymicro.runtime.ensemble import freeze_ensemble
from pymicro.runtime.spec import Dense, Spec

LABELS = ("down", "flat", "up")


def _small(seed, n_in=5, n_classes=3, norm=False):
    labels = LABELS if n_classes == 3 else tuple(f"c{i}" for i in range(n_classes))
    net = Spec(n_in, (Dense(4, "tanh"),), n_classes, name=f"m{seed}", labels=labels).init(seed)
    if norm:
        net.mean = np.linspace(-1, 1, n_in).astype(np.float32)
        net.std = np.linspace(0.5, 2, n_in).astype(np.float32)
    return pymicro.freeze(net)


M0, M1 = _small(0, 5, norm=True), _small(1, 4)
META = pymicro.freeze(Spec(6, (Dense(2, "relu"),), 3, name="meta", labels=LABELS).init(7))
SOFT = freeze_ensemble([M0, M1], columns=[[0, 1, 2, 3, 4], [5, 6, 0, 2]], weights=[1.0, 3.0])
STACKED = freeze_ensemble([M0, M1], combiner="stacked", columns=[[0, 1, 2, 3, 4], [5, 6, 0, 2]],
                          meta=META, feature_names=[f"f{i}" for i in range(7)])
CONTAINERS = {"soft": SOFT, "stacked": STACKED}

HDR = struct.Struct("<4sIII Q IIII QQQQQQQQ 24x")
FIELDS = ("magic version header_size flags total_size input_size n_classes n_members combiner "
          "members_offset index_offset index_size strings_offset strings_size blobs_offset "
          "meta_offset meta_size").split()
REC = struct.Struct("<QQIIfI")


def header(c):
    return dict(zip(FIELDS, HDR.unpack_from(c)))


def with_crc(buf):
    buf = bytearray(buf)
    struct.pack_into("<I", buf, len(buf) - 8, zlib.crc32(memoryview(buf)[:-8]))
    return bytes(buf)


def patch(c, offset, fmt, value):
    buf = bytearray(c)
    struct.pack_into("<" + fmt, buf, offset, value)
    return with_crc(buf)


def rejected(data, offset=None, match=None, check_crc=True):
    """Both the parser and pymicro.load refuse ``data`` at ``offset``."""
    with pytest.raises(BlobError, match=match) as parsed:
        _core.parse_container(data, check_crc=check_crc)
    if offset is not None:
        assert parsed.value.offset == offset, str(parsed.value)
    if check_crc:
        with pytest.raises(BlobError) as loaded:
            pymicro.load(data)
        assert loaded.value.offset == parsed.value.offset
    return parsed.value


@pytest.fixture(params=list(CONTAINERS))
def container(request):
    return CONTAINERS[request.param]


def test_the_fixtures_are_valid(container):
    d = _core.parse_container(container)
    assert len(d["members"]) == 2 and d["n_classes"] == 3
    assert pymicro.load(container).predict(np.zeros(7, np.float32)).shape == (3,)


def test_single_model_parser_names_a_container():
    with pytest.raises(BlobError, match="ensemble container") as e:
        _core.parse(SOFT)
    assert e.value.offset == 0
    with pytest.raises(BlobError, match="expected \"PMBC\"") as e:
        _core.parse_container(M0)
    assert e.value.offset == 0


def test_truncation_at_every_byte(container):
    for n in range(len(container)):
        err = rejected(container[:n], check_crc=True)
        assert err.offset == (n if n < 136 else 16), (n, str(err))


def test_trailing_bytes_are_refused(container):
    rejected(container + b"\0", offset=16)
    padded = patch(container + b"\0" * 64, 16, "Q", len(container) + 64)
    rejected(padded, offset=len(padded) - 4, match="footer")


def test_every_single_bit_flip_is_refused_by_the_checksum_or_earlier(container):
    rng = random.Random(1)
    positions = rng.sample(range(len(container)), min(600, len(container)))
    for pos in positions:
        buf = bytearray(container)
        buf[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(BlobError) as e:
            _core.parse_container(bytes(buf))
        assert 0 <= e.value.offset <= len(container)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(list(CONTAINERS)), flips=st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=4))
def test_bit_flips_with_the_checksum_repaired_are_refused_or_run(name, flips):
    """Past the CRC, a mutant is either refused (a BlobError inside the container) or a valid
    ensemble that runs to probabilities: never a crash, never a wrong kind of error."""
    buf = bytearray(CONTAINERS[name])
    for pos, bit in flips:
        buf[pos % (len(buf) - 8)] ^= 1 << bit
    data = with_crc(buf)
    try:
        model = pymicro.load(data, nan_policy="propagate")
    except BlobError as e:
        assert 0 <= e.offset <= len(data)
        return
    p = model.predict(np.random.default_rng(0).normal(size=(3, model.input_size)).astype(np.float32))
    finite = p[~np.isnan(p)]
    assert np.all((finite >= 0) & (finite <= 1 + 1e-5))


HEADER_CASES = [
    # (field offset, format, value, expected error offset, message)
    (4, "I", 2, 4, "version"),
    (8, "I", 96, 8, "header_size"),
    (12, "I", 1, 12, "flag"),
    (24, "I", 0, 24, "input_size"),
    (24, "I", 5000, 24, "input_size"),
    (28, "I", 1, 28, "n_classes"),
    (28, "I", 257, 28, "n_classes"),
    (32, "I", 0, 32, "n_members"),
    (32, "I", 17, 32, "n_members"),
    (36, "I", 0, 36, "combiner"),
    (36, "I", 4, 36, "combiner"),
    (40, "Q", 0, 40, "members_offset"),
    (48, "Q", 1 << 40, 48, "index_offset"),
    (56, "Q", 4, 56, "index_size"),
    (64, "Q", 1, 64, "strings_offset"),
    (72, "Q", 1 << 30, 72, "strings_size"),
    (80, "Q", 64, 80, "blobs_offset"),
    (104, "B", 1, 104, "reserved"),
    (127, "B", 9, 127, "reserved"),
]


@pytest.mark.parametrize("at,fmt,value,offset,match", HEADER_CASES)
def test_header_fields(at, fmt, value, offset, match):
    rejected(patch(SOFT, at, fmt, value), offset=offset, match=match)


def test_meta_fields_must_be_zero_without_a_stacked_combiner():
    rejected(patch(SOFT, 88, "Q", 64), offset=88, match="meta_offset")
    rejected(patch(SOFT, 96, "Q", 64), offset=96, match="meta_size")


def test_combiner_switched_to_stacked_without_a_meta_model_is_refused():
    # weights of a vote are nonzero: a stacked combiner demands 0
    rejected(patch(SOFT, 36, "I", 3), offset=128 + 24, match="weight must be 0")


MEMBER_CASES = [
    # (member, field offset in the record, format, value, expected offset relative to the record)
    (0, 16, "I", 0, 16),          # n_inputs
    (0, 16, "I", 4097, 16),
    (1, 20, "I", 1, 20),          # n_classes
    (1, 24, "f", float("nan"), 24),
    (1, 24, "f", float("inf"), 24),
    (0, 24, "f", -1.0, 24),
    (0, 24, "f", -0.0, 24),       # the sign bit: a negative zero is not ">= 0" in the format
    (1, 28, "I", 1, 28),          # reserved
    (0, 0, "Q", 0, 0),            # offset of the member's blob
    (1, 8, "Q", 10**12, 8),       # its size
    (0, 8, "Q", 100, 8),          # smaller than any blob
]


@pytest.mark.parametrize("member,field,fmt,value,rel", MEMBER_CASES)
def test_member_records(member, field, fmt, value, rel):
    rejected(patch(SOFT, 128 + 32 * member + field, fmt, value), offset=128 + 32 * member + rel)


def test_weights_adding_up_to_zero_are_refused():
    data = patch(patch(SOFT, 128 + 24, "f", 0.0), 160 + 24, "f", 0.0)
    rejected(data, offset=128 + 24, match="add up")
    # one zero weight is fine: that member is ignored by the vote
    pymicro.load(patch(SOFT, 128 + 24, "f", 0.0))


def test_member_record_disagreeing_with_its_blob():
    # a valid blob of the same size but 3 inputs where the record (and the index) say 4
    other = _small(1, 3)
    off, size = REC.unpack_from(SOFT, 160)[:2]
    assert len(other) == size
    buf = bytearray(SOFT)
    buf[off:off + size] = other
    rejected(with_crc(buf), offset=160 + 16, match="its blob takes 3 inputs")


def test_columns_and_class_maps_out_of_range():
    h = header(SOFT)
    at = h["index_offset"]
    rejected(patch(SOFT, at + 4 * 2, "I", 7), offset=at + 8, match="column")          # row has 7
    rejected(patch(SOFT, at + 4 * 5 + 4 * 1, "I", 3), offset=at + 24, match="maps to label")
    m1 = at + 4 * (5 + 3)
    rejected(patch(SOFT, m1 + 4 * 3, "I", 1 << 31), offset=m1 + 12, match="column")


def test_a_corrupted_member_is_reported_at_its_byte_in_the_container(container):
    off, size = REC.unpack_from(container, 160)[:2]  # member 1's blob
    # member 1's own input_size field (its header offset 24), its CRC repaired: refused by
    # the model parser, reported at the byte of the container
    member = bytearray(container[off:off + size])
    struct.pack_into("<I", member, 24, 0)
    buf = bytearray(container)
    buf[off:off + size] = with_crc(member)
    rejected(with_crc(buf), offset=off + 24, match="member 1: input_size")
    # a member's own checksum broken while the container's is repaired
    buf = bytearray(container)
    buf[off + size - 8] ^= 0xFF
    rejected(with_crc(buf), offset=off + size - 8, match="member 1: checksum")
    # a weight in the member's data section made NaN (member CRC repaired too)
    buf = bytearray(container)
    member = bytearray(container[off:off + size])
    data_off = struct.unpack_from("<Q", member, 72)[0]
    struct.pack_into("<f", member, data_off, float("nan"))
    struct.pack_into("<I", member, size - 8, zlib.crc32(memoryview(member)[:-8]))
    buf[off:off + size] = member
    rejected(with_crc(buf), offset=off + data_off, match="NaN")


def test_nonzero_padding_between_blobs():
    off0, size0 = REC.unpack_from(SOFT, 128)[:2]
    pad = off0 + size0
    if pad % 64:
        rejected(patch(SOFT, pad, "B", 1), offset=pad, match="padding")
    h = header(SOFT)
    end = h["strings_offset"] + h["strings_size"]
    if end % 64:
        rejected(patch(SOFT, end, "B", 1), offset=end, match="padding")


def test_meta_model_shape_must_match():
    wrong = pymicro.freeze(Spec(4, (Dense(2, "relu"),), 3, name="meta", labels=LABELS).init(1))
    h = header(STACKED)
    meta_off, meta_size = h["meta_offset"], h["meta_size"]
    assert len(wrong) == meta_size  # same layout size: swap the bytes in
    buf = bytearray(STACKED)
    buf[meta_off:meta_off + meta_size] = wrong
    rejected(with_crc(buf), offset=meta_off + 24, match="meta-model takes")
    rejected(patch(STACKED, 88, "Q", meta_off + 64), offset=88, match="the meta-model")


def test_strings():
    h = header(SOFT)
    s = h["strings_offset"]
    rejected(patch(SOFT, s, "I", 2), offset=s, match="3 labels")
    rejected(patch(SOFT, s + 4, "H", 0), offset=s + 4, match="label has length 0")
    rejected(patch(SOFT, s + 6, "B", 0), offset=s + 6, match="NUL")
    rejected(patch(SOFT, s + 6, "B", 0xC0), offset=s + 4, match="UTF-8")
    names = s + 4 + sum(2 + len(x) for x in LABELS)
    rejected(patch(SOFT, names, "I", 3), offset=names, match="member names")


def test_writer_refusals():
    with pytest.raises(BlobError, match="combiner"):
        freeze_ensemble([M0], combiner="median")
    with pytest.raises(BlobError, match="1..16"):
        freeze_ensemble([M0] * 17)
    with pytest.raises(BlobError, match="columns"):
        freeze_ensemble([M0], columns=[[0, 1]])
    with pytest.raises(BlobError, match="weights"):
        freeze_ensemble([M0, M1], weights=[1.0, -1.0])
    with pytest.raises(BlobError, match="meta="):
        freeze_ensemble([M0, M1], combiner="stacked")
    with pytest.raises(BlobError, match="meta-model must map"):
        freeze_ensemble([M0, M1], combiner="stacked", meta=M0)
    with pytest.raises(BlobError, match="not among the ensemble's labels"):
        freeze_ensemble([M0, _small(3, 4, n_classes=4)])


def test_the_writer_is_canonical():
    again = freeze_ensemble([M0, M1], columns=[[0, 1, 2, 3, 4], [5, 6, 0, 2]], weights=[1.0, 3.0])
    assert again == SOFT
