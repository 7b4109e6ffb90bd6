"""pymicro.evaluation.validation: planted leaks are flagged every time, clean models are not; the
Sharpe statistics against the formulas computed by hand; the implausibility flags.

The models under test are multinomial logistic regressions fitted in numpy and frozen into
real blobs (``Spec(24, (), 3)``), and the retraining experiments use the ridge stand-in, so
each validation takes a fraction of a second. One test runs the tinygrad trainer end to
end: it trains the momentum preset and validates with the default tinygrad ``fit``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

import pymicro
from pymicro.cli.validate import add_parser
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.errors import EvaluationError
from pymicro.training.train import normalization
from pymicro.evaluation.leaks import check_shuffled
from pymicro.evaluation.plausibility import check_plausibility
from pymicro.evaluation.validation import (
    EULER_GAMMA,
    FREQUENCIES,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_statistics,
    tinygrad_fit,
    validate,
)

N = NormalDist()
# seed -> (symbol, column replaced by the planted leak)
CASES = {0: ("SP500", 4), 1: ("NASDAQ", 0), 2: ("IBM", 12)}
FAST = {"fit": "ridge", "shuffles": 2, "resamples": 100}


# --------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def market():
    """{symbol: (bars, dataset)} for the symbols the cases use."""
    out = {}
    for sym, _ in CASES.values():
        bars = load_embedded(sym)
        out[sym] = (bars, make_dataset(bars, "momentum", horizon=5))
    return out


def logistic_network(X, y, mean, std, seed=0, iters=200, lr=0.5, l2=1e-3):
    """A multinomial logistic regression fitted by gradient descent, as a pymicro Network."""
    rng = np.random.default_rng(seed)
    Z = (np.asarray(X, np.float64) - mean) / std
    n, f = Z.shape
    W = rng.normal(0, 0.01, (3, f))
    b = np.zeros(3)
    Y = np.eye(3)[y]
    for _ in range(iters):
        s = Z @ W.T + b
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - Y) / n
        W -= lr * (g.T @ Z + l2 * W)
        b -= lr * g.sum(axis=0)
    spec = pymicro.Spec(f, (), 3, name="logistic", labels=("down", "flat", "up"))
    return pymicro.Network(spec, [{"W": W.astype(np.float32), "b": b.astype(np.float32)}],
                           np.asarray(mean, np.float32), np.asarray(std, np.float32))


def model_for(ds, seed=0, norm_rows=None):
    """Fit on the training split; normalisation from the training split (or ``norm_rows``)."""
    train = ds.split().train
    mean, std = normalization(train.X if norm_rows is None else norm_rows)
    return pymicro.freeze(logistic_network(train.X, train.y, mean, std, seed), horizon="5")


def per_row(bars, ds, fn):
    """fn(log close Series) evaluated at each row's date."""
    close = bars.set_index("date")["close"]
    return fn(np.log(close)).reindex(pd.DatetimeIndex(ds.dates)).to_numpy()


def with_column(ds, col, values):
    X = ds.X.copy()
    X[:, col] = values
    ok = np.isfinite(X).all(axis=1)
    return replace(ds, X=X).take(ok)


def leak_dataset(kind, bars, ds, col):
    if kind == "next_bar_return":  # the feature peeks one bar ahead
        return with_column(ds, col, per_row(bars, ds, lambda lc: lc.diff().shift(-1)))
    if kind == "feature_one_bar_late":  # the 60-bar return computed at t+1 instead of t
        j = ds.feature_names.index("ret_60")
        return with_column(ds, j, np.r_[ds.X[1:, j], np.nan])
    if kind == "label":  # the label itself in the inputs
        return with_column(ds, col, ds.y.astype(np.float32))
    if kind == "label_shifted":  # the label of the previous bar (it reads bar t+4)
        return with_column(ds, col, np.r_[np.nan, ds.y[:-1]].astype(np.float32))
    if kind == "forward_return":  # the return the label is made of
        return with_column(ds, col, per_row(bars, ds, lambda lc: lc.shift(-5) - lc))
    raise AssertionError(kind)


