"""Ensembles of specialists: the container blob (``PMBC``), its writer, and the loaded model.

A container holds several complete member blobs, the columns of one shared input row each
member reads, a map from each member's classes onto a common label set, and a combiner:

* ``"soft_vote"``: the weighted mean of the members' mapped probabilities;
* ``"majority_vote"``: each member votes for its most probable label (the first on a tie);
  the output is each label's share of the (weighted) votes;
* ``"stacked"``: a small meta-model (a complete blob, trained on out-of-fold member
  predictions: :mod:`pymicro.training.ensemble`) over the members' mapped probabilities,
  concatenated in member order.

The format is specified in docs/blob-format.md ("Ensembles"). This module only writes
containers; the C++ core parses and validates them (``pymicro._core.parse_container``),
and runs the whole ensemble in one call natively and in wasm. ``pymicro.load(container)``
returns an :class:`Ensemble`, a :class:`~pymicro.Model` whose ``predict`` and
``predict_into`` are that one call, and whose ``explain`` returns an
:class:`EnsembleExplanation` (each member's attention, probabilities, confidence and share).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import numpy.typing as npt

from pymicro.errors import BlobError, InputError, ParameterBudgetError
from pymicro.runtime.blob import (ALIGN, FOOTER_MAGIC, MAX_LABEL_BYTES, MAX_META_ENTRIES,
                                  MAX_META_VALUE_BYTES, MAX_STRINGS_BYTES, _string, write_atomic)
from pymicro.runtime.blob import freeze as _freeze
from pymicro.runtime.model import Model
from pymicro.runtime.spec import MAX_PARAMS, Network

MAGIC = b"PMBC"
VERSION = 1
HEADER_SIZE = 128
RECORD_SIZE = 32
MAX_MEMBERS = 16
COMBINERS = {"soft_vote": 1, "majority_vote": 2, "stacked": 3}

_HEADER = struct.Struct("<4sIII Q IIII QQQQQQQQ 24x")
_MEMBER = struct.Struct("<QQIIfI")
assert _HEADER.size == HEADER_SIZE and _MEMBER.size == RECORD_SIZE

# Labels that count towards a common label when the member's own label is not in the set
# (the sentiment preset's five classes onto down/flat/up).
DEFAULT_ALIASES = {"strong_sell": "down", "sell": "down", "hold": "flat", "buy": "up",
                   "strong_buy": "up", "strong_down": "down", "strong_up": "up"}


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _member_blob(member) -> bytes:
    if isinstance(member, Network):
        return _freeze(member)
    if isinstance(member, Model):
        return member.blob
    if isinstance(member, (bytes, bytearray, memoryview)):
        return bytes(member)
    if isinstance(member, (str, os.PathLike)):
        with open(member, "rb") as f:
            return f.read()
    raise BlobError(f"an ensemble member must be a Network, a Model, blob bytes or a path; "
                    f"got {type(member).__name__}")


def _default_class_map(member_labels: Sequence[str], labels: Sequence[str], name: str) -> list[int]:
    out = []
    for lab in member_labels:
        target = lab if lab in labels else DEFAULT_ALIASES.get(lab)
        if target not in labels:
            raise BlobError(f"member {name!r}: its class {lab!r} is not among the ensemble's labels "
                            f"{tuple(labels)}; pass class_maps= to say where it counts")
        out.append(list(labels).index(target))
    return out


def freeze_ensemble(members: Sequence, path: str | os.PathLike | None = None, *,
                    combiner: str = "soft_vote", weights: Sequence[float] | None = None,
                    labels: Sequence[str] | None = None,
                    feature_names: Sequence[str] | None = None,
                    columns: Sequence[Sequence[int]] | None = None,
                    class_maps: Sequence[Sequence[int]] | None = None,
                    names: Sequence[str] | None = None, meta=None, input_size: int | None = None,
                    **metadata) -> bytes:
    """The container bytes of an ensemble (docs/blob-format.md, "Ensembles"); also written
    to ``path`` atomically if given.

    members: Networks, Models, blob bytes or paths (each frozen as it is, with its own
    normalisation and features). columns: per member, the indices into the container's
    input row it reads (default: by feature name when ``feature_names`` and the members'
    names are given, else each member reads columns 0..n-1). class_maps: per member, the
    index into ``labels`` each of its classes counts towards (default: by label name, then
    :data:`DEFAULT_ALIASES`). labels default to the first member's. weights (soft and
    majority votes) default to 1 each. meta: the stacked combiner's meta-model (a Network
    or blob over ``n_members * n_classes`` inputs). input_size: the width of the shared row
    (default: len(feature_names), else the largest column + 1). Keyword arguments become
    metadata.
    """
    from pymicro import _core

    if combiner not in COMBINERS:
        raise BlobError(f"combiner must be one of {tuple(COMBINERS)}, got {combiner!r}")
    blobs = [_member_blob(m) for m in members]
    if not 1 <= len(blobs) <= MAX_MEMBERS:
        raise BlobError(f"an ensemble has 1..{MAX_MEMBERS} members, got {len(blobs)}")
    described = [_core.parse(b) for b in blobs]
    names = list(names) if names is not None else [d["metadata"].get("name", f"member{i}")
                                                    for i, d in enumerate(described)]
    if len(names) != len(blobs):
        raise BlobError(f"{len(names)} names for {len(blobs)} members")
    labels = list(labels) if labels is not None else list(described[0]["labels"])
    if columns is None:
        if feature_names is not None and all(d["feature_names"] for d in described):
            index = {f: i for i, f in enumerate(feature_names)}
            try:
                columns = [[index[f] for f in d["feature_names"]] for d in described]
            except KeyError as e:
                raise BlobError(f"member feature {e.args[0]!r} is not among the ensemble's "
                                "feature_names; pass columns=") from None
        else:
            columns = [list(range(d["input_size"])) for d in described]
    columns = [[int(c) for c in cols] for cols in columns]
    if input_size is None:
        input_size = len(feature_names) if feature_names is not None else max(max(c) for c in columns) + 1
    elif feature_names is not None and len(feature_names) != input_size:
        raise BlobError(f"input_size={input_size} but {len(feature_names)} feature_names")
    if class_maps is None:
        class_maps = [_default_class_map(d["labels"], labels, n) for d, n in zip(described, names)]
    class_maps = [[int(c) for c in cm] for cm in class_maps]
    if len(columns) != len(blobs) or len(class_maps) != len(blobs):
        raise BlobError("columns and class_maps need one entry per member")
    for i, (d, cols, cm) in enumerate(zip(described, columns, class_maps)):
        if len(cols) != d["input_size"]:
            raise BlobError(f"member {names[i]!r} takes {d['input_size']} inputs; columns has {len(cols)}")
        if any(not 0 <= c < input_size for c in cols):
            raise BlobError(f"member {names[i]!r}: a column is outside the input row of {input_size}")
        if len(cm) != d["n_classes"] or any(not 0 <= c < len(labels) for c in cm):
            raise BlobError(f"member {names[i]!r}: class_map must give each of its {d['n_classes']} "
                            f"classes an index into {len(labels)} labels")
    stacked = combiner == "stacked"
    if stacked:
        if weights is not None:
            raise BlobError("a stacked combiner has no weights: the meta-model weighs the members")
        if meta is None:
            raise BlobError("combiner='stacked' needs meta= (the meta-model)")
        weights = [0.0] * len(blobs)
        meta_blob = _member_blob(meta)
        md = _core.parse(meta_blob)
        if md["input_size"] != len(blobs) * len(labels) or md["n_classes"] != len(labels):
            raise BlobError(f"the meta-model must map {len(blobs)} x {len(labels)} = "
                            f"{len(blobs) * len(labels)} inputs to {len(labels)} classes; it maps "
                            f"{md['input_size']} to {md['n_classes']}")
    else:
        if meta is not None:
            raise BlobError(f"meta= is for combiner='stacked', not {combiner!r}")
        meta_blob = b""
        weights = [1.0] * len(blobs) if weights is None else [float(w) for w in weights]
        w32 = np.asarray(weights, np.float32)
        if len(w32) != len(blobs) or not np.all(np.isfinite(w32)) or np.any(w32 < 0) or w32.sum() <= 0:
            raise BlobError("weights: one finite value >= 0 per member, adding up to more than 0")

    strings = [struct.pack("<I", len(labels))]
    strings += [_string(x, "label", 1, MAX_LABEL_BYTES) for x in labels]
    strings.append(struct.pack("<I", len(names)))
    strings += [_string(x, "member name", 1, MAX_LABEL_BYTES) for x in names]
    feats = list(feature_names or ())
    if feats and len(feats) != input_size:
        raise BlobError(f"feature_names has {len(feats)} entries, the input row {input_size}")
    strings.append(struct.pack("<I", len(feats)))
    strings += [_string(x, "feature name", 1, MAX_LABEL_BYTES) for x in feats]
    meta_entries = {"combiner": combiner, **{k: str(v) for k, v in metadata.items()}}
    if len(meta_entries) > MAX_META_ENTRIES:
        raise BlobError(f"{len(meta_entries)} metadata entries; at most {MAX_META_ENTRIES}")
    strings.append(struct.pack("<I", len(meta_entries)))
    for k, v in meta_entries.items():
        strings.append(_string(k, "metadata key", 1, MAX_LABEL_BYTES))
        strings.append(_string(v, f"metadata value of {k!r}", 0, MAX_META_VALUE_BYTES))
    strings_b = b"".join(strings)
    if len(strings_b) > MAX_STRINGS_BYTES:
        raise BlobError("the container's strings exceed 1 MiB")

    index = b"".join(struct.pack(f"<{len(c)}I{len(m)}I", *c, *m) for c, m in zip(columns, class_maps))
    index_offset = HEADER_SIZE + RECORD_SIZE * len(blobs)
    strings_offset = index_offset + len(index)
    blobs_offset = _align(strings_offset + len(strings_b))
    cursor, offsets = blobs_offset, []
    for b in blobs:
        offsets.append(cursor)
        cursor = _align(cursor + len(b))
    meta_offset = cursor if stacked else 0
    if stacked:
        cursor = _align(cursor + len(meta_blob))
    total = cursor + 8
    buf = bytearray(total)
    buf[:HEADER_SIZE] = _HEADER.pack(
        MAGIC, VERSION, HEADER_SIZE, 0, total, input_size, len(labels), len(blobs),
        COMBINERS[combiner], HEADER_SIZE, index_offset, len(index), strings_offset,
        len(strings_b), blobs_offset, meta_offset, len(meta_blob))
    for i, (b, d) in enumerate(zip(blobs, described)):
        _MEMBER.pack_into(buf, HEADER_SIZE + RECORD_SIZE * i, offsets[i], len(b), d["input_size"],
                          d["n_classes"], weights[i], 0)
        buf[offsets[i]:offsets[i] + len(b)] = b
    buf[index_offset:strings_offset] = index
    buf[strings_offset:strings_offset + len(strings_b)] = strings_b
    if stacked:
        buf[meta_offset:meta_offset + len(meta_blob)] = meta_blob
    struct.pack_into("<I4s", buf, total - 8, zlib.crc32(memoryview(buf)[:-8]), FOOTER_MAGIC)
    data = bytes(buf)
    _core.parse_container(data)  # the writer's output is checked by the one reader
    if path is not None:
        write_atomic(path, data)
    return data


# --------------------------------------------------------------------------- combining

def map_classes(probs: np.ndarray, class_map: Sequence[int], n_classes: int) -> np.ndarray:
    """A member's probabilities (rows, its classes) summed onto the common labels."""
    p = np.asarray(probs)
    out = np.zeros(p.shape[:-1] + (n_classes,), p.dtype)
    for j, c in enumerate(class_map):
        out[..., c] += p[..., j]
    return out


