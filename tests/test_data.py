"""Embedded market data and the OHLCV loaders (pymicro.market.data)."""

from __future__ import annotations

import hashlib
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from pymicro import PymicroError
from pymicro.market import datasets as embedded_files
from pymicro.market.data import (
    COLUMNS,
    GapWarning,
    embedded_symbols,
    load_embedded,
    load_ohlcv,
    validate_ohlcv,
)
from pymicro.errors import DataError


@pytest.fixture(scope="module")
def embedded() -> pd.DataFrame:
    return load_embedded()


@pytest.fixture
def good(embedded) -> pd.DataFrame:
    """Two symbols, about a year each: a well-formed long frame."""
    df = embedded[embedded["symbol"].isin(["IBM", "SP500"])]
    df = df[(df["date"] >= "2005-01-01") & (df["date"] < "2006-01-01")]
    return df.reset_index(drop=True)


def write_csv(df: pd.DataFrame, path) -> str:
    out = df.copy()
    out["date"] = out["date"].dt.strftime("%Y-%m-%d")
    out.to_csv(path, index=False)
    return str(path)


def write_csv_raw(df: pd.DataFrame, path) -> str:
    df.to_csv(path, index=False)
    return str(path)


# --------------------------------------------------------------------------- embedded data


def test_embedded_symbols_and_years(embedded):
    symbols = embedded_symbols()
    assert list(symbols) == sorted(symbols)
    assert set(embedded["symbol"]) == set(symbols)
    years = {
        s: (g["date"].max() - g["date"].min()).days / 365.25 for s, g in embedded.groupby("symbol")
    }
    long = [s for s, y in years.items() if y >= 10]
    assert len(long) >= 4, years
    assert {"AAPL", "IBM", "MSFT", "SP500", "NASDAQ"} <= set(long)
    assert all(y >= 8 for y in years.values()), years  # GOOG: Aug 2004 (IPO) .. Mar 2013


def test_embedded_values_are_sane(embedded):
    assert list(embedded.columns) == list(COLUMNS)
    assert embedded["date"].dtype == np.dtype("datetime64[ns]")
    for col in ("open", "high", "low", "close", "volume"):
        assert embedded[col].dtype == np.float64
        assert np.isfinite(embedded[col]).all()
    assert (embedded[["open", "high", "low", "close"]] > 0).all().all()
    assert (embedded["volume"] > 0).all()  # the source's two NASDAQ zero-volume days are repaired
    assert (embedded["low"] <= embedded[["open", "close"]].min(axis=1)).all()
    assert (embedded["high"] >= embedded[["open", "close"]].max(axis=1)).all()
    for sym, g in embedded.groupby("symbol"):
        assert g["date"].is_monotonic_increasing and g["date"].is_unique, sym
        assert (g["date"].diff().dt.days.dropna() <= 7).all(), sym
        r = np.log(g["close"]).diff().dropna()
        assert r.abs().max() < 0.8, sym  # AAPL's real -52 % day (2000-09-29) is the largest
        assert 0.005 < r.std() < 0.05, sym
    # sorted by symbol, then date
    assert embedded.equals(embedded.sort_values(["symbol", "date"]).reset_index(drop=True))


def test_embedded_prices_are_split_adjusted(embedded):
    """AAPL 2:1 on 2000-06-21 and 2005-02-28, MSFT 2:1 on 2003-02-18: no -69 % day, no volume step."""
    for sym, day in (("AAPL", "2000-06-21"), ("AAPL", "2005-02-28"), ("MSFT", "2003-02-18")):
        g = embedded[embedded["symbol"] == sym].set_index("date")
        i = g.index.get_loc(pd.Timestamp(day))
        r = np.log(g["close"].iloc[i] / g["close"].iloc[i - 1])
        assert abs(r) < 0.15, (sym, day, r)
        before = g["volume"].iloc[i - 20 : i].median()
        after = g["volume"].iloc[i + 1 : i + 21].median()
        assert 0.4 < after / before < 2.5, (sym, day, before, after)
    # the last bar keeps its traded price
    last = embedded[embedded["symbol"] == "AAPL"].iloc[-1]
    assert last["close"] == pytest.approx(430.47)


