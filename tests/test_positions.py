"""One position rule, chosen on validation data, in every command (issue 17, item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import pymicro
import argparse

from pymicro.cli.backtest import add_parser
from pymicro.evaluation.positions import MIN_EXPOSURE, choose_rule, exposure_warning
from pymicro.evaluation.report import evaluate_model
from pymicro.evaluation.validation import validate
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset


def test_choose_rule_never_picks_a_threshold_that_leaves_the_market():
    rng = np.random.default_rng(0)
    n = 400
    r = rng.normal(0, 0.01, n)
    probs = np.full((n, 3), 1 / 3)
    # confident and right on a handful of rows only: the highest threshold has the best Sharpe
    # but trades 2 % of the rows; the rule must keep at least MIN_EXPOSURE
    probs[:, 2] = 0.36
    probs[:, 0] = probs[:, 1] = 0.32
    hot = np.arange(0, n, 50)
    probs[hot] = [0.1, 0.1, 0.8]
    r[hot] = 0.02
    rule = choose_rule(probs, r, cost_bps=0, slippage_bps=0)
    assert rule.candidates[0.5]["exposure"] < MIN_EXPOSURE
    assert rule.threshold < 0.5
    assert rule.candidates[rule.threshold]["exposure"] >= MIN_EXPOSURE
    assert exposure_warning(0.03) and exposure_warning(0.5) is None


def test_choose_rule_ignores_rows_without_a_next_bar():
    probs = np.tile([0.2, 0.2, 0.6], (50, 1))
    r = np.full(50, np.nan)
    rule = choose_rule(probs, r)
    assert rule.candidates[0.0]["rows"] == 0 and rule.threshold == 0.0


def _parser():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser


@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    path = tmp_path_factory.mktemp("rule") / "m.pmb"
    pymicro.freeze(pymicro.preset("momentum").init(seed=3), path, preset="momentum", horizon="5d",
                   symbols="SP500")
    return path


def test_backtest_validate_and_report_give_one_sharpe_exposure_and_p_value(blob, tmp_path, capsys):
    bars = load_embedded(["SP500"])
    args = _parser().parse_args(["backtest", "--symbol", "SP500", "--blob", str(blob), "--json",
                                 str(tmp_path / "bt.json")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "exposure" in printed
    bt = json.loads((tmp_path / "bt.json").read_text())
    bt_sharpe = bt["metrics"]["strategy"]["sharpe"]
    bt_exposure = bt["metrics"]["strategy"]["exposure"]
    bt_p = bt["classification"]["p_value_block"]

    rep = validate(str(blob), make_dataset(bars, "momentum", horizon=5), prices=bars, fit=None)
    tr = rep.metrics["trading"]
    ev = evaluate_model(pymicro.load(str(blob)), bars, "momentum", cost_bps=1.0, slippage_bps=1.0)

    assert tr["threshold"] == ev["rule"]["threshold"] == bt["settings"]["threshold"]
    assert bt_sharpe == pytest.approx(tr["strategy"]["sharpe"], abs=1e-9)
    assert bt_sharpe == pytest.approx(ev["trading"]["strategy"]["sharpe"], abs=1e-9)
    assert bt_exposure == pytest.approx(tr["exposure"], abs=1e-12) == pytest.approx(
        ev["trading"]["strategy"]["exposure"], abs=1e-12)
    assert bt_p == pytest.approx(rep.metrics["test"]["p_value_block"], abs=1e-12)
    assert bt_p == pytest.approx(ev["figures"]["summary"]["p_value_block"], abs=1e-12)
    # and validate's answer prints the exposure beside its Sharpe
    assert "in the market" in rep.answer


def test_validate_flags_a_strategy_that_is_rarely_in_the_market(blob):
    bars = load_embedded(["SP500"])
    rep = validate(str(blob), make_dataset(bars, "momentum", horizon=5), prices=bars, fit=None, threshold=0.99)
    assert rep.metrics["trading"]["exposure"] < MIN_EXPOSURE
    assert any("in the market only" in r.finding for r in rep.risks)


def test_training_headline_uses_the_block_bootstrap_p_value_validate_uses(blob):
    """Issue 17 item 2: the trainer's headline interval and p-value are dependence-aware (overlapping
    5-bar labels), the same number validation reports for the same model and rows."""
    from pymicro.metrics import majority_class
    from pymicro.training.trainer import _evaluate

    bars = load_embedded(["SP500", "IBM"])
    ds = make_dataset(bars, "momentum", horizon=5)
    split = ds.split()
    model = pymicro.load(str(blob))
    perf = _evaluate(model, split.test, majority_class(split.train.y, 3), 3)
    rep = validate(model, ds, prices=bars, fit=None)
    assert perf["p_value"] == pytest.approx(rep.metrics["test"]["p_value_block"], abs=1e-12)
    assert perf["p_value"] != perf["p_value_vs_majority"]  # not the binomial one
    assert "block bootstrap" in perf["ci_method"] and "block bootstrap" in perf["p_value_method"]
    # item 3: the test split's class frequencies beside the training majority class
    freqs = np.bincount(split.test.y, minlength=3) / len(split.test)
    assert perf["test_class_frequencies"] == pytest.approx(freqs.tolist())


@pytest.mark.parametrize("sym, seed", [("SP500", 0), ("NASDAQ", 1)])
def test_a_sharpe_far_above_the_references_lowers_validation_confidence(sym, seed):
    """Issue 17 item 4: a weak leak (the next bar's return plus noise 6x its std, in a quarter of the
    inputs) gives a Sharpe near 2-3 against buy-and-hold's 0.6-0.7; that is itself evidence, and the
    confidence must fall below the clean model's."""
    import sys
    from dataclasses import replace
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_validation import FAST, model_for, per_row

    bars = load_embedded(sym)
    ds = make_dataset(bars, "momentum", horizon=5)
    nxt = per_row(bars, ds, lambda lc: lc.diff().shift(-1))
    rng = np.random.default_rng(seed)
    X = ds.X.copy()
    for c in (0, 4, 8, 12, 16, 20):
        X[:, c] = nxt + rng.normal(0, 6 * np.nanstd(nxt), nxt.size)
    weak = replace(ds, X=X).take(np.isfinite(X).all(axis=1))
    clean = validate(model_for(ds, seed), ds, prices=bars, seed=seed, **FAST)
    leaky = validate(model_for(weak, seed), weak, prices=bars, seed=seed, **FAST)
    too_good = [r for r in leaky.risks if r.check == "plausibility" and "above the best reference" in r.finding]
    assert too_good and too_good[0].severity in ("medium", "high")
    assert not [r for r in clean.risks if "above the best reference" in r.finding]
    assert leaky.checks["plausibility"].numbers["sharpe_excess_z"] > 1.645
    assert leaky.confidence < clean.confidence


