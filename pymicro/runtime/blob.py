"""Writing blobs (.pmb). The format is specified in docs/blob-format.md.

This module only *writes*. Blobs are read and validated once, by the C++ core
(``pymicro._core.parse``), so Python and the runtimes can never disagree about
what a blob means.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from pymicro.errors import BlobError
from pymicro.runtime.activations import TABLE as ACTIVATION_TABLE
from pymicro.runtime.spec import Attention, Dense, Network

MAGIC = b"PMB1"
FOOTER_MAGIC = b"PMBE"
VERSION = 1
HEADER_SIZE = 128
RECORD_SIZE = 32
ALIGN = 64
FLAG_NORMALIZATION = 1

KIND_DENSE, KIND_ATTENTION = 1, 2
ACTIVATION_CODES = {a.name: a.code for a in ACTIVATION_TABLE}
ROLE_NORM_MEAN, ROLE_NORM_STD = 1, 2
ROLE_DENSE_W, ROLE_DENSE_B = 3, 4
ROLE_ATTN_W_A, ROLE_ATTN_B_A, ROLE_ATTN_W_V, ROLE_ATTN_B_V = 5, 6, 7, 8
DTYPE_F32 = 1

MAX_LABEL_BYTES = 255
MAX_META_ENTRIES = 64
MAX_META_VALUE_BYTES = 4096
MAX_STRINGS_BYTES = 1 << 20  # the whole string section

_HEADER = struct.Struct("<4sIII Q IIII QQQQQQ 40x")
_LAYER = struct.Struct("<IIIIII8x")
_TENSOR = struct.Struct("<IIIIQQ")
assert _HEADER.size == HEADER_SIZE and _LAYER.size == _TENSOR.size == RECORD_SIZE


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _string(text: str, what: str, min_len: int, max_len: int) -> bytes:
    raw = str(text).encode("utf-8")
    if not min_len <= len(raw) <= max_len or b"\0" in raw:
        raise BlobError(f"{what} {text!r} must be {min_len}..{max_len} UTF-8 bytes without NUL")
    return struct.pack("<H", len(raw)) + raw


def _tensor(array, shape: tuple[int, ...], what: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float32)
    if a.shape != shape:
        raise BlobError(f"{what} has shape {a.shape}, the spec needs {shape}")
    if not np.all(np.isfinite(a)):
        raise BlobError(f"{what} contains NaN or Inf")
    return np.ascontiguousarray(a, dtype="<f4")


def _network_tensors(network: Network) -> tuple[list[tuple], list[tuple[int, np.ndarray]]]:
    """Layer records and (role, array) tensors in blob order."""
    spec = network.spec
    weighted = spec.weighted_layers()
    if len(network.params) != len(weighted):
        raise BlobError(f"network has {len(network.params)} weighted layers, spec has {len(weighted)}")
    tensors: list[tuple[int, np.ndarray]] = []
    if (network.mean is None) != (network.std is None):
        raise BlobError("normalisation needs both mean and std, or neither")
    if network.mean is not None:
        n = spec.input_size
        std = _tensor(network.std, (n,), "normalisation std")
        tiny = np.finfo(np.float32).tiny  # the parser refuses 0, negatives and subnormals
        if np.any(std < tiny):
            i = int(np.argmin(std))
            raise BlobError(f"normalisation std must be a normal float > 0 (at least {tiny:.3g}); "
                            f"input {i} is {std[i]!r}")
        tensors += [(ROLE_NORM_MEAN, _tensor(network.mean, (n,), "normalisation mean")),
                    (ROLE_NORM_STD, std)]
    layers = []
    for index, ((layer, n_in, n_out), params) in enumerate(zip(weighted, network.params)):
        where = f"layer {index}"
        first = len(tensors)
        if isinstance(layer, Attention):
            roles = [(ROLE_ATTN_W_A, "W_a", (n_in, n_in)), (ROLE_ATTN_B_A, "b_a", (n_in,)),
                     (ROLE_ATTN_W_V, "W_v", (n_out, n_in)), (ROLE_ATTN_B_V, "b_v", (n_out,))]
            kind, activation = KIND_ATTENTION, 0
        else:
            assert isinstance(layer, Dense)
            roles = [(ROLE_DENSE_W, "W", (n_out, n_in)), (ROLE_DENSE_B, "b", (n_out,))]
            kind, activation = KIND_DENSE, ACTIVATION_CODES[layer.activation]
        for role, key, shape in roles:
            if key not in params:
                raise BlobError(f"{where} ({type(layer).__name__}) is missing tensor {key!r}")
            tensors.append((role, _tensor(params[key], shape, f"{where} {key}")))
        layers.append((kind, activation, n_in, n_out, first, len(roles)))
    return layers, tensors


def _strings(network: Network, metadata: dict) -> bytes:
    spec = network.spec
    out = [struct.pack("<I", len(spec.labels))]
    out += [_string(label, "label", 1, MAX_LABEL_BYTES) for label in spec.labels]
    features = spec.feature_names or ()
    out.append(struct.pack("<I", len(features)))
    out += [_string(name, "feature name", 1, MAX_LABEL_BYTES) for name in features]
    if len(metadata) > MAX_META_ENTRIES:
        raise BlobError(f"{len(metadata)} metadata entries; at most {MAX_META_ENTRIES}")
    out.append(struct.pack("<I", len(metadata)))
    for key, value in metadata.items():
        out.append(_string(key, "metadata key", 1, MAX_LABEL_BYTES))
        out.append(_string(value, f"metadata value of {key!r}", 0, MAX_META_VALUE_BYTES))
    return b"".join(out)


def encode(network: Network, metadata: dict | None = None) -> bytes:
    """The blob bytes of ``network`` (see docs/blob-format.md)."""
    layers, tensors = _network_tensors(network)
    meta = {"name": network.spec.name, "architecture": network.spec.describe()}
    meta.update(metadata or {})
    strings = _strings(network, meta)
    if len(strings) > MAX_STRINGS_BYTES:
        raise BlobError(f"labels, feature names and metadata take {len(strings):,} bytes; a blob "
                        f"holds at most {MAX_STRINGS_BYTES:,} (1 MiB)")

    tensors_offset = HEADER_SIZE + RECORD_SIZE * len(layers)
    strings_offset = tensors_offset + RECORD_SIZE * len(tensors)
    data_offset = _align(strings_offset + len(strings))
    records, cursor = [], data_offset
    for role, array in tensors:
        rows, cols = (array.shape[0], array.shape[1]) if array.ndim == 2 else (array.shape[0], 1)
        records.append(_TENSOR.pack(role, DTYPE_F32, rows, cols, cursor, array.nbytes))
        cursor = _align(cursor + array.nbytes)
    data_size = cursor - data_offset
    total_size = data_offset + data_size + 8

    spec = network.spec
    flags = FLAG_NORMALIZATION if network.mean is not None else 0
    buf = bytearray(total_size)
    buf[:HEADER_SIZE] = _HEADER.pack(
        MAGIC, VERSION, HEADER_SIZE, flags, total_size, spec.input_size, spec.n_classes,
        len(layers), len(tensors), HEADER_SIZE, tensors_offset, strings_offset, len(strings),
        data_offset, data_size)
    for i, layer in enumerate(layers):
        _LAYER.pack_into(buf, HEADER_SIZE + RECORD_SIZE * i, *layer)
    buf[tensors_offset:strings_offset] = b"".join(records)
    buf[strings_offset:strings_offset + len(strings)] = strings
    for (_, array), record in zip(tensors, records):
        offset = _TENSOR.unpack(record)[4]
        buf[offset:offset + array.nbytes] = array.tobytes()
    struct.pack_into("<I4s", buf, total_size - 8, zlib.crc32(memoryview(buf)[:-8]), FOOTER_MAGIC)
    return bytes(buf)


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def freeze(network: Network, path: str | os.PathLike | None = None, **metadata) -> bytes:
    """Freeze ``network`` into blob bytes; also write them to ``path`` (atomically) if given.

    Keyword arguments become the blob's metadata (strings; at most 64 entries).
    """
    if not isinstance(network, Network):
        raise BlobError(f"freeze needs a pymicro Network (from spec.init or a trainer), got {type(network).__name__}")
    data = encode(network, metadata)
    if path is not None:
        write_atomic(path, data)
    return data
