"""The feature look-back window: which of a preset's features read at most N bars before ``t``.

The seed's ``lookback_days`` is a feature look-back window in trading days. pymicro's
features are named and fixed (``docs/features.md``); each reads a known number of bars
before ``t`` (``ret_60`` reads 60, ``rsi_14`` 14, ``range_1`` 1). A look-back of ``N``
keeps the features that read at most ``N`` bars and drops the others, so every input the
network sees at ``t`` is a function of bars ``t - N .. t`` only; the blob records the kept
feature names, so serving computes exactly those. The history used for training is a
separate setting (``start``/``end``, or ``history_days``).

    feature_lookbacks("momentum")["ret_60"]      # 60
    features_within("momentum", 20)              # 20 of the 24 momentum features

A feature's look-back is measured, not declared: the features are computed on a synthetic
series and the look-back of a column is the number of leading bars where it is undefined
(the features' documented warm-up: rows ``0 .. lookback - 1`` are NaN).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from pymicro.errors import TrainingError
from pymicro.market.features import feature_set

__all__ = ["feature_lookbacks", "features_within", "history_span", "within_lookback"]

_SYNTHETIC_BARS = 400


@lru_cache(maxsize=None)
def _lookbacks(preset: str) -> tuple[tuple[str, int], ...]:
    fs = feature_set(preset)
    n = max(_SYNTHETIC_BARS, 4 * fs.lookback)
    rng = np.random.default_rng(0)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0.0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.004, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.004, n)))
    volume = rng.integers(1_000_000, 2_000_000, n).astype(np.float64)
    bars = pd.DataFrame({"date": pd.bdate_range("2000-01-03", periods=n), "open": open_, "high": high,
                         "low": low, "close": close, "volume": volume})
    feats = fs.compute(bars, dropna=False)
    out = []
    for name in fs.names:
        finite = np.isfinite(feats[name].to_numpy(np.float64))
        out.append((name, int(np.argmax(finite)) if finite.any() else n))
    return tuple(out)


def feature_lookbacks(preset: str) -> dict[str, int]:
    """Bars before ``t`` each feature of ``preset`` reads, in model-input order."""
    return dict(_lookbacks(preset))


def features_within(preset: str, lookback_days: int) -> tuple[str, ...]:
    """The features of ``preset`` that read at most ``lookback_days`` bars before ``t``, in order.

    :class:`TrainingError` when ``lookback_days`` is not a positive int or keeps no feature.
    """
    if isinstance(lookback_days, bool) or not isinstance(lookback_days, (int, np.integer)) or lookback_days < 1:
        raise TrainingError(f"lookback_days (the feature look-back window, in trading days) must be an int >= 1, "
                            f"got {lookback_days!r}")
    lb = feature_lookbacks(preset)
    kept = tuple(name for name, bars in lb.items() if bars <= lookback_days)
    if not kept:
        raise TrainingError(f"lookback_days={lookback_days}: no {preset} feature reads that few bars "
                            f"(the shortest reads {min(lb.values())})")
    return kept


def history_span(frame, start, end, history_days):
    """The rows of ``frame`` from ``start`` to ``end`` (dates, inclusive), then the last ``history_days`` per symbol."""
    import pandas as pd

    for key, value in (("start", start), ("end", end)):
        if value is not None:
            try:
                when = pd.Timestamp(value)
            except (TypeError, ValueError):
                raise TrainingError(f"{key} must be a date (YYYY-MM-DD), got {value!r}") from None
            frame = frame[frame["date"] >= when] if key == "start" else frame[frame["date"] <= when]
    if history_days is not None:
        if isinstance(history_days, bool) or not isinstance(history_days, int) or history_days < 1:
            raise TrainingError(f"history_days must be a positive int, got {history_days!r}")
        frame = frame.groupby("symbol", group_keys=False).tail(history_days)
    if len(frame) == 0:
        raise TrainingError(f"no bars between start={start} and end={end}")
    return frame.reset_index(drop=True)


def within_lookback(ds, preset_name: str, feature_lookback: int):
    """The dataset with only the features that read at most ``feature_lookback`` bars."""
    from dataclasses import replace

    kept = features_within(preset_name, feature_lookback)
    cols = [ds.feature_names.index(n) for n in kept]
    lb = feature_lookbacks(preset_name)
    return replace(ds, X=np.ascontiguousarray(ds.X[:, cols]), feature_names=tuple(kept),
                   meta={**ds.meta, "lookback": max(lb[n] for n in kept), "feature_lookback": int(feature_lookback)})