def combine(mapped: np.ndarray, combiner: str, weights: Sequence[float] | None = None,
            meta_forward=None) -> np.ndarray:
    """The combiner over members' mapped probabilities ``(rows, members, classes)``.

    What the core computes, in numpy: soft vote = weighted mean; majority vote = each
    label's share of the weighted votes (a member votes for its first most probable
    label); stacked = ``meta_forward`` (a callable on ``(rows, members * classes)``).
    """
    q = np.asarray(mapped)
    n, m, c = q.shape
    if combiner == "stacked":
        return meta_forward(q.reshape(n, m * c))
    w = np.asarray(weights if weights is not None else [1.0] * m, np.float64)
    w = w / w.sum()
    if combiner == "soft_vote":
        return np.einsum("m,nmc->nc", w, q)
    if combiner == "majority_vote":
        votes = np.zeros((n, c))
        best = q.argmax(axis=-1)
        for k in range(m):
            votes[np.arange(n), best[:, k]] += w[k]
        return votes
    raise InputError(f"unknown combiner {combiner!r}")


# --------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class MemberInfo:
    name: str
    params: int
    input_size: int
    labels: tuple[str, ...]
    columns: tuple[int, ...]
    class_map: tuple[int, ...]
    weight: float
    attn_width: int


@dataclass(frozen=True)
class EnsembleInfo:
    """What a container holds, read through the core's parser."""

    name: str
    combiner: str
    params: int  # members and meta-model together
    labels: tuple[str, ...]
    feature_names: tuple[str, ...]
    input_size: int
    n_classes: int
    members: tuple[MemberInfo, ...]
    meta_params: int
    content_hash: str
    checksum: int
    blob_size: int
    backend: str
    isa: str
    metadata: dict = field(default_factory=dict)
    dtype: str = "float32"