def test_backtest_annualises_with_the_datas_own_calendar():
    """Issue 17 item 6: periods per year from the dates (hourly bars are not 252 a year), stated."""
    from pymicro import metrics as M
    from pymicro.evaluation.backtest import run_backtest

    dates = np.arange("2024-01-01T00", "2024-03-01T00", dtype="datetime64[h]")
    close = 100 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.001, dates.size))
    res = run_backtest(close, np.ones(dates.size), 0, 0, dates=dates)
    P = res.settings["periods_per_year"]
    assert P == pytest.approx(M.periods_per_year_of(dates)) and P > 8000
    assert res.settings["periods_per_year_source"] == "from the dates"
    assert res.metrics["sharpe"] == pytest.approx(M.sharpe(res.returns, P))
    assert "periods/year (from the dates)" in res.summary()
    given = run_backtest(close, np.ones(dates.size), 0, 0, dates=dates, periods_per_year=252)
    assert given.settings["periods_per_year_source"] == "given"


def test_user_files_use_the_adjusted_close_or_say_they_have_none(tmp_path):
    import pandas as pd

    from pymicro.market.data import load_ohlcv

    d = pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=6), "symbol": "X",
                      "open": [10, 10, 10, 5, 5, 5.], "high": [11, 11, 11, 6, 6, 6.], "low": [9, 9, 9, 4, 4, 4.],
                      "close": [10, 10, 10, 5, 5, 5.], "Adj Close": [5, 5, 5, 5, 5, 5.], "volume": 100})
    d.to_csv(tmp_path / "a.csv", index=False)
    adj = load_ohlcv(tmp_path / "a.csv")
    assert adj["close"].tolist() == [5.0] * 6  # the 2:1 split is not a -50 % return
    assert adj.attrs["prices"].startswith("adjusted")
    d.drop(columns=["Adj Close"]).to_csv(tmp_path / "b.csv", index=False)
    raw = load_ohlcv(tmp_path / "b.csv")
    assert raw["close"].iloc[3] == 5.0 and "no adjusted-close column" in raw.attrs["prices"]


