"""pymicro.agents.reasoning: the psycho_symbolic_reason engine, in-process.

Deterministic answers; the features it reports are pymicro's own at that date; the whole
answer is causal (bars after the date change nothing); honest 'cannot know' for symbols,
dates and futures it has no data for; the rules, the synthesis arithmetic and the
confidence formula as documented; figures in a query judged against the data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import pymicro
from pymicro.market.data import load_embedded
from pymicro.errors import PymicroError
from pymicro.market.features import REASONING_FEATURES, momentum_features
from pymicro.agents.reasoning import (
    DOMAINS,
    RULE_OF,
    RULES,
    embedded_table,
    figure_claims,
    judge_claims,
    lean_of,
    read_feature,
    reason,
    symbol_table,
)
from pymicro.market.reasoning_features import reasoning_features

ALL = list(DOMAINS[:4])


@pytest.fixture(scope="module")
def local_features():
    """pymicro's own twelve features of two symbols, computed here, one row per bar."""
    return {s: reasoning_features(load_embedded([s]), dropna=False) for s in ("IBM", "SP500")}


def test_the_same_question_gives_the_same_answer():
    a = reason("What is the market psychology for IBM?", symbol="IBM", depth=5).to_dict()
    b = reason("What is the market psychology for IBM?", symbol="IBM", depth=5).to_dict()
    assert a == b and json.dumps(a, allow_nan=False)
    assert a["status"] == "answered" and a["domains"] == ["market_psychology"]
    assert a["as_of"] == "2013-03-01" and a["answer"].startswith("IBM on 2013-03-01")
    assert set(a["features"]) == {"fear_greed_index", "herd_behavior_strength", "contrarian_signal"}


@pytest.mark.parametrize("symbol, date", [("IBM", "2008-10-15"), ("IBM", "2012-06-01"), ("SP500", "2016-02-11"),
                                          ("SP500", None)])
def test_features_are_pymicros_at_that_date(local_features, symbol, date):
    r = reason("overall picture", symbol=symbol, date=date, domains=ALL, depth=2)
    row = local_features[symbol].loc[np.datetime64(r.as_of, "ns")]
    assert set(r.features) == set(REASONING_FEATURES)
    for name in REASONING_FEATURES:
        assert r.features[name] == row[name], name  # bit-identical: the same code on the same bars
    if date is None:  # default: the last date with all twelve features
        assert r.as_of == str(local_features[symbol].dropna().index[-1].date())
    # the inputs of the findings are pymicro's too (the momentum set's rsi_14, ret_20 ...)
    mom = momentum_features(load_embedded([symbol]), dropna=False).loc[np.datetime64(r.as_of, "ns")]
    for name in set(r.inputs) & set(mom.index):
        assert r.inputs[name] == mom[name], name


def test_the_answer_is_causal():
    """Everything the engine says at t is the same when the bars after t do not exist."""
    bars = load_embedded(["IBM"])
    date = "2009-03-09"
    cut = bars[bars["date"] <= np.datetime64(date)]
    full = reason("Will IBM rise next week?", date=date, depth=5, table=symbol_table(bars, "IBM")).to_dict()
    past = reason("Will IBM rise next week?", date=date, depth=5, table=symbol_table(cut, "IBM")).to_dict()
    assert full == past
    assert full["synthesis"]["analogues"]["n"] > 50  # analogues computed, from windows ending by the date


def test_a_date_that_is_not_a_bar_uses_the_last_bar_before_it():
    r = reason("momentum of IBM", symbol="IBM", date="2010-07-04")  # a Sunday
    assert r.as_of == "2010-07-02" and "not a bar of IBM" in r.steps[0]


