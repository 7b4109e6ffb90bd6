"""The news and reasoning tools: ``analyze_news`` (Loughran-McDonald scores of headlines) and
``psycho_symbolic_reason`` (:mod:`pymicro.agents.reasoning`)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio.to_thread
import pandas as pd
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field

from pymicro.agents.reasoning import DOMAINS, MAX_DEPTH, MAX_QUERY_CHARS, reason
from pymicro.agents.server import SYMBOL_PATTERN, Date, ModelId, parse_date, server_of, tool
from pymicro.agents.tools_evaluation import day
from pymicro.market.data import load_embedded
from pymicro.market.news import analyze_news as score_headlines
from pymicro.market.news import load_headlines, load_lm_lexicon, validate_headlines

MAX_HEADLINES = 5000  # headlines in one analyze_news call
LM_LICENCE = ("Loughran-McDonald Master Dictionary (Loughran and McDonald, University of Notre Dame): its authors "
              "provide it 'for use by individual researchers. For commercial licenses please contact us.' pymicro "
              "does not ship it; this server reads it at run time. Whoever uses the scores is responsible for "
              "its terms (docs/features.md).")
Domain = Literal[DOMAINS]  # type: ignore[valid-type]
Domains = Annotated[list[Domain], Field(min_length=1, max_length=len(DOMAINS))]


class NewsDay(BaseModel):
    date: str
    symbol: str
    n_headlines: int
    n_words: int
    n_positive: int
    n_negative: int
    n_uncertainty: int
    n_litigious: int
    tone: float = Field(description="(positive - negative) / (positive + negative) over the day's headlines; "
                                    "0 when they hold neither.")


class NewsAnalysis(BaseModel):
    days: list[NewsDay] = Field(description="One row per (symbol, session) with news, sorted by symbol and date.")
    headlines: int
    unassigned: int = Field(description="Headlines after the last session of the calendar (none counted).")
    rules: dict[str, str]
    lexicon: str
    licence: str


class Headline(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    timestamp: Annotated[str, Field(min_length=10, max_length=40, description=
                                    "ISO 8601: '2010-05-03 14:30' (in tz), '2010-05-03T18:30:00Z', or a date "
                                    "alone (taken as published after that day's close).")]
    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    headline: Annotated[str, Field(min_length=1, max_length=1000)]


class ReasoningFinding(BaseModel):
    domain: str
    feature: str
    value: float
    reading: str
    direction: int = Field(description="+1 bullish (or plausible), -1 bearish (or implausible), 0 context.")
    strength: float
    rule: str


class ReasoningOutcome(BaseModel):
    query: str
    symbol: str
    requested_date: str | None
    as_of: str | None = Field(description="The bar the answer reads (None when it cannot know).")
    status: str = Field(description="'answered' or 'cannot_know'.")
    intent: list[str]
    domains: list[str]
    depth: int
    answer: str
    confidence: float = Field(description="How well the data at as_of support the answer (docs/mcp.md), "
                                          "not a probability of a price move.")
    features: dict[str, float | None] = Field(description="The reasoning features read, at as_of.")
    inputs: dict[str, float | None] = Field(description="Their inputs (depth >= 2), at as_of.")
    findings: list[ReasoningFinding]
    synthesis: dict[str, Any]
    steps: list[str]
    limitations: list[str]
    validation: dict[str, Any] | None
    rules_version: str


HEADLINES_FILE = "headlines.csv"  # in the server's data folder: what analyze_news(symbol=...) reads


def _stored_headlines(data_dir: Path, symbol: str, lookback_hours: int, tz: str) -> pd.DataFrame:
    """The headlines of ``symbol`` in the last ``lookback_hours`` (now, in ``tz``) of the file the
    user put in the server's data folder; an error saying exactly what is needed otherwise."""
    path = data_dir / HEADLINES_FILE
    if not path.is_file():
        raise ToolError(f"analyze_news with a symbol reads the headlines you have loaded: put a CSV with columns "
                        f"timestamp, symbol, headline at {path} (the server's data folder, --data-dir), or pass "
                        "the headlines inline as `headlines`")
    frame = load_headlines(path, tz=tz)
    mine = frame[frame["symbol"].str.upper() == symbol.upper()]
    if mine.empty:
        raise ToolError(f"{path} holds no headlines for {symbol} (symbols there: "
                        f"{', '.join(sorted(set(frame['symbol']))[:20])})")
    now = pd.Timestamp.now(tz=tz).tz_localize(None)
    recent = mine[mine["timestamp"] >= now - pd.Timedelta(hours=lookback_hours)]
    if recent.empty:
        raise ToolError(f"no headlines for {symbol} in the last {lookback_hours} hours in {path} (its {len(mine)} "
                        f"headlines for {symbol} run {mine['timestamp'].min():%Y-%m-%d %H:%M}.."
                        f"{mine['timestamp'].max():%Y-%m-%d %H:%M}): widen lookback_hours or load newer headlines")
    return recent.reset_index(drop=True)


