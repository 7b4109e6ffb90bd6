"""The numpy reference backend: float64 accumulation, written for clarity, not speed.

It reads the same blob through the same C++ parser as every other backend and is
the yardstick the compiled backends are tested against. It computes in float64 and,
like every backend, returns float32 unless loaded with ``dtype=np.float64``
(``pymicro.load(blob, backend="reference", dtype=np.float64)``), which returns the
float64 values themselves: what the parity tests compare against.
"""

from __future__ import annotations

import numpy as np

from pymicro.errors import InputError
from pymicro.runtime.activations import TABLE
from pymicro.runtime.inputs import check_no_overlap, check_threads, coerce, nonfinite_cell


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


_ACTIVATIONS = {a.name: a.reference for a in TABLE}  # pymicro/activations.py


def forward(described: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Probabilities (n, classes) and the first attention layer's weights, in float64."""
    h = np.asarray(x, dtype=np.float64)
    if described["mean"] is not None:
        h = (h - described["mean"].astype(np.float64)) / described["std"].astype(np.float64)
    attention = None
    for layer in described["layers"]:
        if layer["kind"] == "attention":
            a = _softmax(h @ layer["W_a"].T.astype(np.float64) + layer["b_a"])
            attention = a if attention is None else attention
            h = (a * h) @ layer["W_v"].T.astype(np.float64) + layer["b_v"]
        else:
            z = h @ layer["W"].T.astype(np.float64) + layer["b"]
            h = _ACTIVATIONS[layer["activation"]](z)
    return _softmax(h), attention


class ReferenceModel:
    """Same interface as the native model; numpy float64 inside, ``dtype`` results out."""

    isa = "numpy-float64"

    def __init__(self, described: dict, nan_policy: str = "raise", dtype=np.float32):
        if nan_policy not in ("raise", "propagate"):
            raise InputError(f"nan_policy must be 'raise' or 'propagate', got {nan_policy!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise InputError(f"dtype must be np.float32 or np.float64, got {self.dtype}")
        self._d = described
        self.input_size = described["input_size"]
        self.n_classes = described["n_classes"]
        self.raises_on_nonfinite = nan_policy == "raise"
        widths = [l["in"] for l in described["layers"] if l["kind"] == "attention"]
        self.attn_width = widths[0] if widths else 0

    def _run(self, x) -> tuple[np.ndarray, np.ndarray | None, bool]:
        a = coerce(x, self.input_size)
        rows = a.reshape(-1, self.input_size)
        bad = ~np.isfinite(rows).all(axis=1)
        if bad.any() and self.raises_on_nonfinite:
            raise nonfinite_cell(rows)
        with np.errstate(all="ignore"):
            probs, attn = forward(self._d, rows)
        probs[bad] = np.nan
        if attn is not None:
            attn[bad] = np.nan
        return probs, attn, a.ndim == 1

    def predict(self, x, *, threads=None) -> np.ndarray:  # threads: numpy's own, ignored
        check_threads(threads)
        probs, _, single = self._run(x)
        probs = probs.astype(self.dtype, copy=False)
        return probs[0] if single else probs

    def predict64(self, x) -> np.ndarray:
        """float64 probabilities, whatever ``dtype`` (what the parity tests compare against)."""
        probs, _, single = self._run(x)
        return probs[0] if single else probs

    def predict_into(self, x, out, *, threads=None) -> None:
        check_threads(threads)
        # The native core's rules, word for word: predict_into never converts.
        if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous
                and x.flags.aligned):
            raise InputError("predict_into needs x as a float32, C-contiguous, aligned ndarray "
                             "(it never copies); use predict() for other inputs")
        if not (isinstance(out, np.ndarray) and out.dtype == self.dtype and out.flags.c_contiguous
                and out.flags.aligned):
            raise InputError(f"out must be a {self.dtype}, C-contiguous, aligned ndarray")
        if not out.flags.writeable:
            raise InputError("out is read-only")
        probs = self.predict(x)
        if out.shape != probs.shape:
            raise InputError(f"out has shape {out.shape}; for this x it must be {probs.shape}")
        check_no_overlap(x, out)
        out[...] = probs

    def explain(self, x) -> np.ndarray:
        if not self.attn_width:
            raise InputError("this model has no attention layer to explain")
        _, attn, single = self._run(x)
        attn = attn.astype(self.dtype, copy=False)
        return attn[0] if single else attn
