"""The rows validation works on: every part of the data in date order, and their bars.

:func:`as_rows` turns a Dataset, a Split or a dict of arrays into :class:`Rows` (part 0
train / 1 validation / 2 test); :func:`price_table` reads closes; :class:`Bars` finds, for
each row, the row or bar return ``k`` bars away of the same symbol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pymicro import metrics as M
from pymicro.errors import EvaluationError
from pymicro.market.dataset import Dataset, Split


@dataclass
class Rows:
    """All rows, date-ordered, with ``part`` 0 train / 1 validation / 2 test / -1 none."""

    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    symbols: np.ndarray
    part: np.ndarray
    feature_names: tuple[str, ...] | None
    label_names: tuple[str, ...] | None
    horizon: int
    label_end: np.ndarray | None = None
    synthetic_dates: bool = False

    def idx(self, p: int) -> np.ndarray:
        return np.flatnonzero(self.part == p)


def as_rows(data, horizon, train, validation, embargo) -> Rows:

    if isinstance(data, Dataset):
        split = data.split(train=train, validation=validation, embargo=embargo)
        part = np.full(len(data), -1, np.int8)
        key = {}
        for p, ds in enumerate(split):
            for d, s in zip(ds.dates.tolist(), ds.symbols.tolist()):
                key[(d, s)] = p
        part[:] = [key.get((d, s), -1) for d, s in zip(data.dates.tolist(), data.symbols.tolist())]
        return Rows(np.asarray(data.X, np.float32), np.asarray(data.y, np.int64), np.asarray(data.dates),
                     np.asarray(data.symbols, object), part, tuple(data.feature_names),
                     tuple(data.label_names), int(data.horizon), np.asarray(data.label_end))
    parts = None
    if isinstance(data, Split) or (isinstance(data, (tuple, list)) and len(data) == 3
                                   and all(isinstance(d, Dataset) for d in data)):
        parts = list(data)
    if parts is not None:
        rows = [(p, ds) for p, ds in enumerate(parts) if len(ds)]
        X = np.concatenate([ds.X for _, ds in rows]).astype(np.float32)
        cat = lambda a: np.concatenate([getattr(ds, a) for _, ds in rows])
        part = np.concatenate([np.full(len(ds), p, np.int8) for p, ds in rows])
        dates, symbols = cat("dates"), cat("symbols").astype(object)
        order = np.lexsort((symbols.astype(str), dates))
        first = parts[0]
        return Rows(X[order], cat("y").astype(np.int64)[order], dates[order], symbols[order], part[order],
                     tuple(first.feature_names), tuple(first.label_names), int(first.horizon),
                     cat("label_end")[order])
    if isinstance(data, dict):
        return _rows_from_arrays(data, horizon)
    raise EvaluationError(f"data must be a pymicro Dataset, a Split (train, validation, test) or a dict of "
                          f"arrays (X_train, y_train, X_test, y_test, ...); got {type(data).__name__}")


def _rows_from_arrays(d: dict, horizon) -> Rows:
    known = {f"{a}_{p}" for a in ("X", "y", "dates", "symbols") for p in ("train", "val", "test")}
    unknown = sorted(set(d) - known - {"feature_names", "label_names"})
    if unknown:
        raise EvaluationError(f"unknown keys {unknown} in data; known: {sorted(known)}")
    for k in ("X_train", "y_train", "X_test", "y_test"):
        if k not in d:
            raise EvaluationError(f"data needs {k} (arrays mode: X_train, y_train, X_test, y_test; "
                                  "X_val, y_val, dates_*, symbols_* optional)")
    Xs, ys, ds, ss, ps = [], [], [], [], []
    synthetic = False
    offset = 0
    for p, name in enumerate(("train", "val", "test")):
        if f"X_{name}" not in d:
            continue
        X = np.asarray(d[f"X_{name}"], np.float32)
        y = np.asarray(d[f"y_{name}"])
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise EvaluationError(f"X_{name} {X.shape} and y_{name} {y.shape} must be (rows, features) and (rows,)")
        n = X.shape[0]
        if Xs and X.shape[1] != Xs[0].shape[1]:
            raise EvaluationError(f"X_{name} has {X.shape[1]} features but X_train has {Xs[0].shape[1]}")
        if f"dates_{name}" in d:
            dates = np.asarray(d[f"dates_{name}"], "datetime64[ns]")
        else:  # consecutive bars, one per day, in the order given
            synthetic = True
            dates = np.datetime64("2000-01-01", "ns") + (offset + np.arange(n)).astype("timedelta64[D]")
        offset += n
        sym = np.asarray(d.get(f"symbols_{name}", np.full(n, "series", object)), object)
        if dates.shape != (n,) or sym.shape != (n,):
            raise EvaluationError(f"dates_{name}/symbols_{name} need one entry per row ({n})")
        Xs.append(X), ys.append(M._labels(y, f"y_{name}")), ds.append(dates), ss.append(sym)
        ps.append(np.full(n, p, np.int8))
    X, y, dates, sym, part = (np.concatenate(a) for a in (Xs, ys, ds, ss, ps))
    order = np.lexsort((sym.astype(str), dates))
    h = 5 if horizon is None else int(horizon)
    fn = d.get("feature_names")
    ln = d.get("label_names")
    return Rows(X[order], y[order], dates[order], sym[order], part[order], tuple(fn) if fn else None,
                 tuple(ln) if ln else None, h, None, synthetic)


def price_table(prices, symbols) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{symbol: (dates datetime64[ns], closes float64)} from a long OHLCV frame, a wide frame
    (index dates, a column per symbol) or one Series of closes (one symbol)."""
    import pandas as pd

    syms = sorted(set(map(str, symbols)))
    out = {}
    if isinstance(prices, pd.Series):
        if len(syms) != 1:
            raise EvaluationError(f"prices is one Series but the data holds {len(syms)} symbols {syms}: pass a long "
                                  "OHLCV frame (date, symbol, close) or a wide frame with a column per symbol")
        s = prices.dropna().sort_index()
        out[syms[0]] = (np.asarray(s.index, "datetime64[ns]"), s.to_numpy(np.float64))
    elif isinstance(prices, pd.DataFrame):
        cols = {str(c).lower(): c for c in prices.columns}
        if "close" in cols and "date" in cols:
            sym_col = cols.get("symbol")
            groups = prices.groupby(sym_col) if sym_col is not None else [(syms[0] if len(syms) == 1 else None,
                                                                         prices)]
            for sym, g in groups:
                if sym is None:
                    raise EvaluationError("prices has no symbol column but the data holds several symbols")
                g = g.sort_values(cols["date"])
                out[str(sym)] = (np.asarray(pd.to_datetime(g[cols["date"]]), "datetime64[ns]"),
                                 g[cols["close"]].to_numpy(np.float64))
        else:
            for c in prices.columns:
                s = prices[c].dropna().sort_index()
                out[str(c)] = (np.asarray(s.index, "datetime64[ns]"), s.to_numpy(np.float64))
    else:
        raise EvaluationError(f"prices must be a pandas Series or DataFrame, got {type(prices).__name__}")
    if len(syms) == 1 and syms[0] not in out and len(out) == 1:  # one series, named differently
        out = {syms[0]: next(iter(out.values()))}
    for sym, (_, c) in out.items():
        if not np.all(np.isfinite(c) & (c > 0)):
            raise EvaluationError(f"prices for {sym} hold a non-finite or non-positive close")
    return out


