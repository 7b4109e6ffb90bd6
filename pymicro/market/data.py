"""Daily OHLCV market data: the embedded history and loaders for a user's own files.

Everything here returns one *long* frame with exactly these columns, sorted by
symbol then date, index 0..n-1::

    date (datetime64[ns], midnight) | symbol (str) | open | high | low | close | volume (float64)

    import pymicro.market.data as data
    data.embedded_symbols()                # ('AAPL', 'GOOG', 'IBM', 'MSFT', 'NASDAQ', 'SP500')
    df = data.load_embedded(["AAPL", "MSFT"])
    mine = data.load_ohlcv("prices.csv")   # or .parquet (needs pyarrow)

Nothing touches the network. Every problem raises :class:`pymicro.errors.DataError`
naming the file, column, symbol, line/row and dates at fault; the rules are in
``docs/data.md``.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

import numpy as np
import pandas as pd

from pymicro.market import datasets as _datasets
from pymicro.errors import DataError

COLUMNS = ("date", "symbol", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
NUMERIC_COLUMNS = PRICE_COLUMNS + ("volume",)
DEFAULT_MAX_GAP_DAYS = 7
GAP_POLICIES = ("raise", "warn", "ignore")

# Other spellings accepted for the required columns (after lower-casing and stripping).
_ALIASES = {"ticker": "symbol", "timestamp": "date", "datetime": "date", "vol": "volume"}
_MAX_LISTED = 5


class GapWarning(UserWarning):
    """Issued by the loaders for gaps when ``on_gap="warn"``."""


# --------------------------------------------------------------------------- embedded data


@dataclass(frozen=True)
class EmbeddedSeries:
    """One embedded symbol: where its bars come from."""

    symbol: str
    filename: str
    description: str
    ticker: str | None = None  # its ticker inside a multi-symbol file


EMBEDDED: dict[str, EmbeddedSeries] = {
    s.symbol: s
    for s in (
        EmbeddedSeries("AAPL", "bokeh_stocks.csv.gz", "Apple Inc. common stock", "AAPL"),
        EmbeddedSeries("GOOG", "bokeh_stocks.csv.gz", "Google Inc. class A (pre-2014 GOOG)", "GOOG"),
        EmbeddedSeries("IBM", "bokeh_stocks.csv.gz", "International Business Machines common stock", "IBM"),
        EmbeddedSeries("MSFT", "bokeh_stocks.csv.gz", "Microsoft Corp. common stock", "MSFT"),
        EmbeddedSeries("NASDAQ", "arch_nasdaq.csv.gz", "NASDAQ Composite index"),
        EmbeddedSeries("SP500", "arch_sp500.csv.gz", "S&P 500 index"),
    )
}


def embedded_symbols() -> tuple[str, ...]:
    """The symbols whose daily history ships inside pymicro, sorted."""
    return tuple(sorted(EMBEDDED))


def load_embedded(symbols: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Daily OHLCV of embedded symbols (all of them by default) as one long frame.

    Prices are adjusted for splits and dividends (open, high, low and close are
    multiplied by the source's adjusted-close / close ratio, scaled so the last
    bar keeps its traded price); volume is adjusted for splits only, and the two
    NASDAQ days whose source volume is 0 take the previous day's volume. The
    result is validated like a user's file and sorted by symbol, then date.
    """
    if symbols is None:
        wanted = embedded_symbols()
    else:
        wanted = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        unknown = [s for s in wanted if s not in EMBEDDED]
        if unknown:
            raise DataError(
                f"unknown embedded symbol(s) {unknown}; available: {list(embedded_symbols())}"
            )
        if not wanted:
            raise DataError("symbols is empty; pass None for every embedded symbol")
        if len(set(wanted)) != len(wanted):
            raise DataError(f"symbols lists a symbol twice: {list(wanted)}")
    frames = [_embedded_series(s) for s in sorted(wanted)]
    df = pd.concat(frames, ignore_index=True)
    return validate_ohlcv(df, source="embedded data")


def _embedded_bytes(filename: str) -> bytes:
    meta = _datasets.FILES[filename]
    with _datasets.path(filename).open("rb") as fh:
        raw = fh.read()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != meta.sha256:  # pragma: no cover - only a corrupted install
        raise DataError(
            f"embedded file {filename} is corrupted: sha256 {digest}, expected {meta.sha256}"
        )
    return raw


