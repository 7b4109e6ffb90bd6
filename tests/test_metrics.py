"""pymicro.metrics against values worked out by hand on tiny series (the arithmetic is in
the comments), and the defined answers for degenerate input."""

import math

import numpy as np
import pytest

from pymicro import metrics as M
from pymicro.errors import EvaluationError, PymicroError

# r = [+1 %, -2 %, +3 %, 0 %]
R = [0.01, -0.02, 0.03, 0.0]


# --------------------------------------------------------------------------- trading

def test_equity_and_total_return():
    # 1.01; 1.01 * 0.98 = 0.9898; 0.9898 * 1.03 = 1.019494; unchanged
    assert M.equity_curve(R) == pytest.approx([1.01, 0.9898, 1.019494, 1.019494], abs=1e-15)
    assert M.total_return(R) == pytest.approx(0.019494, abs=1e-15)


def test_annualised_return():
    # four periods at 4 a year is one year: CAGR = total return
    assert M.annualised_return(R, periods_per_year=4) == pytest.approx(0.019494, abs=1e-14)
    # the same four periods at 2 a year are two years: 1.019494 ** (1 / 2) - 1
    assert M.annualised_return(R, periods_per_year=2) == pytest.approx(1.019494 ** 0.5 - 1, abs=1e-14)
    # +10 % in 126 trading days is (1.1 ** 2 - 1) = 21 % a year
    assert M.annualised_return([0.1] + [0.0] * 125) == pytest.approx(0.21, abs=1e-12)


def test_sharpe_by_hand():
    # mean = 0.02 / 4 = 0.005; deviations +0.005, -0.025, +0.025, -0.005
    # squares sum to 0.000025 + 0.000625 + 0.000625 + 0.000025 = 0.0013; ddof=1 -> var = 0.0013 / 3
    expected = 0.005 / math.sqrt(0.0013 / 3) * math.sqrt(252)
    assert M.sharpe(R) == pytest.approx(expected, rel=1e-12)
    assert M.sharpe(R, periods_per_year=1) == pytest.approx(0.005 / math.sqrt(0.0013 / 3), rel=1e-12)


def test_sortino_by_hand():
    # downside min(r, 0) = [0, -0.02, 0, 0]; mean square over all 4 periods = 0.0004 / 4 = 0.0001
    # downside deviation 0.01; Sortino = 0.005 / 0.01 * sqrt(252)
    assert M.sortino(R) == pytest.approx(0.5 * math.sqrt(252), rel=1e-12)


def test_max_drawdown_and_calmar_by_hand():
    # peak 1.01, trough 0.9898: 1 - 0.9898 / 1.01 = 0.02
    assert M.max_drawdown(R) == pytest.approx(0.02, abs=1e-15)
    assert M.drawdown(R) == pytest.approx([0.0, 0.02, 0.0, 0.0], abs=1e-15)
    # one year (P = 4): 0.019494 / 0.02
    assert M.calmar(R, periods_per_year=4) == pytest.approx(0.019494 / 0.02, rel=1e-12)


def test_drawdown_counts_the_starting_capital_as_a_peak():
    # -10 % on day one, then +5 %: the equity (0.9, 0.945) never beat its start of 1
    assert M.max_drawdown([-0.1, 0.05]) == pytest.approx(0.1, abs=1e-15)
    # several peaks: 1.2 -> 0.6 is the deepest (50 %), later 1.5 -> 1.2 only 20 %
    equity = np.array([1.2, 0.6, 1.5, 1.2])
    r = equity / np.r_[1.0, equity[:-1]] - 1
    assert M.max_drawdown(r) == pytest.approx(0.5, abs=1e-12)


def test_profit_factor_and_win_rate_by_hand():
    # gains 0.01 + 0.03 = 0.04; losses 0.02
    assert M.profit_factor(R) == pytest.approx(2.0, rel=1e-12)
    # active (non-zero) periods: 3, two of them positive
    assert M.win_rate(R) == pytest.approx(2 / 3)
    # with positions: active where the position is non-zero (periods 1, 2, 3: -0.02, +0.03, 0)
    assert M.win_rate(R, positions=[0, 1, 1, 1]) == pytest.approx(1 / 3)


def test_turnover_and_exposure_by_hand():
    # from flat: 0 -> 0 (0), -> 1 (1), -> 1 (0), -> -1 (2), -> 0 (1): 4 units traded
    assert M.turnover([0, 1, 1, -1, 0]) == 4.0
    assert M.turnover([1, 1]) == 1.0  # entering from flat counts
    assert M.turnover([1, 1], initial_position=1.0) == 0.0
    assert M.turnover([0.5, -0.5]) == 1.5
    assert M.exposure([0, 1, 1, -1, 0]) == pytest.approx(0.6)