def test_embedded_subset_and_unknown(embedded):
    one = load_embedded("MSFT")
    assert set(one["symbol"]) == {"MSFT"}
    two = load_embedded(["SP500", "AAPL"])
    assert list(pd.unique(two["symbol"])) == ["AAPL", "SP500"]
    pd.testing.assert_frame_equal(one, embedded[embedded["symbol"] == "MSFT"].reset_index(drop=True))
    with pytest.raises(DataError, match="TSLA"):
        load_embedded(["AAPL", "TSLA"])


def test_embedded_files_match_checksums_and_notice():
    for name, meta in embedded_files.FILES.items():
        raw = embedded_files.path(name).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == meta.sha256, name
        assert len(raw) < (1_000_000 if name in embedded_files.INTRADAY_FILES else 400_000), name
    notice = embedded_files.path("NOTICE.txt").read_text()
    for needle in ("BSD", "NCSA", "bokeh_sampledata", "arch 8.0.0", "public domain", "Kevin Sheppard"):
        assert needle in notice, needle


# --------------------------------------------------------------------------- good files


def test_csv_roundtrip(good, tmp_path):
    loaded = load_ohlcv(write_csv(good, tmp_path / "bars.csv"))
    pd.testing.assert_frame_equal(loaded, good, check_exact=False, rtol=1e-12)
    gz = load_ohlcv(write_csv(good, tmp_path / "bars.csv.gz"))
    pd.testing.assert_frame_equal(gz, loaded)


def test_csv_any_case_extra_columns_and_single_symbol(good, tmp_path):
    one = good[good["symbol"] == "IBM"].drop(columns="symbol")
    one = one.rename(columns=str.upper).assign(ADJ_CLOSE=1.0)
    path = write_csv(one.rename(columns={"DATE": "date"}), tmp_path / "ibm.csv")
    with pytest.raises(DataError, match="missing column.*symbol.*symbol='NAME'"):
        load_ohlcv(path)
    loaded = load_ohlcv(path, symbol="IBM")
    assert set(loaded["symbol"]) == {"IBM"} and len(loaded) == len(one)
    assert list(loaded.columns) == list(COLUMNS)


def test_sort_option(good, tmp_path):
    shuffled = good.sample(frac=1.0, random_state=0)
    path = write_csv(shuffled, tmp_path / "shuffled.csv")
    with pytest.raises(DataError, match="not sorted"):
        load_ohlcv(path)
    in_order = load_ohlcv(write_csv(good, tmp_path / "g.csv"))
    pd.testing.assert_frame_equal(load_ohlcv(path, sort=True), in_order)


def test_parquet_roundtrip(good, tmp_path):
    path = tmp_path / "bars.parquet"
    good.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_ohlcv(path), good)
    # a date32 column and an integer volume column read the same
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "Date": pa.array([d.date() for d in good["date"]], pa.date32()),
            "Ticker": good["symbol"].tolist(),
            **{c: good[c] for c in ("open", "high", "low", "close")},
            "volume": good["volume"].astype("int64"),
        }
    )
    pq.write_table(table, tmp_path / "d32.pq")
    pd.testing.assert_frame_equal(load_ohlcv(tmp_path / "d32.pq"), good)
    bad = good.copy()
    bad.loc[3, "high"] = bad.loc[3, "low"] / 2
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="high < low at row 3"):
        load_ohlcv(tmp_path / "bad.parquet")


def test_parquet_without_pyarrow_says_how_to_install(good, tmp_path, monkeypatch):
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"PAR1 not really")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(PymicroError, match="pip install pyarrow"):
        load_ohlcv(path)


# --------------------------------------------------------------------------- broken files


def _broken(tmp_path, df, name="bad.csv"):
    return write_csv(df, tmp_path / name)


def test_missing_column_is_named(good, tmp_path):
    path = _broken(tmp_path, good.drop(columns=["volume", "low"]))
    with pytest.raises(DataError, match=r"missing column\(s\) low, volume") as e:
        load_ohlcv(path)
    assert isinstance(e.value, PymicroError) and isinstance(e.value, ValueError)
    assert "bad.csv" in str(e.value)


def test_unsorted_dates_are_named(good, tmp_path):
    df = good.copy()
    ibm = df.index[df["symbol"] == "IBM"]
    i, j = ibm[10], ibm[11]
    df.loc[[i, j]] = df.loc[[j, i]].to_numpy()
    with pytest.raises(DataError, match="not sorted") as e:
        load_ohlcv(_broken(tmp_path, df))
    msg = str(e.value)
    assert "IBM" in msg and _d(good.loc[i, "date"]) in msg and _d(good.loc[j, "date"]) in msg
    assert f"line {j + 2}" in msg  # the row that steps back, as a file line