@functools.lru_cache(maxsize=None)
def _embedded_file(filename: str) -> pd.DataFrame:
    raw = pd.read_csv(io.BytesIO(_embedded_bytes(filename)), compression="gzip")
    raw.columns = [c.strip().lower().replace(" ", "_") for c in raw.columns]
    if "ticker" not in raw.columns:  # arch's single-series files, dates as m/d/Y
        raw["date"] = pd.to_datetime(raw["date"], format="%m/%d/%Y")
        raw["ticker"] = None
    else:
        raw["date"] = pd.to_datetime(raw["date"], format="%Y-%m-%d")
    return raw


@functools.lru_cache(maxsize=None)
def _embedded_series_cached(symbol: str) -> pd.DataFrame:
    entry = EMBEDDED[symbol]
    raw = _embedded_file(entry.filename)
    if entry.ticker is not None:
        raw = raw[raw["ticker"] == entry.ticker]
    raw = raw.sort_values("date", kind="stable").reset_index(drop=True)
    return _repair_zero_volume(adjust_ohlcv(raw, symbol))


def _embedded_series(symbol: str) -> pd.DataFrame:
    return _embedded_series_cached(symbol).copy()


def adjust_ohlcv(raw: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Adjust one symbol's unadjusted bars with its ``adj_close`` column.

    ``f_t = adj_close_t / close_t`` normalised to ``f_last = 1``; open, high, low and
    close are multiplied by ``f_t``. Splits are the days on which ``f`` jumps by a
    factor of 1.5 or more (the jump, rounded to a simple fraction, is the split
    ratio); volume before a split is multiplied by the ratios of the later splits.
    Dividends therefore adjust prices but not volume.
    """
    close = raw["close"].to_numpy(np.float64)
    factor = raw["adj_close"].to_numpy(np.float64) / close
    factor = factor / factor[-1]
    out = pd.DataFrame({"date": raw["date"].to_numpy("datetime64[ns]"), "symbol": symbol})
    for col in PRICE_COLUMNS:
        out[col] = raw[col].to_numpy(np.float64) * factor
    jump = np.ones_like(factor)
    jump[1:] = factor[1:] / factor[:-1]
    ratios = np.ones_like(factor)
    for i in np.flatnonzero(jump >= 1.5):
        ratios[i] = float(Fraction(float(jump[i])).limit_denominator(10))
    # multiplier for bar t: product of the split ratios on days after t
    later = np.cumprod(ratios[::-1])[::-1]
    mult = np.ones_like(factor)
    mult[:-1] = later[1:]
    out["volume"] = raw["volume"].to_numpy(np.float64) * mult
    return out


def _repair_zero_volume(df: pd.DataFrame) -> pd.DataFrame:
    """Embedded data only: a volume of 0 on a day that traded takes the previous bar's volume.

    The NASDAQ file reports volume 0 on 2015-05-12 and 2018-01-09 (vendor errors; the
    index traded). Carrying the previous value forward uses no later bar.
    """
    v = df["volume"].to_numpy(copy=True)
    for i in np.flatnonzero(v == 0):
        if i > 0:
            v[i] = v[i - 1]
    df["volume"] = v
    return df


# --------------------------------------------------------------------------- user files


def load_ohlcv(
    path: str | os.PathLike,
    *,
    symbol: str | None = None,
    format: str | None = None,
    sort: bool = False,
    max_gap_days: int | None = DEFAULT_MAX_GAP_DAYS,
    on_gap: str = "raise",
) -> pd.DataFrame:
    """Read a user's daily OHLCV file (CSV, optionally compressed, or Parquet) and validate it.

    Required columns (any case; ``ticker`` is accepted for ``symbol``): date, symbol,
    open, high, low, close, volume; other columns are ignored. ``symbol=`` names the
    symbol of a single-symbol file that has no symbol column. ``format`` is
    ``"csv"`` or ``"parquet"``; by default it follows the file's suffix. See
    :func:`validate_ohlcv` for the rules and ``sort``, ``max_gap_days``, ``on_gap``.
    Parquet needs the optional ``pyarrow`` package.
    """
    path = os.fspath(path)
    fmt = _file_format(path, format)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a file")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise DataError(
                f"{path}: reading Parquet needs the optional pyarrow package; "
                "install it with `pip install pyarrow` (or save the file as CSV)"
            ) from None
        try:
            frame = pd.read_parquet(path, engine="pyarrow")
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: cannot read as Parquet: {e}") from None
        line_offset = None
    else:
        try:
            frame = pd.read_csv(path, skipinitialspace=True)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty (no header, no rows)") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as e:
            raise DataError(f"{path}: cannot read as CSV: {e}") from None
        line_offset = 2  # row 0 is on line 2, after the header
    frame, adjusted = _use_adjusted_close(frame, path)
    out = validate_ohlcv(
        frame,
        symbol=symbol,
        sort=sort,
        max_gap_days=max_gap_days,
        on_gap=on_gap,
        source=path,
        line_offset=line_offset,
    )
    out.attrs["prices"] = adjusted
    return out


_ADJ_NAMES = ("adj_close", "adj close", "adjclose", "adjusted_close", "adjusted close", "adj_close_price")


def _use_adjusted_close(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, str]:
    """Open, high, low and close scaled by ``adj_close / close`` when the file has an adjusted close
    (splits and dividends then do not show up as returns); otherwise the prices as given, said so."""
    adj = [c for c in frame.columns if str(c).strip().lower() in _ADJ_NAMES]
    closes = [c for c in frame.columns if str(c).strip().lower() == "close"]
    if not adj or not closes:
        return frame, ("no adjusted-close column: prices as given (a split or dividend in them shows up as a "
                       "return)")
    a = pd.to_numeric(frame[adj[0]], errors="coerce").to_numpy(np.float64)
    c = pd.to_numeric(frame[closes[0]], errors="coerce").to_numpy(np.float64)
    bad = ~(np.isfinite(a) & (a > 0) & np.isfinite(c) & (c > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source}: {adj[0]!r} or close is not a positive number on data row {i}")
    frame = frame.copy()
    f = a / c
    for col in frame.columns:
        if str(col).strip().lower() in ("open", "high", "low", "close"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce") * f
    return frame, (f"adjusted: open, high, low and close scaled by {adj[0]} / close (volume as given)")


def _file_format(path: str, format: str | None) -> str:
    if format is not None:
        if format not in ("csv", "parquet"):
            raise DataError(f"format must be 'csv' or 'parquet', got {format!r}")
        return format
    name = path.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst", ".zip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise DataError(
        f"{path}: cannot tell the format from the suffix; use .csv (optionally .gz/.bz2/.xz/.zip), "
        ".parquet or .pq, or pass format='csv' / format='parquet'"
    )


def validate_ohlcv(
    frame: pd.DataFrame,
    *,
    symbol: str | None = None,
    sort: bool = False,
    max_gap_days: int | None = DEFAULT_MAX_GAP_DAYS,
    on_gap: str = "raise",
    source: str = "data",
    line_offset: int | None = None,
) -> pd.DataFrame:
    """Check a frame of daily bars and return it in pymicro's long format.

    Rules (each broken rule raises :class:`DataError` naming what and where):

    - the columns date, symbol, open, high, low, close, volume exist (any case);
    - dates parse, are timezone-naive or are converted to their wall-clock date,
      and fall on midnight (daily bars); symbols are non-empty;
    - open/high/low/close/volume are numeric, present and finite; prices are > 0,
      volume >= 0; low <= open, close <= high;
    - per symbol, dates are strictly increasing in the order given (``sort=True``
      sorts them first instead): an earlier date after a later one is "unsorted",
      an equal one "duplicated";
    - per symbol, consecutive bars are at most ``max_gap_days`` calendar days apart
      (``None`` turns the check off). A longer gap is handled by ``on_gap``:
      ``"raise"`` (default), ``"warn"`` (a :class:`GapWarning`, data kept) or
      ``"ignore"``.

    ``line_offset`` (2 for a CSV with a header) turns row numbers into file line
    numbers in the messages.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    if on_gap not in GAP_POLICIES:
        raise DataError(f"on_gap must be one of {GAP_POLICIES}, got {on_gap!r}")
    if max_gap_days is not None and (
        isinstance(max_gap_days, bool) or not isinstance(max_gap_days, (int, np.integer)) or max_gap_days < 1
    ):
        raise DataError(f"max_gap_days must be a positive int or None, got {max_gap_days!r}")

    def where(i: int) -> str:
        return f"line {int(i) + line_offset}" if line_offset is not None else f"row {int(i)}"

    # ---- columns
    names: dict[str, object] = {}
    for col in frame.columns:
        key = str(col).strip().lower()
        key = _ALIASES.get(key, key)
        if key in COLUMNS:
            if key in names:
                raise DataError(
                    f"{source}: columns {names[key]!r} and {col!r} both name the {key!r} column"
                )
            names[key] = col
    required = [c for c in COLUMNS if not (c == "symbol" and symbol is not None)]
    missing = [c for c in required if c not in names]
    if missing:
        hint = "; pass symbol='NAME' for a file that holds one symbol" if missing == ["symbol"] else ""
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(map(str, frame.columns)) or 'none'}){hint}"
        )
    if len(frame) == 0:
        raise DataError(f"{source}: no rows")
    frame = frame.reset_index(drop=True)

    out = pd.DataFrame(index=frame.index)

    # ---- dates
    raw_dates = frame[names["date"]]
    dates = _parse_dates(raw_dates, source, where)
    out["date"] = dates

    # ---- symbols
    if "symbol" in names:
        sym = frame[names["symbol"]]
        bad = sym.isna() | (sym.astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{source}: empty symbol at {where(i)} ({int(bad.sum())} row(s) in all)")
        out["symbol"] = sym.astype(str).str.strip().astype(object)
        if symbol is not None:
            others = sorted(set(out["symbol"]) - {symbol})
            if others:
                raise DataError(
                    f"{source}: symbol={symbol!r} was given but the file also holds {others[:_MAX_LISTED]}"
                )
    else:
        out["symbol"] = pd.Series([str(symbol)] * len(out), index=out.index, dtype=object)

    # ---- numbers
    for col in NUMERIC_COLUMNS:
        raw = frame[names[col]]
        if pd.api.types.is_bool_dtype(raw):
            raise DataError(f"{source}: column {col!r} holds booleans, expected numbers")
        values = pd.to_numeric(raw, errors="coerce")
        arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        nan = np.isnan(arr)
        if nan.any():
            raw_missing = raw.isna().to_numpy() | (raw.astype(str).str.strip() == "").to_numpy()
            nonnum = nan & ~raw_missing
            if nonnum.any():
                idx = np.flatnonzero(nonnum)
                i = int(idx[0])
                raise DataError(
                    f"{source}: non-numeric value {raw.iloc[i]!r} in column {col!r} at {where(i)}"
                    f" ({idx.size} such value(s) in that column)"
                )
            idx = np.flatnonzero(nan)
            raise DataError(
                f"{source}: missing value in column {col!r} at {where(int(idx[0]))}"
                f" ({idx.size} missing in that column)"
            )
        inf = ~np.isfinite(arr)
        if inf.any():
            i = int(np.flatnonzero(inf)[0])
            raise DataError(f"{source}: non-finite value {arr[i]} in column {col!r} at {where(i)}")
        if col == "volume":
            bad = arr < 0
            what = "negative volume"
        else:
            bad = arr <= 0
            what = f"non-positive {col} price"
        if bad.any():
            idx = np.flatnonzero(bad)
            i = int(idx[0])
            raise DataError(
                f"{source}: {what} {arr[i]} at {where(i)} ({out['symbol'].iloc[i]} "
                f"{_day(out['date'].iloc[i])}; {idx.size} such row(s))"
            )
        out[col] = arr

    # ---- bar consistency
    o, h, lo, c = (out[k].to_numpy() for k in PRICE_COLUMNS)
    for bad, what in (
        (h < lo, "high < low"),
        ((o < lo) | (o > h), "open outside [low, high]"),
        ((c < lo) | (c > h), "close outside [low, high]"),
    ):
        if bad.any():
            idx = np.flatnonzero(bad)
            i = int(idx[0])
            raise DataError(
                f"{source}: {what} at {where(i)} ({out['symbol'].iloc[i]} {_day(out['date'].iloc[i])}: "
                f"open {o[i]}, high {h[i]}, low {lo[i]}, close {c[i]}; {idx.size} such row(s))"
            )

    # ---- order and duplicates, per symbol
    out["_row"] = np.arange(len(out))
    if sort:
        out = out.sort_values(["symbol", "date"], kind="stable")
    else:
        out = out.sort_values(["symbol", "_row"], kind="stable")
    sym = out["symbol"].to_numpy()
    d = out["date"].to_numpy()
    rows = out["_row"].to_numpy()
    same = sym[1:] == sym[:-1]
    step = d[1:] - d[:-1]
    dup = same & (step == np.timedelta64(0, "ns"))
    back = same & (step < np.timedelta64(0, "ns"))
    if back.any():
        idx = np.flatnonzero(back)
        listed = "; ".join(
            f"{sym[k]} {_day(d[k + 1])} at {where(rows[k + 1])} after {_day(d[k])} at {where(rows[k])}"
            for k in idx[:_MAX_LISTED]
        )
        raise DataError(
            f"{source}: dates are not sorted (ascending, per symbol): {listed}"
            f"{_more(idx.size)}; sort the file or pass sort=True"
        )
    if dup.any():
        idx = np.flatnonzero(dup)
        listed = "; ".join(
            f"{sym[k]} {_day(d[k])} at {where(rows[k])} and {where(rows[k + 1])}" for k in idx[:_MAX_LISTED]
        )
        raise DataError(f"{source}: duplicated dates: {listed}{_more(idx.size)}")

    # ---- gaps, per symbol
    if max_gap_days is not None and on_gap != "ignore":
        gap = same & (step > np.timedelta64(int(max_gap_days), "D"))
        if gap.any():
            idx = np.flatnonzero(gap)
            listed = "; ".join(
                f"{sym[k]} {_day(d[k])} -> {_day(d[k + 1])} ({int(step[k] // np.timedelta64(1, 'D'))} days)"
                for k in idx[:_MAX_LISTED]
            )
            msg = (
                f"{source}: {idx.size} gap(s) of more than {max_gap_days} calendar days between "
                f"consecutive bars: {listed}{_more(idx.size)}"
            )
            if on_gap == "raise":
                raise DataError(
                    msg + "; fill the missing bars, pass max_gap_days=<larger> or on_gap='warn'/'ignore'"
                )
            warnings.warn(msg, GapWarning, stacklevel=3)

    out = out.drop(columns="_row").sort_values(["symbol", "date"], kind="stable")
    out = out.reset_index(drop=True)
    return out[list(COLUMNS)]


def _parse_dates(raw: pd.Series, source: str, where) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    elif pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        raise DataError(
            f"{source}: the date column holds numbers ({raw.dtype}, e.g. {raw.iloc[0]}); "
            "write dates as text such as 2024-01-31, or as datetimes"
        )
    else:
        try:
            parsed = pd.to_datetime(raw, errors="coerce", format="ISO8601")
        except (ValueError, TypeError):
            parsed = pd.Series(pd.NaT, index=raw.index)
        if parsed.isna().any():
            # not ISO 8601 throughout: let pandas infer one format for the column
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                try:
                    alt = pd.to_datetime(raw, errors="coerce")
                except (ValueError, TypeError):
                    alt = parsed
            if alt.notna().sum() > parsed.notna().sum():
                parsed = alt
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        parsed = parsed.dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        i = int(idx[0])
        value = raw.iloc[i]
        what = "missing date" if pd.isna(value) or str(value).strip() == "" else f"unparseable date {value!r}"
        raise DataError(f"{source}: {what} at {where(i)} ({idx.size} bad date(s) in all)")
    parsed = parsed.astype("datetime64[ns]")
    intraday = (parsed != parsed.dt.normalize()).to_numpy()
    if intraday.any():
        i = int(np.flatnonzero(intraday)[0])
        raise DataError(
            f"{source}: date {parsed.iloc[i]} at {where(i)} has a time of day; pymicro's loaders read "
            "daily bars (one per date, at midnight)"
        )
    return parsed


def _day(value) -> str:
    return str(np.datetime64(value, "D"))


def _more(n: int) -> str:
    return f" (and {n - _MAX_LISTED} more)" if n > _MAX_LISTED else ""


__all__ = [
    "COLUMNS",
    "DEFAULT_MAX_GAP_DAYS",
    "EMBEDDED",
    "EmbeddedSeries",
    "GapWarning",
    "adjust_ohlcv",
    "embedded_symbols",
    "load_embedded",
    "load_ohlcv",
    "validate_ohlcv",
]