# --------------------------------------------------------------------------- planted leaks

@pytest.mark.parametrize("seed", sorted(CASES))
@pytest.mark.parametrize("kind", ["next_bar_return", "feature_one_bar_late", "label", "label_shifted",
                                  "forward_return"])
def test_planted_lookahead_is_flagged(market, kind, seed):
    sym, col = CASES[seed]
    bars, ds = market[sym]
    leaked = leak_dataset(kind, bars, ds, col)
    report = validate(model_for(leaked, seed), leaked, prices=bars, seed=seed, **FAST)
    assert report.flagged and report.leak_suspected, report.summary()
    assert "feature_lookahead" in report.flagged_checks(("critical",)), report.summary()
    assert report.confidence < 0.05
    assert report.answer.startswith("Do not trust these figures")


@pytest.mark.parametrize("seed", sorted(CASES))
@pytest.mark.parametrize("kind", ["next_bar_return", "label", "forward_return"])
def test_planted_lookahead_is_flagged_without_prices(market, kind, seed):
    """From the labels alone: the correlation with the label collapses one bar later."""
    sym, col = CASES[seed]
    bars, ds = market[sym]
    leaked = leak_dataset(kind, bars, ds, col)
    report = validate(model_for(leaked, seed), leaked, seed=seed, **FAST)
    assert {"feature_lookahead", "label_shift"} <= report.flagged_checks(("critical",)), report.summary()
    assert report.checks["sharpe"].status == "skipped"


@pytest.mark.parametrize("seed", sorted(CASES))
def test_label_in_inputs_fails_the_model_checks_too(market, seed):
    sym, col = CASES[seed]
    bars, ds = market[sym]
    leaked = leak_dataset("label", bars, ds, col)
    report = validate(model_for(leaked, seed), leaked, prices=bars, seed=seed, **FAST)
    flagged = report.flagged_checks()
    assert {"label_shift", "plausibility"} <= flagged, report.summary()
    retrain = report.checks["label_shift"].numbers["retrain"]
    assert retrain["edge_drop"] > 0.3  # its skill vanishes when the target moves h bars on


def test_shuffled_label_fits_do_not_collapse_when_the_label_is_an_input(market):
    """Fits trained on shuffled labels put chance weights on the inputs; with the label among
    them those weights reach the test labels, so the null's |correlation| stays high."""
    for seed, (sym, col) in CASES.items():
        bars, ds = market[sym]
        leaked = leak_dataset("label", bars, ds, col)
        kw = {"seed": seed, "fit": "ridge", "shuffles": 8, "resamples": 100}
        leak = validate(model_for(leaked, seed), leaked, **kw).checks["shuffled_labels"]
        clean = validate(model_for(ds, seed), ds, **kw).checks["shuffled_labels"]
        assert leak.numbers["null_mean_abs_ic"] > 2 * clean.numbers["null_mean_abs_ic"]
        assert clean.status == "pass"
        if sym != "SP500":  # on SP500 the leak's null stays just under the bound: evidence, not a guarantee
            assert leak.status == "flag" and leak.risks[0].severity == "critical"


def test_shuffled_label_rules():
    exp = {"accuracies": [0.39, 0.40, 0.38], "ics": [0.02, -0.03, 0.01], "null_ic_se": 0.05,
           "true_label_accuracy": 0.42, "true_label_ic": 0.05}
    daily = FREQUENCIES["daily"]
    assert check_shuffled(exp, 0.42, 0.05, 0.40, 0.02, daily, "").status == "pass"
    leak = check_shuffled({**exp, "ics": [0.3, -0.25, 0.2]}, 0.9, 0.8, 0.40, 0.02, daily, "")
    assert [r.severity for r in leak.risks] == ["critical"]
    biased = check_shuffled({**exp, "accuracies": [0.47, 0.46, 0.48]}, 0.5, 0.05, 0.40, 0.01, daily, "")
    assert [r.severity for r in biased.risks] == ["high"]
    assert check_shuffled(None, 0.4, 0.0, 0.4, 0.02, daily, "fit=None").status == "skipped"


