"""Direction labels from later bars: 0 down, 1 flat, 2 up.

For bar ``t`` of one symbol, with ``r_i = ln(C_i / C_{i-1})``::

    fwd_t   = ln(C_{t+h} / C_t)                              # forward return over h bars
    sigma_t = std(r_{t-w+1}, ..., r_t)   (ddof=1)            # trailing volatility, known at t
    band_t  = threshold * sigma_t * sqrt(h)
    label_t = 2 (up) if fwd_t > band_t, 0 (down) if fwd_t < -band_t, else 1 (flat)

With ``classes=5`` (the sentiment preset's head) a second band at ``2 * band_t`` splits
the tails: 0 strong_down (fwd < -2 band), 1 down, 2 flat, 3 up, 4 strong_up (fwd > 2 band).

The label at ``t`` reads closes ``t-w .. t`` (for the band) and ``t+h`` (for the
target). It is undefined (``<NA>``, never filled) where ``t + h`` is past the last
bar or the volatility window is incomplete (``t < w``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pymicro.errors import DataError
from pymicro.market.bars import bars_of_one_symbol, rolling_volatility

LABEL_NAMES = ("down", "flat", "up")
LABEL_NAMES_5 = ("strong_down", "down", "flat", "up", "strong_up")
DOWN, FLAT, UP = 0, 1, 2


def label_names(classes: int) -> tuple[str, ...]:
    if classes not in (3, 5):
        raise DataError(f"labels come in 3 or 5 classes, not {classes!r}")
    return LABEL_NAMES if classes == 3 else LABEL_NAMES_5


def _check(horizon, threshold, vol_window) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise DataError(f"horizon must be a positive int (bars), got {horizon!r}")
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not math.isfinite(threshold)
        or threshold < 0
    ):
        raise DataError(f"threshold must be a finite number >= 0, got {threshold!r}")
    if isinstance(vol_window, bool) or not isinstance(vol_window, (int, np.integer)) or vol_window < 2:
        raise DataError(f"vol_window must be an int >= 2 (bars), got {vol_window!r}")


def label_details(
    df: pd.DataFrame, horizon: int = 5, threshold: float = 0.5, vol_window: int = 20, classes: int = 3
) -> pd.DataFrame:
    """Per bar: ``fwd_return``, ``sigma``, ``band`` and the nullable ``label`` (Int64), indexed by date."""
    _check(horizon, threshold, vol_window)
    label_names(classes)
    dates, bars = bars_of_one_symbol(df)
    close = bars["close"]
    n = close.shape[0]
    h = int(horizon)
    fwd = np.full(n, np.nan)
    if n > h:
        fwd[: n - h] = np.log(close[h:] / close[: n - h])
    sigma = rolling_volatility(close, int(vol_window))
    band = float(threshold) * sigma * math.sqrt(h)
    defined = ~np.isnan(fwd) & ~np.isnan(band)
    with np.errstate(invalid="ignore"):
        if classes == 3:
            lab = np.full(n, FLAT, dtype=np.int64)
            lab[fwd > band] = UP
            lab[fwd < -band] = DOWN
        else:
            lab = np.full(n, 2, dtype=np.int64)
            lab[fwd > band] = 3
            lab[fwd > 2 * band] = 4
            lab[fwd < -band] = 1
            lab[fwd < -2 * band] = 0
    label = pd.array(np.where(defined, lab, 0), dtype="Int64")
    label[~defined] = pd.NA
    return pd.DataFrame(
        {"fwd_return": fwd, "sigma": sigma, "band": band, "label": label}, index=dates
    )


def direction_labels(
    df: pd.DataFrame, horizon: int = 5, threshold: float = 0.5, vol_window: int = 20
) -> pd.Series:
    """0 down / 1 flat / 2 up for each bar of one symbol (nullable Int64, index = date).

    ``horizon`` bars ahead, a band of ``threshold`` trailing standard deviations
    (over ``vol_window`` daily log returns, scaled by ``sqrt(horizon)``). The last
    ``horizon`` bars and the first ``vol_window`` bars are ``<NA>``.
    """
    return label_details(df, horizon, threshold, vol_window)["label"]


__all__ = ["DOWN", "FLAT", "LABEL_NAMES", "LABEL_NAMES_5", "UP", "direction_labels", "label_details",
           "label_names"]
