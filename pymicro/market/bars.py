"""One symbol's validated bars, and the causal window helpers every feature family uses.

Each window ends at ``t`` and is reduced from its own values only, so a value at ``t`` is
bit-for-bit the same whatever the series' length (see ``docs/features.md``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from pymicro.errors import DataError

BAR_COLUMNS = ("open", "high", "low", "close", "volume")


# --------------------------------------------------------------------------- window helpers


def rolling(a: np.ndarray, window: int, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``out[t] = fn(a[t-window+1 .. t])`` row-wise, NaN while the window is incomplete.

    The windows are copied into a C-contiguous (n, window) block so each row is
    reduced from its own values only, in the same order whatever the series length.
    """
    n = a.shape[0]
    out = np.full(n, np.nan)
    if n >= window:
        win = np.ascontiguousarray(sliding_window_view(a, window))
        out[window - 1:] = fn(win)
    return out


def lag(a: np.ndarray, k: int) -> np.ndarray:
    """``out[t] = a[t-k]``; NaN for t < k."""
    out = np.full(a.shape[0], np.nan)
    if k < a.shape[0]:
        out[k:] = a[: a.shape[0] - k]
    return out


def window_mean(win: np.ndarray) -> np.ndarray:
    return win.mean(axis=1)


def window_std(win: np.ndarray) -> np.ndarray:
    return win.std(axis=1, ddof=1)


def log_returns(close: np.ndarray) -> np.ndarray:
    """``r[t] = ln(close[t] / close[t-1])``; ``r[0]`` is NaN."""
    r = np.full(close.shape[0], np.nan)
    r[1:] = np.log(close[1:] / close[:-1])
    return r


def rolling_volatility(close: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the last ``window`` daily log returns, ending at t."""
    return rolling(log_returns(np.asarray(close, np.float64)), window, window_std)


def safe_ratio(num: np.ndarray, den: np.ndarray, default: float) -> np.ndarray:
    """num / den, ``default`` where den == 0 (NaN stays NaN)."""
    out = np.full(num.shape, np.nan)
    ok = den != 0
    np.divide(num, den, out=out, where=ok)
    out[(den == 0) & ~np.isnan(num)] = default
    return out


# --------------------------------------------------------------------------- input checks


def bars_of_one_symbol(df: pd.DataFrame) -> tuple[pd.DatetimeIndex | pd.Index, dict[str, np.ndarray]]:
    """Validate one symbol's bars; return (dates, {column: float64 array}).

    Accepts a frame with a ``date`` column or a date index, and the columns open,
    high, low, close, volume. Dates must be strictly increasing; prices finite and
    positive; volume finite and non-negative. A ``symbol`` column, if present,
    must hold one symbol.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame of bars, got {type(df).__name__}")
    cols = {str(c).lower(): c for c in df.columns}
    missing = [c for c in BAR_COLUMNS if c not in cols]
    if missing:
        raise DataError(f"bars are missing column(s) {', '.join(missing)} (found: {list(df.columns)})")
    if "symbol" in cols:
        symbols = pd.unique(df[cols["symbol"]])
        if len(symbols) > 1:
            raise DataError(
                f"features are computed one symbol at a time; got {len(symbols)} symbols "
                f"({list(symbols[:5])}); group by symbol first or use pymicro.market.dataset.make_dataset"
            )
    if "date" in cols:
        dates = pd.DatetimeIndex(pd.to_datetime(df[cols["date"]]), name="date")
    else:
        dates = df.index
        if isinstance(dates, pd.DatetimeIndex):
            dates = dates.rename("date")
    if len(dates) > 1:
        d = np.asarray(dates)
        try:
            ok = bool(np.all(d[1:] > d[:-1]))
        except TypeError:
            raise DataError("bar dates are not comparable (mixed types?)") from None
        if not ok:
            i = int(np.flatnonzero(~(d[1:] > d[:-1]))[0])
            raise DataError(
                f"bar dates must be strictly increasing: {d[i + 1]} (row {i + 1}) follows {d[i]} (row {i})"
            )
    arrays: dict[str, np.ndarray] = {}
    for c in BAR_COLUMNS:
        try:
            a = np.asarray(df[cols[c]], dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"column {c!r} is not numeric") from None
        if not np.all(np.isfinite(a)):
            i = int(np.flatnonzero(~np.isfinite(a))[0])
            raise DataError(f"column {c!r} has a non-finite value {a[i]} at row {i}")
        bad = (a < 0) if c == "volume" else (a <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"column {c!r} has an invalid value {a[i]} at row {i} (prices > 0, volume >= 0)")
        arrays[c] = a
    return dates, arrays