@dataclass(frozen=True)
class EnsembleExplanation:
    """Who decided, row by row (the coordinator's view; docs/ensembles.md has the rule).

    ``probabilities`` (rows, members, classes): each member's probabilities on the common
    labels; ``confidence`` (rows, members): each member's top probability; ``share``
    (rows, members): each member's share of the ensemble's decision (its attention weight
    at the combiner: weighted support for the chosen label under a vote; the drop in the
    chosen label's probability when the member abstains, normalised, under stacking);
    ``dominant`` (rows,): the member with the largest share; ``decision`` (rows,): the
    chosen label's index; ``attention``: each member's own attention over its input
    features (rows, width), or None for a member without an attention layer.
    """

    members: tuple[str, ...]
    labels: tuple[str, ...]
    probabilities: np.ndarray
    confidence: np.ndarray
    share: np.ndarray
    dominant: np.ndarray
    decision: np.ndarray
    attention: dict


class _ReferenceEnsemble:
    """The ensemble in numpy float64: each member through the reference backend, then the
    combiner (:func:`combine`). The yardstick for the native and wasm containers."""

    isa = "numpy-float64"

    def __init__(self, d: dict, nan_policy: str, dtype):
        from pymicro.runtime.reference import ReferenceModel, forward

        self._d = d
        self.dtype = np.dtype(dtype)
        self.input_size, self.n_classes = d["input_size"], d["n_classes"]
        self._members = [ReferenceModel(m, "propagate", np.float64) for m in d["members"]]
        self._meta = d["meta_model"]
        self._forward = forward
        self.attn_width = sum(m.attn_width for m in self._members)
        self.raises_on_nonfinite = nan_policy == "raise"

    def _run(self, x):
        from pymicro.runtime.inputs import coerce, nonfinite_cell

        a = coerce(x, self.input_size)
        rows = a.reshape(-1, self.input_size).astype(np.float64)
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any() and self.raises_on_nonfinite:
            raise nonfinite_cell(a.reshape(-1, self.input_size))
        mapped, attn = [], []
        with np.errstate(all="ignore"):
            for md, mm in zip(self._d["members"], self._members):
                probs, at = self._forward(md, rows[:, md["columns"]])
                mapped.append(map_classes(probs, md["class_map"], self.n_classes))
                if mm.attn_width:
                    attn.append(at)
            q = np.stack(mapped, axis=1)
            out = combine(q, self._d["combiner"], [m["weight"] for m in self._d["members"]],
                          lambda z: self._forward(self._meta, z)[0])
        out[bad] = np.nan
        return out, q, (np.concatenate(attn, axis=1) if attn else None), a.ndim == 1

    def predict64(self, x):
        out, _, _, single = self._run(x)
        return out[0] if single else out

    def predict(self, x):
        out = self.predict64(x)
        return out.astype(self.dtype, copy=False)

    def predict_into(self, x, out) -> None:
        from pymicro.runtime.inputs import check_no_overlap

        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
            raise InputError("predict_into needs x as a float32, C-contiguous, aligned ndarray "
                             "(it never copies); use predict() for other inputs")
        probs = self.predict(x)
        if not (isinstance(out, np.ndarray) and out.dtype == self.dtype and out.shape == probs.shape
                and out.flags.c_contiguous and out.flags.writeable):
            raise InputError(f"out must be a writeable, C-contiguous {self.dtype} array of shape {probs.shape}")
        check_no_overlap(x, out)
        out[...] = probs

    def explain_members(self, x):
        _, q, attn, _ = self._run(np.asarray(x).reshape(-1, self.input_size))
        return (None if attn is None else attn.astype(self.dtype)), q.astype(self.dtype)

    def explain(self, x):
        attn, _ = self.explain_members(x)
        if attn is None:
            raise InputError("no member of this ensemble has an attention layer to explain")
        return attn[0] if np.ndim(x) == 1 else attn


