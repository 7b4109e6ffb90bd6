"""The registry stores ensemble containers (kind "ensemble") validated by the container parser."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import zlib

import numpy as np
import pytest
from netgen import perturbed

import pymicro
from pymicro.errors import BlobError, RegistryError
from pymicro.runtime.ensemble import freeze_ensemble, member_spans
from pymicro.store.registry import Registry


@pytest.fixture(scope="module")
def parts():
    blobs = [pymicro.freeze(perturbed(pymicro.preset(p), seed=i), name=p)
             for i, p in enumerate(("momentum", "reversal"))]
    container = freeze_ensemble(blobs, combiner="soft_vote", columns=[range(0, 24), range(24, 56)],
                                weights=[1, 3], names=["mom", "rev"], name="pair")
    return blobs, container


def _recrc(data: bytearray) -> bytes:
    struct.pack_into("<I", data, len(data) - 8, zlib.crc32(bytes(data[:-8])) & 0xFFFFFFFF)
    return bytes(data)


def test_container_is_stored_with_kind_members_and_hash(tmp_path, parts):
    blobs, container = parts
    reg = Registry(tmp_path)
    mom = reg.add(blobs[0], "mom")  # only the first member is registered
    eid = reg.add(container)  # the name comes from the container's metadata
    record = reg.get(eid)
    assert eid.startswith("pair-") and record.kind == "ensemble" and reg.get(mom).kind == "model"
    assert record.content_hash == hashlib.sha256(container).hexdigest()
    assert record.params == pymicro.load(container).info.params and record.input_size == 56
    assert [m["name"] for m in record.members] == ["mom", "rev"]
    assert [m["weight"] for m in record.members] == [1.0, 3.0]
    assert [m["content_hash"] for m in record.members] == [hashlib.sha256(b).hexdigest() for b in blobs]
    assert [m["model_id"] for m in record.members] == [mom, None]
    assert [(container[o:o + n] == b) for (o, n), b in zip(member_spans(container), blobs)] == [True, True]
    model = reg.load(eid)
    x = np.random.default_rng(0).normal(size=(4, 56)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x), pymicro.load(container).predict(x))
    assert [r.id for r in reg.list(kind="ensemble")] == [eid] and [r.id for r in reg.list(kind="model")] == [mom]
    with pytest.raises(RegistryError, match="kind"):
        reg.list(kind="bundle")
    assert reg.add(container) == eid  # the same bytes again: the same id
    # versions work for containers as for models
    v = reg.add_version(container, "pair-line", aliases=("champion",))
    assert v.version == 1 and reg.get(v.model_id).kind == "ensemble"


def test_hostile_containers_are_refused(tmp_path, parts):
    blobs, container = parts
    reg = Registry(tmp_path)
    flipped = bytearray(container)
    flipped[200] ^= 0x10
    with pytest.raises(BlobError, match="checksum"):
        reg.add(bytes(flipped), "bad")
    # a member blob broken inside a container whose own checksum is right: the member's own check
    offset, _ = member_spans(container)[1]
    broken = bytearray(container)
    broken[offset + 24] ^= 0x01  # the member's input_size
    with pytest.raises(BlobError, match="member 1"):
        reg.add(_recrc(broken), "bad")
    with pytest.raises(BlobError):
        reg.add(container[:-1], "bad")
    assert reg.list() == [] and list((tmp_path / "blobs").iterdir()) == []


def test_an_index_from_before_ensembles_gains_the_columns(tmp_path, parts):
    blobs, container = parts
    reg = Registry(tmp_path)
    mid = reg.add(blobs[0], "old")
    del reg
    con = sqlite3.connect(tmp_path / "index.sqlite3")  # the layout the first release wrote
    con.executescript("""
        CREATE TABLE models_old AS SELECT id, name, created, params, input_size, n_classes, content_hash,
            blob_file, blob_size, metrics, report_file, status FROM models;
        DROP TABLE models; ALTER TABLE models_old RENAME TO models;""")
    con.close()
    reg = Registry(tmp_path)
    assert reg.get(mid).kind == "model" and reg.get(mid).members == []
    eid = reg.add(container, "pair")
    assert reg.get(eid).kind == "ensemble" and reg.get(eid).members[0]["model_id"] == mid
