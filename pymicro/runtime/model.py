"""Loading blobs into models, and the Model every backend presents."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from pymicro.errors import BackendError, BlobError, InputError, ParameterBudgetError
from pymicro.runtime.spec import MAX_PARAMS, Attention, Dense, Spec

BACKENDS = ("native", "reference", "wasm", "cuda")


@dataclass(frozen=True)
class ModelInfo:
    """What a blob holds, read through the core's parser."""

    name: str
    params: int
    flops: int
    layers: tuple[str, ...]
    labels: tuple[str, ...]
    feature_names: tuple[str, ...]
    input_size: int
    n_classes: int
    content_hash: str  # sha256 of the blob bytes
    checksum: int  # the blob's CRC-32
    blob_size: int
    has_normalization: bool
    backend: str
    isa: str
    metadata: dict = field(default_factory=dict)


def _spec_layers(described: dict) -> list:
    layers = []
    for layer in described["layers"][:-1]:
        if layer["kind"] == "attention":
            layers.append(Attention(layer["out"]))
        else:
            layers.append(Dense(layer["out"], layer["activation"]))
    return layers


def spec_of(described: dict) -> Spec:
    """The architecture spec a parsed blob describes (Dropout is not stored)."""
    return Spec(described["input_size"], tuple(_spec_layers(described)), described["n_classes"],
                name=described["metadata"].get("name", "custom"),
                labels=tuple(described["labels"]),
                feature_names=tuple(described["feature_names"]) or None, allow_large=True)


def _info(described: dict, blob: bytes, backend: str, isa: str) -> ModelInfo:
    spec = spec_of(described)
    layers = []
    for layer in described["layers"]:
        if layer["kind"] == "attention":
            layers.append(f"Attention({layer['in']} -> {layer['out']})")
        else:
            layers.append(f"Dense({layer['in']} -> {layer['out']}, {layer['activation']})")
    return ModelInfo(
        name=spec.name, params=described["params"], flops=spec.flops, layers=tuple(layers),
        labels=spec.labels, feature_names=tuple(described["feature_names"]),
        input_size=described["input_size"], n_classes=described["n_classes"],
        content_hash=hashlib.sha256(blob).hexdigest(), checksum=described["checksum"],
        blob_size=len(blob), has_normalization=described["mean"] is not None,
        backend=backend, isa=isa, metadata=dict(described["metadata"]))


class Model:
    """A loaded blob. ``predict``, ``predict_into`` and ``explain`` go straight to the backend.

    ``predict(x)``: probabilities, (n_classes,) for one row, (batch, n_classes) for a batch.
    ``predict_into(x, out)``: the same into a caller's float32 buffer, no allocation (x must
    be float32 C-contiguous). ``explain(x)``: the first attention layer's weights.
    One Model may be shared by many threads: it is immutable after load.
    """

    def __init__(self, impl, backend: str, blob: bytes, described: dict):
        self._impl = impl
        self.backend = backend
        self.blob = blob
        self.described = described
        # Bound straight to the backend: no Python frame between the caller and the core
        # (natively, plain CPython functions: not even pybind11's dispatcher).
        fast = getattr(impl, "fast_calls", None)
        self.predict, self.predict_into = fast() if fast else (impl.predict, impl.predict_into)
        self.explain = impl.explain
        self._info = None

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = _info(self.described, self.blob, self.backend, self._impl.isa)
        return self._info

    @property
    def input_size(self) -> int:
        return self._impl.input_size

    @property
    def n_classes(self) -> int:
        return self._impl.n_classes

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.described["labels"])

    def __repr__(self) -> str:
        d = self.described
        return (f"<pymicro.Model {d['metadata'].get('name', 'custom')!r} {d['input_size']}->"
                f"{d['n_classes']} params={d['params']} backend={self.backend}/{self._impl.isa}>")


def _read_source(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return f.read()
        except OSError as e:
            raise BlobError(f"cannot read blob file {os.fspath(source)!r}: {e.strerror}") from None
    raise InputError(f"load() takes a path or bytes, got {type(source).__name__}")


def load(source, backend: str = "native", *, isa: str = "auto", nan_policy: str = "raise",
         allow_large: bool = False) -> Model:
    """Load a blob (path or bytes) onto a backend.

    backend: "native" (C++ core, best ISA of this CPU, or ``isa=`` to pick one),
    "wasm" (the same core compiled to wasm32, run by wasmtime: ``pip install 'pymicro[wasm]'``),
    "reference" (numpy float64). nan_policy: "raise" (InputError naming the row and
    column; NumericsError for a row that overflows float32 inside the network) or
    "propagate" (such rows get NaN probabilities). A blob of more than 10,000 parameters
    is refused (ParameterBudgetError) unless ``allow_large=True``, as a spec is.
    """
    from pymicro import _core

    if not isinstance(backend, str):
        raise BackendError(f"backend must be a string, one of {BACKENDS}; got {backend!r}")
    if not isinstance(isa, str):
        raise InputError(f"isa must be a string such as 'auto' or one of {_core.isas()}; got {isa!r}")
    if backend != "native" and isa != "auto":
        raise InputError(f"isa={isa!r} applies to backend='native' only")
    if nan_policy not in ("raise", "propagate"):
        raise InputError(f"nan_policy must be 'raise' or 'propagate', got {nan_policy!r}")
    blob = _read_source(source)
    described = _core.parse(blob)
    if described["params"] > MAX_PARAMS and not allow_large:
        raise ParameterBudgetError(
            f"this blob has {described['params']:,} parameters; a micro network has at most "
            f"{MAX_PARAMS:,}. Load it with allow_large=True if you mean it.")
    if backend == "native":
        impl = _core.NativeModel(blob, isa, nan_policy)
    elif backend == "reference":
        from pymicro.runtime.reference import ReferenceModel

        impl = ReferenceModel(described, nan_policy)
    elif backend == "wasm":
        from pymicro.runtime.wasm import WasmModel

        impl = WasmModel(blob, nan_policy=nan_policy)
    elif backend == "cuda":
        raise BackendError("backend 'cuda' is not part of this build yet; "
                           "available: 'native', 'reference', 'wasm'")
    else:
        raise BackendError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return Model(impl, backend, blob, described)


def predict(model: Model, x) -> np.ndarray:
    """Class probabilities of ``x`` under ``model`` (see :meth:`Model.predict`)."""
    return model.predict(x)