class Ensemble(Model):
    """A loaded ensemble container: a :class:`~pymicro.Model` (``predict``, ``predict_into``,
    ``info``) whose calls run every member and the combiner in one core call, plus
    ``explain`` (an :class:`EnsembleExplanation`), ``members`` and ``member(i)``."""

    def __init__(self, impl, backend: str, blob: bytes, described: dict, dtype=np.float32,
                 nan_policy: str = "raise"):
        super().__init__(impl, backend, blob, described, dtype)
        self.__dict__.pop("explain", None)  # the class's explain (the coordinator's view)
        self._nan_policy = nan_policy
        self._members_cache: list[Model] | None = None

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m["name"] for m in self.described["members"])

    @property
    def combiner(self) -> str:
        return self.described["combiner"]

    def member(self, i: int) -> Model:
        """Member ``i`` alone, as a Model on this backend (its own blob, unchanged)."""
        if self._members_cache is None:
            from pymicro.runtime.model import load

            kw = {"dtype": self.dtype} if self.backend == "reference" else {}
            self._members_cache = [
                load(self.blob[m["offset"]:m["offset"] + m["size"]], self.backend,
                     nan_policy="propagate", allow_large=True, **kw)
                for m in self.described["members"]]
        return self._members_cache[i]

    @property
    def members(self) -> tuple[Model, ...]:
        return tuple(self.member(i) for i in range(len(self.described["members"])))

    def meta_model(self) -> Model | None:
        d = self.described
        if d["meta_model"] is None:
            return None
        from pymicro.runtime.model import load

        off = self.described["meta_offset"]
        return load(self.blob[off:off + d["meta_model"]["size"]], self.backend,
                    nan_policy="propagate", allow_large=True)

    def explain(self, x: npt.ArrayLike) -> EnsembleExplanation:  # type: ignore[override]
        """Each member's probabilities, confidence, attention and share of the decision."""
        xa = np.asarray(x)
        single = xa.ndim == 1
        if hasattr(self._impl, "explain_members"):
            attn, q = self._impl.explain_members(x)
        else:  # wasm: attention from the one call, member probabilities member by member
            from pymicro.runtime.inputs import coerce

            rows = coerce(x, self.input_size).reshape(-1, self.input_size)
            attn = self._impl.explain(rows) if self._impl.attn_width else None
            q = np.stack([map_classes(self.member(i).predict(rows[:, m["columns"]]), m["class_map"],
                                      self.n_classes)
                          for i, m in enumerate(self.described["members"])], axis=1)
        q = np.asarray(q, np.float64)
        out = np.asarray(self.predict(x), np.float64).reshape(len(q), -1)
        decision = out.argmax(axis=1)
        share = _shares(self, q, out, decision)
        d = self.described
        attention, at = {}, 0
        for m in d["members"]:
            w = next((l["in"] for l in m["layers"] if l["kind"] == "attention"), 0)
            attention[m["name"]] = (None if not w else
                                    (attn[0, at:at + w] if single else attn[:, at:at + w]))
            at += w
        pick = (lambda a: a[0]) if single else (lambda a: a)
        return EnsembleExplanation(
            members=self.member_names, labels=self.labels, probabilities=pick(q),
            confidence=pick(q.max(axis=2)), share=pick(share), dominant=pick(share.argmax(axis=1)),
            decision=pick(decision), attention=attention)

    @property
    def info(self) -> EnsembleInfo:  # type: ignore[override]
        if self._info is None:
            import hashlib

            d = self.described
            members = tuple(MemberInfo(
                name=m["name"], params=m["params"], input_size=m["input_size"],
                labels=tuple(m["labels"]), columns=tuple(m["columns"]),
                class_map=tuple(m["class_map"]), weight=float(m["weight"]),
                attn_width=next((l["in"] for l in m["layers"] if l["kind"] == "attention"), 0))
                for m in d["members"])
            self._info = EnsembleInfo(
                name=d["metadata"].get("name", "ensemble"), combiner=d["combiner"],
                params=d["params"], labels=tuple(d["labels"]),
                feature_names=tuple(d["feature_names"]), input_size=d["input_size"],
                n_classes=d["n_classes"], members=members,
                meta_params=d["meta_model"]["params"] if d["meta_model"] else 0,
                content_hash=hashlib.sha256(self.blob).hexdigest(), checksum=d["checksum"],
                blob_size=len(self.blob), backend=self.backend, isa=self._impl.isa,
                metadata=dict(d["metadata"]), dtype=self.dtype.name)
        return self._info

    def __repr__(self) -> str:
        d = self.described
        return (f"<pymicro.Ensemble {d['metadata'].get('name', 'ensemble')!r} {d['combiner']} of "
                f"{', '.join(self.member_names)} {d['input_size']}->{d['n_classes']} "
                f"params={d['params']} backend={self.backend}/{self._impl.isa}>")


