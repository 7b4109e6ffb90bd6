"""psycho_symbolic_reason: a small, deterministic argument engine over pymicro's own features.

    from pymicro.agents.reasoning import reason
    r = reason("What is the market psychology for AAPL?", domains=["market_psychology"], symbol="AAPL")
    r.answer, r.confidence, r.features, r.findings, r.steps, r.limitations

The seed guide asks a reasoning service about market psychology, quantitative patterns
and macro factors. Here nothing is generated: every statement comes from a number that
pymicro's feature code (:mod:`pymicro.market.reasoning_features`) computes on the embedded data
at one date, read through a rule written down in :data:`RULES`, then combined by fixed
arithmetic. No language model, no network, no randomness: the same question gives the
same answer.

1. **Findings.** Each domain maps to three of the twelve reasoning features; each
   feature has a rule (a neutral band and what a reading above or below it means). A
   reading outside the band is a finding with a direction (+1 bullish, -1 bearish, 0
   context) and a strength (``|value|``, capped at 1).
2. **Synthesis.** ``lean = sum(direction * strength) / sum(strength)`` over the
   directional findings; ``agreement = |lean|`` (1: all point the same way, 0: they
   cancel); ``support`` = the directional strength summed over the findings, divided by
   the number of directional features read (how much of the evidence asked for speaks).
3. Depth 2 adds the inputs behind each composite; depth 3 historical analogues (how
   often the close was higher ``HORIZON`` bars later when the same regime held before,
   non-overlapping windows that ended by the date); depth 4 the lean 5 and 20 bars
   earlier; depth 5 which single finding, if removed, would change the lean.
4. **Confidence** ``= coverage x (0.3 + 0.7 agreement x support)`` (x ``0.5 + 0.5
   regime_consistency`` when the synthesis domain is asked for; x ``1 - p`` of the
   analogues when the query asks about the future). It says how well the data at that
   date support the answer, never the probability of a price move.

Questions about a model or its figures ("does 72 % accuracy with Sharpe 1.8 make
sense?") go to the ``model_validation`` domain: the figures are read from the query and
checked against the majority-class rate of the symbol's own labels and the plausibility
limits of :data:`pymicro.evaluation.validation.FREQUENCIES`; a model, when given, is run through
:func:`pymicro.evaluation.validation.validate` on the embedded data.

It cannot know what it was not given: news (pass headlines to ``analyze_news``), dates
after the embedded data, symbols that are not embedded, or the future. Those answers say
so with confidence 0. Rules and thresholds: ``docs/mcp.md``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pymicro.errors import PymicroError
from pymicro.market.features import REASONING_FEATURES
from pymicro.evaluation.validation import FREQUENCIES
from pymicro.evaluation.validation import validate
from pymicro.market.bars import bars_of_one_symbol
from pymicro.market.data import embedded_symbols as listed
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.market.features import FEATURE_SETS
from pymicro.market.labels import label_details
from pymicro.market.macro import MacroInputs
from pymicro.market.reasoning_features import reasoning_arrays
from pymicro.market.technical import momentum_arrays
from pymicro.metrics import binomial_test

DOMAINS = ("market_psychology", "quantitative_trading", "macro_economics", "synthesis", "model_validation")
MARKET_DOMAINS = DOMAINS[:3]
MAX_DEPTH = 5
MAX_QUERY_CHARS = 2000
HORIZON = 5  # bars: the analogue horizon and the label horizon of the validation checks
DEFAULT_SYMBOL = "SP500"
RULES_VERSION = "1"
ALIASES = {"GOOGL": "GOOG"}  # the embedded GOOG is the class A share that trades as GOOGL since 2014


@dataclass(frozen=True)
class Rule:
    """How one feature is read: ``value <= low`` gives ``low_reading`` (direction ``low_dir``),
    ``value >= high`` gives ``high_reading``; in between it is neutral (no finding)."""

    feature: str
    domain: str
    low: float
    high: float
    low_reading: str
    high_reading: str
    low_dir: int
    high_dir: int
    inputs: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    Rule("fear_greed_index", "market_psychology", -0.25, 0.25, "fear: the market is below its trend, in "
         "drawdown or volatile", "greed: the market is above its trend, near its high and calm", -1, 1,
         ("mkt_ret_20", "mkt_vol_20", "tech_vs_broad_20")),
    Rule("herd_behavior_strength", "market_psychology", 0.35, 0.6, "weak herding: the symbol moves on its "
         "own", "strong herding: it moves with the market on one-sided volume", 0, 0,
         ("corr_60", "signed_volume_20")),
    Rule("contrarian_signal", "market_psychology", -0.33, 0.33, "contrarian sell set-up: greed and "
         "overbought", "contrarian buy set-up: fear and oversold", -1, 1, ("rsi_14", "ret_5", "fear_greed_index")),
    Rule("momentum_score", "quantitative_trading", -0.2, 0.2, "downtrend over one to six months",
         "uptrend over one to six months", -1, 1, ("ret_20", "ret_60", "vol_60")),
    Rule("volatility_regime", "quantitative_trading", 0.2, 0.8, "calm: volatility low against its last 120 "
         "days", "turbulent: volatility high against its last 120 days", 0, 0, ("vol_20",)),
    Rule("correlation_stability", "quantitative_trading", 0.8, 0.95, "unstable link to the market",
         "stable link to the market", 0, 0, ("corr_60", "beta_60")),
    Rule("interest_rate_impact", "macro_economics", -0.25, 0.25, "rates rose over six months: a headwind",
         "rates fell over six months: a tailwind", -1, 1, ("short_rate", "short_rate_chg_6m")),
    Rule("dollar_strength", "macro_economics", -0.25, 0.25, "weak dollar against its year: a tailwind "
         "(convention)", "strong dollar against its year: a headwind (convention)", 1, -1,
         ("usd_index", "usd_index_ret_20")),
    Rule("economic_cycle_phase", "macro_economics", -0.2, 0.2, "contraction: equities below trend, rates and "
         "inflation falling", "expansion: equities above trend, rates and inflation rising", -1, 1,
         ("market_trend_200", "short_rate_chg_12m", "core_inflation_chg_12m")),
    Rule("cross_domain_divergence", "synthesis", 0.15, 0.4, "the three domain scores are close",
         "the three domain scores diverge", 0, 0, ()),
    Rule("signal_agreement_score", "synthesis", -0.99, 0.99, "all three domains point down",
         "all three domains point up", -1, 1, ()),
    Rule("regime_consistency", "synthesis", 0.5, 0.8, "the regime is changing", "the regime is settled", 0, 0,
         ("momentum_score", "volatility_regime")),
)
RULE_OF = {r.feature: r for r in RULES}
assert tuple(r.feature for r in RULES) == REASONING_FEATURES

_DOMAIN_WORDS = {
    "market_psychology": r"psych|sentiment|fear|greed|herd|crowd|contrarian|emotion|mood|panic|euphori",
    "quantitative_trading": r"quant|momentum|trend|volatil|pattern|correlat|technical|statistic|regime",
    "macro_economics": r"macro|interest|rate|inflation|dollar|econom|\bfed\b|cycle|recession",
    "synthesis": r"synthes|overall|combine|agree|diverg|consisten",
}
_VALIDATION = re.compile(r"make sense|plausib|realistic|too good|accura|sharpe|win rate|hit rate|overfit|leak|"
                         r"valid|trust|believ|figure|backtest", re.IGNORECASE)
_FORECAST = re.compile(r"\bwill\b|tomorrow|next (day|week|month|quarter|year)|forecast|predict|going to|"
                       r"price target|outlook|future", re.IGNORECASE)
_BEFORE_DATA = re.compile(r"before (the )?(data|bar|price|quote|tick)s? (arrive|come|exist)|"
                          r"\d+\s*(ms|milliseconds?|s|seconds?) (before|ahead of) (the )?(data|market)", re.IGNORECASE)


@dataclass
class Finding:
    domain: str
    feature: str
    value: float
    reading: str
    direction: int  # +1 bullish, -1 bearish, 0 context
    strength: float  # in [0, 1]
    rule: str


@dataclass
class Reasoning:
    """What :func:`reason` returns; :meth:`to_dict` is strict JSON (NaN as None)."""

    query: str
    symbol: str
    requested_date: str | None
    as_of: str | None
    status: str  # "answered" or "cannot_know"
    intent: list[str]
    domains: list[str]
    depth: int
    answer: str
    confidence: float
    features: dict[str, float | None] = field(default_factory=dict)
    inputs: dict[str, float | None] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    synthesis: dict = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    validation: dict | None = None
    rules_version: str = RULES_VERSION

    def to_dict(self) -> dict:
        return _json(asdict(self))


def _json(v):
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class SymbolTable:
    """One symbol's reasoning features and their inputs on every bar (NaN where undefined)."""

    symbol: str
    dates: np.ndarray  # datetime64[ns]
    close: np.ndarray
    labels: np.ndarray  # 3-class direction labels, horizon HORIZON (pymicro.market.labels); -1 where undefined
    values: pd.DataFrame  # index: dates; the 12 features, then the inputs

    def row(self, i: int) -> dict[str, float]:
        return {k: float(v) for k, v in self.values.iloc[i].items()}