@pytest.mark.parametrize("seed", sorted(CASES))
def test_whole_series_normalisation_in_the_blob_is_flagged(market, seed):
    sym, _ = CASES[seed]
    bars, ds = market[sym]
    report = validate(model_for(ds, seed, norm_rows=ds.X), ds, prices=bars, seed=seed, **FAST)
    assert report.flagged_checks(("critical",)) == {"normalisation"}, report.summary()
    blob = report.checks["normalisation"].numbers["blob"]
    assert blob["identified"] and blob["test_rows_used"] == (ds.split().test.X.shape[0])


@pytest.mark.parametrize("seed", sorted(CASES))
@pytest.mark.parametrize("scaling", ["zscore", "minmax"])
def test_inputs_scaled_over_the_whole_series_are_flagged(market, seed, scaling):
    """The user scaled X with all rows before training: the blob's own statistics are clean."""
    sym, _ = CASES[seed]
    bars, ds = market[sym]
    X = ds.X.astype(np.float64)
    if scaling == "zscore":
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    else:
        X = (X - X.min(axis=0)) / (X.max(axis=0) - X.min(axis=0))
    scaled = replace(ds, X=X.astype(np.float32))
    report = validate(model_for(scaled, seed), scaled, prices=bars, seed=seed, **FAST)
    assert report.flagged_checks(("critical",)) == {"normalisation"}, report.summary()


def test_normalisation_fitted_on_train_and_validation_is_only_a_note(market):
    bars, ds = market["SP500"]
    sp = ds.split()
    rows = np.concatenate([sp.train.X, ds.X[(ds.dates >= sp.train.dates.max()) & (ds.dates < sp.test_start)]])
    report = validate(model_for(ds, 0, norm_rows=rows), ds, prices=bars, **FAST)
    assert not report.flagged
    assert [r.severity for r in report.checks["normalisation"].risks] == ["low"]


# --------------------------------------------------------------------------- clean models

@pytest.mark.parametrize("seed", sorted(CASES))
@pytest.mark.parametrize("with_prices", [True, False])
def test_clean_model_is_not_flagged(market, seed, with_prices):
    sym, _ = CASES[seed]
    bars, ds = market[sym]
    report = validate(model_for(ds, seed), ds, prices=bars if with_prices else None, seed=seed, **FAST)
    assert not report.flagged, report.summary()
    assert not report.leak_suspected
    for name in ("split", "feature_lookahead", "label_shift", "shuffled_labels", "normalisation", "plausibility"):
        assert report.checks[name].status == "pass", (name, report.checks[name].summary)
    assert report.checks["normalisation"].numbers["blob"]["fitted_on"] == "training split"
    assert 0 <= report.confidence <= 1
    assert "no leak was found" in report.answer
    json.dumps(report.to_dict(), allow_nan=False)


@pytest.mark.slow
def test_clean_model_on_several_symbols_at_once():
    bars = load_embedded(["AAPL", "MSFT", "SP500"])
    ds = make_dataset(bars, "momentum", horizon=5)
    report = validate(model_for(ds, 0), ds, prices=bars, **FAST)
    assert not report.flagged, report.summary()
    assert report.metrics["trading"]["symbols"] == ["AAPL", "MSFT", "SP500"]


