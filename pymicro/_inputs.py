"""The input policy for predict/explain, applied when x is not already the fast layout.

* float32, C-contiguous, aligned ndarray: used in place (the fast path, in C++).
* any other real numeric array or nested sequence (float16/64, ints): converted to
  float32 C-contiguous once (one copy), then run.
* bool, complex, object, string dtypes: refused with InputError.
* shape (input_size,) -> (n_classes,); (batch, input_size) -> (batch, n_classes);
  anything else: InputError naming the shape (checked by the backend).
* NaN/Inf: per the model's nan_policy ("raise" by default, or "propagate").
* a finite float64 value beyond float32's range: InputError naming the cell (it has no
  float32 value to run with, whatever the nan_policy).
``predict_into`` never converts: it takes the fast layout only.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def coerce(x, input_size: int) -> np.ndarray:
    try:
        a = np.asarray(x)
    except (ValueError, TypeError) as e:
        raise InputError(f"x is not array-like: {e}") from None
    if a.dtype.kind not in "fiu":
        raise InputError(
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