def symbol_table(bars: pd.DataFrame, symbol: str, macro=None) -> SymbolTable:
    """The table of one symbol's bars, computed by the same calls as
    :func:`pymicro.market.reasoning_features.reasoning_features` (plus the inputs it reads)."""

    dates, b = bars_of_one_symbol(bars)
    d64 = np.asarray(dates, "datetime64[ns]")
    macro = MacroInputs.embedded() if macro is None else macro
    macro_cols = macro.aligned(d64)
    m = momentum_arrays(b)
    f = reasoning_arrays(b, macro_cols, m)
    pool = {**macro_cols, **m, **f}
    names = list(REASONING_FEATURES) + sorted({i for r in RULES for i in r.inputs} - set(REASONING_FEATURES))
    labels = label_details(bars, HORIZON)["label"].to_numpy(dtype=np.int64, na_value=-1)
    return SymbolTable(symbol, d64, b["close"], labels, pd.DataFrame({k: pool[k] for k in names}, index=dates))


@functools.lru_cache(maxsize=8)
def embedded_table(symbol: str) -> SymbolTable:

    return symbol_table(load_embedded([symbol]), symbol)


def embedded_symbols() -> tuple[str, ...]:

    return listed()


NAMES = {"APPLE": "AAPL", "GOOGLE": "GOOG", "ALPHABET": "GOOG", "MICROSOFT": "MSFT", "S&P 500": "SP500",
         "S&P500": "SP500", "S&P": "SP500", "SPX": "SP500", "SPY": "SP500", "IXIC": "NASDAQ"}