def _news(checked: pd.DataFrame, calendar: str, close_time: str, tz: str, notes: dict[str, str]) -> NewsAnalysis:
    cal = None
    if calendar == "embedded":

        cal = load_embedded(["SP500"])["date"].to_numpy("datetime64[ns]")
    lexicon = load_lm_lexicon()
    daily = score_headlines(checked, calendar=cal, close_time=close_time, lexicon=lexicon, tz=tz)
    daily = daily[daily["has_news"] > 0]
    days = [NewsDay(date=day(r.date), symbol=str(r.symbol), n_headlines=int(r.n_headlines), n_words=int(r.n_words),
                    n_positive=int(r.n_positive), n_negative=int(r.n_negative), n_uncertainty=int(r.n_uncertainty),
                    n_litigious=int(r.n_litigious), tone=float(r.tone)) for r in daily.itertuples()]
    rules = {"tz": tz, "close_time": close_time,
             "calendar": "the embedded S&P 500 trading days (1999-01-04..2018-12-31)" if cal is not None else
             "weekdays (no holiday calendar)",
             "session": "a headline counts for the first session whose close is strictly after it; a date alone "
                        "counts as published after that day's close", **notes}
    return NewsAnalysis(days=days, headlines=len(checked), unassigned=int(daily.attrs.get("unassigned", 0)),
                        rules=rules, lexicon=lexicon.source, licence=LM_LICENCE)


@tool("Score headlines with the Loughran-McDonald lexicon, per symbol and trading day")
async def analyze_news(
        headlines: Annotated[list[Headline] | None, Field(min_length=1, max_length=MAX_HEADLINES, description=
                                                          f"At most {MAX_HEADLINES} headlines, given inline.")]
        = None,
        symbol: Annotated[str | None, Field(pattern=SYMBOL_PATTERN, description=
                                            "Instead of headlines: this symbol's headlines from headlines.csv in "
                                            "the server's data folder (the seed guide's call).")] = None,
        lookback_hours: Annotated[int, Field(ge=1, le=24 * 366 * 30, description=
                                             "With symbol: the headlines of the last hours (to now).")] = 24,
        sentiment_model: Annotated[Literal["loughran_mcdonald", "enhanced"], Field(description=
                                   "The only model is the Loughran-McDonald lexicon; 'enhanced' (the seed "
                                   "guide's) is accepted and means the same.")] = "loughran_mcdonald",
        use_gpu: Annotated[bool | None, Field(description="Accepted for the seed guide; scoring is a word "
                                                          "count on the CPU.")] = None,
        calendar: Literal["weekdays", "embedded"] = "weekdays",
        close_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "16:00",
        tz: Annotated[str, Field(pattern=r"^[A-Za-z]+(/[A-Za-z0-9_+-]+){0,2}$", max_length=64)]
        = "America/New_York", *,
        ctx: Context) -> NewsAnalysis:
    """Loughran-McDonald positive, negative, uncertainty and litigious word counts and tone of the
    headlines, added up per symbol and session without look-ahead: a headline counts for the
    first session whose close (close_time in tz) is strictly after its timestamp. calendar
    'embedded' uses the S&P 500 trading days of the embedded data (holidays skipped); 'weekdays'
    any weekday. Headlines are given inline, or with `symbol` (and `lookback_hours`) read from the
    headlines.csv the user put in the server's data folder; no other file or URL is read. The
    lexicon's terms are in `licence`."""
    if (headlines is None) == (symbol is None):
        raise ToolError("give either headlines (inline) or a symbol (its headlines from headlines.csv in the "
                        "server's data folder), not both and not neither")
    notes = {"sentiment_model": "Loughran-McDonald lexicon word counts" + (
        " ('enhanced' has no other meaning here: there is one model)" if sentiment_model == "enhanced" else "")}
    if use_gpu:
        notes["use_gpu"] = "no GPU is used: scoring is a word count on the CPU"

    def work() -> NewsAnalysis:
        if headlines is not None:
            frame = pd.DataFrame([h.model_dump() for h in headlines], columns=["timestamp", "symbol", "headline"])
            checked = validate_headlines(frame, tz=tz, source="headlines")
        else:
            checked = _stored_headlines(server_of(ctx).data_dir, symbol, lookback_hours, tz)
            notes["source"] = f"{HEADLINES_FILE} in the server's data folder: {symbol}, last {lookback_hours} hours"
        return _news(checked, calendar, close_time, tz, notes)

    return await anyio.to_thread.run_sync(work)

@tool("Reason about a symbol's market psychology, quantitative and macro picture, or a model's figures")
async def psycho_symbolic_reason(
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)],
        domains: Domains | None = None,
        force_domains: Annotated[Domains | None, Field(description="The seed guide's name for domains.")]
        = None,
        depth: Annotated[int, Field(ge=1, le=MAX_DEPTH)] = 3,
        symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN, description="Default SP500.")] | None = None,
        date: Annotated[Date | None, Field(description="Default: the symbol's latest date with all twelve "
                                                       "features.")] = None,
        model_id: Annotated[ModelId | None, Field(description="A model to validate (model_validation).")]
        = None,
        analogical_reasoning: bool | None = None, *,
        ctx: Context) -> ReasoningOutcome:
    """A deterministic argument engine over pymicro's twelve reasoning features (no language
    model): each domain's features at the date are read through documented thresholds into
    findings with a direction and a strength, combined into a lean with its agreement, and
    explained step by step; depth 1-5 adds the inputs, historical analogues, stability and
    robustness. Questions about a model's figures ('does 72 % accuracy and Sharpe 1.8 make
    sense?') are checked against the symbol's majority-class rate and pymicro.evaluation.validation's
    plausibility limits, and a model_id is validated on the embedded data. It says when it cannot
    know: symbols not embedded, dates after the data, the future, news it was not given."""
    if domains and force_domains and list(domains) != list(force_domains):
        raise ToolError("domains and force_domains differ: give one of them")
    model = server_of(ctx).models.get(model_id)[1] if model_id else None
    if date is not None:
        parse_date(date, "date")
    result = await anyio.to_thread.run_sync(functools.partial(
        reason, query, domains=domains or force_domains, depth=depth, symbol=symbol, date=date, model=model,
        analogical_reasoning=analogical_reasoning))
    return ReasoningOutcome(**result.to_dict())

