"""Validation with reasoning: is a trained model's out-of-sample figure real?

    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.evaluation.validation import validate

    ds = make_dataset(load_embedded("SP500"), "momentum", horizon=5)
    report = validate("momentum.pmb", ds, prices=load_embedded("SP500"), n_trials=20)
    print(report.answer)          # plain language
    report.risks                  # [Risk(check, severity, finding), ...]
    report.confidence             # in [0, 1]
    report.checks["label_shift"].numbers   # each check's raw numbers
    report.to_dict()              # strict JSON

Every finding comes from an experiment or a computation on the data given, never from a
rule of thumb alone:

* ``split``: the parts are chronological, no training label reads a test bar (purge),
  no test row is a copy of a training row, and the blob's own training dates (metadata
  ``train_end``/``test_start`` written by the trainer) do not reach into the test rows.
* ``feature_lookahead``: for every input feature, its correlation with each single future
  bar return ``r_{t+1} .. r_{t+2h}`` (with prices) and the change of its correlation with
  the label when the label is shifted one bar further into the future (always). A causal
  feature knows bars up to ``t`` only; a strong tie to a future bar is a peek.
* ``label_shift``: the same for the model's own output on out-of-sample rows, its
  accuracy against labels shifted by ``-2h .. +2h`` bars, and a retraining experiment:
  the same ``fit`` trained to predict the label ``h`` bars later. Honest inputs lose
  little when the target moves to a later, equally unknown window; inputs that peek at
  the first bars after ``t`` lose everything they had.
* ``shuffled_labels``: the same ``fit`` retrained on block-permuted training labels:
  the null distribution of the out-of-sample accuracy and label correlation. It must
  collapse: null fits whose scores still track the test labels mean some input carries
  the label; null fits above the majority-class baseline mean the evaluation does. The
  real model is ranked against it (permutation p-values).
* ``normalisation``: the blob's mean/std (and the inputs themselves) are matched
  against the statistics of every date-ordered prefix of the data: a normalisation
  fitted on rows that reach into the test period is found and dated.
* ``train_test_gap``, ``accuracy``, ``sharpe`` (probabilistic and deflated Sharpe
  ratio for ``n_trials``), ``plausibility`` (figures impossible for the frequency).

The formulas, thresholds and what these checks cannot see are in ``docs/validation.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from pymicro import metrics as M
from pymicro.errors import EvaluationError, TrainingError
from pymicro.evaluation.backtest import positions_from_probabilities, run_backtest
from pymicro.evaluation.backtest import tinygrad_fit as _fit
from pymicro.market.dataset import Dataset, Split
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import Model, load
from pymicro.runtime.model import spec_of
from pymicro.runtime.spec import Network

__all__ = [
    "EULER_GAMMA",
    "FREQUENCIES",
    "SEVERITIES",
    "CheckResult",
    "Frequency",
    "Risk",
    "ValidationReport",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "probabilistic_sharpe_ratio",
    "ridge_fit",
    "sharpe_statistics",
    "tinygrad_fit",
    "validate",
]

EULER_GAMMA = 0.5772156649015329
SEVERITIES = ("critical", "high", "medium", "low", "info")
PENALTY = {"critical": 0.05, "high": 0.25, "medium": 0.7, "low": 0.9, "info": 1.0}
"""Each risk multiplies the confidence by its severity's factor (see :func:`validate`)."""
SKIPPED_PENALTY = 0.9
Z_FLAG = 4.0  # a statistic must also be this many standard errors from zero to flag a leak
_N = NormalDist()


@dataclass(frozen=True)
class Frequency:
    """What is physically plausible for a causal model on bars of one frequency.

    ``max_bar_corr``: largest |correlation| between a causal signal at ``t`` and one future
    bar's return. ``max_edge``: accuracy points above the majority class. ``max_sharpe``:
    annualised out-of-sample Sharpe net of costs. ``max_win_rate``: share of winning
    periods while in the market. Above any of these a figure is flagged as implausible.
    """

    name: str
    periods_per_year: float
    max_bar_corr: float
    max_edge: float
    max_binary_accuracy: float
    max_sharpe: float
    max_win_rate: float


FREQUENCIES: dict[str, Frequency] = {f.name: f for f in (
    Frequency("minute", 252 * 390, 0.30, 0.10, 0.60, 8.0, 0.70),
    Frequency("hourly", 252 * 6.5, 0.20, 0.10, 0.60, 5.0, 0.68),
    Frequency("daily", 252, 0.15, 0.10, 0.60, 3.0, 0.65),
    Frequency("weekly", 52, 0.20, 0.12, 0.62, 2.5, 0.68),
    Frequency("monthly", 12, 0.25, 0.15, 0.65, 2.0, 0.70),
)}


# =========================================================================== results

@dataclass(frozen=True)
class Risk:
    """One finding: which check, how bad (``critical`` .. ``info``), and what was found."""

    check: str
    severity: str
    finding: str

    def to_dict(self) -> dict:
        return {"check": self.check, "severity": self.severity, "finding": self.finding}


@dataclass
class CheckResult:
    """One check: ``status`` is "pass", "flag" (a critical or high risk), "warn" (a lesser
    risk) or "skipped" (its inputs were missing); ``numbers`` holds its raw figures."""

    name: str
    status: str
    summary: str
    numbers: dict = field(default_factory=dict)
    risks: list[Risk] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "summary": self.summary,
                "numbers": _json(self.numbers), "risks": [r.to_dict() for r in self.risks]}


@dataclass
class ValidationReport:
    """What :func:`validate` returns. ``flagged``: a critical or high risk was found.
    ``leak_suspected``: a critical one (a leak, not merely an implausible figure)."""

    metrics: dict
    answer: str
    risks: list[Risk]
    confidence: float
    checks: dict[str, CheckResult]
    settings: dict
    seconds: float = 0.0

    @property
    def flagged(self) -> bool:
        return any(r.severity in ("critical", "high") for r in self.risks)

    @property
    def leak_suspected(self) -> bool:
        return any(r.severity == "critical" for r in self.risks)

    def flagged_checks(self, severities=("critical", "high")) -> set[str]:
        """Names of the checks that raised a risk of one of ``severities``."""
        return {r.check for r in self.risks if r.severity in severities}

    def to_dict(self) -> dict:
        """Strict JSON values (``json.dumps(..., allow_nan=False)`` works)."""
        return _json({"answer": self.answer, "confidence": self.confidence, "flagged": self.flagged,
                      "leak_suspected": self.leak_suspected, "risks": [r.to_dict() for r in self.risks],
                      "metrics": self.metrics, "checks": {k: c.to_dict() for k, c in self.checks.items()},
                      "settings": self.settings, "seconds": self.seconds})

    def summary(self) -> str:
        """A plain-text report: the answer, the risks, one line per check."""
        lines = [self.answer, ""]
        if self.risks:
            lines.append("risks:")
            order = {s: i for i, s in enumerate(SEVERITIES)}
            for r in sorted(self.risks, key=lambda r: order[r.severity]):
                lines.append(f"  [{r.severity}] {r.check}: {r.finding}")
        else:
            lines.append("risks: none found")
        lines += ["", "checks:"]
        width = max(len(k) for k in self.checks)
        for name, c in self.checks.items():
            lines.append(f"  {name.ljust(width)}  {c.status:7s}  {c.summary}")
        lines.append(f"\nconfidence {self.confidence:.2f}  ({self.seconds:.1f} s)")
        return "\n".join(lines)


