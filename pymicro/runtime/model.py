"""Loading blobs into models, and the Model every backend presents."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from pymicro.errors import BackendError, BlobError, InputError, InputTypeError, ParameterBudgetError
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
    dtype: str = "float32"  # what predict/explain return: float32, or float64 on request (reference)


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


def _info(described: dict, blob: bytes, backend: str, isa: str, dtype: str) -> ModelInfo:
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
        backend=backend, isa=isa, metadata=dict(described["metadata"]), dtype=dtype)


class Model:
    """A loaded blob: ``predict``, ``predict_into`` and ``explain`` run it on its backend.

    ``predict(x)``: probabilities, (n_classes,) for one row, (batch, n_classes) for a batch.
    ``predict_into(x, out)``: the same into a caller's buffer, no allocation (x must be
    float32 C-contiguous). ``explain(x)``: the first attention layer's weights.
    Results are float32 on every backend; ``load(..., backend="reference",
    dtype=np.float64)`` gives the reference's float64 values instead (``model.dtype``).
    One Model may be shared by many threads: it is immutable after load.

    The three methods below are the documented interface (``help``, ``inspect.signature``
    and type checkers read them). Each instance also binds the backend's own callables
    under the same names in its ``__dict__``, which Python's attribute lookup prefers to a
    plain method: ``model.predict(x)`` then goes straight to the core, with no Python frame
    in between (natively, a CPython vectorcall function, not even pybind11's dispatcher).
    Both give the same results; calling ``Model.predict(model, x)`` through the class
    takes the documented method, one Python frame longer.
    """

    def __init__(self, impl, backend: str, blob: bytes, described: dict, dtype=np.float32):
        self._impl = impl
        self.backend = backend
        self.blob = blob
        self.described = described
        self.dtype = np.dtype(dtype)
        # The hot path (see the class docstring): instance attributes shadow the methods.
        fast = getattr(impl, "fast_calls", None)
        self.predict, self.predict_into = fast() if fast else (impl.predict, impl.predict_into)
        self.explain = impl.explain
        self._info = None

    def predict(self, x: npt.ArrayLike, *, threads: int | None = None) -> np.ndarray:
        """Class probabilities of ``x``.

        ``x``: one row, shape ``(input_size,)``, or a batch ``(batch, input_size)`` of real
        numbers. A float32, C-contiguous, aligned ndarray is used in place; other real
        dtypes, lists and strided arrays are converted once (README, "Inputs").

        Returns ``(n_classes,)`` or ``(batch, n_classes)`` probabilities of ``model.dtype``
        (float32 unless the reference was loaded with ``dtype=np.float64``).

        ``threads`` (native backend): split a batch across that many threads, bit-identical
        to one; None (the default) uses every CPU this process may run on for batches of
        16,384 rows or more and one thread below that. Other backends ignore it.

        Raises :class:`~pymicro.InputError` for a wrong shape or a NaN/Inf cell (under
        ``nan_policy="raise"``), :class:`~pymicro.InputTypeError` for non-numeric input,
        :class:`~pymicro.NumericsError` for a row that overflows float32 inside the network.
        """
        return self._impl.predict(x, threads=threads)

    def predict_into(self, x: np.ndarray, out: np.ndarray, *, threads: int | None = None) -> None:
        """Class probabilities of ``x`` written into ``out``: no allocation, no conversion.

        ``x``: a float32 (the model's dtype for ``out``), C-contiguous, aligned ndarray of
        shape ``(input_size,)`` or ``(batch, input_size)``; ``out``: a writeable array of
        the model's dtype, C-contiguous, of shape ``(n_classes,)`` or ``(batch, n_classes)``.
        Anything that would need a copy raises :class:`~pymicro.InputError`. ``threads``: as
        :meth:`predict` (no allocation per call either way). Returns None.
        """
        return self._impl.predict_into(x, out, threads=threads)

    def explain(self, x: npt.ArrayLike) -> np.ndarray:
        """The first attention layer's weights over the input features for ``x``.

        Same inputs as :meth:`predict`; returns ``(attn_width,)`` or ``(batch, attn_width)``
        of ``model.dtype``, each row summing to 1. A model without an attention layer
        raises :class:`~pymicro.InputError`.
        """
        return self._impl.explain(x)

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            self._info = _info(self.described, self.blob, self.backend, self._impl.isa,
                               self.dtype.name)
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
    raise InputTypeError(f"load() takes a path or bytes, got {type(source).__name__}")


def _result_dtype(dtype, backend: str) -> np.dtype:
    if dtype is None:
        return np.dtype(np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputTypeError(f"dtype must be np.float32 or np.float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"dtype must be np.float32 or np.float64, got {dt}")
    if dt == np.float64 and backend != "reference":
        raise InputError(f"dtype=float64 is available on backend='reference' only: backend "
                         f"{backend!r} computes in float32 (load the reference for float64)")
    return dt


def load(source, backend: str = "native", *, isa: str = "auto", nan_policy: str = "raise",
         allow_large: bool = False, dtype: npt.DTypeLike = None) -> Model:
    """Load a blob (path or bytes) onto a backend.

    backend: "native" (C++ core, best ISA of this CPU, or ``isa=`` to pick one),
    "wasm" (the same core compiled to wasm32, run by wasmtime: ``pip install 'pymicro[wasm]'``),
    "reference" (numpy, computing in float64), "cuda" (an NVIDIA GPU: ``pip install
    'pymicro[cuda]'``; BackendError where there is no GPU or driver, docs/cuda.md).
    Every backend returns float32 results;
    ``dtype=np.float64`` (reference only) returns the reference's float64 values as they
    are, for comparisons that need them. nan_policy: "raise" (InputError naming the row and
    column; NumericsError for a row that overflows float32 inside the network) or
    "propagate" (such rows get NaN probabilities). A blob of more than 10,000 parameters
    is refused (ParameterBudgetError) unless ``allow_large=True``, as a spec is.
    """
    from pymicro import _core

    if not isinstance(backend, str):
        raise BackendError(f"backend must be a string, one of {BACKENDS}; got {backend!r}")
    if not isinstance(isa, str):
        raise InputTypeError(f"isa must be a string such as 'auto' or one of {_core.isas()}; got {isa!r}")
    if backend != "native" and isa != "auto":
        raise InputError(f"isa={isa!r} applies to backend='native' only")
    if nan_policy not in ("raise", "propagate"):
        raise InputError(f"nan_policy must be 'raise' or 'propagate', got {nan_policy!r}")
    out_dtype = _result_dtype(dtype, backend) if backend in BACKENDS else None  # else: BackendError below
    blob = _read_source(source)
    if blob[:4] == b"PMBC":  # an ensemble container: pymicro/runtime/ensemble.py
        from pymicro.runtime.ensemble import load_ensemble

        return load_ensemble(blob, backend, isa=isa, nan_policy=nan_policy,
                             allow_large=allow_large, dtype=out_dtype)
    described = _core.parse(blob)
    if described["params"] > MAX_PARAMS and not allow_large:
        raise ParameterBudgetError(
            f"this blob has {described['params']:,} parameters; a micro network has at most "
            f"{MAX_PARAMS:,}. Load it with allow_large=True if you mean it.")
    if backend == "native":
        impl = _core.NativeModel(blob, isa, nan_policy)
    elif backend == "reference":
        from pymicro.runtime.reference import ReferenceModel

        impl = ReferenceModel(described, nan_policy, dtype=out_dtype)
    elif backend == "wasm":
        from pymicro.runtime.wasm import WasmModel

        impl = WasmModel(blob, nan_policy=nan_policy)
    elif backend == "cuda":
        from pymicro.runtime.cuda import CudaModel  # docs/cuda.md; BackendError without a GPU

        impl = CudaModel(blob, nan_policy=nan_policy)
    else:
        raise BackendError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return Model(impl, backend, blob, described, out_dtype)


def _predict(model: Model, x: npt.ArrayLike, *, threads: int | None = None) -> np.ndarray:
    """Class probabilities of ``x`` under ``model`` (see :meth:`Model.predict`)."""
    return model.predict(x) if threads is None else model.predict(x, threads=threads)


try:  # the same function in C (cpp/python/module.cpp, module_predict): no Python frame per call
    from pymicro._core import predict
except ImportError:  # pragma: no cover - a checkout whose core was not built
    predict = _predict