@pytest.mark.slow
def test_tinygrad_end_to_end():
    """The momentum preset trained by tinygrad, frozen, and validated with the default
    tinygrad fit: a clean model passes, the same trainer on leaked inputs is flagged."""
    bars = load_embedded("SP500")
    ds = make_dataset(bars, "momentum", horizon=5).take(slice(2000, None))  # 2007 on: fewer rows, faster
    leaked = with_column(ds, 3, ds.y.astype(np.float32))
    kw = {"epochs": 3, "patience": None}
    spec = pymicro.preset("momentum")
    reports = {}
    for name, data in (("clean", ds), ("leaked", leaked)):
        train = data.split().train
        fit = tinygrad_fit(spec, horizon=5, **kw)
        fit(train.X, train.y)  # the same trainer, shapes and kernels as the retraining experiments
        blob = pymicro.freeze(fit.last.network, horizon="5")
        reports[name] = validate(blob, data, prices=bars, fit="tinygrad", fit_kwargs=kw, shuffles=1, resamples=100)
    clean, leak = reports["clean"], reports["leaked"]
    assert clean.settings["fit"] == "tinygrad"
    assert clean.checks["shuffled_labels"].status == "pass"
    assert not clean.flagged, clean.summary()
    assert leak.leak_suspected and "feature_lookahead" in leak.flagged_checks(), leak.summary()
    assert leak.metrics["test"]["edge"] > 0.1  # 3 epochs: partly learnt, already far above the baseline
    print(clean.summary(), "\n\n", leak.summary())


# --------------------------------------------------------------------------- split integrity

def test_blob_trained_past_the_test_start_is_flagged(market):
    _, ds = market["SP500"]
    train = ds.split().train
    mean, std = normalization(train.X)
    blob = pymicro.freeze(logistic_network(train.X, train.y, mean, std), horizon="5", train_end="2018-06-01")
    report = validate(blob, ds, **FAST)
    assert "split" in report.flagged_checks(("critical",))
    assert report.checks["split"].numbers["test_rows_before_blob_train_end"] > 0


def test_duplicated_and_overlapping_rows_are_flagged(market):
    bars, ds = market["SP500"]
    sp = ds.split()
    dup = replace(sp.test, X=sp.test.X.copy())
    dup.X[:100] = sp.train.X[:100]
    report = validate(model_for(ds), (sp.train, sp.validation, dup), **FAST)
    assert any(r.check == "split" and r.severity == "high" for r in report.risks)
    # a split without a purge: training labels read test bars
    report = validate(model_for(ds), ds, embargo=0, **FAST)
    assert report.checks["split"].numbers["train_labels_reaching_test"] == 0  # split() purges by label_end anyway
    # arrays without dates: the parts are taken as consecutive bars, which cannot be checked
    no_purge = {"X_train": sp.train.X, "y_train": sp.train.y, "X_test": sp.test.X, "y_test": sp.test.y}
    report = validate(model_for(ds), no_purge, **FAST)
    assert report.checks["split"].numbers["train_labels_reaching_test"] == 5
    assert [r.severity for r in report.checks["split"].risks] == ["medium"]
    # with dates and prices it can: test rows starting the day after the training rows end
    te = ds.take(ds.dates > sp.train.dates.max())
    no_purge = {"X_train": sp.train.X, "y_train": sp.train.y, "X_test": te.X, "y_test": te.y,
                "dates_train": sp.train.dates, "dates_test": te.dates}
    report = validate(model_for(ds), no_purge, prices=bars, **FAST)
    assert report.checks["split"].numbers["train_labels_reaching_test"] == 5
    assert "split" in report.flagged_checks(("critical",))


# --------------------------------------------------------------------------- Sharpe statistics by hand

R = [0.012, -0.004, 0.021, 0.0, -0.011, 0.016, 0.005, -0.002, 0.009, -0.015, 0.013, 0.003]


def by_hand(r):
    n = len(r)
    mu = sum(r) / n
    sd = math.sqrt(sum((x - mu) ** 2 for x in r) / (n - 1))
    m2 = sum((x - mu) ** 2 for x in r) / n
    skew = sum((x - mu) ** 3 for x in r) / n / m2 ** 1.5
    kurt = sum((x - mu) ** 4 for x in r) / n / m2 ** 2
    return mu / sd, skew, kurt, n