@pytest.mark.parametrize("symbol, date, words", [
    ("AAPL", "2100-01-01", "in the future"),
    ("AAPL", "2015-06-01", "after the last embedded bar of AAPL (2013-03-01)"),
    ("SP500", "2019-06-01", "cannot know what happened after 2018-12-31"),
    ("AAPL", "1990-01-02", "before the embedded history"),
    ("TSLA", None, "no data for 'TSLA'"),
])
def test_honest_about_what_it_cannot_know(symbol, date, words):
    r = reason("What is the market psychology?", symbol=symbol, date=date)
    assert r.status == "cannot_know" and r.confidence == 0.0 and words in r.answer
    assert r.features == {} and r.findings == [] and r.as_of is None


def test_no_features_defined_yet_is_cannot_know_and_partial_coverage_lowers_confidence():
    early = reason("momentum", symbol="AAPL", date="2000-03-06", domains=["quantitative_trading"])
    assert early.status == "cannot_know" and "first complete date" in early.answer
    partial = reason("overall", symbol="AAPL", date="2000-06-05", domains=ALL)
    assert partial.status == "answered" and partial.synthesis["coverage"] == 0.5
    assert partial.features["momentum_score"] is None or np.isnan(partial.features["momentum_score"])
    assert "coverage 50%" in " ".join(partial.steps)


def test_aliases_and_the_default_symbol():
    assert reason("x", symbol="googl").symbol == "GOOG"
    assert reason("x").symbol == "SP500"


def test_forecast_questions_say_the_future_is_unknown_and_lean_on_analogues():
    r = reason("Will SP500 go up next week?", depth=1)
    assert r.intent == ["forecast"] and r.answer.startswith("pymicro cannot know the future")
    a = r.synthesis["analogues"]
    assert a["n"] > 0 and 0 <= a["p_value"] <= 1
    described = reason("Describe SP500", depth=1, domains=r.domains)
    assert r.confidence == pytest.approx(described.confidence * (1 - a["p_value"]), abs=1e-4)
    assert any("does not forecast" in x for x in r.limitations)
    assert any("No news was given" in x for x in r.limitations)


def test_rules_read_features_as_documented():
    fg = RULE_OF["fear_greed_index"]
    assert read_feature(fg, 0.1) is None and read_feature(fg, float("nan")) is None
    greed = read_feature(fg, 0.6)
    assert (greed.direction, greed.strength, greed.rule) == (1, 0.6, "fear_greed_index >= 0.25")
    assert read_feature(fg, -0.25).direction == -1
    dollar = read_feature(RULE_OF["dollar_strength"], 0.5)
    assert dollar.direction == -1 and "headwind" in dollar.reading  # a strong dollar counts against equities
    vol = read_feature(RULE_OF["volatility_regime"], 0.9)
    assert vol.direction == 0 and vol.strength == pytest.approx(0.5)  # context: halfway from 0.8 to 1
    assert [r.feature for r in RULES] == list(REASONING_FEATURES)
    findings = [read_feature(fg, 0.8), read_feature(RULE_OF["momentum_score"], -0.4), vol]
    lean, agreement, n = lean_of(findings)
    assert n == 2 and lean == pytest.approx((0.8 - 0.4) / 1.2) and agreement == pytest.approx(abs(lean))


def test_confidence_follows_the_formula():
    r = reason("overall picture of IBM", symbol="IBM", date="2011-08-08", domains=ALL, depth=1)
    s = r.synthesis
    rc = r.features["regime_consistency"]
    expected = s["coverage"] * (0.3 + 0.7 * s["agreement"] * s["support"]) * (0.5 + 0.5 * rc)
    assert r.confidence == pytest.approx(expected, abs=1e-4)
    directional = [f for f in r.findings if f.direction]
    assert s["directional_findings"] == len(directional)
    assert s["lean"] == pytest.approx(sum(f.direction * f.strength for f in directional)
                                      / sum(f.strength for f in directional), abs=1e-4)


