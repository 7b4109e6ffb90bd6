"""Overfitting to the trials: probabilistic and deflated Sharpe ratios, and the Sharpe check.

Bailey & López de Prado: :func:`probabilistic_sharpe_ratio` (2012), :func:`expected_max_sharpe`
and :func:`deflated_sharpe_ratio` (2014); :func:`sharpe_statistics` gathers them for a return
series and ``n_trials`` configurations tried; :func:`check_sharpe` is validation's check.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from pymicro import metrics as M
from pymicro.errors import EvaluationError
from pymicro.evaluation.verdict import CheckResult, add_risk


EULER_GAMMA = 0.5772156649015329
_N = NormalDist()


def _moments(returns) -> tuple[float, float, float, int]:
    """Per-period Sharpe (mean / sample std), skewness and kurtosis (population moments,
    normal = 3) and the number of periods."""
    r = M._series(returns, "returns")
    n = r.size
    if n < 3:
        raise EvaluationError(f"returns has {n} periods; the Sharpe statistics need at least 3")
    mu = float(r.mean())
    sd = float(r.std(ddof=1))
    c = r - mu
    m2 = float(np.mean(c * c))
    if sd <= 1e-15 * max(1.0, abs(mu)) or m2 <= 0:
        return (0.0 if mu == 0 else math.copysign(math.inf, mu)), 0.0, 3.0, n
    skew = float(np.mean(c ** 3) / m2 ** 1.5)
    kurt = float(np.mean(c ** 4) / m2 ** 2)
    return mu / sd, skew, kurt, n


def probabilistic_sharpe_ratio(returns, benchmark: float = 0.0) -> float:
    """Probability that the true Sharpe ratio exceeds ``benchmark`` (per period), given the
    observed one (Bailey & López de Prado, 2012)::

        PSR(SR*) = Phi( (SR - SR*) sqrt(n - 1) / sqrt(1 - g3 SR + (g4 - 1) / 4 SR^2) )

    ``SR``: per-period Sharpe of ``returns`` (mean / std, ddof=1); ``g3``, ``g4``: their
    skewness and kurtosis (population moments; a normal series has g4 = 3); ``n``: periods.
    """
    sr, g3, g4, n = _moments(returns)
    return _psr(sr, g3, g4, n, benchmark)


def _psr(sr: float, g3: float, g4: float, n: int, benchmark: float) -> float:
    if math.isinf(sr):
        return 1.0 if sr > 0 else 0.0
    den = 1.0 - g3 * sr + (g4 - 1.0) / 4.0 * sr * sr
    den = max(den, 1e-12)
    return float(_N.cdf((sr - benchmark) * math.sqrt(n - 1) / math.sqrt(den)))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios whose true value is 0 (per period)::

        SR0 = sqrt(V) ((1 - gamma) Phi^-1(1 - 1/N) + gamma Phi^-1(1 - 1/(N e)))

    ``gamma`` is the Euler-Mascheroni constant, ``V`` the variance of the trials' Sharpe
    ratios. One trial: 0.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise EvaluationError(f"n_trials must be an int >= 1, got {n_trials!r}")
    if not (isinstance(sharpe_variance, (int, float, np.floating)) and sharpe_variance >= 0):
        raise EvaluationError(f"sharpe_variance must be a number >= 0, got {sharpe_variance!r}")
    if n_trials == 1:
        return 0.0
    n = float(n_trials)
    return math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * _N.inv_cdf(1 - 1 / n)
                                         + EULER_GAMMA * _N.inv_cdf(1 - 1 / (n * math.e)))


def deflated_sharpe_ratio(returns, n_trials: int = 1, *, sharpe_variance: float | None = None) -> float:
    """PSR against the Sharpe ratio the best of ``n_trials`` worthless strategies would show
    (Bailey & López de Prado, 2014): ``PSR(expected_max_sharpe(n_trials, V))``.

    ``sharpe_variance`` (per-period units): the variance of the Sharpe ratios of all
    trials; default ``1 / (n - 1)``, the sampling variance of a Sharpe ratio estimated on
    ``n`` periods when its true value is 0.
    """
    sr, g3, g4, n = _moments(returns)
    v = 1.0 / (n - 1) if sharpe_variance is None else sharpe_variance
    return _psr(sr, g3, g4, n, expected_max_sharpe(n_trials, v))


def sharpe_statistics(returns, n_trials: int = 1, periods_per_year: float = M.PERIODS_PER_YEAR, *,
                      trial_sharpes=None) -> dict:
    """Sharpe ratio (per period and annualised), skewness, kurtosis, PSR against 0, the
    deflation benchmark ``SR0`` for ``n_trials`` and the deflated Sharpe ratio.

    ``trial_sharpes``: the annualised Sharpe ratios of all the configurations tried; their
    variance replaces the null's ``1 / (n - 1)`` (and ``n_trials`` defaults to their number).
    """
    sr, g3, g4, n = _moments(returns)
    P = M._periods(periods_per_year)
    source = "null: 1/(n-1)"
    v = 1.0 / (n - 1)
    if trial_sharpes is not None:
        ts = M._series(trial_sharpes, "trial_sharpes") / math.sqrt(P)
        if ts.size >= 2:
            v = float(ts.var(ddof=1))
            source = f"variance of {ts.size} trial Sharpe ratios"
        n_trials = max(int(n_trials), int(ts.size))
    sr0 = expected_max_sharpe(int(n_trials), v)
    return {"periods": n, "sharpe_per_period": sr, "sharpe": sr * math.sqrt(P) if math.isfinite(sr) else sr,
            "skew": g3, "kurtosis": g4, "psr": _psr(sr, g3, g4, n, 0.0), "n_trials": int(n_trials),
            "sharpe_variance": v, "sharpe_variance_source": source, "sr0_per_period": sr0,
            "sr0": sr0 * math.sqrt(P), "dsr": _psr(sr, g3, g4, n, sr0)}


def check_sharpe(trade, series, n_trials, trial_sharpes, freq, reason) -> CheckResult:
    c = CheckResult("sharpe", "pass", "")
    if trade is None:
        c.status, c.summary = "skipped", reason
        return c
    try:
        st = sharpe_statistics(series["strategy"], n_trials, freq.periods_per_year, trial_sharpes=trial_sharpes)
        bh = sharpe_statistics(series["buy_and_hold"], 1, freq.periods_per_year)
    except EvaluationError as e:
        c.status, c.summary = "skipped", str(e)
        return c
    c.numbers = {**st, "buy_and_hold_sharpe": bh["sharpe"], "buy_and_hold_psr": bh["psr"],
                 "exposure": trade.get("exposure"), "threshold": trade.get("threshold")}
    if trade.get("low_exposure"):
        add_risk(c, "low", "the strategy is " + trade["low_exposure"])
    trials = f"{st['n_trials']} trial{'s' if st['n_trials'] != 1 else ''}"
    if st["dsr"] < 0.5:
        add_risk(c, "medium" if st["psr"] >= 0.95 else "low",
              f"deflated Sharpe ratio {st['dsr']:.2f} for {trials}: the Sharpe ratio {st['sharpe']:.2f} is no "
              f"better than the best of {trials} without skill would show by luck"
              + (" (significant on its own, PSR {:.2f}, but not after the trials)".format(st["psr"])
                 if st["psr"] >= 0.95 else ""))
    exp = trade.get("exposure")
    c.summary = (f"Sharpe {st['sharpe']:.2f}"
                 + (f" in the market {exp:.0%} of the time" if exp is not None else "")
                 + f" (buy-and-hold {bh['sharpe']:.2f}) over {st['periods']} periods; "
                 f"PSR {st['psr']:.2f}, deflated for {trials} {st['dsr']:.2f}")
    return c