def test_probabilistic_sharpe_ratio_by_hand():
    sr, g3, g4, n = by_hand(R)
    for bench in (0.0, 0.1, 0.5):
        z = (sr - bench) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr * sr)
        assert probabilistic_sharpe_ratio(R, bench) == pytest.approx(N.cdf(z), rel=1e-12)
    # a sure loser and a flat series
    assert probabilistic_sharpe_ratio([-0.01, -0.02, -0.01, -0.03]) < 0.05
    assert probabilistic_sharpe_ratio([0.0, 0.0, 0.0]) == 0.5


def test_expected_max_sharpe_and_deflated_sharpe_by_hand():
    v = 0.01
    for trials in (2, 10, 100, 1000):
        e = math.sqrt(v) * ((1 - EULER_GAMMA) * N.inv_cdf(1 - 1 / trials)
                            + EULER_GAMMA * N.inv_cdf(1 - 1 / (trials * math.e)))
        assert expected_max_sharpe(trials, v) == pytest.approx(e, rel=1e-12)
    assert expected_max_sharpe(1, v) == 0.0
    assert expected_max_sharpe(10, v) < expected_max_sharpe(100, v)
    sr, g3, g4, n = by_hand(R)
    sr0 = math.sqrt(1 / (n - 1)) * ((1 - EULER_GAMMA) * N.inv_cdf(1 - 1 / 20)
                                    + EULER_GAMMA * N.inv_cdf(1 - 1 / (20 * math.e)))
    z = (sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr * sr)
    assert deflated_sharpe_ratio(R, 20) == pytest.approx(N.cdf(z), rel=1e-12)
    assert deflated_sharpe_ratio(R, 1) == pytest.approx(probabilistic_sharpe_ratio(R), rel=1e-12)
    dsr = [deflated_sharpe_ratio(R, k) for k in (1, 5, 50, 500)]
    assert dsr == sorted(dsr, reverse=True)


def test_sharpe_statistics():
    st = sharpe_statistics(R, 20, 252)
    sr, g3, g4, _ = by_hand(R)
    assert st["sharpe"] == pytest.approx(pymicro.metrics.sharpe(R, 252))
    assert st["sharpe_per_period"] == pytest.approx(sr)
    assert (st["skew"], st["kurtosis"]) == pytest.approx((g3, g4))
    assert st["dsr"] == pytest.approx(deflated_sharpe_ratio(R, 20))
    # the variance of the trials' Sharpe ratios replaces the null's 1/(n-1)
    trials = [0.5, 1.0, -0.3, 0.2, 1.4]
    st2 = sharpe_statistics(R, 1, 252, trial_sharpes=trials)
    v = np.var(np.array(trials) / math.sqrt(252), ddof=1)
    assert st2["n_trials"] == 5 and st2["sharpe_variance"] == pytest.approx(v)
    assert st2["sr0_per_period"] == pytest.approx(expected_max_sharpe(5, v))
    with pytest.raises(EvaluationError):
        sharpe_statistics([0.01, 0.02], 1)
    with pytest.raises(EvaluationError):
        expected_max_sharpe(0, 0.1)


# --------------------------------------------------------------------------- implausibility flags

def plausibility(edge=0.02, se=0.02, acc=0.45, sharpe=None, periods=1000, win_rate=0.52, max_dd=0.1,
                 trades=100, total=0.1, frequency="daily", n_classes=3):
    summary = {"accuracy": acc}
    trade = None if sharpe is None else {
        "trades": trades, "strategy": {"sharpe": sharpe, "periods": periods, "win_rate": win_rate,
                                       "max_drawdown": max_dd, "total_return": total}}
    c = check_plausibility(summary, {"edge": edge, "se": se}, trade, FREQUENCIES[frequency], n_classes)
    return [r.finding for r in c.risks]