def _shares(model: Ensemble, q: np.ndarray, out: np.ndarray, decision: np.ndarray) -> np.ndarray:
    """Each member's share of the decision (see EnsembleExplanation), rows x members."""
    d = model.described
    n, m, c = q.shape
    rows = np.arange(n)
    if d["combiner"] == "stacked":
        meta = model.meta_model()
        base = out[rows, decision]
        drops = np.empty((n, m))
        for k in range(m):
            ablated = q.copy()
            ablated[:, k, :] = 1.0 / c  # the member abstains: a uniform vote
            p = np.asarray(meta.predict(ablated.reshape(n, m * c).astype(np.float32)), np.float64)
            drops[:, k] = np.maximum(base - p[rows, decision], 0.0)
        support = drops
    else:
        w = np.array([mm["weight"] for mm in d["members"]], np.float64)
        w = w / w.sum()
        if d["combiner"] == "soft_vote":
            support = w[None, :] * q[rows, :, decision]
        else:
            support = w[None, :] * (q.argmax(axis=2) == decision[:, None])
    total = support.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, support / np.where(total > 0, total, 1.0), 1.0 / m)
    return share


def member_spans(blob: bytes) -> list[tuple[int, int]]:
    """``(offset, size)`` of each member's blob inside a container, from its member table.
    Read only from a container the core has parsed (``_core.parse_container``), which checked them."""
    hdr = _HEADER.unpack_from(blob, 0)
    return [_MEMBER.unpack_from(blob, HEADER_SIZE + RECORD_SIZE * i)[:2] for i in range(hdr[7])]