def test_duplicated_dates_are_named(good, tmp_path):
    df = good.copy()
    sp = df.index[df["symbol"] == "SP500"]
    df.loc[sp[5], "date"] = df.loc[sp[4], "date"]
    with pytest.raises(DataError, match="duplicated dates") as e:
        load_ohlcv(_broken(tmp_path, df))
    assert "SP500" in str(e.value) and _d(good.loc[sp[4], "date"]) in str(e.value)


def test_gaps_raise_by_default_and_are_named(good, tmp_path):
    ibm = good[good["symbol"] == "IBM"]
    cut = ibm.iloc[50:60].index  # two trading weeks missing
    path = _broken(tmp_path, good.drop(index=cut))
    before, after = _d(ibm.iloc[49]["date"]), _d(ibm.iloc[60]["date"])
    with pytest.raises(DataError, match="gap") as e:
        load_ohlcv(path)
    assert "IBM" in str(e.value) and before in str(e.value) and after in str(e.value)
    with pytest.warns(GapWarning, match=before):
        kept = load_ohlcv(path, on_gap="warn")
    assert len(kept) == len(good) - 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_ohlcv(path, on_gap="ignore")) == len(good) - 10
        assert len(load_ohlcv(path, max_gap_days=30)) == len(good) - 10
        assert len(load_ohlcv(path, max_gap_days=None)) == len(good) - 10
    with pytest.raises(DataError, match="on_gap"):
        load_ohlcv(path, on_gap="fill")


def test_non_numeric_value_is_named(good, tmp_path):
    df = good.astype({"close": object})
    df.loc[7, "close"] = "n/a?"
    with pytest.raises(DataError, match=r"non-numeric value 'n/a\?' in column 'close' at line 9"):
        load_ohlcv(_broken(tmp_path, df))


def test_missing_value_is_named(good, tmp_path):
    df = good.copy()
    df.loc[3, "volume"] = np.nan
    with pytest.raises(DataError, match=r"missing value in column 'volume' at line 5"):
        load_ohlcv(_broken(tmp_path, df))


@pytest.mark.parametrize(
    "column, value, pattern",
    [
        ("open", 0.0, "non-positive open price"),
        ("close", -1.0, "non-positive close price"),
        ("volume", -5.0, "negative volume"),
        ("low", 1e9, "high < low"),
        ("close", 1e9, "close outside"),
    ],
)
def test_bad_prices_are_named(good, tmp_path, column, value, pattern):
    df = good.copy()
    df.loc[12, column] = value
    with pytest.raises(DataError, match=pattern) as e:
        load_ohlcv(_broken(tmp_path, df))
    assert "line 14" in str(e.value)


def test_bad_dates(good, tmp_path):
    df = good.astype({"date": object})
    df["date"] = good["date"].dt.strftime("%Y-%m-%d")
    df.loc[2, "date"] = "yesterday"
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"unparseable date 'yesterday' at line 4"):
        load_ohlcv(tmp_path / "d.csv")
    numeric = good.assign(date=good["date"].dt.strftime("%Y%m%d").astype(int))
    with pytest.raises(DataError, match="date column holds numbers"):
        load_ohlcv(write_csv_raw(numeric, tmp_path / "n.csv"))
    us = good.assign(date=good["date"].dt.strftime("%m/%d/%Y"))
    pd.testing.assert_frame_equal(load_ohlcv(write_csv_raw(us, tmp_path / "us.csv")), good)
    intraday = good.copy()
    intraday.loc[0, "date"] += pd.Timedelta(hours=10)
    with pytest.raises(DataError, match="time of day"):
        validate_ohlcv(intraday)


def test_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_ohlcv(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_ohlcv(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("date,symbol,open,high,low,close,volume\n")
    with pytest.raises(DataError, match="no rows"):
        load_ohlcv(tmp_path / "header.csv")
    (tmp_path / "bars.xlsx").write_text("x")
    with pytest.raises(DataError, match="suffix"):
        load_ohlcv(tmp_path / "bars.xlsx")


def _d(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d")