def _json(v):
    if isinstance(v, dict):
        return {str(k): _json(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_json(x) for x in v.tolist()]
    if isinstance(v, np.datetime64) or type(v).__name__ == "Timestamp":
        return str(np.datetime64(v, "D"))
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


# =========================================================================== Sharpe statistics

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


# =========================================================================== fits

def ridge_fit(alpha: float = 1.0, temperature: float = 0.1) -> Callable:
    """A fast linear stand-in for the retraining experiments: ridge regression of the
    one-hot labels on the standardised inputs (statistics of the rows it is given).
    ``fit(X, y) -> predict_proba``; probabilities are a softmax of the scores / ``temperature``.
    """
    def fit(X, y):
        X = np.asarray(X, np.float64)
        y = np.asarray(y, np.int64)
        mean, std = X.mean(axis=0), X.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        Z = (X - mean) / std
        k = int(y.max()) + 1 if fit.n_classes is None else fit.n_classes
        Y = np.eye(k)[y]
        Ym = Y.mean(axis=0)
        W = np.linalg.solve(Z.T @ Z + alpha * len(Z) * 1e-3 * np.eye(Z.shape[1]), Z.T @ (Y - Ym))

        def predict_proba(Xt):
            s = ((np.asarray(Xt, np.float64) - mean) / std) @ W + Ym
            s = (s - s.max(axis=1, keepdims=True)) / temperature
            e = np.exp(s)
            return e / e.sum(axis=1, keepdims=True)
        return predict_proba

    fit.n_classes = None
    fit.__name__ = "ridge"
    return fit


def tinygrad_fit(spec, *, horizon: int, epochs: int = 8, batch_size: int = 64, patience: int | None = 3,
                 learning_rate: float = 1e-3, seed: int = 0) -> Callable:
    """The default ``fit``: pymicro's tinygrad trainer on the model's own architecture
    (:func:`pymicro.evaluation.backtest.tinygrad_fit`: the last 20 % of the rows it is given hold out
    for early stopping after a ``horizon``-row purge; frozen; native runtime). Few epochs:
    the experiments compare fits with each other, not with the model's own training."""

    f = _fit(spec, horizon=horizon, epochs=epochs, batch_size=batch_size, patience=patience,
             learning_rate=learning_rate, seed=seed)
    f.__name__ = "tinygrad"
    return f


# =========================================================================== inputs

@dataclass
class _Rows:
    """All rows, date-ordered, with ``part`` 0 train / 1 validation / 2 test / -1 none."""

    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    symbols: np.ndarray
    part: np.ndarray
    feature_names: tuple[str, ...] | None
    label_names: tuple[str, ...] | None
    horizon: int
    label_end: np.ndarray | None = None
    synthetic_dates: bool = False

    def idx(self, p: int) -> np.ndarray:
        return np.flatnonzero(self.part == p)


def _as_rows(data, horizon, train, validation, embargo) -> _Rows:

    if isinstance(data, Dataset):
        split = data.split(train=train, validation=validation, embargo=embargo)
        part = np.full(len(data), -1, np.int8)
        key = {}
        for p, ds in enumerate(split):
            for d, s in zip(ds.dates.tolist(), ds.symbols.tolist()):
                key[(d, s)] = p
        part[:] = [key.get((d, s), -1) for d, s in zip(data.dates.tolist(), data.symbols.tolist())]
        return _Rows(np.asarray(data.X, np.float32), np.asarray(data.y, np.int64), np.asarray(data.dates),
                     np.asarray(data.symbols, object), part, tuple(data.feature_names),
                     tuple(data.label_names), int(data.horizon), np.asarray(data.label_end))
    parts = None
    if isinstance(data, Split) or (isinstance(data, (tuple, list)) and len(data) == 3
                                   and all(isinstance(d, Dataset) for d in data)):
        parts = list(data)
    if parts is not None:
        rows = [(p, ds) for p, ds in enumerate(parts) if len(ds)]
        X = np.concatenate([ds.X for _, ds in rows]).astype(np.float32)
        cat = lambda a: np.concatenate([getattr(ds, a) for _, ds in rows])
        part = np.concatenate([np.full(len(ds), p, np.int8) for p, ds in rows])
        dates, symbols = cat("dates"), cat("symbols").astype(object)
        order = np.lexsort((symbols.astype(str), dates))
        first = parts[0]
        return _Rows(X[order], cat("y").astype(np.int64)[order], dates[order], symbols[order], part[order],
                     tuple(first.feature_names), tuple(first.label_names), int(first.horizon),
                     cat("label_end")[order])
    if isinstance(data, dict):
        return _rows_from_arrays(data, horizon)
    raise EvaluationError(f"data must be a pymicro Dataset, a Split (train, validation, test) or a dict of "
                          f"arrays (X_train, y_train, X_test, y_test, ...); got {type(data).__name__}")


def _rows_from_arrays(d: dict, horizon) -> _Rows:
    known = {f"{a}_{p}" for a in ("X", "y", "dates", "symbols") for p in ("train", "val", "test")}
    unknown = sorted(set(d) - known - {"feature_names", "label_names"})
    if unknown:
        raise EvaluationError(f"unknown keys {unknown} in data; known: {sorted(known)}")
    for k in ("X_train", "y_train", "X_test", "y_test"):
        if k not in d:
            raise EvaluationError(f"data needs {k} (arrays mode: X_train, y_train, X_test, y_test; "
                                  "X_val, y_val, dates_*, symbols_* optional)")
    Xs, ys, ds, ss, ps = [], [], [], [], []
    synthetic = False
    offset = 0
    for p, name in enumerate(("train", "val", "test")):
        if f"X_{name}" not in d:
            continue
        X = np.asarray(d[f"X_{name}"], np.float32)
        y = np.asarray(d[f"y_{name}"])
        if X.ndim != 2 or y.shape != (X.shape[0],):
            raise EvaluationError(f"X_{name} {X.shape} and y_{name} {y.shape} must be (rows, features) and (rows,)")
        n = X.shape[0]
        if Xs and X.shape[1] != Xs[0].shape[1]:
            raise EvaluationError(f"X_{name} has {X.shape[1]} features but X_train has {Xs[0].shape[1]}")
        if f"dates_{name}" in d:
            dates = np.asarray(d[f"dates_{name}"], "datetime64[ns]")
        else:  # consecutive bars, one per day, in the order given
            synthetic = True
            dates = np.datetime64("2000-01-01", "ns") + (offset + np.arange(n)).astype("timedelta64[D]")
        offset += n
        sym = np.asarray(d.get(f"symbols_{name}", np.full(n, "series", object)), object)
        if dates.shape != (n,) or sym.shape != (n,):
            raise EvaluationError(f"dates_{name}/symbols_{name} need one entry per row ({n})")
        Xs.append(X), ys.append(M._labels(y, f"y_{name}")), ds.append(dates), ss.append(sym)
        ps.append(np.full(n, p, np.int8))
    X, y, dates, sym, part = (np.concatenate(a) for a in (Xs, ys, ds, ss, ps))
    order = np.lexsort((sym.astype(str), dates))
    h = 5 if horizon is None else int(horizon)
    fn = d.get("feature_names")
    ln = d.get("label_names")
    return _Rows(X[order], y[order], dates[order], sym[order], part[order], tuple(fn) if fn else None,
                 tuple(ln) if ln else None, h, None, synthetic)


def _price_table(prices, symbols) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{symbol: (dates datetime64[ns], closes float64)} from a long OHLCV frame, a wide frame
    (index dates, a column per symbol) or one Series of closes (one symbol)."""
    import pandas as pd

    syms = sorted(set(map(str, symbols)))
    out = {}
    if isinstance(prices, pd.Series):
        if len(syms) != 1:
            raise EvaluationError(f"prices is one Series but the data holds {len(syms)} symbols {syms}: pass a long "
                                  "OHLCV frame (date, symbol, close) or a wide frame with a column per symbol")
        s = prices.dropna().sort_index()
        out[syms[0]] = (np.asarray(s.index, "datetime64[ns]"), s.to_numpy(np.float64))
    elif isinstance(prices, pd.DataFrame):
        cols = {str(c).lower(): c for c in prices.columns}
        if "close" in cols and "date" in cols:
            sym_col = cols.get("symbol")
            groups = prices.groupby(sym_col) if sym_col is not None else [(syms[0] if len(syms) == 1 else None,
                                                                         prices)]
            for sym, g in groups:
                if sym is None:
                    raise EvaluationError("prices has no symbol column but the data holds several symbols")
                g = g.sort_values(cols["date"])
                out[str(sym)] = (np.asarray(pd.to_datetime(g[cols["date"]]), "datetime64[ns]"),
                                 g[cols["close"]].to_numpy(np.float64))
        else:
            for c in prices.columns:
                s = prices[c].dropna().sort_index()
                out[str(c)] = (np.asarray(s.index, "datetime64[ns]"), s.to_numpy(np.float64))
    else:
        raise EvaluationError(f"prices must be a pandas Series or DataFrame, got {type(prices).__name__}")
    if len(syms) == 1 and syms[0] not in out and len(out) == 1:  # one series, named differently
        out = {syms[0]: next(iter(out.values()))}
    for sym, (_, c) in out.items():
        if not np.all(np.isfinite(c) & (c > 0)):
            raise EvaluationError(f"prices for {sym} hold a non-finite or non-positive close")
    return out


class _Bars:
    """Bar positions of the rows, and lookups of labels / bar returns ``k`` bars away."""

    def __init__(self, rows: _Rows, table):
        n = len(rows.y)
        self.rows = rows
        self.table = table
        self.pos = np.full(n, -1, np.int64)
        self.symbols = sorted(set(map(str, rows.symbols)))
        self.maps: dict[str, np.ndarray] = {}
        sym_str = rows.symbols.astype(str)
        self.members = {s: np.flatnonzero(sym_str == s) for s in self.symbols}
        for s, idx in self.members.items():
            if table is not None and s in table:
                cal = table[s][0]
                p = np.searchsorted(cal, rows.dates[idx])
                ok = (p < cal.size) & (cal[np.minimum(p, cal.size - 1)] == rows.dates[idx])
                self.pos[idx[ok]] = p[ok]
            else:  # rank among this symbol's rows (rows are date-ordered)
                self.pos[idx] = np.arange(idx.size)
            good = idx[self.pos[idx] >= 0]
            m = np.full(int(self.pos[good].max()) + 1 if good.size else 0, -1, np.int64)
            m[self.pos[good]] = good
            self.maps[s] = m
        self.calendar = table is not None and all(s in table for s in self.symbols)

    def shifted(self, values: np.ndarray, k: int) -> np.ndarray:
        """``out[i]``: ``values`` at the row of the same symbol ``k`` bars after row ``i`` (NaN if none)."""
        out = np.full(len(values), np.nan)
        for s, idx in self.members.items():
            m = self.maps[s]
            p = self.pos[idx] + k
            ok = (self.pos[idx] >= 0) & (p >= 0) & (p < m.size)
            j = np.full(idx.size, -1)
            j[ok] = m[p[ok]]
            hit = j >= 0
            out[idx[hit]] = values[j[hit]]
        return out

    def bar_return(self, k: int) -> np.ndarray:
        """Log return of the bar ``k`` bars after each row's bar (k=0: the row's own bar)."""
        out = np.full(len(self.pos), np.nan)
        if self.table is None:
            return out
        for s, idx in self.members.items():
            if s not in self.table:
                continue
            c = self.table[s][1]
            p = self.pos[idx] + k
            ok = (self.pos[idx] >= 0) & (p >= 1) & (p < c.size)
            out[idx[ok]] = np.log(c[p[ok]] / c[p[ok] - 1])
        return out


# =========================================================================== statistics helpers

def _corr(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson correlations between the columns of A (n, p) and B (n, q): (p, q)."""
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    num = A.T @ B
    den = np.sqrt((A * A).sum(axis=0))[:, None] * np.sqrt((B * B).sum(axis=0))[None, :]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _boot_corr(F: np.ndarray, G: np.ndarray, block: int, resamples: int, rng) -> np.ndarray:
    """Block-bootstrap replicates of ``_corr(F, G)``: (resamples, p, q).

    Rows are cut into non-overlapping blocks of ``block`` rows; each replicate draws as many
    blocks with replacement, and its correlations come from the blocks' summed sufficient
    statistics (sums, sums of squares and cross-products), so no replicate touches the rows.
    """
    n, p = F.shape
    q = G.shape[1]
    F = F - F.mean(axis=0)
    G = G - G.mean(axis=0)
    b = max(1, min(int(block), n))
    nb = -(-n // b)
    pad = nb * b - n
    if pad:  # the last block is short: pad with zero rows and count only the real rows
        F = np.vstack([F, np.zeros((pad, p))])
        G = np.vstack([G, np.zeros((pad, q))])
    cnt = np.full(nb, float(b))
    cnt[-1] = b - pad
    Fb, Gb = F.reshape(nb, b, p), G.reshape(nb, b, q)
    stats = np.concatenate([Fb.sum(1), (Fb * Fb).sum(1), Gb.sum(1), (Gb * Gb).sum(1),
                            np.einsum("kip,kiq->kpq", Fb, Gb).reshape(nb, p * q), cnt[:, None]], axis=1)
    draws = rng.integers(0, nb, size=(resamples, nb))
    W = np.zeros((resamples, nb))
    np.add.at(W, (np.repeat(np.arange(resamples), nb), draws.ravel()), 1.0)
    S = W @ stats
    o = 0
    sf, sff = S[:, o:o + p], S[:, o + p:o + 2 * p]
    o += 2 * p
    sg, sgg = S[:, o:o + q], S[:, o + q:o + 2 * q]
    o += 2 * q
    sfg = S[:, o:o + p * q].reshape(resamples, p, q)
    m = S[:, -1]
    vf = sff - sf * sf / m[:, None]
    vg = sgg - sg * sg / m[:, None]
    cov = sfg - sf[:, :, None] * sg[:, None, :] / m[:, None, None]
    den = np.sqrt(np.maximum(vf, 0))[:, :, None] * np.sqrt(np.maximum(vg, 0))[:, None, :]
    return np.divide(cov, den, out=np.zeros_like(cov), where=den > 0)


def _scan(signals: np.ndarray, bars: _Bars, rows_mask: np.ndarray, h: int, bound_bar: float,
          names: list[str], resamples: int, seed: int) -> dict:
    """Look-ahead statistics of each signal column (see docs/validation.md, feature_lookahead)."""
    s_lab = bars.rows.y.astype(np.float64)  # class index: ordinal (down < flat < up)
    K = 2 * h
    L = np.column_stack([bars.shifted(s_lab, k) for k in range(K + 1)])
    have_prices = bars.table is not None
    R = np.column_stack([bars.bar_return(j) for j in range(K + 1)]) if have_prices else None
    ok = rows_mask & np.isfinite(signals).all(axis=1) & np.isfinite(L).all(axis=1)
    if have_prices:
        okr = ok & np.isfinite(R).all(axis=1)
        if okr.sum() >= 0.5 * ok.sum():
            ok = okr
        else:
            have_prices = False
    n = int(ok.sum())
    if n < 30:
        return {"rows": n, "error": "fewer than 30 rows with known shifted labels"}
    F = signals[ok].astype(np.float64)
    Lk = L[ok]
    const = F.std(axis=0) == 0
    Cl = _corr(F, Lk)
    D = Cl[:, :-1] - Cl[:, 1:]  # D[:, k] ~ cov(f, r_{t+k+1}) - cov(f, r_{t+k+h+1})
    Cr = _corr(F, R[ok]) if have_prices else None
    # block bootstrap standard errors (rows are date-major: a block spans ~4h dates of every symbol)
    rng = np.random.default_rng(seed)
    block = 4 * h * max(1, len(bars.symbols))
    G = np.hstack([Lk, R[ok]]) if have_prices else Lk
    boot = _boot_corr(F, G, block, resamples, rng)
    se_D = np.std(boot[:, :, :K] - boot[:, :, 1:K + 1], axis=0, ddof=1)
    se_R = np.std(boot[:, :, K + 1:], axis=0, ddof=1) if have_prices else None
    bound_D = bound_bar / math.sqrt(h)
    out = []
    for i, name in enumerate(names):
        if const[i]:
            out.append({"name": name, "constant": True, "flagged": False})
            continue
        k = int(np.argmax(np.abs(D[i])))
        dz = abs(D[i, k]) / max(se_D[i, k], 1e-12)
        entry = {"name": name, "label_corr": Cl[i].tolist(), "label_step": D[i].tolist(),
                 "max_label_step": float(D[i, k]), "max_label_step_bar": k + 1, "label_step_z": float(dz),
                 "label_flag": bool(abs(D[i, k]) > bound_D and dz > Z_FLAG)}
        if have_prices:
            fut = np.abs(Cr[i, 1:])
            j = int(np.argmax(fut)) + 1
            rz = abs(Cr[i, j]) / max(se_R[i, j], 1e-12)
            # a window that straddles t: the tie to bar t+1 continues the tie to bar t, same sign
            c0, c1 = Cr[i, 0], Cr[i, 1]
            z1 = abs(c1) / max(se_R[i, 1], 1e-12)
            straddle = bool(abs(c1) > bound_bar / 2 and c0 * c1 > 0 and abs(c1) >= 0.5 * abs(c0) and z1 > Z_FLAG)
            entry.update({"bar_corr": Cr[i].tolist(), "last_bar_corr": float(c0),
                          "max_future_bar_corr": float(Cr[i, j]), "max_future_bar": j, "bar_corr_z": float(rz),
                          "next_bar_z": float(z1),
                          "price_flag": bool(abs(Cr[i, j]) > bound_bar and rz > Z_FLAG), "straddle_flag": straddle})
        entry["flagged"] = bool(entry["label_flag"] or entry.get("price_flag", False)
                                or entry.get("straddle_flag", False))
        out.append(entry)
    return {"rows": n, "prices_used": have_prices, "bound_bar_corr": bound_bar, "bound_label_step": bound_D,
            "z_flag": Z_FLAG, "resamples": resamples, "block_rows": block, "shifts": list(range(K + 1)),
            "signals": out}


def _edge_test(y, pred, majority, block: int, seed: int, resamples: int = 2000) -> dict:
    """Paired edge over the majority class, with a moving-block bootstrap standard error."""
    y = np.asarray(y)
    d = (pred == y).astype(np.float64) - (majority == y).astype(np.float64)
    return _block_mean(d, block, seed, resamples)


def _block_mean(d: np.ndarray, block: int, seed: int, resamples: int = 2000) -> dict:
    """Mean of ``d``, its moving-block bootstrap standard error, and the one-sided p-value
    of a mean <= 0 (normal approximation): ``edge``, ``se``, ``z``, ``p_value``, ``block``."""
    n = d.size
    edge = float(d.mean())
    rng = np.random.default_rng(seed)
    csum = np.concatenate([[0.0], np.cumsum(d)])
    b = max(1, min(block, n))
    per = -(-n // b)
    starts = rng.integers(0, n - b + 1, size=(resamples, per))
    means = (csum[starts + b] - csum[starts]).sum(axis=1) / (per * b)
    se = float(means.std(ddof=1))
    z = edge / se if se > 0 else (math.inf if edge > 0 else 0.0)
    return {"edge": edge, "se": se, "z": z, "p_value": float(1 - _N.cdf(z)) if math.isfinite(z) else 0.0,
            "block": b}


# =========================================================================== the checks

def _risk(check: CheckResult, severity: str, finding: str) -> None:
    check.risks.append(Risk(check.name, severity, finding))
    if severity in ("critical", "high"):
        check.status = "flag"
    elif severity in ("medium", "low") and check.status == "pass":
        check.status = "warn"


def _check_split(rows: _Rows, bars: _Bars, model_meta: dict, model_features) -> CheckResult:
    c = CheckResult("split", "pass", "")
    tr, va, te = rows.idx(0), rows.idx(1), rows.idx(2)
    nums = {"rows": {"train": int(tr.size), "validation": int(va.size), "test": int(te.size)}}
    day = lambda v: str(np.datetime64(v, "D"))
    if not rows.synthetic_dates:
        nums.update(train_dates=[day(rows.dates[tr].min()), day(rows.dates[tr].max())],
                    test_dates=[day(rows.dates[te].min()), day(rows.dates[te].max())])
        if va.size:
            nums["validation_dates"] = [day(rows.dates[va].min()), day(rows.dates[va].max())]
    if rows.dates[tr].max() >= rows.dates[te].min():
        k = int((rows.dates[te] <= rows.dates[tr].max()).sum())
        _risk(c, "critical", f"{k} test rows are dated on or before the last training row "
                             f"({day(rows.dates[tr].max())}): the split is not chronological")
    # purge: does a training label read a bar of the test period?
    h = rows.horizon
    reach = 0
    for idx in bars.members.values():
        ti = idx[rows.part[idx] == 0]
        ei = idx[rows.part[idx] == 2]
        if ti.size and ei.size:
            if rows.label_end is not None:
                reach += int((rows.label_end[ti] >= rows.dates[ei].min()).sum())
            else:
                reach += int((bars.pos[ti] + h >= bars.pos[ei].min()).sum())
    exact = rows.label_end is not None or bars.calendar
    nums["train_labels_reaching_test"] = reach
    nums["purge_check"] = ("label_end dates" if rows.label_end is not None else "price calendar" if bars.calendar
                           else "assumed: the parts' rows are consecutive bars (no dates/prices to check)")
    if reach and exact:
        _risk(c, "critical", f"{reach} training labels read bars of the test period (their {h}-bar horizon "
                             "ends after the test start): purge/embargo missing")
    elif reach:
        _risk(c, "medium", f"if the rows are consecutive bars, the last {reach} training labels read bars of the "
                           f"test period ({h}-bar horizon); pass dates and prices (or a Dataset) to check, or leave "
                           f"an embargo of {h} bars between the parts")
    # exact duplicates of test rows among training rows
    if tr.size and te.size:
        train_keys = {r.tobytes() for r in np.ascontiguousarray(rows.X[tr])}
        dup = sum(r.tobytes() in train_keys for r in np.ascontiguousarray(rows.X[te]))
        nums["test_rows_duplicated_in_train"] = int(dup)
        if dup > max(5, 0.01 * te.size):
            _risk(c, "high", f"{dup} of {te.size} test rows are exact copies of training rows: the model may "
                             "have seen them")
    # the blob's own training period
    for key in ("train_end", "test_start"):
        if key in model_meta:
            nums[f"blob_{key}"] = model_meta[key]
    if "train_end" in model_meta and not rows.synthetic_dates:
        try:
            train_end = np.datetime64(str(model_meta["train_end"])[:10], "D")
        except ValueError:
            train_end = None
        if train_end is not None:
            seen = int((rows.dates[te].astype("datetime64[D]") < train_end).sum())
            nums["test_rows_before_blob_train_end"] = seen
            if seen:
                _risk(c, "critical", f"the blob says it was trained on data up to {train_end}, but {seen} test rows "
                                     f"are dated before that: they are in the model's training period")
    if model_features and rows.feature_names and tuple(model_features) != tuple(rows.feature_names):
        diff = [f"{a}!={b}" for a, b in zip(model_features, rows.feature_names) if a != b][:3]
        _risk(c, "high", f"the blob's feature names differ from the data's ({', '.join(diff)}): the inputs may be "
                         "in a different order or computed differently from training")
    c.numbers = nums
    c.summary = (f"train {tr.size}, validation {va.size}, test {te.size} rows; chronological, purged" if not c.risks
                 else "; ".join(r.finding for r in c.risks))
    return c


def _check_features(rows: _Rows, bars: _Bars, freq: Frequency, seed: int, resamples: int) -> CheckResult:
    c = CheckResult("feature_lookahead", "pass", "")
    names = list(rows.feature_names or [f"x{i}" for i in range(rows.X.shape[1])])
    scan = _scan(rows.X, bars, np.ones(len(rows.y), bool), rows.horizon, freq.max_bar_corr, names,
                 resamples, seed)
    c.numbers = scan
    if "error" in scan:
        c.status, c.summary = "skipped", scan["error"]
        return c
    bad = [s for s in scan["signals"] if s["flagged"]]
    for s in bad:
        _risk(c, "critical", f"feature {s['name']!r} peeks ahead: " + _peek_findings(s, freq))
    top = max((s for s in scan["signals"] if not s.get("constant")),
              key=lambda s: abs(s.get("max_future_bar_corr", s["max_label_step"])))
    key = "max_future_bar_corr" if scan["prices_used"] else "max_label_step"
    c.summary = (f"{len(bad)} of {len(names)} features tied to future bars: "
                 + ", ".join(s["name"] for s in bad) if bad else
                 f"no feature tied to a future bar ({scan['rows']} rows; largest: {top['name']} "
                 f"{key.replace('_', ' ')} {top[key]:+.3f})")
    return c


def _peek_findings(s: dict, freq: Frequency) -> str:
    """Plain-language findings of one flagged signal of :func:`_scan` (a feature or the model's output)."""
    parts = []
    if s.get("price_flag"):
        parts.append(f"correlation {s['max_future_bar_corr']:+.2f} with the return of bar t+{s['max_future_bar']} "
                     f"({s['bar_corr_z']:.0f} s.e.; causal {freq.name} inputs stay under {freq.max_bar_corr:.2f})")
    if s.get("straddle_flag") and not s.get("price_flag"):
        parts.append(f"its correlation with the return of bar t+1 ({s['bar_corr'][1]:+.2f}, {s['next_bar_z']:.0f} s.e.) "
                     f"continues its correlation with bar t ({s['last_bar_corr']:+.2f}): its window ends after t")
    if s["label_flag"]:
        parts.append(f"its correlation with the label drops by {s['max_label_step']:+.2f} when the label moves "
                     f"from t+{s['max_label_step_bar'] - 1} to t+{s['max_label_step_bar']} "
                     f"({s['label_step_z']:.0f} s.e.): it knows bar t+{s['max_label_step_bar']}")
    return "; ".join(parts)


def _check_label_shift(rows: _Rows, bars: _Bars, probs_all: np.ndarray, freq: Frequency, seed: int,
                       resamples: int, shift_exp: dict | None, n_classes: int) -> CheckResult:
    c = CheckResult("label_shift", "pass", "")
    h = rows.horizon
    oos = rows.part >= 1
    values = np.linspace(-1.0, 1.0, n_classes)
    score = (probs_all @ values)[:, None]
    pred = probs_all.argmax(axis=1).astype(np.float64)
    scan = _scan(score, bars, oos, h, freq.max_bar_corr, ["model"], resamples, seed + 7)
    nums: dict = {"model_scan": scan}
    # accuracy against labels shifted by -2h .. 2h bars, on out-of-sample rows
    acc = {}
    yf = rows.y.astype(np.float64)
    for k in range(-2 * h, 2 * h + 1):
        ys = bars.shifted(yf, k)
        ok = oos & np.isfinite(ys)
        if ok.sum() >= 30:
            acc[k] = float(np.mean(pred[ok] == ys[ok]))
    nums["accuracy_by_shift"] = acc
    if acc:
        nums["peak_shift"] = int(max(acc, key=acc.get))
    if "error" not in scan:
        s = scan["signals"][0]
        if s["flagged"]:
            _risk(c, "critical", "the model's predictions know a future bar: " + _peek_findings(s, freq))
    if shift_exp is not None:
        nums["retrain"] = shift_exp
        drop, se = shift_exp["ic_drop"], shift_exp["ic_drop_se"]
        if drop > freq.max_bar_corr and drop > Z_FLAG * se:
            _risk(c, "critical", f"retrained to predict the label {h} bars later, the same inputs lose their skill: "
                                 f"the fit's correlation with its target falls from {shift_exp['ic']:+.2f} to "
                                 f"{shift_exp['ic_shifted']:+.2f} ({drop / max(se, 1e-12):.0f} s.e.); honest inputs "
                                 "know as little about one future window as about the next")
    c.numbers = nums
    if not c.risks:
        bits = []
        if "error" not in scan:
            s = scan["signals"][0]
            if scan["prices_used"]:
                bits.append(f"output vs next-bar return corr {s['bar_corr'][1]:+.3f}")
            bits.append(f"label step {s['label_step'][0]:+.3f}")
        if shift_exp is not None:
            bits.append(f"retrained fit's label corr {shift_exp['ic']:+.3f} at t, "
                        f"{shift_exp['ic_shifted']:+.3f} at t+{h}")
        c.summary = "no tie to future bars (" + ", ".join(bits) + ")"
    else:
        c.summary = "; ".join(r.finding for r in c.risks)
    return c


def _check_normalisation(rows: _Rows, mean, std) -> CheckResult:
    c = CheckResult("normalisation", "pass", "")
    X = rows.X.astype(np.float64)
    N = X.shape[0]
    order = np.argsort(rows.dates, kind="stable")  # date order (already, for our inputs)
    Xo = X[order]
    part_o = rows.part[order]
    scale = Xo.std(axis=0)
    live = scale > 0
    tr = rows.idx(0)
    te_pos = np.flatnonzero(part_o == 2)
    va_pos = np.flatnonzero(part_o == 1)
    first_test = int(te_pos.min()) if te_pos.size else N
    first_val = int(va_pos.min()) if va_pos.size else first_test
    nums: dict = {"rows": N, "first_validation_row": first_val, "first_test_row": first_test, "tolerance": 0.02}

    def prefix_match(target_mean, target_std, kind):
        """Distance of each date-ordered prefix's statistics to the targets (in units of the
        whole data's std, max over features)."""
        shift = Xo.mean(axis=0)
        Z = Xo - shift
        cnt = np.arange(1, N + 1)[:, None]
        mu = np.cumsum(Z, axis=0) / cnt
        var = np.maximum(np.cumsum(Z * Z, axis=0) / cnt - mu * mu, 0.0)
        mu += shift
        sd = np.sqrt(var)
        s = np.where(live, scale, 1.0)
        if kind == "zscore":
            dist = np.maximum(np.abs(mu - target_mean) / s, np.abs(sd - target_std) / s)
        else:
            lo = np.minimum.accumulate(Xo, axis=0)
            hi = np.maximum.accumulate(Xo, axis=0)
            dist = np.maximum(np.abs(lo - target_mean), np.abs(hi - target_std)) / np.maximum(np.abs(target_std), 1)
        dist = dist[:, live].max(axis=1)
        dist[: min(20, N)] = np.inf
        return dist

    def describe(dist, what):
        m = int(np.argmin(dist))
        best = float(dist[m])
        end_date = str(np.datetime64(rows.dates[order][m], "D"))
        info = {"best_prefix_rows": m + 1, "best_prefix_end": end_date, "distance": best,
                "distance_full": float(dist[-1])}
        if best < 0.02:
            test_rows = max(0, m + 1 - first_test)
            val_rows = max(0, min(m + 1, first_test) - first_val)
            info.update(identified=True, test_rows_used=int(test_rows), validation_rows_used=int(val_rows))
            if test_rows:
                _risk(c, "critical", f"{what} matches the statistics of the rows up to {end_date} "
                                     f"({m + 1} of {N} rows, distance {best:.1e}), {test_rows} of them test rows: "
                                     "the normalisation was fitted on data that includes the test period")
            elif val_rows:
                _risk(c, "low", f"{what} matches the rows up to {end_date}, including {val_rows} validation rows "
                                "(early stopping saw normalised-with-validation data; test rows are clean)")
        else:
            info["identified"] = False
        return info

    has_norm = mean is not None and std is not None and not (np.all(np.asarray(mean) == 0)
                                                             and np.all(np.asarray(std) == 1))
    if has_norm:
        mean = np.asarray(mean, np.float64)
        std = np.asarray(std, np.float64)
        if mean.shape != (X.shape[1],):
            c.status, c.summary = "skipped", f"blob normalisation has {mean.shape} entries for {X.shape[1]} features"
            return c
        if tr.size:
            Xt = X[tr]
            s = np.where(live, scale, 1.0)
            d_tr = np.maximum(np.abs(Xt.mean(axis=0) - mean) / s, np.abs(Xt.std(axis=0) - std) / s)[live].max()
            nums["distance_train_split"] = float(d_tr)
        else:
            d_tr = math.inf
        if d_tr < 1e-3:
            nums["blob"] = {"identified": True, "fitted_on": "training split", "distance": float(d_tr)}
        else:
            nums["blob"] = describe(prefix_match(mean, std, "zscore"), "the blob's mean/std")
            if not nums["blob"]["identified"]:
                te = rows.idx(2)
                s = np.where(live, scale, 1.0)
                d_te = float(np.maximum(np.abs(X[te].mean(axis=0) - mean) / s,
                                        np.abs(X[te].std(axis=0) - std) / s)[live].max()) if te.size else math.inf
                nums["distance_test_split"] = d_te
                if d_te < 0.02:
                    _risk(c, "critical", "the blob's mean/std are the statistics of the test rows")
                else:
                    _risk(c, "low", "the blob's mean/std match neither the training split nor any date-ordered "
                                    "prefix of the data: cannot confirm they were fitted on training rows only")
    else:
        nums["blob"] = {"identified": None, "fitted_on": "no normalisation in the blob"}
    # the inputs themselves: standardised or min-max scaled over a window reaching the test?
    for kind, a, b, what in (("zscore", np.zeros(X.shape[1]), np.ones(X.shape[1]), "the inputs' mean 0 / std 1"),
                             ("minmax", np.zeros(X.shape[1]), np.ones(X.shape[1]), "the inputs' min 0 / max 1"),
                             ("minmax", -np.ones(X.shape[1]), np.ones(X.shape[1]), "the inputs' min -1 / max 1")):
        info = describe(prefix_match(a, b, kind), what)
        nums[f"inputs_{kind}_{int(a[0])}"] = info
    c.numbers = nums
    if c.risks:
        c.summary = "; ".join(r.finding for r in c.risks)
    else:
        fitted = nums["blob"].get("fitted_on") or (f"rows up to {nums['blob'].get('best_prefix_end')}"
                                                   if nums["blob"].get("identified") else "unidentified rows")
        c.summary = f"blob normalisation: {fitted}; inputs not scaled over the test period"
    return c


def _check_gap(rows, pred_all, majority, freq, seed, test_edge) -> CheckResult:
    c = CheckResult("train_test_gap", "pass", "")
    tr = rows.idx(0)
    te = rows.idx(2)
    h = rows.horizon
    y = rows.y
    block = h * max(1, len(set(map(str, rows.symbols))))
    tr_edge = _edge_test(y[tr], pred_all[tr], np.full(tr.size, majority), block, seed + 3, 500)
    acc_tr = float(np.mean(pred_all[tr] == y[tr]))
    acc_te = float(np.mean(pred_all[te] == y[te]))
    gap = acc_tr - acc_te
    edge_gap = tr_edge["edge"] - test_edge["edge"]
    se = math.hypot(tr_edge["se"], test_edge["se"])
    nums = {"train_accuracy": acc_tr, "test_accuracy": acc_te, "gap": gap, "train_edge": tr_edge["edge"],
            "test_edge": test_edge["edge"], "edge_gap": edge_gap, "edge_gap_se": se}
    va = rows.idx(1)
    if va.size:
        nums["validation_accuracy"] = float(np.mean(pred_all[va] == y[va]))
    if edge_gap > max(0.10, Z_FLAG * se):
        _risk(c, "medium", f"training edge {tr_edge['edge'] * 100:+.1f} points vs test {test_edge['edge'] * 100:+.1f}: "
                           "the model fits its training rows far better than new ones (overfitting)")
    if -edge_gap > max(0.05, 3 * se) and test_edge["edge"] > freq.max_edge / 2:
        _risk(c, "high", f"the test edge ({test_edge['edge'] * 100:+.1f} points) is well above the training edge "
                         f"({tr_edge['edge'] * 100:+.1f}): a model is not better on data it never saw unless that "
                         "data leaks into its inputs")
    c.numbers = nums
    c.summary = (f"train {acc_tr:.1%} vs test {acc_te:.1%} (edges {tr_edge['edge'] * 100:+.1f} / "
                 f"{test_edge['edge'] * 100:+.1f} points over the majority class)")
    if c.risks:
        c.summary += ": " + "; ".join(r.finding for r in c.risks)
    return c


def _check_shuffled(exp: dict | None, model_acc: float, model_ic: float, base_acc: float, test_se: float,
                    freq: Frequency, reason: str) -> CheckResult:
    c = CheckResult("shuffled_labels", "pass", "")
    if exp is None:
        c.status, c.summary = "skipped", reason
        return c
    accs = np.asarray(exp["accuracies"])
    ics = np.asarray(exp["ics"])
    null_edge = float(accs.mean() - base_acc)
    null_abs_ic = float(np.abs(ics).mean())
    p_acc = float((1 + np.sum(accs >= model_acc)) / (1 + accs.size))
    p_ic = float((1 + np.sum(ics >= model_ic)) / (1 + ics.size))
    c.numbers = {**exp, "majority_accuracy": base_acc, "null_edge": null_edge, "null_mean_abs_ic": null_abs_ic,
                 "model_accuracy": model_acc, "model_ic": model_ic, "permutation_p_accuracy": p_acc,
                 "permutation_p_ic": p_ic}
    bound = max(freq.max_bar_corr, 3.0 * exp["null_ic_se"])  # a mean of |N(0, se)| draws: E = 0.8 se
    c.numbers["null_ic_bound"] = bound
    if null_abs_ic > bound:
        _risk(c, "critical", f"models trained on shuffled labels still track the test labels (mean |correlation| "
                             f"{null_abs_ic:.2f}, a random score stays near {exp['null_ic_se']:.2f}): whatever weight "
                             "a fit puts on the inputs by chance carries label information, so some input is tied "
                             f"to the label more than a causal {freq.name} feature can be")
    if null_edge > max(0.03, 3 * test_se):
        _risk(c, "high", f"models trained on shuffled labels still beat the majority class by "
                         f"{null_edge * 100:.1f} points out of sample: the evaluation itself carries label "
                         "information (or the baseline is misstated)")
    c.summary = (f"{accs.size} retrain{'s' if accs.size != 1 else ''} on block-shuffled labels: test accuracy "
                 f"{accs.mean():.1%} (max {accs.max():.1%}) vs majority {base_acc:.1%}, label corr |{null_abs_ic:.3f}|; "
                 f"model {model_acc:.1%}, {model_ic:+.3f} (permutation p = {p_acc:.2f} / {p_ic:.2f})")
    if exp.get("true_label_accuracy") is not None:
        c.summary += f"; same fit on true labels {exp['true_label_accuracy']:.1%}, {exp['true_label_ic']:+.3f}"
    return c


def _trading(rows: _Rows, table, probs_all, majority, freq, cost_bps, slippage_bps, threshold, n_classes,
             class_positions):
    import pandas as pd


    te = rows.idx(2)
    cp = class_positions
    if cp is None and n_classes != 3:
        cp = np.linspace(-1, 1, n_classes)
    legs = {"strategy": {}, "buy_and_hold": {}, "majority_class": {}}
    trades = 0
    missing = []
    for s in sorted(set(map(str, rows.symbols[te]))):
        idx = te[rows.symbols[te].astype(str) == s]
        if s not in table or idx.size < 3:
            missing.append(s)
            continue
        cal, close = table[s]
        p = np.searchsorted(cal, rows.dates[idx])
        ok = (p < cal.size) & (cal[np.minimum(p, cal.size - 1)] == rows.dates[idx])
        if not ok.all():
            missing.append(s)
            continue
        # one bar past the last test row so the last position earns its next bar
        bars_p = np.append(p, p[-1] + 1) if p[-1] + 1 < cal.size else p
        pos = positions_from_probabilities(probs_all[idx], threshold, False, cp)
        if bars_p.size > p.size:
            pos = np.append(pos, 0.0)
        res = run_backtest(close[bars_p], pos, cost_bps, slippage_bps, dates=cal[bars_p],
                           periods_per_year=freq.periods_per_year, majority_class=majority, class_positions=cp)
        trades += int(np.count_nonzero(np.diff(res.strategy.positions, prepend=0.0)))
        for name, leg in (("strategy", res.strategy), ("buy_and_hold", res.baselines["buy_and_hold"]),
                          ("majority_class", res.baselines["majority_class"])):
            legs[name][s] = pd.Series(leg.returns, index=res.dates)
    if not legs["strategy"]:
        return None, missing
    out = {"symbols": sorted(legs["strategy"]), "missing_prices": missing, "trades": trades,
           "cost_bps": cost_bps, "slippage_bps": slippage_bps, "threshold": threshold,
           "portfolio": "equal weight across symbols, daily mean of their net returns"}
    series = {}
    for name, per in legs.items():
        r = pd.DataFrame(per).mean(axis=1).to_numpy()
        series[name] = r
        out[name] = M.trading_summary(r, periods_per_year=freq.periods_per_year)
    return out, series


def _check_sharpe(trade, series, n_trials, trial_sharpes, freq, reason) -> CheckResult:
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
    c.numbers = {**st, "buy_and_hold_sharpe": bh["sharpe"], "buy_and_hold_psr": bh["psr"]}
    trials = f"{st['n_trials']} trial{'s' if st['n_trials'] != 1 else ''}"
    if st["dsr"] < 0.5:
        _risk(c, "medium" if st["psr"] >= 0.95 else "low",
              f"deflated Sharpe ratio {st['dsr']:.2f} for {trials}: the Sharpe ratio {st['sharpe']:.2f} is no "
              f"better than the best of {trials} without skill would show by luck"
              + (" (significant on its own, PSR {:.2f}, but not after the trials)".format(st["psr"])
                 if st["psr"] >= 0.95 else ""))
    c.summary = (f"Sharpe {st['sharpe']:.2f} (buy-and-hold {bh['sharpe']:.2f}) over {st['periods']} periods; "
                 f"PSR {st['psr']:.2f}, deflated for {trials} {st['dsr']:.2f}")
    return c


def _check_accuracy(summary: dict, edge: dict, label_names) -> CheckResult:
    c = CheckResult("accuracy", "pass", "")
    c.numbers = {**summary, "edge": edge["edge"], "edge_se_block": edge["se"], "edge_z": edge["z"],
                 "p_value_block": edge["p_value"], "block": edge["block"]}
    lo, hi = summary["accuracy_ci"]
    maj = summary["majority_class"]
    name = label_names[maj] if label_names and isinstance(maj, int) and maj < len(label_names) else str(maj)
    if edge["p_value"] >= 0.05:
        _risk(c, "medium", f"the edge over always predicting {name!r} ({edge['edge'] * 100:+.1f} points) is not "
                           f"statistically significant (p = {edge['p_value']:.2f}, block bootstrap)")
    c.summary = (f"accuracy {summary['accuracy']:.1%} ({lo:.1%}..{hi:.1%}) vs majority {summary['majority_accuracy']:.1%}: "
                 f"{edge['edge'] * 100:+.1f} points, p = {edge['p_value']:.2g} (block bootstrap), "
                 f"{summary['p_value_vs_majority']:.2g} (binomial)")
    return c


def _check_plausibility(summary, edge, trade, freq, n_classes) -> CheckResult:
    c = CheckResult("plausibility", "pass", "")
    nums = {"frequency": freq.name, "limits": {"max_edge": freq.max_edge, "max_binary_accuracy": freq.max_binary_accuracy,
                                              "max_sharpe": freq.max_sharpe, "max_win_rate": freq.max_win_rate}}
    z = _N.inv_cdf(0.95)  # one-sided 95 %: a figure is implausible when even its lower bound is
    edge_lo = edge["edge"] - z * edge["se"]
    acc_lo = summary["accuracy"] - z * edge["se"]
    nums.update(edge=edge["edge"], edge_lower_bound=edge_lo)
    if edge_lo > freq.max_edge:
        _risk(c, "high", f"an accuracy edge of {edge['edge'] * 100:.1f} points over the majority class (lower 95 % "
                         f"bound {edge_lo * 100:.1f}) is implausible for {freq.name} direction labels "
                         f"(limit {freq.max_edge * 100:.0f})")
    elif edge["edge"] > freq.max_edge:
        _risk(c, "medium", f"an accuracy edge of {edge['edge'] * 100:.1f} points is above what is plausible for "
                           f"{freq.name} direction labels ({freq.max_edge * 100:.0f}), though within sampling error "
                           f"(lower 95 % bound {edge_lo * 100:.1f}): expect it to shrink on new data")
    if n_classes == 2 and acc_lo > freq.max_binary_accuracy:
        _risk(c, "high", f"{summary['accuracy']:.1%} accuracy on {freq.name} up/down labels (lower 95 % bound "
                         f"{acc_lo:.1%}) is implausible (limit {freq.max_binary_accuracy:.0%})")
    if trade is not None:
        s = trade["strategy"]
        P, n = freq.periods_per_year, s["periods"]
        sr = s["sharpe"] / math.sqrt(P) if math.isfinite(s["sharpe"]) else s["sharpe"]
        sr_lo = (sr - z * math.sqrt((1 + sr * sr / 2) / max(n - 1, 1))) * math.sqrt(P) if math.isfinite(sr) else sr
        wr_lo = s["win_rate"] - z * math.sqrt(max(s["win_rate"] * (1 - s["win_rate"]), 0) / max(n, 1))
        nums.update(sharpe=s["sharpe"], sharpe_lower_bound=sr_lo, win_rate=s["win_rate"], win_rate_lower_bound=wr_lo,
                    max_drawdown=s["max_drawdown"], trades=trade["trades"], periods=n)
        if sr_lo > freq.max_sharpe:
            _risk(c, "high", f"an out-of-sample Sharpe ratio of {s['sharpe']:.1f} net of costs (lower 95 % bound "
                             f"{sr_lo:.1f}) is implausible for {freq.name} bars (limit {freq.max_sharpe:g})")
        elif s["sharpe"] > freq.max_sharpe:
            _risk(c, "medium", f"an out-of-sample Sharpe ratio of {s['sharpe']:.1f} is above what is plausible for "
                               f"{freq.name} bars ({freq.max_sharpe:g}), though within sampling error (lower 95 % "
                               f"bound {sr_lo:.1f}): expect it to shrink")
        if wr_lo > freq.max_win_rate and n >= 50:
            _risk(c, "high", f"{s['win_rate']:.0%} of periods in the market win: implausible for {freq.name} bars "
                             f"(limit {freq.max_win_rate:.0%})")
        if s["max_drawdown"] < 0.005 and trade["trades"] >= 20 and s["total_return"] > 0 and s["periods"] >= 60:
            _risk(c, "high", f"{trade['trades']} trades and a maximum drawdown of {s['max_drawdown']:.2%}: "
                             "real signals lose some of the time")
    c.numbers = nums
    c.summary = "figures within what is plausible for " + freq.name + " bars" if not c.risks else \
        "; ".join(r.finding for r in c.risks)
    return c


# =========================================================================== experiments

def _block_permute(y: np.ndarray, bars: _Bars, idx: np.ndarray, block: int, rng) -> np.ndarray:
    """Permute the order of blocks of ``block`` consecutive labels within each symbol."""
    out = y.copy()
    sym = bars.rows.symbols[idx].astype(str)
    for s in np.unique(sym):
        loc = np.flatnonzero(sym == s)
        blocks = [loc[i:i + block] for i in range(0, loc.size, block)]
        perm = rng.permutation(len(blocks))
        src = np.concatenate([blocks[i] for i in perm])
        out[loc] = y[src]
    return out


def _cyclic_shift(y: np.ndarray, bars: _Bars, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels ``k`` rows later within each symbol (cyclic, so the shape is unchanged), and a
    mask of the rows whose shifted label is real (not wrapped)."""
    out = y.copy()
    real = np.ones(idx.size, bool)
    sym = bars.rows.symbols[idx].astype(str)
    for s in np.unique(sym):
        loc = np.flatnonzero(sym == s)
        out[loc] = np.roll(y[loc], -k)
        real[loc[loc.size - k:]] = False
    return out, real


def _experiments(rows, bars, fit, shuffles, seed, majority, n_classes) -> tuple[dict, dict | None]:
    """The retraining experiments, each scored on the test rows by accuracy and by the
    information coefficient (IC: correlation of the fit's score with the ordinal label),
    which, unlike accuracy, does not move with the mix of classes a fit happens to predict."""
    tr = rows.idx(0)
    te = rows.idx(2)
    h = rows.horizon
    Xtr, ytr = rows.X[tr], rows.y[tr]
    Xte, yte = rows.X[te], rows.y[te]
    block = h * max(1, len(bars.symbols))
    values = np.linspace(-1.0, 1.0, n_classes)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()

    def run(X, y):
        proba = np.asarray(fit(X, y)(Xte), np.float64)
        if proba.shape != (te.size, n_classes):
            raise EvaluationError(f"fit's predict_proba returned {proba.shape} for {te.size} test rows; "
                                  f"expected ({te.size}, {n_classes})")
        return proba.argmax(axis=1), proba @ values

    # 1. the same fit on the true labels: the reference; 2. on the labels h bars later
    pred0, sc0 = run(Xtr, ytr)
    y_sh, _ = _cyclic_shift(ytr, bars, tr, h)
    pred_h, sch = run(Xtr, y_sh)
    yte_h, real = _cyclic_shift(yte, bars, te, h)
    maj_h = M.majority_class(y_sh, n_classes)
    d0 = ((pred0 == yte).astype(float) - (yte == majority))[real]
    dh = ((pred_h == yte_h).astype(float) - (yte_h == maj_h))[real]
    F = np.column_stack([sc0, sch])[real]
    G = np.column_stack([yte, yte_h])[real].astype(np.float64)
    C = _corr(F, G)
    boot = _boot_corr(F, G, 4 * block, 500, rng)
    shift = {"shift_bars": h, "rows": int(real.sum()), "ic": float(C[0, 0]), "ic_shifted": float(C[1, 1]),
             "ic_drop": float(C[0, 0] - C[1, 1]), "ic_drop_se": float(np.std(boot[:, 0, 0] - boot[:, 1, 1], ddof=1)),
             "ic_se": float(np.std(boot[:, 0, 0], ddof=1)),
             "edge": float(d0.mean()), "edge_shifted": float(dh.mean()), "edge_drop": float(d0.mean() - dh.mean()),
             "accuracy": float(np.mean(pred0 == yte)), "accuracy_shifted": float(np.mean((pred_h == yte_h)[real]))}
    # 3. shuffled labels
    accs, scores = [], []
    for _ in range(int(shuffles)):
        y_perm = _block_permute(ytr, bars, tr, 2 * h, rng)
        pred, sc = run(Xtr, y_perm)
        accs.append(float(np.mean(pred == yte)))
        scores.append(sc)
    if not shuffles:
        return shift, None
    S = np.column_stack(scores)
    y1 = yte[:, None].astype(np.float64)
    ics = _corr(S, y1)[:, 0]
    null_se = float(np.mean(np.std(_boot_corr(S, y1, 4 * block, 500, rng)[:, :, 0], axis=0, ddof=1)))
    shuffled = {"repeats": int(shuffles), "block_bars": 2 * h, "accuracies": accs, "ics": ics.tolist(),
                "null_ic_se": null_se, "true_label_accuracy": shift["accuracy"], "true_label_ic": shift["ic"],
                "fit": getattr(fit, "__name__", type(fit).__name__),
                "seconds": round(time.perf_counter() - t0, 2)}
    return shift, shuffled


# =========================================================================== validate

def _as_model(model):

    if isinstance(model, Model):
        return model
    if hasattr(model, "network") and not hasattr(model, "blob"):  # a TrainResult
        model = model.network

    if isinstance(model, Network):

        return load(freeze(model))
    if hasattr(model, "blob") and isinstance(model.blob, (bytes, bytearray)):  # a TrainingRun
        return load(model.blob)
    return load(model)


def validate(model, data, *, prices=None, n_trials: int = 1, frequency: str = "daily", fit="tinygrad",
             shuffles: int = 3, trial_sharpes=None, train: float = 0.7, validation: float = 0.15,
             embargo: int | None = None, horizon: int | None = None, cost_bps: float = 1.0,
             slippage_bps: float = 1.0, threshold: float = 0.0, class_positions=None, seed: int = 0,
             resamples: int = 200, fit_kwargs: dict | None = None) -> ValidationReport:
    """Validate ``model`` on ``data`` and explain the verdict.

    ``model``: a :class:`pymicro.Model`, blob bytes or path, a Network or TrainResult.
    ``data``: a :class:`~pymicro.market.dataset.Dataset` (split here chronologically with ``train``,
    ``validation``, ``embargo``, as the trainer does), a ``Split``, or a dict of arrays
    ``X_train, y_train, X_test, y_test`` (``X_val``, ``y_val``, ``dates_*``, ``symbols_*``
    optional; without dates the rows of each part are taken as consecutive bars).
    ``prices``: closes for the trading figures and the bar-level look-ahead scans (a long
    OHLCV frame, a wide frame with one column per symbol, or one Series); optional.
    ``n_trials``: how many configurations were tried before this one (deflated Sharpe);
    ``trial_sharpes`` their annualised Sharpe ratios if known. ``frequency``: one of
    :data:`FREQUENCIES`. ``fit``: ``"tinygrad"`` (the model's architecture, retrained
    briefly), ``"ridge"`` (:func:`ridge_fit`), a callable ``fit(X, y) -> predict_proba``,
    or None to skip the retraining experiments. ``shuffles``: retrains on shuffled labels.
    ``threshold``/``class_positions``: how probabilities become positions
    (:func:`pymicro.evaluation.backtest.positions_from_probabilities`; 0: trade the most likely class).

    **Confidence** = evidence x the product of the risks' penalties (critical 0.05, high
    0.25, medium 0.7, low 0.9) x 0.9 per check skipped for want of inputs, where evidence is
    ``1 - p`` (block-bootstrap p-value of the accuracy edge over the majority class), or
    ``sqrt((1 - p) * DSR)`` when trading figures exist. It reads: how much to believe the
    model has a real, honestly measured out-of-sample edge.
    """
    started = time.perf_counter()
    if frequency not in FREQUENCIES:
        raise EvaluationError(f"frequency must be one of {sorted(FREQUENCIES)}, got {frequency!r}")
    freq = FREQUENCIES[frequency]
    if isinstance(n_trials, bool) or not isinstance(n_trials, (int, np.integer)) or n_trials < 1:
        raise EvaluationError(f"n_trials must be an int >= 1 (configurations tried), got {n_trials!r}")
    if isinstance(shuffles, bool) or not isinstance(shuffles, (int, np.integer)) or shuffles < 0:
        raise EvaluationError(f"shuffles must be an int >= 0, got {shuffles!r}")
    m = _as_model(model)
    meta = dict(m.described.get("metadata", {}))
    if horizon is None and "horizon" in meta:
        try:
            horizon = int(str(meta["horizon"]).rstrip("d"))
        except ValueError:
            horizon = None
    rows = _as_rows(data, horizon, train, validation, embargo)
    if rows.X.shape[1] != m.input_size:
        raise EvaluationError(f"the model takes {m.input_size} inputs but the data has {rows.X.shape[1]} features")
    n_classes = m.n_classes
    if rows.y.max() >= n_classes:
        raise EvaluationError(f"labels go up to {int(rows.y.max())} but the model has {n_classes} classes")
    if rows.label_names is None:
        rows.label_names = tuple(m.labels)
    if rows.feature_names is None and m.described.get("feature_names"):
        rows.feature_names = tuple(m.described["feature_names"])
    for p, name in ((0, "training"), (2, "test")):
        if rows.idx(p).size < 30:
            raise EvaluationError(f"the {name} part has {rows.idx(p).size} rows; validation needs at least 30")
    bad = ~np.isfinite(rows.X)
    if bad.any():
        r, col = np.argwhere(bad)[0]
        raise EvaluationError(f"X[{r}, {col}] is {rows.X[r, col]}; drop non-finite rows before validating")
    table = _price_table(prices, rows.symbols) if prices is not None else None
    bars = _Bars(rows, table)
    unmatched = None
    if table is not None and rows.synthetic_dates:
        unmatched = "the rows have no dates (pass dates_train, dates_test, ...) to align prices with"
    elif table is not None and np.mean(bars.pos >= 0) < 0.5:  # the prices do not cover the rows' dates
        unmatched = f"prices matched only {np.mean(bars.pos >= 0):.0%} of the rows' (symbol, date) pairs"
    if unmatched:
        table = None
        bars = _Bars(rows, None)

    probs_all = np.asarray(m.predict(np.ascontiguousarray(rows.X, np.float32)), np.float64)
    pred_all = probs_all.argmax(axis=1)
    tr, te = rows.idx(0), rows.idx(2)
    majority = M.majority_class(rows.y[tr], n_classes)
    h = rows.horizon
    block = h * max(1, len(bars.symbols))
    summary = M.classification_summary(rows.y[te], pred_all[te], n_classes=n_classes, majority=majority,
                                       block=block)
    edge = _edge_test(rows.y[te], pred_all[te], np.full(te.size, majority), block, seed)

    # retraining experiments
    if isinstance(fit, str):
        if fit == "tinygrad":

            fit_fn = tinygrad_fit(spec_of(m.described), horizon=h, seed=seed, **(fit_kwargs or {}))
        elif fit == "ridge":
            fit_fn = ridge_fit(**(fit_kwargs or {}))
            fit_fn.n_classes = n_classes
        else:
            raise EvaluationError(f"fit must be 'tinygrad', 'ridge', a callable or None, got {fit!r}")
    elif fit is None:
        fit_fn = None
    elif callable(fit):
        fit_fn = fit
    else:
        raise EvaluationError(f"fit must be 'tinygrad', 'ridge', a callable or None, got {type(fit).__name__}")
    shift_exp = shuffled = None
    exp_reason = "no fit given (fit=None)"
    if fit_fn is not None:
        try:
            shift_exp, shuffled = _experiments(rows, bars, fit_fn, shuffles, seed, majority, n_classes)
        except (ImportError, TrainingError) as e:
            if fit != "tinygrad":
                raise
            exp_reason = f"the tinygrad fit cannot run here ({e}); pass fit='ridge' or a callable"
        else:
            if not shuffles:
                exp_reason = "shuffles=0"

    checks: dict[str, CheckResult] = {}
    checks["split"] = _check_split(rows, bars, meta, m.described.get("feature_names") or None)
    checks["feature_lookahead"] = _check_features(rows, bars, freq, seed, resamples)
    checks["label_shift"] = _check_label_shift(rows, bars, probs_all, freq, seed, resamples, shift_exp, n_classes)
    model_ic = float(_corr((probs_all[te] @ np.linspace(-1.0, 1.0, n_classes))[:, None],
                           rows.y[te][:, None].astype(np.float64))[0, 0])
    checks["shuffled_labels"] = _check_shuffled(shuffled, summary["accuracy"], model_ic, summary["majority_accuracy"],
                                                edge["se"], freq, exp_reason)
    checks["normalisation"] = _check_normalisation(rows, m.described.get("mean"), m.described.get("std"))
    checks["train_test_gap"] = _check_gap(rows, pred_all, majority, freq, seed, edge)
    checks["accuracy"] = _check_accuracy(summary, edge, rows.label_names)
    trade = series = None
    trade_reason = f"{unmatched}: prices ignored" if unmatched else "no prices given"
    if table is not None:
        trade, series = _trading(rows, table, probs_all, majority, freq, cost_bps, slippage_bps, threshold,
                                 n_classes, class_positions)
        if trade is None:
            trade_reason = f"no prices for the test rows of {series}"
    checks["sharpe"] = _check_sharpe(trade, series, int(n_trials), trial_sharpes, freq, trade_reason)
    checks["plausibility"] = _check_plausibility(summary, edge, trade, freq, n_classes)

    risks = [r for c in checks.values() for r in c.risks]
    for name, c in checks.items():
        if c.status == "skipped":
            risks.append(Risk(name, "info", f"not run: {c.summary}"))
    n_skipped = sum(c.status == "skipped" for c in checks.values())
    evidence = 1.0 - edge["p_value"]
    dsr = checks["sharpe"].numbers.get("dsr") if checks["sharpe"].status != "skipped" else None
    if dsr is not None:
        evidence = math.sqrt(max(evidence, 0.0) * dsr)
    penalty = math.prod(PENALTY[r.severity] for r in risks if not r.finding.startswith("not run"))
    confidence = float(min(1.0, max(0.0, evidence * penalty * SKIPPED_PENALTY ** n_skipped)))
    metrics = {"test": {**summary, "edge": edge["edge"], "edge_se_block": edge["se"],
                        "p_value_block": edge["p_value"]},
               "train_accuracy": checks["train_test_gap"].numbers["train_accuracy"],
               "validation_accuracy": checks["train_test_gap"].numbers.get("validation_accuracy"),
               "trading": trade, "sharpe": checks["sharpe"].numbers or None}
    settings = {"frequency": freq.name, "periods_per_year": freq.periods_per_year, "n_trials": int(n_trials),
                "horizon": h, "fit": None if fit_fn is None else getattr(fit_fn, "__name__", "custom"),
                "shuffles": int(shuffles), "seed": seed, "resamples": resamples, "threshold": threshold,
                "cost_bps": cost_bps, "slippage_bps": slippage_bps, "model": meta.get("name", "custom"),
                "prices": table is not None,
                "content_hash": m.info.content_hash, "confidence_rule": "evidence x penalties; see docs/validation.md"}
    answer = _answer(checks, summary, edge, trade, rows.label_names, confidence)
    return ValidationReport(metrics=metrics, answer=answer, risks=risks, confidence=round(confidence, 4),
                            checks=checks, settings=settings, seconds=time.perf_counter() - started)


def _answer(checks, summary, edge, trade, label_names, confidence) -> str:
    risks = [r for c in checks.values() for r in c.risks]
    crit = sorted({r.check for r in risks if r.severity == "critical"})
    high = sorted({r.check for r in risks if r.severity == "high"})
    maj = summary["majority_class"]
    maj_name = label_names[maj] if label_names and isinstance(maj, int) and maj < len(label_names) else str(maj)
    lo, hi = summary["accuracy_ci"]
    e, p = edge["edge"] * 100, edge["p_value"]
    out = []
    if crit:
        out.append(f"Do not trust these figures: the leak checks failed ({', '.join(crit)}).")
    elif high:
        out.append(f"These figures are implausible or inconsistent ({', '.join(high)}): treat them as a leak "
                   "until explained.")
    elif p < 0.05 and e > 0:
        out.append("The model shows a small, statistically significant edge, and no leak was found.")
    else:
        out.append("The model does not beat the majority-class baseline by more than chance; no leak was found.")
    out.append(f"Out of sample it is right {summary['accuracy']:.1%} of the time on {summary['n']} rows "
               f"({summary['confidence']:.0%} CI {lo:.1%}-{hi:.1%}), against {summary['majority_accuracy']:.1%} for "
               f"always predicting {maj_name!r}: {e:+.1f} points, "
               f"{'significant' if p < 0.05 else 'not significant'} (p = {p:.2g}, block bootstrap).")
    g = checks["train_test_gap"].numbers
    out.append(f"Training accuracy {g['train_accuracy']:.1%} against {g['test_accuracy']:.1%} on test.")
    sh = checks["sharpe"]
    if trade is not None and sh.status != "skipped":
        s = sh.numbers
        out.append(f"Trading its signals net of {trade['cost_bps'] + trade['slippage_bps']:g} bps per unit traded: "
                   f"Sharpe {s['sharpe']:.2f} (buy-and-hold {s['buy_and_hold_sharpe']:.2f}); probabilistic Sharpe "
                   f"{s['psr']:.2f}, deflated for {s['n_trials']} trial{'s' if s['n_trials'] != 1 else ''} "
                   f"{s['dsr']:.2f}.")
    elif sh.status == "skipped":
        out.append(f"No trading figures: {sh.summary}.")
    for r in risks:
        if r.severity in ("critical", "high"):
            out.append(r.finding[0].upper() + r.finding[1:] + ".")
    if not crit:
        ran = [n for n in ("split", "feature_lookahead", "label_shift", "shuffled_labels", "normalisation")
               if checks[n].status != "skipped"]
        out.append(f"Leak checks run: {', '.join(ran)}.")
    out.append(f"Confidence {confidence:.2f}.")
    return " ".join(out)


# =========================================================================== CLI
