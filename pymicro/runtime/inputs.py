"""The input policy for predict/explain, applied when x is not already the fast layout.

* float32, C-contiguous, aligned ndarray: used in place (the fast path, in C++).
* any other real numeric array or nested sequence (float16/64, ints): converted to
  float32 C-contiguous once (one copy), then run.
* bool, complex, object, string dtypes, and things that are not array-like at all: refused
  with InputTypeError (an InputError and a TypeError).
* an object whose own conversion fails (its ``__array__``, ``__len__`` or ``__getitem__``
  raises RuntimeError, KeyError, ZeroDivisionError, AttributeError, ...): InputError,
  chained to the original (``__cause__``); a TypeError there gives InputTypeError.
  ``MemoryError`` is never wrapped: it propagates unchanged.
* shape (input_size,) -> (n_classes,); (batch, input_size) -> (batch, n_classes);
  anything else: InputError naming the shape (checked by the backend).
* NaN/Inf: per the model's nan_policy ("raise" by default, or "propagate").
* a finite float64 value beyond float32's range: InputError naming the cell (it has no
  float32 value to run with, whatever the nan_policy).
``predict_into`` never converts: it takes the fast layout only, and ``out`` must not
share a byte with ``x`` (the core reads x while it writes out; see OVERLAP_MESSAGE).
"""

from __future__ import annotations

import numpy as np

from pymicro.errors import InputError, InputTypeError, NumericsError, PymicroError


# Word for word what the native core says (cpp/python/module.cpp, predict_into).
OVERLAP_MESSAGE = ("predict_into: out overlaps x in memory; the core reads x while it writes "
                   "out, so rows would be overwritten before they are read. Pass separate buffers")


def check_no_overlap(x: np.ndarray, out: np.ndarray) -> None:
    """InputError if out's bytes and x's intersect, exact aliasing included (both are
    C-contiguous here, so their byte ranges are exactly the memory they use)."""
    if x.size and out.size and np.may_share_memory(x, out):
        raise InputError(OVERLAP_MESSAGE)


def coerce(x, input_size: int) -> np.ndarray:
    """x as a float32, C-contiguous array of shape (input_size,) or (n, input_size), per the
    policy above; every failure is an InputError (MemoryError excepted)."""
    try:
        a = np.asarray(x)
    except MemoryError:
        raise
    except (ValueError, TypeError) as e:  # ragged nesting, unconvertible elements
        raise InputTypeError(f"x is not array-like: {e}") from e
    except Exception as e:  # the object's own __array__/__len__/__getitem__ failed
        raise InputError(f"x is not array-like: converting it raised {type(e).__name__}: {e}") from e
    if a.dtype.kind not in "fiu":
        raise InputTypeError(
            f"x has dtype {a.dtype}; pymicro takes real numbers (float32 is the zero-copy path)"
        )
    if a.ndim not in (1, 2) or a.shape[-1] != input_size:
        raise InputError(
            f"x has shape {a.shape}; this model takes ({input_size},) or (batch, {input_size})"
        )
    if a.dtype.kind == "f" and a.dtype.itemsize > 4:  # float64 and wider: may not fit
        with np.errstate(over="ignore"):
            out = np.ascontiguousarray(a, dtype=np.float32)
        beyond = np.isinf(out) & np.isfinite(a)
        if beyond.any():
            cell = tuple(int(i) for i in np.argwhere(beyond.reshape(-1, a.shape[-1]))[0])
            value = a.reshape(-1, a.shape[-1])[cell]
            where = f"x[{cell[0]}, {cell[1]}]" if a.ndim == 2 else f"x[{cell[1]}]"
            raise InputError(f"{where} = {value:g} is beyond float32's range (about ±3.4e38)")
        return out
    return np.ascontiguousarray(a, dtype=np.float32)


def nonfinite_cell(x: np.ndarray) -> InputError | None:
    """The error for the first NaN/Inf cell of x (row, column), or None if there is none."""
    a = x.reshape(1, -1) if x.ndim == 1 else x
    bad = np.argwhere(~np.isfinite(a))
    if not len(bad):
        return None
    r, c = (int(v) for v in bad[0])
    v = a[r, c]
    name = "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")
    return InputError(f"x[{r}, {c}] is {name}; load the model with nan_policy='propagate' to "
                      "get NaN probabilities for such rows instead")


def nonfinite_error(x: np.ndarray, out: np.ndarray, blob: bytes) -> PymicroError:
    """The error for the first bad row of a float32 run of ``blob`` (every backend's).

    A NaN/Inf input cell (row, column) is an :class:`InputError`; so is a finite cell
    that overflows once normalised. A row of finite inputs whose probabilities came
    out NaN overflowed float32 inside the network: a :class:`NumericsError`.
    """
    cell = nonfinite_cell(x)
    if cell is not None:
        return cell
    a = x.reshape(1, -1) if x.ndim == 1 else x
    nan_rows = np.flatnonzero(np.isnan(np.asarray(out).reshape(len(a), -1)[:, 0]))
    if not len(nan_rows):
        return NumericsError("the network's float32 arithmetic overflowed")
    r = int(nan_rows[0])
    from pymicro import _core

    # an ensemble container's members each normalise their own columns: no single mean/std
    described = {"mean": None} if bytes(blob[:4]) == b"PMBC" else _core.parse(blob, False)
    if described["mean"] is not None:  # as the core normalises: (x - mean) * (1 / std)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (a[r] - described["mean"]) * (np.float32(1) / described["std"])
        for c in np.flatnonzero(~np.isfinite(z)):
            return InputError(f"x[{r}, {int(c)}] overflows float32 after normalisation")
    return NumericsError(
        f"row {r}: the network's float32 arithmetic overflowed on this finite input (a value "
        "inside it became Inf or NaN), so it has no probabilities: this input and the blob's "
        "weights are too large for float32. Load the model with nan_policy='propagate' to get "
        "NaN probabilities for such rows instead")


def check_threads(threads) -> None:
    """``threads=`` of predict/predict_into: None or an int >= 1 (the native core checks its own).
    Backends without CPU threads of their own (reference, wasm, cuda) accept and ignore it."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads must be None or an int >= 1, got {threads!r}")