def test_trading_summary_collects_the_same_numbers():
    s = M.trading_summary(R, positions=[1, 1, -1, 0], periods_per_year=4)
    assert s["periods"] == 4
    assert s["sharpe"] == pytest.approx(M.sharpe(R, 4))
    assert s["max_drawdown"] == pytest.approx(0.02)
    assert s["turnover"] == 4.0  # from flat: 1, 0, 2, 1
    assert s["turnover_per_year"] == pytest.approx(4.0 / 4 * 4)  # 4 units over 4 periods, 4 periods a year
    assert s["exposure"] == pytest.approx(0.75)


# --------------------------------------------------------------------------- degenerate series

def test_no_trades_all_flat_gives_zeros_not_nan():
    flat = np.zeros(10)
    s = M.trading_summary(flat, positions=np.zeros(10))
    for key in ("total_return", "annualised_return", "annualised_volatility", "sharpe", "sortino",
                "max_drawdown", "calmar", "profit_factor", "win_rate", "turnover", "turnover_per_year",
                "exposure"):
        assert s[key] == 0.0, key


def test_zero_volatility_positive_return_is_infinite_not_nan():
    steady = np.full(5, 0.001)
    assert M.sharpe(steady) == math.inf
    assert M.sortino(steady) == math.inf
    assert M.calmar(steady) == math.inf
    assert M.profit_factor(steady) == math.inf
    assert M.max_drawdown(steady) == 0.0
    assert M.win_rate(steady) == 1.0
    assert M.sharpe(-steady) == -math.inf


def test_single_period_and_total_loss():
    assert M.sharpe([0.0]) == 0.0
    assert M.sharpe([0.02]) == math.inf
    assert M.max_drawdown([-1.0]) == 1.0
    assert M.annualised_return([-1.0]) == -1.0
    assert M.annualised_return([-0.5, -1.0, 0.1]) == -1.0


@pytest.mark.parametrize("fn", [M.sharpe, M.sortino, M.max_drawdown, M.total_return, M.profit_factor])
def test_bad_series_raise_evaluation_error(fn):
    with pytest.raises(EvaluationError, match="empty"):
        fn([])
    with pytest.raises(EvaluationError, match=r"returns\[2\] is nan"):
        fn([0.1, 0.0, float("nan")])
    with pytest.raises(EvaluationError, match="1-D"):
        fn([[0.1, 0.2]])
    assert issubclass(EvaluationError, PymicroError)


def test_periods_per_year_is_checked():
    with pytest.raises(EvaluationError, match="periods_per_year"):
        M.sharpe(R, periods_per_year=0)


# --------------------------------------------------------------------------- classification

Y_TRUE = [0, 0, 1, 1, 1, 2]
Y_PRED = [0, 1, 1, 1, 0, 2]


def test_confusion_matrix_accuracy_recall_by_hand():
    # true 0: predicted 0 once, 1 once; true 1: 1 twice, 0 once; true 2: 2 once
    cm = M.confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    assert M.accuracy(Y_TRUE, Y_PRED) == pytest.approx(4 / 6)
    assert M.per_class_recall(Y_TRUE, Y_PRED, 3) == pytest.approx([1 / 2, 2 / 3, 1.0])
    assert M.balanced_accuracy(Y_TRUE, Y_PRED, 3) == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)


def test_balanced_accuracy_skips_a_class_absent_from_y_true():
    recall = M.per_class_recall([0, 0, 1], [0, 2, 1], 3)
    assert recall[0] == 0.5 and recall[1] == 1.0 and np.isnan(recall[2])
    assert M.balanced_accuracy([0, 0, 1], [0, 2, 1], 3) == pytest.approx(0.75)
    # always predicting one class: 1 / (classes present), whatever the balance
    assert M.balanced_accuracy([1] * 8 + [0, 2], [1] * 10, 3) == pytest.approx(1 / 3)


def test_majority_class_tie_goes_to_smallest_index():
    assert M.majority_class([2, 2, 1, 0, 1]) == 1
    assert M.majority_class([2, 2, 0]) == 2