def load_ensemble(blob: bytes, backend: str = "native", *, isa: str = "auto",
                  nan_policy: str = "raise", allow_large: bool = False, dtype=None) -> Ensemble:
    """``pymicro.load`` for a container (it calls this): see :func:`pymicro.load`.

    The parameter budget (10,000 unless ``allow_large``) applies to each member and to the
    meta-model: an ensemble of micro networks is not itself a micro network.
    """
    from pymicro import _core
    from pymicro.errors import BackendError

    out_dtype = np.dtype(dtype if dtype is not None else np.float32)
    d = _core.parse_container(blob)
    for part in [*d["members"], *([d["meta_model"]] if d["meta_model"] else [])]:
        if part["params"] > MAX_PARAMS and not allow_large:
            raise ParameterBudgetError(
                f"ensemble member {part.get('name', 'meta-model')!r} has {part['params']:,} "
                f"parameters; a micro network has at most {MAX_PARAMS:,}. Load it with "
                "allow_large=True if you mean it.")
    # where the member and meta blobs lie, for member(i) and meta_model()
    hdr = _HEADER.unpack_from(blob, 0)
    for m, (offset, size) in zip(d["members"], member_spans(blob)):
        m["offset"], m["size"] = offset, size
    d["meta_offset"] = hdr[15]
    if d["meta_model"] is not None:
        d["meta_model"]["size"] = hdr[16]
    if backend == "native":
        impl = _core.NativeModel(blob, isa, nan_policy)
    elif backend == "reference":
        impl = _ReferenceEnsemble(d, nan_policy, out_dtype)
    elif backend == "wasm":
        from pymicro.runtime.wasm import WasmModel

        impl = WasmModel(blob, nan_policy=nan_policy)
    else:
        raise BackendError(f"backend {backend!r} does not run ensembles; use 'native', 'wasm' or 'reference'")
    return Ensemble(impl, backend, blob, d, out_dtype, nan_policy)