def test_implausibility_flags():
    assert plausibility() == []
    assert plausibility(sharpe=1.0) == []
    assert any("edge" in f for f in plausibility(edge=0.20, se=0.02))  # lower bound 16.7 points > 10
    noisy = plausibility(edge=0.13, se=0.05)  # lower bound 4.8 points: noisy, a caution, not a flag
    assert len(noisy) == 1 and "within sampling error" in noisy[0]
    c = check_plausibility({"accuracy": 0.5}, {"edge": 0.13, "se": 0.05}, None, FREQUENCIES["daily"], 3)
    assert [r.severity for r in c.risks] == ["medium"] and c.status == "warn"
    assert any("up/down" in f for f in plausibility(acc=0.68, se=0.02, n_classes=2))
    assert plausibility(acc=0.58, se=0.02, n_classes=2) == []
    assert any("Sharpe" in f for f in plausibility(sharpe=5.0, periods=1000))
    assert all("within sampling error" in f for f in plausibility(sharpe=5.0, periods=30))  # lower bound ~0
    hourly = plausibility(sharpe=4.0, periods=5000, frequency="hourly")  # under the limit of 5 for hourly bars
    assert not any("implausible" in f for f in hourly)
    # but 4 s.e. above what honest hourly models reach (a third of the limit): evidence, not skill
    assert len(hourly) == 1 and "above the best reference" in hourly[0]
    assert any("Sharpe" in f for f in plausibility(sharpe=4.0, periods=5000, frequency="daily"))
    assert any("win" in f for f in plausibility(sharpe=1.0, win_rate=0.80, periods=500))
    assert any("drawdown" in f for f in plausibility(sharpe=1.0, max_dd=0.001, trades=40))
    assert plausibility(sharpe=1.0, max_dd=0.001, trades=3) == []


# --------------------------------------------------------------------------- inputs, output, CLI

def test_arrays_input_and_errors(market):
    _, ds = market["SP500"]
    sp = ds.split()
    blob = model_for(ds)
    arrays = {"X_train": sp.train.X, "y_train": sp.train.y, "X_val": sp.validation.X, "y_val": sp.validation.y,
              "X_test": sp.test.X, "y_test": sp.test.y, "dates_train": sp.train.dates,
              "dates_val": sp.validation.dates, "dates_test": sp.test.dates}
    report = validate(blob, arrays, **FAST)
    assert not report.flagged, report.summary()
    with pytest.raises(EvaluationError, match="X_val has 24 features but X_train has 5"):
        validate(blob, {**arrays, "X_train": sp.train.X[:, :5]}, **FAST)
    narrow = {**arrays, **{k: arrays[k][:, :5] for k in ("X_train", "X_val", "X_test")}}
    with pytest.raises(EvaluationError, match="24 inputs"):
        validate(blob, narrow, **FAST)
    with pytest.raises(EvaluationError, match="frequency"):
        validate(blob, ds, frequency="yearly")
    with pytest.raises(EvaluationError, match="n_trials"):
        validate(blob, ds, n_trials=0)
    with pytest.raises(EvaluationError, match="X_test"):
        validate(blob, {"X_train": sp.train.X, "y_train": sp.train.y})
    with pytest.raises(EvaluationError, match="fit"):
        validate(blob, ds, fit="forest")


def test_cli_registers_validate(market, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="pymicro")
    add_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["validate", "--help"])
    assert exc.value.code == 0
    assert "deflated Sharpe" in capsys.readouterr().out
    _, ds = market["SP500"]
    train = ds.split().train
    mean, std = normalization(train.X)
    path = tmp_path / "m.pmb"
    pymicro.freeze(logistic_network(train.X, train.y, mean, std), path, horizon="5", preset="momentum",
                   symbols="SP500")
    out = tmp_path / "r.json"
    args = parser.parse_args(["validate", str(path), "--fit", "ridge", "--shuffles", "1", "--n-trials", "10",
                              "--json", str(out)])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "confidence" in text and "deflated for 10 trials" in text
    assert json.loads(out.read_text())["settings"]["n_trials"] == 10