class Bars:
    """Bar positions of the rows, and lookups of labels / bar returns ``k`` bars away."""

    def __init__(self, rows: Rows, table):
        n = len(rows.y)
        self.rows = rows
        self.table = table
        self.pos = np.full(n, -1, np.int64)
        self.symbols = sorted(set(map(str, rows.symbols)))
        self.maps: dict[str, np.ndarray] = {}
        sym_str = rows.symbols.astype(str)
        self.members = {s: np.flatnonzero(sym_str == s) for s in self.symbols}
        for s, idx in self.members.items():
            if table is not None and s in table:
                cal = table[s][0]
                p = np.searchsorted(cal, rows.dates[idx])
                ok = (p < cal.size) & (cal[np.minimum(p, cal.size - 1)] == rows.dates[idx])
                self.pos[idx[ok]] = p[ok]
            else:  # rank among this symbol's rows (rows are date-ordered)
                self.pos[idx] = np.arange(idx.size)
            good = idx[self.pos[idx] >= 0]
            m = np.full(int(self.pos[good].max()) + 1 if good.size else 0, -1, np.int64)
            m[self.pos[good]] = good
            self.maps[s] = m
        self.calendar = table is not None and all(s in table for s in self.symbols)

    def shifted(self, values: np.ndarray, k: int) -> np.ndarray:
        """``out[i]``: ``values`` at the row of the same symbol ``k`` bars after row ``i`` (NaN if none)."""
        out = np.full(len(values), np.nan)
        for s, idx in self.members.items():
            m = self.maps[s]
            p = self.pos[idx] + k
            ok = (self.pos[idx] >= 0) & (p >= 0) & (p < m.size)
            j = np.full(idx.size, -1)
            j[ok] = m[p[ok]]
            hit = j >= 0
            out[idx[hit]] = values[j[hit]]
        return out

    def bar_return(self, k: int) -> np.ndarray:
        """Log return of the bar ``k`` bars after each row's bar (k=0: the row's own bar)."""
        out = np.full(len(self.pos), np.nan)
        if self.table is None:
            return out
        for s, idx in self.members.items():
            if s not in self.table:
                continue
            c = self.table[s][1]
            p = self.pos[idx] + k
            ok = (self.pos[idx] >= 0) & (p >= 1) & (p < c.size)
            out[idx[ok]] = np.log(c[p[ok]] / c[p[ok] - 1])
        return out