"""Names and tickers a query may use for an embedded series (besides the symbols themselves)."""
NOT_TICKERS = frozenset({"AI", "US", "USA", "UK", "EU", "CEO", "CFO", "GDP", "CPI", "PPI", "FED", "FOMC", "ECB", "ETF",
                         "IPO", "EPS", "PE", "ROI", "RSI", "MACD", "ATR", "ML", "NN", "OK", "Q1", "Q2", "Q3", "Q4",
                         "YOY", "QOQ", "API", "MCP", "LLM", "USD", "EUR", "VS", "I", "A"})
"""Upper-case words of finance prose that are not tickers."""
_TICKER = re.compile(r"(?<![\w&])\$?([A-Z][A-Z0-9]{0,5}(?:\.[A-Z])?)(?![\w&])")
_DATE_IN_QUERY = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


def symbol_from_query(query: str) -> str | None:
    """The symbol a query names: an embedded symbol, an alias or a company name (``Apple``,
    ``S&P 500``); else an upper-case ticker-like word it cannot resolve (``TSLA``), so the answer
    is 'cannot know' rather than about another series; None when it names none."""
    upper = query.upper()
    for name in sorted(NAMES, key=len, reverse=True):
        if re.search(r"(?<![A-Z0-9])" + re.escape(name) + r"(?![A-Z0-9])", upper):
            return NAMES[name]
    unknown = None
    for token in _TICKER.findall(query):
        if token in embedded_symbols() or token in ALIASES:
            return ALIASES.get(token, token)
        if unknown is None and len(token) >= 2 and token not in NOT_TICKERS:
            unknown = token
    return unknown


def resolve_symbol(symbol: str | None) -> str:
    s = str(symbol or DEFAULT_SYMBOL).strip().upper()
    return ALIASES.get(s, s)


def _day(d) -> str:
    return str(np.datetime64(d, "D"))


# --------------------------------------------------------------------------- rules


def read_feature(rule: Rule, value: float) -> Finding | None:
    """The finding of one feature at one date, or None inside the neutral band (or NaN)."""
    if not math.isfinite(value) or rule.low < value < rule.high:
        return None
    high = value >= rule.high
    reading, direction = (rule.high_reading, rule.high_dir) if high else (rule.low_reading, rule.low_dir)
    bound = f">= {rule.high:g}" if high else f"<= {rule.low:g}"
    if direction:
        strength = min(1.0, abs(value))
    else:  # context: how far past the threshold, as a share of the way to the end of [0, 1]
        edge, end = (rule.high, 1.0) if high else (rule.low, 0.0)
        strength = min(1.0, abs(value - edge) / max(abs(end - edge), 1e-9)) if edge != end else 1.0
    return Finding(rule.domain, rule.feature, round(value, 6), reading, direction, round(strength, 4),
                   f"{rule.feature} {bound}")


def findings_at(row: dict[str, float], domains) -> list[Finding]:
    return [f for r in RULES if r.domain in domains and (f := read_feature(r, row[r.feature])) is not None]


def lean_of(findings: list[Finding]) -> tuple[float, float, int]:
    """(lean in [-1, 1], agreement in [0, 1], directional findings) of some findings."""
    directional = [f for f in findings if f.direction and f.domain != "model_validation"]
    total = sum(f.strength for f in directional)
    if not directional or total == 0:
        return 0.0, 0.0, 0
    lean = sum(f.direction * f.strength for f in directional) / total
    return lean, abs(lean), len(directional)


def _lean_word(lean: float) -> str:
    return "bullish" if lean > 0.2 else "bearish" if lean < -0.2 else "mixed"