def test_wilson_interval_textbook_value():
    # 8 of 10 at 95 %: the textbook Wilson interval is (0.4902, 0.9433)
    lo, hi = M.wilson_interval(8, 10, 0.95)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    # stays inside [0, 1] at the edges
    assert M.wilson_interval(0, 5)[0] == 0.0 and M.wilson_interval(5, 5)[1] == 1.0
    assert M.accuracy_interval([1] * 8 + [0] * 2, [1] * 10) == (lo, hi)


def test_block_bootstrap_widens_for_clustered_hits():
    # the same 50 % accuracy, hits in one run: neighbouring rows are not independent
    y_true = np.zeros(100, int)
    y_pred = np.r_[np.zeros(50, int), np.ones(50, int)]
    lo1, hi1 = M.accuracy_interval(y_true, y_pred, method="block_bootstrap", block=1, seed=0)
    lo10, hi10 = M.accuracy_interval(y_true, y_pred, method="block_bootstrap", block=10, seed=0)
    assert lo1 <= 0.5 <= hi1 and lo10 <= 0.5 <= hi10
    assert hi10 - lo10 > 1.5 * (hi1 - lo1)
    assert M.accuracy_interval(y_true, y_pred, method="block_bootstrap", block=10, seed=0) == (lo10, hi10)


def test_binomial_test_by_hand():
    # X ~ Bin(10, 0.5): P(X >= 8) = (C(10,8) + C(10,9) + C(10,10)) / 2^10 = (45 + 10 + 1) / 1024
    assert M.binomial_test(8, 10, 0.5, "greater") == pytest.approx(56 / 1024, rel=1e-12)
    assert M.binomial_test(8, 10, 0.5, "less") == pytest.approx(1 - 11 / 1024, rel=1e-12)
    assert M.binomial_test(8, 10, 0.5, "two-sided") == pytest.approx(112 / 1024, rel=1e-12)
    # P(X >= 2) for Bin(3, 0.2) = 3 * 0.04 * 0.8 + 0.008 = 0.104
    assert M.binomial_test(2, 3, 0.2) == pytest.approx(0.104, rel=1e-12)
    assert M.binomial_test(0, 10, 0.3) == 1.0
    assert M.binomial_test(3, 3, 1.0) == 1.0 and M.binomial_test(1, 3, 0.0) == 0.0
    # large n: exact and finite (no overflow)
    p = M.binomial_test(5300, 10000, 0.5)
    assert 0 < p < 1e-8


def test_classification_summary_with_per_row_majority():
    s = M.classification_summary(Y_TRUE, Y_PRED, n_classes=3, majority=[1, 1, 1, 1, 0, 0])
    assert s["accuracy"] == pytest.approx(4 / 6)
    # majority predictions 1,1,1,1,0,0 vs truth 0,0,1,1,1,2: right twice
    assert s["majority_accuracy"] == pytest.approx(2 / 6)
    assert s["majority_class"] == [0, 1]
    assert s["p_value_vs_majority"] == pytest.approx(M.binomial_test(4, 6, 2 / 6))
    assert s["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 0, 1]]
    # JSON-ready: a class absent from y_true has recall None, not NaN
    s = M.classification_summary([0, 0, 1], [0, 2, 1], n_classes=3, majority=0)
    assert s["per_class_recall"] == [0.5, 1.0, None] and s["majority_class"] == 0


def test_bad_labels_raise_evaluation_error():
    with pytest.raises(EvaluationError, match="y_pred has 2"):
        M.accuracy([0, 1, 2], [0, 1])
    with pytest.raises(EvaluationError, match=r"y_true\[1\] is -1"):
        M.accuracy([0, -1], [0, 1])
    with pytest.raises(EvaluationError, match="empty"):
        M.accuracy([], [])
    with pytest.raises(EvaluationError, match="n_classes=2"):
        M.confusion_matrix([0, 2], [0, 1], 2)


def test_rolling_sharpe_is_the_sharpe_of_each_trailing_window():
    r = np.random.default_rng(7).normal(0.0005, 0.01, 120)
    r[60:75] = 0.002  # a flat stretch: zero variance, no Sharpe
    w = 10
    got = M.rolling_sharpe(r, w, 252)
    assert got.shape == r.shape and np.isnan(got[: w - 1]).all()
    for t in range(w - 1, r.size):
        window = r[t - w + 1: t + 1]
        if np.ptp(window) == 0:
            assert np.isnan(got[t])
        else:
            assert got[t] == pytest.approx(M.sharpe(window, 252), rel=1e-6, abs=1e-9)
    assert np.isnan(M.rolling_sharpe(r[:5], w)).all()
    with pytest.raises(EvaluationError, match="window"):
        M.rolling_sharpe(r, 1)