def test_depth_adds_inputs_analogues_stability_and_robustness():
    shallow = reason("momentum and volatility of IBM", symbol="IBM", depth=1)
    assert shallow.domains == ["quantitative_trading"] and shallow.inputs == {}
    assert "analogues" not in shallow.synthesis and "stability" not in shallow.synthesis
    deep = reason("momentum and volatility of IBM", symbol="IBM", depth=5)
    assert deep.inputs and "analogues" in deep.synthesis
    assert set(deep.synthesis["stability"]) == {"5_bars_earlier", "20_bars_earlier"}
    assert "rests_on" in deep.synthesis and len(deep.steps) > len(shallow.steps)
    assert "analogues" not in reason("momentum of IBM", symbol="IBM", analogical_reasoning=False).synthesis


def test_domains_from_the_query_or_given():
    assert reason("How do macro factors affect IBM?", symbol="IBM").domains == ["macro_economics"]
    assert reason("What quantitative patterns exist in IBM?", symbol="IBM").domains == ["quantitative_trading"]
    assert reason("Tell me about IBM", symbol="IBM").domains == ALL
    assert reason("x", domains=["synthesis", "synthesis"]).domains == ["synthesis"]
    with pytest.raises(PymicroError, match="unknown domain"):
        reason("x", domains=["astrology"])
    for bad in (0, 6, True, 2.0):
        with pytest.raises(PymicroError, match="depth"):
            reason("x", depth=bad)
    for bad in ("", "   ", "x" * 2001, None):
        with pytest.raises(PymicroError, match="query"):
            reason(bad)
    with pytest.raises(PymicroError, match="YYYY-MM-DD"):
        reason("x", date="yesterday")


def test_figures_in_the_query_are_judged_against_the_data():
    claims = figure_claims("A model achieved 72.0% accuracy with 1.80 Sharpe ratio and a win rate of 58%")
    assert [(c.kind, c.value) for c in claims] == [("accuracy", 0.72), ("sharpe", 1.8), ("win_rate", 0.58)]
    assert [(c.kind, c.value) for c in figure_claims("accuracy of 0.55, Sharpe: 4")] == [("accuracy", 0.55),
                                                                                          ("sharpe", 4.0)]
    table = embedded_table("SP500")
    t = len(table.dates) - 1
    judged = judge_claims(claims, table, t)
    assert [f.direction for f in judged] == [-1, 1, 1]
    # the majority-class rate is the share of the most frequent label known at t
    known = table.labels[: t - 4]
    base = np.bincount(known[known >= 0]).max() / (known >= 0).sum()
    assert f"against {base:.1%} for always predicting" in judged[0].reading

    r = reason("A model achieved 72.0% accuracy with 1.80 Sharpe ratio. Does this make sense?")
    assert r.intent == ["validation"] and r.domains == ["model_validation"]
    assert r.answer.startswith("These figures do not make sense") and r.confidence == pytest.approx(0.25)
    fine = reason("Our backtest shows a Sharpe of 1.1 and 41% accuracy: plausible?")
    assert fine.confidence == pytest.approx(0.9) and "plausible is not verified" in fine.answer
    binary = reason("Our backtest shows a Sharpe of 1.1 and 53% accuracy: plausible?")
    assert binary.confidence == pytest.approx(0.7) and "only if it is two-class" in binary.answer
    magic = reason("The model predicts 36 ms before the data arrives with 55% accuracy")
    assert magic.confidence <= 0.05 and any(f.feature == "causality" for f in magic.findings)
    nothing = reason("Does this model make sense?")
    assert nothing.status == "cannot_know" and "nothing to check" in nothing.answer


def test_a_model_is_validated_on_the_embedded_data():
    from pymicro.agents.reasoning import validate_on_embedded

    model = pymicro.load(pymicro.freeze(pymicro.preset("momentum").init(seed=3), preset="momentum",
                                        horizon=5, symbols="IBM"))
    r = reason("Does this model make sense?", model=model)
    direct = validate_on_embedded(model)
    assert r.validation["symbols"] == ["IBM"] == direct["symbols"]
    assert r.confidence == pytest.approx(direct["confidence"]) and r.validation["answer"] == direct["answer"]
    assert r.answer.startswith("Validating the model:") and r.answer.count("Confidence") == 1
