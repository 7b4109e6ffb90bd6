"""Features and labels stacked into arrays, and a chronological split with an embargo.

    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset

    ds = make_dataset(load_embedded(), preset="momentum", horizon=5)
    train, val, test = ds.split(train=0.7, validation=0.15)      # by date, never shuffled
    train.X, train.y                                              # float32 (n, 24), int64 (n,)

Rows are ordered by date, then symbol. A row is bar ``t`` of one symbol: its
features use bars up to ``t`` and its label the close at ``t + horizon`` (its
``label_end`` date). The split cuts the calendar, not the rows: every symbol
shares the same cut dates, and ``embargo`` dates before each cut belong to no
part, so no label of an earlier part reaches into a later one (docs/features.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from pymicro.market.data import validate_ohlcv
from pymicro.errors import DataError
from pymicro.market.features import feature_set
from pymicro.market.labels import LABEL_NAMES, _check, label_details, label_names
from pymicro.runtime.spec import preset as preset_spec


@dataclass(frozen=True, eq=False)
class Dataset:
    """Model inputs and targets, one row per (symbol, bar), ordered by date then symbol."""

    X: np.ndarray  # float32 (n, n_features)
    y: np.ndarray  # int64 (n,), 0 down / 1 flat / 2 up
    dates: np.ndarray  # datetime64[ns] (n,): the bar t whose features are X
    symbols: np.ndarray  # object (n,) of str
    label_end: np.ndarray  # datetime64[ns] (n,): the date of bar t + horizon, the last bar the label reads
    feature_names: tuple[str, ...]
    label_names: tuple[str, ...] = LABEL_NAMES
    preset: str = "momentum"
    horizon: int = 5
    threshold: float = 0.5
    vol_window: int = 20
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        span = f"{_day(self.dates.min())}..{_day(self.dates.max())}" if len(self) else "empty"
        return (
            f"Dataset(preset={self.preset!r}, rows={len(self)}, features={len(self.feature_names)}, "
            f"symbols={sorted(set(self.symbols.tolist()))}, dates={span}, horizon={self.horizon})"
        )

    def take(self, index) -> "Dataset":
        """The rows selected by a boolean mask or an index array, order kept."""
        return replace(
            self,
            X=self.X[index],
            y=self.y[index],
            dates=self.dates[index],
            symbols=self.symbols[index],
            label_end=self.label_end[index],
            meta=dict(self.meta),
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.label_names))
        return {name: int(k) for name, k in zip(self.label_names, counts, strict=True)}

    def class_balance(self) -> dict[str, float]:
        n = max(len(self), 1)
        return {name: k / n for name, k in self.class_counts().items()}

    def to_frame(self) -> pd.DataFrame:
        """date, symbol, the features, label and label_end as one DataFrame."""
        df = pd.DataFrame(self.X, columns=list(self.feature_names))
        df.insert(0, "symbol", self.symbols)
        df.insert(0, "date", self.dates)
        df["label"] = self.y
        df["label_end"] = self.label_end
        return df

    def split(self, train: float = 0.7, validation: float = 0.15, embargo: int | None = None) -> "Split":
        """Chronological train / validation / test split; see :func:`split_chronological`."""
        return split_chronological(self, train=train, validation=validation, embargo=embargo)


@dataclass(frozen=True, eq=False)
class Split:
    """Three consecutive, non-overlapping date ranges of a :class:`Dataset`.

    ``validation_start`` and ``test_start`` are the cut dates; the ``embargo``
    dates before each cut belong to no part. Unpacks as ``train, validation, test``.
    """

    train: Dataset
    validation: Dataset
    test: Dataset
    validation_start: np.datetime64
    test_start: np.datetime64
    embargo: int

    def __iter__(self):
        return iter((self.train, self.validation, self.test))


def make_dataset(
    df_long: pd.DataFrame,
    preset: str = "momentum",
    horizon: int = 5,
    threshold: float = 0.5,
    vol_window: int = 20,
    *,
    symbol: str | None = None,
    feature_options: dict | None = None,
) -> Dataset:
    """Stack the ``preset`` features and the direction labels of every symbol in ``df_long``.

    ``df_long`` is pymicro's long OHLCV format (see :mod:`pymicro.market.data`); ``symbol``
    names the symbol of a frame without a symbol column. It is validated (columns,
    numbers, order, duplicates; gaps are the loaders' concern). Per symbol the first
    ``lookback`` bars (features incomplete) and the last ``horizon`` bars (label
    undefined) give no row. Labels: see :func:`pymicro.market.labels.direction_labels`, in as
    many classes as the preset's head has (3, or 5 for sentiment). ``feature_options`` go
    to the feature set (e.g. ``{"news": pymicro.market.news.analyze_news(headlines)}`` for sentiment).
    """
    _check(horizon, threshold, vol_window)
    fs = feature_set(preset)

    classes = preset_spec(preset).n_classes
    bars = validate_ohlcv(df_long, symbol=symbol, max_gap_days=None, source="make_dataset input")
    h = int(horizon)
    parts = []
    short = []
    limits: list[str] = []
    for sym, g in bars.groupby("symbol", sort=True):
        feats = fs.compute(g, dropna=False, **(feature_options or {}))
        lab = label_details(g, h, threshold, vol_window, classes)["label"]
        dates = g["date"].to_numpy("datetime64[ns]")
        end = np.full(dates.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
        end[: max(len(dates) - h, 0)] = dates[h:]
        Xs = feats.to_numpy(np.float64)
        labelled = lab.notna().to_numpy()
        keep = np.isfinite(Xs).all(axis=1) & labelled
        after = labelled.copy()
        after[: fs.lookback] = False
        after[: int(np.flatnonzero(keep)[-1]) + 1 if keep.any() else 0] = False
        if after.sum() > 20:  # labelled bars past the warm-up that give no row: say which inputs stop them
            cols = [feats.columns[j] for j in np.flatnonzero(~np.isfinite(Xs[after]).all(axis=0))]
            when = (f"rows stop at {np.datetime64(dates[keep][-1], 'D')}" if keep.any()
                    else "no row at all")
            limits.append(f"{sym}: {when}; {int(after.sum())} later labelled bars have no value for "
                          f"{', '.join(cols[:6])}{' and %d more' % (len(cols) - 6) if len(cols) > 6 else ''}"
                          + (" (the market and macro inputs: the shipped series end in 2019-01; pass "
                             "feature_options={'macro': MacroInputs(...)} with your own, or {'macro': 'none'} to "
                             "drop them)" if preset == "sentiment" and any(
                                 c.startswith(("mkt_", "usd_", "short_rate", "core_", "real_")) for c in cols)
                             else ""))
        if not keep.any():
            short.append(f"{sym} ({len(g)} bars)")
            continue
        parts.append(
            (
                dates[keep],
                np.full(int(keep.sum()), sym, dtype=object),
                Xs[keep],
                lab.to_numpy(dtype=np.int64, na_value=-1)[keep],
                end[keep],
            )
        )
    need = fs.lookback + h + 1
    if not parts:
        if limits:
            raise DataError("no usable rows: " + "; ".join(limits))
        raise DataError(
            f"no usable rows: each symbol needs more than lookback + horizon = {fs.lookback} + {h} bars "
            f"(at least {need}); got {', '.join(short)}"
        )
    if limits:
        import warnings

        warnings.warn("the data's span is limited by its inputs: " + "; ".join(limits), stacklevel=2)
    dates = np.concatenate([p[0] for p in parts])
    symbols = np.concatenate([p[1] for p in parts])
    order = np.lexsort((symbols.astype(str), dates))  # by date, then symbol
    X = np.concatenate([p[2] for p in parts])[order]
    return Dataset(
        X=np.ascontiguousarray(X, dtype=np.float32),
        y=np.concatenate([p[3] for p in parts])[order].astype(np.int64),
        dates=dates[order],
        symbols=symbols[order],
        label_end=np.concatenate([p[4] for p in parts])[order],
        feature_names=fs.names,
        label_names=label_names(classes),
        preset=preset,
        horizon=h,
        threshold=float(threshold),
        vol_window=int(vol_window),
        meta={"lookback": fs.lookback, "skipped_symbols": short, "span_limits": limits},
    )


def split_chronological(
    ds: Dataset, train: float = 0.7, validation: float = 0.15, embargo: int | None = None
) -> Split:
    """Cut ``ds`` by date into train, validation and test (the rest), never shuffling.

    The cut dates are the dates of the rows at positions ``round(n * train)`` and
    ``round(n * (train + validation))`` of the ``n`` rows in date order, so the parts
    hold about those fractions of the rows; every symbol gets the same cut dates
    (all rows of a date go to the same part). The last
    ``embargo`` dates before each cut (default: ``ds.horizon``) are dropped, and any
    row whose label reads a bar on or after the next part's first date is dropped
    too (purge), so no label of an earlier part overlaps a later part.
    """
    for name, v in (("train", train), ("validation", validation)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not 0 < v < 1:
            raise DataError(f"{name} must be a fraction in (0, 1), got {v!r}")
    if train + validation >= 1:
        raise DataError(f"train + validation must leave a test part: {train} + {validation} >= 1")
    gap = ds.horizon if embargo is None else embargo
    if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 0:
        raise DataError(f"embargo must be an int >= 0 (dates), got {embargo!r}")
    days = np.unique(ds.dates)
    n, rows = days.shape[0], len(ds)
    order = np.sort(ds.dates)
    # cut dates: the dates of the rows at these positions of the date-ordered rows
    a = int(np.searchsorted(days, order[min(int(round(rows * train)), rows - 1)]))
    b = int(np.searchsorted(days, order[min(int(round(rows * (train + validation))), rows - 1)]))
    if a - gap < 1 or b - gap <= a or b >= n:
        raise DataError(
            f"too few dates ({n} dates, {rows} rows) to split {train}/{validation}/"
            f"{1 - train - validation:.3g} with an embargo of {gap} dates before each cut"
        )
    val_start, test_start = days[a], days[b]
    d, end = ds.dates, ds.label_end
    tr = (d < days[a - gap]) & (end < val_start)
    va = (d >= val_start) & (d < days[b - gap]) & (end < test_start)
    te = d >= test_start
    return Split(ds.take(tr), ds.take(va), ds.take(te), val_start, test_start, int(gap))


def _day(value) -> str:
    return str(np.datetime64(value, "D"))


__all__ = ["Dataset", "Split", "make_dataset", "split_chronological"]