# --------------------------------------------------------------------------- figures in a query


@dataclass
class Claim:
    kind: str  # accuracy, sharpe, win_rate
    value: float
    text: str


_NUMBER = re.compile(r"(-?\d+(?:\.\d+)?)\s*(%|percent)?", re.IGNORECASE)
_KINDS = {"accuracy": r"accura", "sharpe": r"sharpe", "win_rate": r"win[- ]?rate|hit[- ]?rate"}


def figure_claims(query: str) -> list[Claim]:
    """Accuracy, Sharpe ratio and win rate figures stated in ``query`` (each keyword takes the
    nearest number within 30 characters; percentages become fractions)."""
    claims, used = [], set()
    for kind, pattern in _KINDS.items():
        for kw in re.finditer(pattern, query, re.IGNORECASE):
            best = None
            for num in _NUMBER.finditer(query):
                gap = kw.start() - num.end() if num.end() <= kw.start() else num.start() - kw.end()
                if 0 <= gap <= 30 and num.start() not in used and (best is None or gap < best[0]):
                    best = (gap, num)
            if best is None:
                continue
            num = best[1]
            value = float(num.group(1))
            if kind != "sharpe" and (num.group(2) or value > 1):
                value /= 100.0
            used.add(num.start())
            claims.append(Claim(kind, value, query[min(num.start(), kw.start()):max(num.end(), kw.end())]))
    return claims


def _majority_rate(table: SymbolTable, t: int) -> tuple[float, int]:
    """The share of the most frequent label among the labels known at bar ``t`` (those whose
    ``HORIZON`` bars ended by ``t``), and how many there are."""
    lab = table.labels[: max(t - HORIZON + 1, 0)]
    counts = np.bincount(lab[lab >= 0], minlength=3)
    return float(counts.max() / max(counts.sum(), 1)), int(counts.sum())


def judge_claims(claims: list[Claim], table: SymbolTable | None = None, t: int | None = None) -> list[Finding]:
    """One finding per claim (domain model_validation; direction -1 implausible, +1 plausible)
    against the daily limits of :data:`pymicro.evaluation.validation.FREQUENCIES` and, for accuracy, the
    majority-class rate of ``table``'s labels known at bar ``t``."""

    freq = FREQUENCIES["daily"]
    out = []
    for c in claims:
        if c.kind == "accuracy":
            limit = freq.max_binary_accuracy
            rule = f"binary accuracy <= {limit:.0%}"
            ok = c.value <= limit
            reading = f"accuracy {c.value:.1%}: " + ("within" if ok else "beyond") + \
                f" the {limit:.0%} a causal daily model can plausibly reach on up/down"
            if table is not None and t is not None:
                base, n = _majority_rate(table, t)
                edge = c.value - base
                ok3 = edge <= freq.max_edge
                reading += (f"; against {base:.1%} for always predicting the most frequent of pymicro's 3 classes "
                            f"on {table.symbol} ({n} labels, horizon {HORIZON}) it is {edge * 100:+.1f} points, "
                            + ("within" if ok3 else "beyond") + f" the {freq.max_edge * 100:.0f}-point limit"
                            + (" (no better than that baseline)" if edge <= 0 else ""))
                rule += f"; edge over the majority class <= {freq.max_edge:.0%}"
                if ok and not ok3:  # plausible as up/down accuracy, not as three-class accuracy
                    out.append(Finding("model_validation", c.kind, c.value, reading + ": plausible only if it is "
                                       "two-class (up/down) accuracy", 0, 1.0, rule))
                    continue
                ok = ok and ok3
        elif c.kind == "sharpe":
            limit, ok = freq.max_sharpe, c.value <= freq.max_sharpe
            rule = f"annualised Sharpe <= {limit:g} (daily, net of costs)"
            reading = f"Sharpe {c.value:g}: " + ("plausible for" if ok else "beyond what is plausible for") + \
                " a daily strategy, if measured out of sample net of costs"
        else:
            limit, ok = freq.max_win_rate, c.value <= freq.max_win_rate
            rule = f"win rate <= {limit:.0%}"
            reading = f"win rate {c.value:.1%}: " + ("plausible" if ok else "implausible") + " for daily bars"
        out.append(Finding("model_validation", c.kind, c.value, reading, 1 if ok else -1, 1.0, rule))
    return out


# --------------------------------------------------------------------------- the engine


def _intent(query: str, model_given: bool) -> list[str]:
    intent = []
    if _VALIDATION.search(query) or model_given or _BEFORE_DATA.search(query):
        intent.append("validation")
    if _FORECAST.search(query) and "validation" not in intent:
        intent.append("forecast")
    return intent or ["describe"]