def test_equity_plot_is_log_scaled_for_long_histories_and_shades_exposure(tmp_path):
    from pymicro.evaluation.backtest import plot_equity, run_backtest

    rng = np.random.default_rng(1)
    for years, scale in ((10, "log"), (1, "linear")):
        n = 252 * years
        close = 100 * np.cumprod(1 + rng.normal(0.0003, 0.005, n))
        pos = np.where(np.arange(n) % 10 < 3, 1.0, 0.0)  # in the market 30 % of the time
        res = run_backtest(close, pos, 1, 1, periods_per_year=252)
        fig = plot_equity(res, tmp_path / f"e{years}.png")
        ax = fig.axes[0]
        assert ax.get_yscale() == scale
        labels = [h.get_label() for h in ax.collections]
        assert any("in the market" in label and "30%" in label for label in labels), labels
    assert plot_equity(res, tmp_path / "forced.png", log_scale=True).axes[0].get_yscale() == "log"


def test_sentiment_says_what_limits_its_span_and_can_drop_macro_inputs():
    """Issue 17 item 7: a history past the shipped macro series (2019-01) is refused or cut with the
    reason (the inputs that stop it), not a wrong 'needs at least N bars'; macro='none' keeps every row."""
    import warnings

    import pandas as pd

    from pymicro.errors import DataError

    ibm = load_embedded(["IBM"])
    late = ibm.tail(662).copy()
    late["date"] = pd.bdate_range("2021-01-04", periods=len(late))
    with pytest.raises(DataError) as e:
        make_dataset(late, "sentiment")
    assert "needs at least" not in str(e.value) and "2019-01" in str(e.value) and "macro inputs" in str(e.value)
    ds = make_dataset(late, "sentiment", feature_options={"macro": "none"})
    assert len(ds) > 450 and np.isfinite(ds.X).all()
    across = ibm.copy()
    across["date"] = pd.bdate_range("2010-01-04", periods=len(across))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        cut = make_dataset(across, "sentiment")
    assert any("rows stop at 2019-01" in str(x.message) for x in w)
    assert cut.meta["span_limits"] and np.datetime64(cut.dates.max(), "D") < np.datetime64("2019-02-01")


def test_the_mcp_evaluation_uses_the_same_rule_as_validate(tmp_path):
    """Issue 17 item 1, the MCP side: neural_evaluate's function chooses the threshold on the model's
    validation period (train_end .. test_start, labels purged), the rule validate chooses."""
    from pymicro.agents.tools_evaluation import _evaluate

    bars = load_embedded(["SP500"])
    ds = make_dataset(bars, "momentum", horizon=5)
    split = ds.split()
    path = tmp_path / "m.pmb"
    pymicro.freeze(pymicro.preset("momentum").init(seed=3), path, preset="momentum", horizon="5d", symbols="SP500",
                   train_end=str(split.validation_start), test_start=str(split.test_start))
    model = pymicro.load(str(path))
    rep = validate(model, ds, prices=bars, fit=None)
    out = _evaluate("m", model, "SP500", str(split.test_start)[:10], None, None, None, 0.95, 1.0, 1.0, None)
    assert out.trading["settings"]["threshold"] == rep.metrics["trading"]["threshold"]
    assert "validation period" in out.trading["settings"]["position_rule"]
    assert "exposure" in out.trading["metrics"]["strategy"]


def test_walk_forward_prints_the_block_bootstrap_p_value():
    """Item 2 in the walk-forward: the printed p-value is the dependence-aware one."""
    from pymicro.evaluation.backtest import LabelledSeries, walk_forward

    rng = np.random.default_rng(0)
    n = 600
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, n))
    X = rng.normal(size=(n, 4))
    y = rng.integers(0, 3, n)
    series = LabelledSeries(np.arange(n), close, X, y, 5)

    def fit(Xt, yt):
        return lambda Xp: np.tile([0.2, 0.3, 0.5], (len(Xp), 1))

    res = walk_forward(series, None, train_window=200, step=100, fit=fit)
    c = res.classification
    assert "block bootstrap" in c["p_value_method"] and c["p_value"] != c["p_value_vs_majority"]
    assert f"p = {c['p_value']:.3g}" in res.summary() and "block bootstrap of the paired edge" in res.summary()
