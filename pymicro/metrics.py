"""Classification and trading metrics: small pure numpy functions, conventions stated.

Classification (labels are integer class indices ``0..n_classes-1``; for the presets
``0 = down, 1 = flat, 2 = up``):

    confusion_matrix, accuracy, per_class_recall, balanced_accuracy,
    majority_class, wilson_interval, accuracy_interval, binomial_test

Trading, from one series of per-period *simple* returns ``r_t = P_t / P_{t-1} - 1``
(not log returns), compounded into an equity curve ``E_t = prod(1 + r_1..r_t)`` that
starts at ``E_0 = 1``:

    total_return, annualised_return, sharpe, sortino, max_drawdown, calmar,
    profit_factor, win_rate, turnover, exposure, trading_summary

Conventions, everywhere in this module:

* The risk-free rate is 0: Sharpe and Sortino are of the raw returns.
* ``periods_per_year`` (default 252, trading days) turns per-period figures into
  annual ones: mean x P, volatility x sqrt(P), compounding ^(P / n).
* Sharpe uses the sample standard deviation (``ddof=1``); Sortino's downside deviation
  is the root mean square of ``min(r_t, 0)`` over *all* periods (target 0, ``ddof=0``).
* Degenerate inputs give a defined number, never NaN: a ratio whose denominator is
  zero (no volatility, no drawdown, no losing period) is ``0.0`` when its numerator is
  zero too and ``+/-inf`` otherwise; a rate over nothing (win rate with no active
  period) is ``0.0``. Each function's docstring says which case is which.
* Empty inputs, NaN/Inf, wrong shapes raise :class:`~pymicro.errors.EvaluationError`
  naming the argument and the first bad index.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from pymicro.errors import EvaluationError

PERIODS_PER_YEAR = 252
"""Trading days in a year: the default annualisation of daily series."""

__all__ = [
    "PERIODS_PER_YEAR",
    "periods_per_year_of",
    "accuracy",
    "accuracy_interval",
    "annualised_return",
    "balanced_accuracy",
    "binomial_test",
    "calmar",
    "classification_summary",
    "confusion_matrix",
    "drawdown",
    "equity_curve",
    "exposure",
    "majority_class",
    "max_drawdown",
    "per_class_recall",
    "profit_factor",
    "rolling_sharpe",
    "sharpe",
    "sortino",
    "total_return",
    "trading_summary",
    "turnover",
    "wilson_interval",
    "win_rate",
]


# --------------------------------------------------------------------------- input checks

def _series(x, name: str, *, allow_empty: bool = False) -> np.ndarray:
    """A 1-D finite float64 copy of ``x``."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}") from None
    if a.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise EvaluationError(f"{name} is empty")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(f"{name}[{i}] is {a[i]}; metrics need finite values "
                              f"({int(bad.sum())} non-finite in all)")
    return a