def _domains(query: str, domains, intent) -> list[str]:
    if domains:
        bad = [d for d in domains if d not in DOMAINS]
        if bad:
            raise PymicroError(f"unknown domain(s) {bad}; known: {list(DOMAINS)}")
        chosen = list(dict.fromkeys(domains))
    else:
        chosen = [d for d, p in _DOMAIN_WORDS.items() if re.search(p, query, re.IGNORECASE)]
        if (not chosen and "validation" not in intent) or chosen == ["synthesis"]:
            chosen = list(DOMAINS[:4])  # a synthesis needs the domains it combines
    if "validation" in intent and "model_validation" not in chosen:
        chosen.append("model_validation")
    return chosen


def _cannot(base: dict, answer: str, limitation: str) -> Reasoning:
    return Reasoning(**base, as_of=None, status="cannot_know", answer=answer, confidence=0.0,
                     steps=[answer], limitations=[limitation])


def reason(query: str, *, domains=None, depth: int = 3, symbol: str | None = None, date: str | None = None,
           model=None, analogical_reasoning: bool | None = None, table: SymbolTable | None = None) -> Reasoning:
    """Answer ``query`` about ``symbol`` (default SP500) at ``date`` (default: its latest date
    with all twelve features) from pymicro's features; see the module docstring.

    ``domains``: any of :data:`DOMAINS` (default: from the query's words, else the four
    market domains). ``depth`` 1-5. ``model``: a :class:`pymicro.Model` to validate on the
    embedded data (validation questions). ``table``: a :class:`SymbolTable` of your own
    data instead of the embedded series.
    """
    if not isinstance(query, str) or not query.strip():
        raise PymicroError("query must be a non-empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise PymicroError(f"query has {len(query)} characters; at most {MAX_QUERY_CHARS}")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise PymicroError(f"depth must be an int in 1..{MAX_DEPTH}, got {depth!r}")
    if symbol is None and table is None:
        symbol = symbol_from_query(query)
    if date is None and (found := _DATE_IN_QUERY.search(query)):
        date = found.group(1)
    intent = _intent(query, model is not None)
    chosen = _domains(query, domains, intent)
    sym = table.symbol if table is not None else resolve_symbol(symbol)
    base = {"query": query, "symbol": sym, "requested_date": date, "intent": intent, "domains": chosen,
            "depth": depth}

    if table is None:
        if sym not in embedded_symbols():
            return _cannot(base, f"pymicro has no data for {sym!r}: it knows only the embedded series "
                                 f"{', '.join(embedded_symbols())}, so it cannot say anything about {sym!r}.",
                           "only the embedded symbols are known")
        table = embedded_table(sym)
    feats = table.values[list(REASONING_FEATURES)].to_numpy()
    complete = np.flatnonzero(np.isfinite(feats).all(axis=1))
    first, last = _day(table.dates[0]), _day(table.dates[-1])
    if date is None:
        if not complete.size:
            return _cannot(base, f"no date of {sym} has all twelve features", "no complete date")
        t = int(complete[-1])
    else:
        try:
            when = np.datetime64(date, "D")
        except ValueError:
            raise PymicroError(f"date must be YYYY-MM-DD, got {date!r}") from None
        today = np.datetime64("today", "D")
        if when > table.dates[-1].astype("datetime64[D]"):
            future = when > today
            return _cannot(base, f"{date} is after the last embedded bar of {sym} ({last})"
                                 + (" and in the future: nobody knows it yet" if future else "")
                                 + f"; pymicro cannot know what happened after {last}.",
                           "dates after the embedded data are unknown")
        if when < table.dates[0].astype("datetime64[D]"):
            return _cannot(base, f"{date} is before the embedded history of {sym} (from {first}).",
                           "dates before the embedded data are unknown")
        t = int(np.searchsorted(table.dates, np.datetime64(when, "ns"), side="right") - 1)
    as_of = _day(table.dates[t])
    row = table.row(t)
    steps: list[str] = []
    if date is not None and as_of != str(np.datetime64(date, "D")):
        steps.append(f"{date} is not a bar of {sym}; using the last bar before it, {as_of}.")
    market = [d for d in chosen if d in MARKET_DOMAINS or d == "synthesis"]
    if market:
        steps.append(f"Read {sym} on {as_of} with pymicro's feature code (pymicro.market.reasoning_features).")
    used = [r.feature for r in RULES if r.domain in market]
    features = {k: row[k] for k in used}
    finite = [k for k in used if math.isfinite(row[k])]
    coverage = len(finite) / len(used) if used else 1.0
    if used and not finite:
        return _cannot({**base}, f"none of the features of {', '.join(market)} is defined for {sym} on {as_of} "
                                 f"(warm-up or a date the macro series do not cover); the first complete date is "
                                 f"{_day(table.dates[complete[0]]) if complete.size else 'none'}.",
                       "features undefined at this date")
    if coverage < 1:
        steps.append(f"Undefined on {as_of}: {', '.join(k for k in used if k not in finite)}; coverage "
                     f"{coverage:.0%}.")
    findings = findings_at(row, market)
    for f in findings:
        steps.append(f"[{f.domain}] {f.feature} = {f.value:+.3f} ({f.rule}): {f.reading}.")
    neutral = [k for k in finite if not any(f.feature == k for f in findings)]
    if neutral:
        steps.append(f"Inside their neutral bands (no finding): {', '.join(neutral)}.")
    lean, agreement, n_dir = lean_of(findings)
    synthesis = {"lean": round(lean, 4), "direction": _lean_word(lean), "agreement": round(agreement, 4),
                 "directional_findings": n_dir, "coverage": round(coverage, 4)} if market else {}
    if market:
        steps.append(f"Synthesis: {n_dir} directional finding(s), lean {lean:+.2f} ({_lean_word(lean)}), "
                     f"agreement {agreement:.2f}.")
    inputs: dict[str, float] = {}
    if depth >= 2:
        for f in findings:
            for name in RULE_OF[f.feature].inputs:
                inputs[name] = row[name]
        if inputs:
            steps.append("Inputs behind the findings: " + ", ".join(f"{k} = {v:+.4g}" for k, v in inputs.items())
                         + ".")
    directional = [r.feature for r in RULES if r.feature in finite and (r.low_dir or r.high_dir)]
    support = sum(f.strength for f in findings if f.direction) / len(directional) if directional else 0.0
    if market:
        synthesis["support"] = round(support, 4)
    confidence = coverage * (0.3 + 0.7 * agreement * support) if market else 1.0
    if "synthesis" in chosen and math.isfinite(row["regime_consistency"]):
        confidence *= 0.5 + 0.5 * row["regime_consistency"]
    limitations = [("No news was given: headline sentiment is not part of this answer (score headlines with "
                    "the analyze_news tool)."),
                   f"Nothing after {as_of} is known to this answer; it describes conditions, it does not forecast.",
                   ("The twelve features are price and macro composites named after what they approximate "
                    "(docs/features.md), not surveys, positioning data or sentiment data.")]

    if market and (depth >= 3 or analogical_reasoning or "forecast" in intent) and analogical_reasoning is not False:
        analogue = _analogues(table, t, row)
        synthesis["analogues"] = analogue
        steps.append(analogue["statement"])
        if "forecast" in intent:  # as a forecast, only the analogues' evidence counts
            confidence *= 1.0 - analogue["p_value"] if analogue["n"] else 0.0
            steps.append(f"As a forecast, the confidence is scaled by 1 - p of the analogues "
                         f"({1.0 - analogue['p_value']:.2f}).")
    if market and depth >= 4:
        earlier = {}
        for k in (5, 20):
            if t - k >= 0:
                lk, _, _ = lean_of(findings_at(table.row(t - k), market))
                earlier[f"{k}_bars_earlier"] = {"date": _day(table.dates[t - k]), "lean": round(lk, 4),
                                                "direction": _lean_word(lk)}
        synthesis["stability"] = earlier
        steps.append("Stability: " + "; ".join(f"{v['date']} lean {v['lean']:+.2f} ({v['direction']})"
                                                for v in earlier.values()) + ".")
    if market and depth >= 5:
        flips = [f.feature for f in findings if f.direction
                 and _lean_word(lean_of([g for g in findings if g is not f])[0]) != _lean_word(lean)]
        synthesis["rests_on"] = flips
        steps.append("Robustness: " + (f"removing {' or '.join(flips)} alone would change the lean."
                                       if flips else "no single finding changes the lean."))

    validation = None
    if "model_validation" in chosen:
        vfind, vsteps, validation, vconf = _validation(query, table, t, model)
        findings += vfind
        steps += vsteps
        if vfind or validation is not None:
            confidence = vconf if not market else min(confidence, vconf)
        elif not market:
            answer = ("There is nothing to check: state the figures (accuracy, Sharpe ratio, win rate) in the "
                      "query or name a model (model_id).")
            return Reasoning(**base, as_of=as_of, status="cannot_know", answer=answer, confidence=0.0,
                             steps=steps + [answer], limitations=limitations)
        else:
            steps.append("model_validation: no figures stated and no model given; nothing to check.")

    answer = _answer(sym, as_of, intent, market, findings, synthesis, validation, confidence)
    return Reasoning(**base, as_of=as_of, status="answered", answer=answer, confidence=round(confidence, 4),
                     features=features, inputs=inputs, findings=findings, synthesis=synthesis, steps=steps,
                     limitations=limitations, validation=validation)


def _analogues(table: SymbolTable, t: int, row: dict) -> dict:
    """How often the close was higher HORIZON bars later on past bars in the same regime
    (momentum_score > 0, volatility_regime > 0.5), on non-overlapping windows ending by t."""

    idx = np.arange(t - HORIZON, -1, -HORIZON)  # windows [i, i + H] end at t, t - H, ...
    if not (math.isfinite(row["momentum_score"]) and math.isfinite(row["volatility_regime"])):
        return {"regime": None, "n": 0, "up_rate": None, "base_rate": None, "p_value": 1.0,
                "statement": "Analogues: the regime (momentum_score, volatility_regime) is undefined on this date."}
    v = table.values
    mom = v["momentum_score"].to_numpy()[idx]
    vol = v["volatility_regime"].to_numpy()[idx]
    ok = np.isfinite(mom) & np.isfinite(vol)
    up = table.close[idx + HORIZON] > table.close[idx]
    regime = (row["momentum_score"] > 0, row["volatility_regime"] > 0.5)
    same = ok & ((mom > 0) == regime[0]) & ((vol > 0.5) == regime[1])
    n, n_all = int(same.sum()), int(ok.sum())
    k, base = int(up[same].sum()), float(up[ok].mean()) if n_all else float("nan")
    name = f"{'uptrend' if regime[0] else 'flat or downtrend'}, volatility {'above' if regime[1] else 'at or below'} " \
           "its median"
    if n == 0 or not n_all:
        return {"regime": name, "n": n, "up_rate": None, "base_rate": base, "p_value": 1.0,
                "statement": f"Analogues: no earlier non-overlapping {HORIZON}-bar window in the same regime "
                             f"({name})."}
    p = binomial_test(k, n, min(max(base, 1e-9), 1 - 1e-9), "two-sided")
    return {"regime": name, "n": n, "up_rate": k / n, "base_rate": base, "p_value": p,
            "statement": f"Analogues: in {n} earlier non-overlapping {HORIZON}-bar windows in the same regime "
                         f"({name}) the close was higher {HORIZON} bars later {k / n:.0%} of the time, against "
                         f"{base:.0%} over all {n_all} windows (two-sided binomial p = {p:.2g}). A base rate of "
                         "the past, not a forecast."}


def _validation(query: str, table: SymbolTable, t: int, model) -> tuple[list[Finding], list[str], dict | None, float]:
    """Findings on stated figures and on a model; returns (findings, steps, validation dict, confidence)."""
    try:
        from pymicro.evaluation.validation import PENALTY
    except ImportError:  # pragma: no cover - a tree without pymicro.evaluation.validation
        return [], ["pymicro.evaluation.validation is not available: figures cannot be checked."], None, 0.0
    steps, findings = [], []
    if _BEFORE_DATA.search(query):
        findings.append(Finding("model_validation", "causality", 0.0, "a model that predicts before its data "
                                "arrives is impossible: a causal model at bar t knows bars up to t only", -1,
                                1.0, "inputs precede outputs"))
    claims = figure_claims(query)
    findings += judge_claims(claims, table, t)
    confidence = 1.0 if findings else 0.0
    for f in findings:
        steps.append(f"[model_validation] {f.reading} ({f.rule}).")
        if f.direction <= 0:  # impossible, implausible, or plausible under one reading only
            confidence *= PENALTY["critical" if f.feature == "causality" else "high" if f.direction else "medium"]
    if findings and all(f.direction > 0 for f in findings):
        confidence *= PENALTY["low"]  # plausible is not verified
        steps.append("Plausible figures are not verified ones: only a model and its data can show that.")
    report = None
    if model is not None:
        rep = validate_on_embedded(model)
        report = {k: rep[k] for k in ("answer", "confidence", "flagged", "leak_suspected", "risks", "settings")}
        report["symbols"] = rep["symbols"]
        steps.append(f"pymicro.evaluation.validation on the embedded data of {', '.join(rep['symbols'])}: {rep['answer']}")
        confidence = rep["confidence"] if not claims and not findings else min(confidence, rep["confidence"])
    return findings, steps, report, confidence


def _answer(sym, as_of, intent, market, findings, synthesis, validation, confidence) -> str:
    parts = []
    if "forecast" in intent:
        parts.append(f"pymicro cannot know the future; here is what the data said on {as_of}.")
    if market:
        by_domain = {}
        for f in findings:
            if f.domain != "model_validation":
                by_domain.setdefault(f.domain, []).append(f.reading.split(":")[0])
        lean = synthesis["lean"]
        parts.append(f"{sym} on {as_of}: the {', '.join(d.replace('_', ' ') for d in market)} picture is "
                     f"{synthesis['direction']} (lean {lean:+.2f}, agreement {synthesis['agreement']:.2f}).")
        for d in market:
            if d in by_domain:
                parts.append(f"{d.replace('_', ' ').capitalize()}: {'; '.join(by_domain[d])}.")
            else:
                parts.append(f"{d.replace('_', ' ').capitalize()}: nothing outside its neutral bands.")
        a = synthesis.get("analogues")
        if a and a["n"]:
            parts.append(f"Past windows in the same regime rose {a['up_rate']:.0%} of the time against "
                         f"{a['base_rate']:.0%} overall (p = {a['p_value']:.2g}).")
    vf = [f for f in findings if f.domain == "model_validation"]
    if vf:
        bad = [f for f in vf if f.direction < 0]
        unsure = [f for f in vf if f.direction == 0]
        if bad:
            parts.append("These figures do not make sense: " + "; ".join(f.reading for f in bad) + ".")
        elif unsure:
            parts.append("These figures are doubtful: " + "; ".join(f.reading for f in unsure) + ".")
        else:
            parts.append("The stated figures are plausible for daily bars, but plausible is not verified.")
    if validation:
        parts.append("Validating the model: " + re.sub(r"\s*Confidence [0-9.]+\.$", "", validation["answer"]))
    parts.append(f"Confidence {confidence:.2f}.")
    return " ".join(parts)


# --------------------------------------------------------------------------- validation on embedded data


def model_settings(model) -> dict:
    """What the blob's metadata says about its data: preset, horizon, threshold, symbols and
    training dates (``train_end``, ``test_start``), with sensible defaults when absent."""

    meta = dict(model.described.get("metadata", {}))
    preset = meta.get("preset")
    if preset not in FEATURE_SETS:
        names = tuple(model.described.get("feature_names") or ())
        preset = next((p for p, fs in FEATURE_SETS.items() if fs.names == names), None)
        if preset is None:
            preset = next((p for p, fs in FEATURE_SETS.items() if fs.size == model.input_size), None)
    try:
        horizon = int(str(meta.get("horizon", HORIZON)).rstrip("d"))
        threshold = float(meta.get("threshold", 0.5))
    except ValueError:
        horizon, threshold = HORIZON, 0.5
    symbols = [ALIASES.get(s, s) for s in str(meta.get("symbols", "")).split(",") if s]
    try:
        train_end, test_start = (str(np.datetime64(meta[k], "D")) if meta.get(k) else None
                                 for k in ("train_end", "test_start"))
    except ValueError:
        train_end = test_start = None
    return {"preset": preset, "horizon": horizon, "threshold": threshold, "symbols": symbols,
            "train_end": train_end, "test_start": test_start}


def validate_on_embedded(model, symbols=None, *, lookback_days: int | None = None, fit: str | None = "ridge",
                         shuffles: int = 2, n_trials: int = 1, cost_bps: float = 1.0, slippage_bps: float = 1.0,
                         seed: int = 0, resamples: int = 200) -> dict:
    """:func:`pymicro.evaluation.validation.validate` of ``model`` on the embedded data of ``symbols``
    (default: the blob's ``symbols`` metadata, else SP500), with the features and labels of
    its preset, split as the trainer splits. ``lookback_days``: the last bars of each symbol
    only, as the trainer's option of that name (give the value the model was trained with, or
    the split differs from its own). Returns ``report.to_dict()`` plus ``symbols``."""

    s = model_settings(model)
    if s["preset"] is None:
        raise PymicroError(f"cannot tell which feature set the model reads ({model.input_size} inputs, no "
                           "'preset' metadata): it cannot be validated on the embedded data")
    syms = [ALIASES.get(x, x) for x in (symbols or s["symbols"] or [DEFAULT_SYMBOL])]
    unknown = sorted(set(syms) - set(embedded_symbols()))
    if unknown:
        raise PymicroError(f"no embedded data for {unknown}; embedded: {list(embedded_symbols())}")
    bars = load_embedded(syms)
    if lookback_days is not None:
        bars = bars.groupby("symbol", group_keys=False).tail(int(lookback_days)).reset_index(drop=True)
    ds = make_dataset(bars, s["preset"], horizon=s["horizon"], threshold=s["threshold"])
    if ds.X.shape[1] != model.input_size:
        raise PymicroError(f"the {s['preset']} features are {ds.X.shape[1]} wide; the model takes {model.input_size}")
    # five classes (sentiment): positions -1 .. +1, given as a list (validation's own default is an array,
    # which pymicro.evaluation.backtest.run_backtest cannot take as class_positions)
    cp = None if model.n_classes == 3 else np.linspace(-1.0, 1.0, model.n_classes).tolist()
    report = validate(model, ds, prices=bars, n_trials=n_trials, fit=None if fit in (None, "none") else fit,
                      shuffles=shuffles, cost_bps=cost_bps, slippage_bps=slippage_bps, seed=seed,
                      resamples=resamples, class_positions=cp)
    return {**report.to_dict(), "symbols": sorted(set(syms))}


__all__ = ["DOMAINS", "MAX_DEPTH", "RULES", "Finding", "Reasoning", "Rule", "SymbolTable", "embedded_table",
           "figure_claims", "model_settings", "reason", "symbol_table", "validate_on_embedded"]