def _labels(y, name: str) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise EvaluationError(f"{name} is empty")
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise EvaluationError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    f = a.astype(np.float64)
    bad = ~np.isfinite(f) | (f != np.round(f)) | (f < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(f"{name}[{i}] is {a[i]}; labels must be integer class indices >= 0")
    return a.astype(np.int64)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise EvaluationError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def _periods(periods_per_year) -> float:
    if isinstance(periods_per_year, bool) or not isinstance(periods_per_year, (int, float, np.number)) \
            or not math.isfinite(periods_per_year) or periods_per_year <= 0:
        raise EvaluationError(f"periods_per_year must be a positive number, got {periods_per_year!r}")
    return float(periods_per_year)


def _ratio(num: float, den: float) -> float:
    """num / den with the module's rule for den == 0: 0.0 if num == 0, else +/-inf."""
    if den == 0:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return float(num / den)


# --------------------------------------------------------------------------- classification

def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of rows whose true class is ``i`` and predicted class is ``j`` (int64).

    ``n_classes`` defaults to one more than the largest label seen.
    """
    t, p = _pair(y_true, y_pred)
    k = int(max(t.max(), p.max())) + 1 if n_classes is None else int(n_classes)
    if max(t.max(), p.max()) >= k:
        raise EvaluationError(f"a label is >= n_classes={k} (largest seen: {max(t.max(), p.max())})")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def accuracy(y_true, y_pred) -> float:
    """Share of rows with ``y_pred == y_true``."""
    t, p = _pair(y_true, y_pred)
    return float(np.mean(t == p))


def per_class_recall(y_true, y_pred, n_classes: int | None = None) -> np.ndarray:
    """Recall of each class, ``C[i, i] / sum_j C[i, j]``; NaN for a class absent from ``y_true``.

    NaN here means "not defined" (no true row of that class) and is skipped by
    :func:`balanced_accuracy`.
    """
    cm = confusion_matrix(y_true, y_pred, n_classes)
    support = cm.sum(axis=1)
    out = np.full(len(cm), np.nan)
    np.divide(np.diag(cm), support, out=out, where=support > 0)
    return out


def balanced_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """Mean of the per-class recalls over the classes present in ``y_true``.

    Always-predicting-one-class scores ``1 / (classes present)``, whatever the class
    balance; that is its point.
    """
    recall = per_class_recall(y_true, y_pred, n_classes)
    return float(np.mean(recall[~np.isnan(recall)]))


def majority_class(y, n_classes: int | None = None) -> int:
    """The most frequent label of ``y`` (the smallest index wins a tie)."""
    a = _labels(y, "y")
    return int(np.argmax(np.bincount(a, minlength=n_classes or 0)))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    ``z`` is the two-sided normal quantile of ``confidence``. Unlike the normal
    approximation it stays inside [0, 1] and is sensible at 0 or n successes.
    """
    if not (isinstance(n, (int, np.integer)) and n > 0):
        raise EvaluationError(f"n must be a positive int, got {n!r}")
    if not (0 <= successes <= n):
        raise EvaluationError(f"successes must be in 0..n={n}, got {successes!r}")
    if not (0 < confidence < 1):
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence!r}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges, no rounding residue
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def accuracy_interval(y_true, y_pred, confidence: float = 0.95, *, method: str = "wilson",
                      block: int = 1, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A confidence interval for accuracy.

    ``method="wilson"``: :func:`wilson_interval`, which treats rows as independent.
    ``method="block_bootstrap"``: percentile interval of the accuracy over ``resamples``
    moving-block bootstrap samples (blocks of ``block`` consecutive rows, seeded). Labels
    over an ``h``-bar horizon overlap, so neighbouring rows are not independent; a block
    of about ``h`` rows or more widens the interval to account for it.
    """
    t, p = _pair(y_true, y_pred)
    hits = (t == p).astype(np.float64)
    if method == "wilson":
        return wilson_interval(int(hits.sum()), int(hits.size), confidence)
    if method != "block_bootstrap":
        raise EvaluationError(f"method must be 'wilson' or 'block_bootstrap', got {method!r}")
    if not (0 < confidence < 1):
        raise EvaluationError(f"confidence must be in (0, 1), got {confidence!r}")
    n = hits.size
    if not (isinstance(block, (int, np.integer)) and 1 <= block <= n):
        raise EvaluationError(f"block must be an int in 1..{n} (rows), got {block!r}")
    rng = np.random.default_rng(seed)
    per_sample = -(-n // block)
    csum = np.concatenate([[0.0], np.cumsum(hits)])
    starts = rng.integers(0, n - block + 1, size=(int(resamples), per_sample))
    block_hits = csum[starts + block] - csum[starts]  # hits in each drawn block
    acc = block_hits.sum(axis=1) / (per_sample * block)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(acc, [alpha, 1 - alpha])
    return float(lo), float(hi)


def binomial_test(successes: int, n: int, p0: float, alternative: str = "greater") -> float:
    """Exact binomial test p-value of ``successes`` out of ``n`` against rate ``p0``.

    ``"greater"``: P(X >= successes) for X ~ Binomial(n, p0), i.e. is the accuracy
    above ``p0`` (e.g. the majority-class rate) by more than chance? ``"less"``:
    P(X <= successes). ``"two-sided"``: the sum of the probabilities of outcomes no
    more likely than the observed one. Computed in log space, exact for any n.
    """
    if not (isinstance(n, (int, np.integer)) and n > 0):
        raise EvaluationError(f"n must be a positive int, got {n!r}")
    if not (0 <= successes <= n):
        raise EvaluationError(f"successes must be in 0..n={n}, got {successes!r}")
    if not (0 <= p0 <= 1):
        raise EvaluationError(f"p0 must be in [0, 1], got {p0!r}")
    if alternative not in ("greater", "less", "two-sided"):
        raise EvaluationError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}")
    if (alternative == "greater" and successes == 0) or (alternative == "less" and successes == n):
        return 1.0  # the whole distribution, exactly
    k = np.arange(n + 1, dtype=np.float64)
    if p0 in (0.0, 1.0):
        pmf = (k == (0 if p0 == 0 else n)).astype(np.float64)
    else:
        log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - k[:-1]) / (k[:-1] + 1)))])
        log_pmf = log_choose + k * math.log(p0) + (n - k) * math.log1p(-p0)
        pmf = np.exp(log_pmf - log_pmf.max())
        pmf /= pmf.sum()
    if alternative == "greater":
        p = pmf[successes:].sum()
    elif alternative == "less":
        p = pmf[: successes + 1].sum()
    else:
        p = pmf[pmf <= pmf[successes] * (1 + 1e-7)].sum()
    return float(min(1.0, p))


def block_mean(d, block: int, seed: int = 0, resamples: int = 2000) -> dict:
    """Mean of ``d`` (rows in time order), its moving-block bootstrap standard error (blocks of
    ``block`` consecutive rows, seeded), and the one-sided p-value of a mean <= 0 (normal
    approximation): ``edge``, ``se``, ``z``, ``p_value``, ``block``."""
    from statistics import NormalDist

    d = np.asarray(d, np.float64)
    n = d.size
    edge = float(d.mean())
    rng = np.random.default_rng(seed)
    csum = np.concatenate([[0.0], np.cumsum(d)])
    b = max(1, min(int(block), n))
    per = -(-n // b)
    starts = rng.integers(0, n - b + 1, size=(resamples, per))
    means = (csum[starts + b] - csum[starts]).sum(axis=1) / (per * b)
    se = float(means.std(ddof=1))
    z = edge / se if se > 0 else (math.inf if edge > 0 else 0.0)
    return {"edge": edge, "se": se, "z": z,
            "p_value": float(1 - NormalDist().cdf(z)) if math.isfinite(z) else 0.0, "block": b}


def classification_summary(y_true, y_pred, *, n_classes: int, majority,
                           confidence: float = 0.95, block: int = 1, seed: int = 0) -> dict:
    """Accuracy (with a confidence interval), balanced accuracy, recalls, confusion matrix,
    and the majority-class baseline on the same rows with a one-sided binomial test.

    ``majority`` is what a majority-class predictor outputs: the training set's most
    frequent label, one int, or one per row when it was retrained (walk-forward).
    ``block > 1`` uses a block bootstrap interval (see :func:`accuracy_interval`) and a
    block-bootstrap p-value of the paired edge over the baseline (:func:`block_mean`); that
    p-value is ``p_value`` (the binomial one, which treats overlapping labels as independent,
    stays in ``p_value_vs_majority``). ``test_class_frequencies``: each class's share of
    these rows, the baseline a reader recognises beside the training majority class.
    JSON-ready: plain ints, floats and lists; the recall of a class absent from
    ``y_true`` is None.
    """
    t, p = _pair(y_true, y_pred)
    base_pred = np.broadcast_to(np.asarray(majority, np.int64), t.shape)
    base = float(np.mean(t == base_pred))
    method = "wilson" if block <= 1 else "block_bootstrap"
    distinct = np.unique(base_pred)
    binomial = binomial_test(int((t == p).sum()), int(t.size), base, "greater")
    edge = block_mean((t == p).astype(np.float64) - (t == base_pred).astype(np.float64), block, seed) \
        if block > 1 else None
    return {
        "n": int(t.size),
        "accuracy": accuracy(t, p),
        "accuracy_ci": accuracy_interval(t, p, confidence, method=method, block=max(1, min(block, t.size))),
        "ci_method": "Wilson" if method == "wilson" else f"block bootstrap, blocks of {block}",
        "confidence": confidence,
        "balanced_accuracy": balanced_accuracy(t, p, n_classes),
        "per_class_recall": [None if math.isnan(v) else v for v in per_class_recall(t, p, n_classes).tolist()],
        "confusion_matrix": confusion_matrix(t, p, n_classes).tolist(),
        "majority_class": int(distinct[0]) if distinct.size == 1 else distinct.tolist(),
        "majority_accuracy": base,
        "majority_balanced_accuracy": balanced_accuracy(t, base_pred, n_classes),
        "p_value_vs_majority": binomial,
        "p_value": binomial if block <= 1 else edge["p_value"],
        "p_value_method": "binomial (rows independent)" if block <= 1 else
                          f"block bootstrap of the paired edge, blocks of {edge['block']} rows",
        "test_class_frequencies": (np.bincount(t, minlength=n_classes)[:n_classes] / t.size).tolist(),
    }


# --------------------------------------------------------------------------- trading

def equity_curve(returns) -> np.ndarray:
    """``E_t = prod_{s <= t} (1 + r_s)``: the value of 1 invested, after each period."""
    return np.cumprod(1.0 + _series(returns, "returns"))


def total_return(returns) -> float:
    """``E_n - 1``: compounded simple return over the whole series."""
    return float(equity_curve(returns)[-1] - 1.0)


def annualised_return(returns, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Compound annual growth rate ``E_n ** (P / n) - 1``; ``-1.0`` if the equity reached 0."""
    P = _periods(periods_per_year)
    r = _series(returns, "returns")
    final = float(np.prod(1.0 + r))
    if final <= 0:
        return -1.0
    return float(math.exp(math.log(final) * P / r.size) - 1.0)


def periods_per_year_of(dates) -> float:
    """Bars per calendar year at the pace of ``dates`` (bar time stamps, increasing):
    ``(n - 1) / (span in years of 365.25 days)``.

    The annualisation for bars of any frequency (daily bars of trading days give about
    252, hourly FX bars about 6,200, volume bars whatever their pace was): pass it as
    ``periods_per_year``. Needs two bars spanning a positive time.
    """
    d = np.asarray(dates, dtype="datetime64[ns]").astype(np.int64)
    if d.ndim != 1 or d.size < 2 or d[-1] <= d[0]:
        raise EvaluationError(f"periods_per_year_of needs at least two increasing time stamps, got {d.size}")
    return float((d.size - 1) / ((d[-1] - d[0]) / (365.25 * 86_400e9)))


def sharpe(returns, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualised Sharpe ratio, risk-free 0: ``sqrt(P) * mean(r) / std(r, ddof=1)``.

    Zero volatility (all returns equal, or a single period): 0.0 if the mean is 0,
    else +/-inf.
    """
    P = _periods(periods_per_year)
    r = _series(returns, "returns")
    mean = float(r.mean())
    sd = float(r.std(ddof=1)) if r.size > 1 else 0.0
    if sd <= 1e-15 * max(1.0, abs(mean)):  # float noise on a constant series
        sd = 0.0
    return _ratio(mean * math.sqrt(P), sd)


def sortino(returns, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualised Sortino ratio, target 0: ``sqrt(P) * mean(r) / sqrt(mean(min(r, 0)^2))``.

    The downside deviation averages over all periods (a gain counts as 0 downside).
    No losing period: 0.0 if the mean is 0, else +inf.
    """
    P = _periods(periods_per_year)
    r = _series(returns, "returns")
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return _ratio(float(r.mean()) * math.sqrt(P), downside)


def rolling_sharpe(returns, window: int, periods_per_year: float = PERIODS_PER_YEAR) -> np.ndarray:
    """Annualised Sharpe of each trailing ``window`` of returns (``sqrt(P) * mean / std``,
    ``ddof=1``), one value per period: NaN before the first full window and where the
    window's variance is 0 (a flat stretch has no Sharpe to plot)."""
    P = _periods(periods_per_year)
    r = _series(returns, "returns", allow_empty=True)
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
        raise EvaluationError(f"window must be a whole number >= 2, got {window!r}")
    out = np.full(r.size, np.nan)
    if r.size < window:
        return out
    c, c2 = np.cumsum(np.r_[0.0, r]), np.cumsum(np.r_[0.0, r * r])
    mean = (c[window:] - c[:-window]) / window
    var = np.maximum((c2[window:] - c2[:-window]) / window - mean * mean, 0.0) * window / (window - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[window - 1:] = np.where(var > 0, mean / np.sqrt(var) * math.sqrt(P), np.nan)
    return out

def drawdown(returns) -> np.ndarray:
    """``1 - E_t / max(E_0..E_t)`` after each period, with ``E_0 = 1`` counted as a peak."""
    equity = equity_curve(returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return 1.0 - equity / peak


def max_drawdown(returns) -> float:
    """Largest peak-to-trough fall of the equity curve, as a positive fraction (0.25 = -25 %).

    The starting capital counts as a peak, so a loss in the first period is a drawdown.
    0.0 when the equity never falls.
    """
    return float(max(0.0, drawdown(returns).max()))


def calmar(returns, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualised return / maximum drawdown, over the whole series (not a trailing 36 months).

    No drawdown: 0.0 if the annualised return is 0, else +inf.
    """
    return _ratio(annualised_return(returns, periods_per_year), max_drawdown(returns))


def profit_factor(returns) -> float:
    """Sum of the positive period returns / |sum of the negative ones|.

    No losing period: 0.0 if there is no gain either (no trades), else +inf.
    """
    r = _series(returns, "returns")
    return _ratio(float(r[r > 0].sum()), float(-r[r < 0].sum()))


def win_rate(returns, positions=None) -> float:
    """Share of *active* periods with a positive return.

    A period is active when the position held over it is non-zero (``positions``,
    aligned with ``returns``: ``positions[t]`` is the position earning ``returns[t]``),
    or, without ``positions``, when its return is non-zero. No active period: 0.0.
    """
    r = _series(returns, "returns")
    if positions is None:
        active = r != 0
    else:
        pos = _series(positions, "positions")
        if pos.shape != r.shape:
            raise EvaluationError(f"positions has {pos.size} values but returns has {r.size}")
        active = pos != 0
    n = int(active.sum())
    return float((r[active] > 0).sum() / n) if n else 0.0


def turnover(positions, initial_position: float = 0.0) -> float:
    """Total position traded, ``sum_t |pos_t - pos_{t-1}|`` with ``pos_{-1} = initial_position``.

    In units of capital: going from flat to long is 1, from long to short is 2.
    Divide by the number of periods and multiply by P for turnover per year.
    """
    pos = _series(positions, "positions", allow_empty=True)
    return float(np.abs(np.diff(pos, prepend=float(initial_position))).sum())


def exposure(positions) -> float:
    """Share of periods with a non-zero position (time in the market), in [0, 1]."""
    pos = _series(positions, "positions")
    return float(np.mean(pos != 0))


def trading_summary(returns, positions=None, periods_per_year: float = PERIODS_PER_YEAR,
                    initial_position: float = 0.0) -> dict:
    """Every trading metric of one return series, as a dict of floats.

    ``positions[t]``, if given, is the position that earned ``returns[t]``; it adds
    ``turnover``, ``turnover_per_year`` and ``exposure`` and defines active periods
    for ``win_rate``.
    """
    P = _periods(periods_per_year)
    r = _series(returns, "returns")
    out = {
        "periods": int(r.size),
        "total_return": total_return(r),
        "annualised_return": annualised_return(r, P),
        "annualised_volatility": float(r.std(ddof=1) * math.sqrt(P)) if r.size > 1 else 0.0,
        "sharpe": sharpe(r, P),
        "sortino": sortino(r, P),
        "max_drawdown": max_drawdown(r),
        "calmar": calmar(r, P),
        "profit_factor": profit_factor(r),
        "win_rate": win_rate(r, positions),
    }
    if positions is not None:
        pos = _series(positions, "positions")
        total = turnover(pos, initial_position)
        out.update(turnover=total, turnover_per_year=total / r.size * P, exposure=exposure(pos))
    return out
