"""Backtests of class-probability signals: vectorised, costed, beside baselines, walk-forward.

    from pymicro.evaluation.backtest import positions_from_probabilities, run_backtest, walk_forward

    pos = positions_from_probabilities(model.predict(X), threshold=0.5)
    result = run_backtest(close, pos, cost_bps=1.0, slippage_bps=1.0, dates=dates)
    print(result.summary())

    wf = walk_forward(bars_of_one_symbol, "momentum", train_window=756, step=63)
    plot_equity(wf, "equity.png")

**Timing, stated once.** ``positions[t]`` is decided with information up to the close of
bar ``t`` and is held from that close to the close of bar ``t + 1``, so it earns
``r[t+1] = P[t+1] / P[t] - 1`` (simple returns). :func:`run_backtest` makes this one-bar
shift itself, exactly once: callers pass positions and prices on the *same* dates. The
return of bar ``t`` itself (``P[t-1] -> P[t]``) is never earned by ``positions[t]``. The
first bar has no position in force before it and the last position has no bar after it,
so ``n`` bars give ``n - 1`` periods, dated by the bar at their end.

**Costs.** Changing the position at the close of bar ``t`` costs
``|positions[t] - positions[t-1]| * (cost_bps + slippage_bps) / 10_000`` of capital
(``positions[-1] = 0``: the first entry is charged; the position still open at the end
is not closed), subtracted from the return of the period the new position earns.
Summed over a backtest, costs take exactly ``turnover * (cost_bps + slippage_bps) / 1e4``.

**Baselines**, on exactly the strategy's dates and net of the same costs:
``buy_and_hold`` (always +1), ``majority_class`` (always the position of the training
set's most frequent class) and ``momentum`` (the sign of the trailing ``lookback``-bar
return, known at the close of ``t``). Metrics are in :mod:`pymicro.metrics`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pymicro import metrics as M
from pymicro.errors import EvaluationError
from pymicro.market.features import bars_of_one_symbol, compute_features
from pymicro.market.labels import LABEL_NAMES, label_details
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import load
from pymicro.runtime.spec import Spec, preset
from pymicro.training.train import train

__all__ = [
    "BacktestResult", "LabelledSeries", "Leg", "momentum_positions", "plot_equity",
    "positions_from_probabilities", "run_backtest", "tinygrad_fit", "walk_forward",
]

DEFAULT_CLASS_POSITIONS = (-1.0, 0.0, 1.0)  # down, flat, up
BASELINES = ("buy_and_hold", "majority_class", "momentum")


# --------------------------------------------------------------------------- positions

def _class_positions(n_classes: int, class_positions, long_only: bool) -> np.ndarray:
    if class_positions is None:
        if n_classes != 3:
            raise EvaluationError(f"probabilities have {n_classes} classes; the default mapping is for 3 "
                                  "(down, flat, up): pass class_positions, one position per class")
        class_positions = DEFAULT_CLASS_POSITIONS
    cp = np.asarray(class_positions, np.float64)
    if cp.shape != (n_classes,) or not np.all(np.isfinite(cp)):
        raise EvaluationError(f"class_positions must be {n_classes} finite numbers, got {class_positions!r}")
    return np.maximum(cp, 0.0) if long_only else cp


def positions_from_probabilities(probs, threshold: float = 0.5, long_only: bool = False,
                                 class_positions: Sequence[float] | None = None) -> np.ndarray:
    """Positions (float64, one per row) from class probabilities (rows: down, flat, up).

    Long (+1) where P(up) is the largest probability of the row *and* at least
    ``threshold``; short (-1) where P(down) is, likewise (flat instead when
    ``long_only``); flat (0) otherwise, including a tie for the largest probability.
    ``class_positions`` maps each class to a position for other class sets (e.g. five
    sentiment classes: ``(-1, -0.5, 0, 0.5, 1)``).
    """
    p = np.asarray(probs, np.float64)
    if p.ndim == 1:
        p = p[None, :]
    if p.ndim != 2 or p.shape[1] < 2:
        raise EvaluationError(f"probs must be (rows, classes), got shape {np.shape(probs)}")
    bad = ~np.isfinite(p)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise EvaluationError(f"probs[{r}, {c}] is {p[r, c]}")
    if not (isinstance(threshold, (int, float, np.floating)) and 0 <= threshold <= 1):
        raise EvaluationError(f"threshold must be in [0, 1], got {threshold!r}")
    cp = _class_positions(p.shape[1], class_positions, long_only)
    top = p.max(axis=1)
    unique_top = (p == top[:, None]).sum(axis=1) == 1
    pos = cp[p.argmax(axis=1)]
    return np.where(unique_top & (top >= threshold), pos, 0.0)


def momentum_positions(close, lookback: int = 20, long_only: bool = False) -> np.ndarray:
    """The plain momentum rule: ``sign(P[t] / P[t-lookback] - 1)``, 0 for ``t < lookback``.

    Causal: the position at ``t`` reads closes ``t - lookback`` and ``t`` only.
    """
    c = _prices(close, "close")
    if not (isinstance(lookback, (int, np.integer)) and lookback >= 1):
        raise EvaluationError(f"lookback must be an int >= 1, got {lookback!r}")
    pos = np.zeros(c.size)
    if c.size > lookback:
        pos[lookback:] = np.sign(c[lookback:] / c[:-lookback] - 1.0)
    return np.maximum(pos, 0.0) if long_only else pos


# --------------------------------------------------------------------------- the backtest

@dataclass
class Leg:
    """One position series run through the backtest: the strategy or a baseline.

    Arrays have one entry per period (``n - 1`` for ``n`` bars): ``positions[k]`` is the
    position held over period ``k`` (decided at the close before it), ``gross_returns``
    its return before costs, ``costs`` what trading into it cost, ``returns`` the net
    return, ``equity`` the value of 1 invested after each period.
    """

    name: str
    positions: np.ndarray
    gross_returns: np.ndarray
    costs: np.ndarray
    returns: np.ndarray
    equity: np.ndarray
    metrics: dict


@dataclass
class BacktestResult:
    """A strategy's backtest, its baselines on the same dates, and what produced them.

    ``dates[k]`` is the bar at the end of period ``k``; ``start`` is the bar before the
    first period (equity 1 there). ``classification`` holds accuracy and friends when the
    run had labels (walk-forward); ``windows`` the walk-forward train/test windows.
    """

    strategy: Leg
    baselines: dict[str, Leg]
    dates: np.ndarray
    start: object
    settings: dict
    classification: dict | None = None
    windows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def returns(self) -> np.ndarray:
        return self.strategy.returns

    @property
    def equity(self) -> np.ndarray:
        return self.strategy.equity

    @property
    def positions(self) -> np.ndarray:
        return self.strategy.positions

    @property
    def metrics(self) -> dict:
        return self.strategy.metrics

    def legs(self) -> list[Leg]:
        return [self.strategy, *self.baselines.values()]

    def summary(self) -> str:
        """A plain-text report: trading metrics beside the baselines, then classification."""
        cols = [("total_return", "total", "%"), ("annualised_return", "annual", "%"),
                ("sharpe", "Sharpe", "f"), ("sortino", "Sortino", "f"), ("max_drawdown", "max DD", "%"),
                ("calmar", "Calmar", "f"), ("profit_factor", "PF", "f"), ("win_rate", "win", "%"),
                ("turnover_per_year", "turnover/yr", "f"), ("exposure", "exposure", "%")]
        rows = [["", *(c[1] for c in cols)]]
        for leg in self.legs():
            rows.append([leg.name, *(_fmt(leg.metrics.get(k), kind) for k, _, kind in cols)])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        s = self.settings
        lines = [(f"{_day(self.start)} .. {_day(self.dates[-1])}: {len(self.dates)} periods, costs "
                  f"{s['cost_bps']:g} + slippage {s['slippage_bps']:g} bps per unit traded, "
                  f"Sharpe etc. annualised with {s['periods_per_year']:.1f} periods/year "
                  f"({s.get('periods_per_year_source', 'given')}), risk-free 0")]
        for k, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
            if k == 0:
                lines.append("  ".join("-" * w for w in widths))
        from pymicro.evaluation.positions import exposure_warning

        warn = exposure_warning(self.metrics.get("exposure"))
        if warn:
            lines.append(f"LOW EXPOSURE: the strategy is {warn}")
        c = self.classification
        if c:
            lo, hi = c["accuracy_ci"]
            lines += ["", f"classification on {c['n']} out-of-sample rows with known labels:",
                      (f"  accuracy {c['accuracy']:.2%} ({c['confidence']:.0%} CI {lo:.2%}..{hi:.2%}, "
                       f"{c['ci_method']}), balanced accuracy {c['balanced_accuracy']:.2%}"),
                      (f"  majority-class baseline {c['majority_accuracy']:.2%} (balanced "
                       f"{c['majority_balanced_accuracy']:.2%}); p = "
                       f"{c.get('p_value', c['p_value_vs_majority']):.3g} that the model beats it by chance "
                       f"({c.get('p_value_method', 'binomial')})")]
            if c.get("test_class_frequencies"):
                lines.append("  class frequencies of these rows: " + ", ".join(
                    f"{name} {f:.1%}" for name, f in zip(self.settings.get("labels") or LABEL_NAMES,
                                                          c["test_class_frequencies"])))
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Settings, metrics of every leg, classification, windows and notes as strict JSON
        values (``json.dumps(..., allow_nan=False)`` works): dates as ``YYYY-MM-DD``, an
        infinite ratio as the string ``"inf"`` or ``"-inf"``."""
        return _jsonable({"start": self.start, "end": self.dates[-1], "periods": len(self.dates),
                          "settings": self.settings, "metrics": {leg.name: leg.metrics for leg in self.legs()},
                          "classification": self.classification, "windows": self.windows,
                          "notes": list(self.notes)})


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.datetime64) or type(v).__name__ == "Timestamp":
        return _day(v)
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v * 100:.1f}%" if kind == "%" else f"{v:.2f}"


def _day(v) -> str:
    if isinstance(v, np.datetime64) or type(v).__name__ == "Timestamp":
        return str(np.datetime64(v, "D"))
    return str(v)


def _prices(x, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(f"{name} must be a 1-D array of numbers, got {type(x).__name__}") from None
    if a.ndim != 1:
        raise EvaluationError(f"{name} must be 1-D, got shape {a.shape}")
    bad = ~(np.isfinite(a) & (a > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(f"{name}[{i}] is {a[i]}; prices must be finite and > 0")
    return a


def _bar_returns(data, kind: str) -> np.ndarray:
    """``r[t]``: the simple return of bar t (close t-1 -> close t); ``r[0]`` is NaN (unused)."""
    if kind == "prices":
        p = _prices(data, "prices")
        r = np.empty(p.size)
        r[0] = np.nan
        r[1:] = p[1:] / p[:-1] - 1.0
        return r
    if kind != "returns":
        raise EvaluationError(f"kind must be 'prices' or 'returns', got {kind!r}")
    try:
        r = np.array(data, np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(f"returns must be a 1-D array of numbers, got {type(data).__name__}") from None
    if r.ndim != 1:
        raise EvaluationError(f"returns must be 1-D, got shape {r.shape}")
    bad = ~np.isfinite(r[1:]) | (r[1:] <= -1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0]) + 1
        raise EvaluationError(f"returns[{i}] is {r[i]}; bar returns must be finite and > -1 "
                              "(returns[0] is not used and may be NaN)")
    return r


def _positions(x, n: int, name: str) -> np.ndarray:
    try:
        a = np.asarray(x, np.float64)
    except (TypeError, ValueError):
        raise EvaluationError(f"{name} must be numbers, got {type(x).__name__}") from None
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise EvaluationError(f"{name} has shape {a.shape}; it needs one position per bar ({n},)")
    bad = ~np.isfinite(a)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(f"{name}[{i}] is {a[i]}; use 0 for 'no position'")
    return a


def _leg(name: str, r_bar: np.ndarray, positions: np.ndarray, cost: float, P: float) -> Leg:
    """The one-bar shift and the costs, for one position series on n bars -> n - 1 periods."""
    held = positions[:-1]  # positions[t] earns r_bar[t + 1]
    gross = held * r_bar[1:]
    costs = np.abs(np.diff(held, prepend=0.0)) * cost
    net = gross - costs
    return Leg(name, held, gross, costs, net, np.cumprod(1.0 + net), M.trading_summary(net, held, P))


def run_backtest(data, positions, cost_bps: float, slippage_bps: float, *, kind: str = "prices",
                 dates=None, periods_per_year: float | None = None,
                 majority_class: int | None = None, class_positions: Sequence[float] | None = None,
                 long_only: bool = False, momentum_lookback: int = 20,
                 baselines: dict | None = None) -> BacktestResult:
    """Backtest ``positions`` on one instrument, vectorised, with costs, beside baselines.

    ``data``: closes (``kind="prices"``) or bar returns (``kind="returns"``, ``data[t]`` the
    simple return from close t-1 to close t; ``data[0]`` unused), one per bar.
    ``positions``: one per bar, decided at that bar's close (see the module docstring for
    the timing; do not shift them yourself). ``cost_bps``, ``slippage_bps``: charged per
    unit of position traded. ``dates``: labels of the bars (default: a pandas index of
    ``data`` if it has one, else 0..n-1).

    Baselines: ``buy_and_hold`` and ``momentum`` (``momentum_lookback`` bars, from
    ``data``) always; ``majority_class`` when ``majority_class`` (a class index, mapped
    through ``class_positions``, default down/flat/up = -1/0/+1) is given. ``baselines``
    adds or replaces baselines by name with position series of their own (one per bar),
    e.g. a momentum rule computed on a longer history. ``long_only`` turns every
    baseline's shorts into flat.

    ``periods_per_year`` annualises the ratios; ``None`` (default) takes it from the dates
    (:func:`pymicro.metrics.periods_per_year_of`) when they are time stamps, else 252 (daily
    bars of trading days). ``settings["periods_per_year_source"]`` says which.
    """
    r_bar = _bar_returns(data, kind)
    n = r_bar.size
    if n < 2:
        raise EvaluationError(f"a backtest needs at least 2 bars (1 period), got {n}")
    pos = _positions(positions, n, "positions")
    for name, v in (("cost_bps", cost_bps), ("slippage_bps", slippage_bps)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v) or v < 0:
            raise EvaluationError(f"{name} must be a finite number >= 0, got {v!r}")
    if dates is None:
        index = getattr(data, "index", None)  # a pandas Series' dates (a list's .index is a method)
        dates = np.arange(n) if index is None or callable(index) else np.asarray(index)
    dates = np.asarray(dates)
    if dates.shape != (n,):
        raise EvaluationError(f"dates has shape {dates.shape}; it needs one date per bar ({n},)")
    if periods_per_year is not None:
        P, P_source = M._periods(periods_per_year), "given"
    elif np.issubdtype(dates.dtype, np.datetime64) and n >= 20 and dates[-1] > dates[0]:
        P, P_source = M.periods_per_year_of(dates), "from the dates"
    else:
        P, P_source = float(M.PERIODS_PER_YEAR), "assumed: daily bars of trading days (no dates)"
    cost = (float(cost_bps) + float(slippage_bps)) / 1e4

    base_pos: dict[str, np.ndarray] = {"buy_and_hold": np.ones(n)}
    if majority_class is not None:
        n_classes = len(DEFAULT_CLASS_POSITIONS if class_positions is None else class_positions)
        cp = _class_positions(n_classes, class_positions, long_only)
        base_pos["majority_class"] = np.full(n, cp[int(majority_class)])
    if kind == "prices":
        base_pos["momentum"] = momentum_positions(data, momentum_lookback, long_only)
    else:
        base_pos["momentum"] = momentum_positions(np.cumprod(np.r_[1.0, 1.0 + r_bar[1:]]), momentum_lookback,
                                                  long_only)
    for name, bp in (baselines or {}).items():
        bp = _positions(bp, n, f"baselines[{name!r}]")
        base_pos[name] = np.maximum(bp, 0.0) if long_only else bp
    order = [b for b in BASELINES if b in base_pos] + [b for b in base_pos if b not in BASELINES]
    base_pos = {name: base_pos[name] for name in order}

    result = BacktestResult(
        strategy=_leg("strategy", r_bar, pos, cost, P),
        baselines={name: _leg(name, r_bar, bp, cost, P) for name, bp in base_pos.items()},
        dates=dates[1:], start=dates[0],
        settings={"cost_bps": float(cost_bps), "slippage_bps": float(slippage_bps), "periods_per_year": P,
                  "periods_per_year_source": P_source,
                  "long_only": bool(long_only), "momentum_lookback": int(momentum_lookback),
                  "timing": "position at close t earns close t -> close t+1 (simple returns)"})
    if majority_class is None and "majority_class" not in base_pos:
        result.notes.append("majority-class baseline not computed: no training majority class was given")
    return result


# --------------------------------------------------------------------------- walk-forward

@dataclass(frozen=True, eq=False)
class LabelledSeries:
    """One instrument, bar by bar: what a walk-forward needs.

    ``close[t]`` and ``X[t]`` are known at the close of bar ``t`` (rows of ``X`` with a NaN
    are warm-up and never used); ``y[t]`` is the class of the move over bars
    ``t+1 .. t+horizon`` (``-1`` where it is not known). Build one from bars with
    :meth:`from_bars`, from a one-symbol :class:`pymicro.market.dataset.Dataset` with
    :meth:`from_dataset`, or directly from arrays.
    """

    dates: np.ndarray
    close: np.ndarray
    X: np.ndarray
    y: np.ndarray
    horizon: int
    feature_names: tuple[str, ...] | None = None
    label_names: tuple[str, ...] = ("down", "flat", "up")

    def __post_init__(self):
        n = len(self.close)
        close = _prices(self.close, "close")
        X = np.asarray(self.X, np.float64)
        if X.ndim != 2 or X.shape[0] != n:
            raise EvaluationError(f"X has shape {X.shape}; it needs one row per bar ({n}, features)")
        y = np.asarray(self.y)
        if y.shape != (n,):
            raise EvaluationError(f"y has shape {y.shape}; it needs one label per bar ({n},)")
        y = np.where(np.isfinite(y.astype(np.float64)), y, -1).astype(np.int64)
        if np.asarray(self.dates).shape != (n,):
            raise EvaluationError(f"dates has shape {np.shape(self.dates)}; it needs one per bar ({n},)")
        if not (isinstance(self.horizon, (int, np.integer)) and self.horizon >= 1):
            raise EvaluationError(f"horizon must be an int >= 1 (bars), got {self.horizon!r}")
        object.__setattr__(self, "close", close)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "dates", np.asarray(self.dates))

    @classmethod
    def from_bars(cls, df, features: str = "momentum", horizon: int = 5, label_threshold: float = 0.5,
                  vol_window: int = 20) -> LabelledSeries:
        """Features (:mod:`pymicro.market.features`) and direction labels (:mod:`pymicro.market.labels`) of one
        symbol's daily bars (a DataFrame with date, open, high, low, close, volume)."""

        dates, bars = bars_of_one_symbol(df)
        feats = compute_features(df, features, dropna=False)
        lab = label_details(df, horizon, label_threshold, vol_window)["label"]
        return cls(np.asarray(dates, "datetime64[ns]"), bars["close"], feats.to_numpy(np.float64),
                   lab.to_numpy(dtype=np.int64, na_value=-1), int(horizon), tuple(feats.columns), LABEL_NAMES)

    @classmethod
    def from_dataset(cls, ds, prices) -> LabelledSeries:
        """A one-symbol :class:`~pymicro.market.dataset.Dataset` and its closes (a pandas Series indexed
        by date covering the dataset's dates, or an array aligned with ``ds.dates``)."""
        symbols = set(np.asarray(ds.symbols).tolist())
        if len(symbols) != 1:
            raise EvaluationError(f"a walk-forward runs on one symbol; the dataset holds {sorted(symbols)}")
        dates = np.asarray(ds.dates)
        if hasattr(prices, "reindex"):
            close = np.asarray(prices.reindex(dates), np.float64)
            if np.isnan(close).any():
                i = int(np.flatnonzero(np.isnan(close))[0])
                raise EvaluationError(f"prices has no close for {_day(dates[i])}")
        else:
            close = np.asarray(prices, np.float64)
        return cls(dates, close, ds.X, ds.y, int(ds.horizon), tuple(ds.feature_names), tuple(ds.label_names))


def tinygrad_fit(spec, *, horizon: int, val_fraction: float = 0.2, backend: str = "native",
                 warm_epochs: int | None = None, warm_patience: int | None = None, **train_kwargs) -> Callable:
    """The default ``fit`` of :func:`walk_forward`: pymicro's tinygrad trainer, frozen, native runtime.

    ``fit(X, y)`` trains ``spec`` with :func:`pymicro.training.train.train` on the rows it is given
    (chronological), holding out the last ``val_fraction`` of them for early stopping with
    ``horizon`` rows purged between the two (so no training label reads a validation
    bar), freezes the best network into a blob and returns that blob's
    ``predict(X)`` on ``backend`` (``pymicro.load(pymicro.freeze(net))``).

    ``fit(X, y, init=network)`` is a warm start: training begins from ``network`` (the previous
    walk-forward block's, fitted on earlier rows only; its normalisation is kept) and runs at most
    ``warm_epochs`` epochs (default a third of ``epochs``, at least 3) with patience
    ``warm_patience`` (default min(patience, 3)), early-stopping on the same held-out slice.
    """
    epochs = int(train_kwargs.get("epochs", 100))
    patience = train_kwargs.get("patience", 10)
    w_epochs = max(3, epochs // 3) if warm_epochs is None else int(warm_epochs)
    w_patience = (None if patience is None else min(int(patience), 3)) if warm_patience is None else warm_patience

    def fit(X, y, init=None):
        n = len(y)
        n_val = max(1, round(n * val_fraction))
        n_train = n - n_val - int(horizon)
        if n_train < 1:
            raise EvaluationError(f"training window too small: {n} rows leave none for training after "
                                  f"{n_val} validation rows and a {horizon}-row purge")
        kw = dict(train_kwargs)
        if init is not None:
            kw.update(init=init, epochs=min(w_epochs, epochs), patience=w_patience)
        res = train(spec, X[:n_train], y[:n_train], X[n - n_val:], y[n - n_val:], **kw)
        model = load(freeze(res.network), backend)
        fit.last = res

        def predict_proba(Xt):
            return model.predict(np.ascontiguousarray(Xt, np.float32))
        return predict_proba

    return fit


def walk_forward(data, spec="momentum", *, train_window: int = 756, step: int = 63,
                 mode: str = "expanding", horizon: int | None = None, threshold: float | None = None,
                 cost_bps: float = 1.0, slippage_bps: float = 1.0, long_only: bool = False,
                 fit: Callable | None = None, train_kwargs: dict | None = None, val_fraction: float = 0.2,
                 label_threshold: float = 0.5, vol_window: int = 20, features: str | None = None,
                 prices=None, periods_per_year: float | None = None, momentum_lookback: int = 20,
                 backend: str = "native", progress: Callable[[int, int, dict], None] | None = None,
                 client=None, warm_start: bool = True, warm_chain: int = 5) -> BacktestResult:
    """Walk forward through one instrument, retraining before every test block.

    ``data``: one symbol's daily bars (DataFrame), a one-symbol
    :class:`~pymicro.market.dataset.Dataset` (with ``prices=``) or a :class:`LabelledSeries`.
    ``spec``: a preset name or :class:`~pymicro.Spec` (used by the default ``fit``; a
    preset name also picks the feature set unless ``features`` is given).

    Windows, in bars. Test blocks are ``[s, s + step)`` for ``s = s0, s0 + step, ...``
    up to the last bar. Before each block a model is fitted on the usable rows ``i``
    (finite features, known label) with ``i < s - horizon`` (an embargo: the label of
    row ``i`` reads the close of ``i + horizon``, which is before the block's first bar),
    and ``i >= s - horizon - train_window`` in ``mode="rolling"`` (all earlier rows in
    ``"expanding"``). ``s0`` leaves ``train_window`` bars of training before the first
    block. Each fitted model predicts its block only; positions come from
    :func:`positions_from_probabilities` (``threshold``, ``long_only``) and the stitched
    out-of-sample positions are backtested by :func:`run_backtest` with the costs.

    ``fit(X_train, y_train) -> predict_proba`` (a callable returning (rows, classes)
    probabilities); default :func:`tinygrad_fit` (``train_kwargs`` go to
    :func:`pymicro.training.train.train`). Baselines per block: the majority class of that block's
    training rows; momentum computed on the whole history (causal). ``progress(k, steps,
    info)`` is called after each block.

    ``threshold=None`` (default) chooses the confidence threshold before each block with
    :func:`pymicro.evaluation.positions.choose_rule` on the last ``val_fraction`` of that block's
    training rows: the default fit's early-stopping rows (a custom ``fit`` has seen them), never
    the block itself. Each window records the threshold it used.
    ``client``: a ``distributed.Client`` (:func:`pymicro.training.cluster.dask_client`): the blocks
    are fitted concurrently as Dask tasks (the series scattered to the workers once; ``fit`` must
    pickle) and stitched in order, with the same result as the loop here.

    ``warm_start`` (the default fit only): blocks go in chains of ``warm_chain`` consecutive blocks;
    the first of a chain trains from scratch, each other block starts from the network its
    predecessor fitted (on rows before the predecessor's block, so before this one) and trains
    fewer epochs (:func:`tinygrad_fit`), early-stopping on its own held-out slice of the past.
    A chain is one Dask task, so the result does not depend on the number of workers.
    The features and labels are computed once on the whole history and sliced per block: every
    feature at bar ``t`` reads bars up to ``t`` only (tests/test_backtest.py checks the slices against
    features computed on the truncated history).
    """
    from pymicro.evaluation.positions import choose_rule

    if mode not in ("expanding", "rolling"):
        raise EvaluationError(f"mode must be 'expanding' or 'rolling', got {mode!r}")
    if isinstance(warm_chain, bool) or not isinstance(warm_chain, (int, np.integer)) or warm_chain < 1:
        raise EvaluationError(f"warm_chain must be an int >= 1 (blocks), got {warm_chain!r}")
    for name, v in (("train_window", train_window), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise EvaluationError(f"{name} must be an int >= 1 (bars), got {v!r}")
    series, spec_obj = _walk_forward_input(data, spec, horizon, label_threshold, vol_window, features, prices,
                                           check_spec=fit is None)
    h = series.horizon
    n = len(series.close)
    usable = np.isfinite(series.X).all(axis=1)
    trainable = usable & (series.y >= 0)
    if not trainable.any():
        raise EvaluationError("no usable training row (finite features and a known label)")
    first = int(np.flatnonzero(trainable)[0])
    s0 = first + int(train_window) + h
    if s0 >= n - 1:
        raise EvaluationError(
            f"{n} bars are too few: the first test block would start at bar {s0} (first usable row {first} "
            f"+ train_window {train_window} + horizon {h}) and a backtest needs at least 2 bars after it")
    fit_given = fit
    if fit is None:
        if spec_obj is None:
            raise EvaluationError("walk_forward needs a spec (a preset name or pymicro.Spec) or a fit callable")
        kw = {"epochs": 30, "batch_size": 64, "patience": 5, "seed": 0, **(train_kwargs or {})}
        fit = tinygrad_fit(spec_obj, horizon=h, val_fraction=val_fraction, backend=backend, **kw)

    n_classes = len(series.label_names)
    cp = _class_positions(n_classes, None if n_classes == 3 else np.linspace(-1, 1, n_classes), long_only)
    starts = list(range(s0, n, int(step)))
    positions = np.zeros(n)
    majority_pos = np.zeros(n)
    y_pred = np.full(n, -1, np.int64)
    majority = np.full(n, -1, np.int64)
    windows: list[dict] = []
    idx = np.arange(n)
    blocks = []
    for s in starts:
        lo = 0 if mode == "expanding" else s - h - int(train_window)
        rows = idx[max(lo, 0): s - h][trainable[max(lo, 0): s - h]]
        if rows.size == 0:
            raise EvaluationError(f"no usable training row before the block starting {_day(series.dates[s])}")
        val = rows[rows.size - max(1, round(rows.size * val_fraction)):]  # where the rule is chosen
        blocks.append((rows, idx[s:min(s + int(step), n)][usable[s:min(s + int(step), n)]], val[val + 1 < n]))
    warm = bool(warm_start) and fit_given is None
    chain = int(warm_chain) if warm else 1
    chains = [blocks[k:k + chain] for k in range(0, len(blocks), chain)]
    if client is not None:  # every chain's fits and predictions as one Dask task, the arrays sent once
        ref = client.scatter((series.X, series.y), broadcast=True, hash=False)
        fitted = iter([b for part in client.gather([client.submit(_fit_chain, fit, ref, c, warm, pure=False)
                                                    for c in chains]) for b in part])
    else:
        fitted = (b for c in chains for b in _fit_chain(fit, (series.X, series.y), c, warm, lazy=True))
    for k, s in enumerate(starts):
        e = min(s + int(step), n)
        rows, test, val = blocks[k]
        # the fit predicted exactly the test rows and the validation rows (where the rule is chosen)
        test_probs, val_probs, seconds = next(fitted)
        maj = M.majority_class(series.y[rows], n_classes)
        majority[s:e] = maj
        majority_pos[s:e] = cp[maj]
        block_threshold = threshold
        if threshold is None:
            rule = choose_rule(np.asarray(val_probs, np.float64),
                               series.close[val + 1] / series.close[val] - 1.0, cost_bps=cost_bps,
                               slippage_bps=slippage_bps, long_only=long_only,
                               class_positions=None if n_classes == 3 else cp)
            block_threshold = rule.threshold
        if test.size:
            probs = np.asarray(test_probs, np.float64).reshape(test.size, -1)
            if probs.shape != (test.size, n_classes):
                raise EvaluationError(f"predict_proba returned shape {probs.shape} for {test.size} rows; "
                                      f"expected ({test.size}, {n_classes})")
            positions[test] = positions_from_probabilities(probs, block_threshold, long_only,
                                                           None if n_classes == 3 else cp)
            y_pred[test] = probs.argmax(axis=1)
        info = {"block": k, "train_start": series.dates[rows[0]], "train_end": series.dates[rows[-1]],
                "train_rows": int(rows.size), "test_start": series.dates[s], "test_end": series.dates[e - 1],
                "test_rows": int(test.size), "majority_class": int(maj), "threshold": float(block_threshold),
                "seconds": round(seconds, 3), "warm_start": bool(warm and k % chain)}
        windows.append(info)
        if progress is not None:
            progress(k + 1, len(starts), info)

    momentum = momentum_positions(series.close, momentum_lookback, long_only)
    result = run_backtest(series.close[s0:], positions[s0:], cost_bps, slippage_bps, dates=series.dates[s0:],
                          periods_per_year=periods_per_year, long_only=long_only,
                          momentum_lookback=momentum_lookback,
                          baselines={"majority_class": majority_pos[s0:], "momentum": momentum[s0:]})
    scored = (y_pred >= 0) & (series.y >= 0)
    if scored.any():
        result.classification = M.classification_summary(series.y[scored], y_pred[scored], n_classes=n_classes,
                                                         majority=majority[scored], block=h)
    result.windows = windows
    model = getattr(spec_obj, "name", None) if fit_given is None else getattr(fit_given, "__name__",
                                                                              type(fit_given).__name__)
    result.settings.update(model=model, mode=mode, train_window=int(train_window), step=int(step), horizon=h,
                           threshold=("chosen per block on its validation rows" if threshold is None
                                      else float(threshold)), blocks=len(starts),
                           embargo=f"train rows i < block start - {h}")
    return result


def _fit_chain(fit, data, blocks, warm: bool, lazy: bool = False):
    """Consecutive walk-forward blocks, in order (one Dask task): fit on each block's ``rows``
    (``warm``: the default fit, from the previous block's network after the first), predict its
    ``test`` and ``val`` rows (where the position rule is chosen); (test probabilities, val
    probabilities, seconds) per block, as a list (``lazy``: a generator)."""
    def run():
        X, y = data
        prev = None
        for rows, test, val in blocks:
            t0 = time.perf_counter()
            predict_proba = fit(X[rows], y[rows]) if prev is None else fit(X[rows], y[rows], init=prev)
            if warm:
                prev = fit.last.network
            probs = np.asarray(predict_proba(X[test]), np.float64) if test.size else np.zeros((0, 0))
            val_probs = np.asarray(predict_proba(X[val]), np.float64) if val.size else np.zeros((0, 0))
            yield probs, val_probs, time.perf_counter() - t0
    return run() if lazy else list(run())


def _walk_forward_input(data, spec, horizon, label_threshold, vol_window, features, prices, check_spec):

    spec_obj = preset(spec) if isinstance(spec, str) else spec
    if spec_obj is not None and not isinstance(spec_obj, Spec):
        raise EvaluationError(f"spec must be a preset name or pymicro.Spec, got {type(spec).__name__}")
    if isinstance(data, LabelledSeries):
        series = data
    elif hasattr(data, "label_end") and hasattr(data, "X"):  # a pymicro.market.dataset.Dataset
        if prices is None:
            raise EvaluationError("a Dataset carries no prices: pass prices= (closes indexed by date)")
        series = LabelledSeries.from_dataset(data, prices)
    elif hasattr(data, "columns"):  # bars of one symbol
        name = features or (spec if isinstance(spec, str) else getattr(spec_obj, "name", None))
        series = LabelledSeries.from_bars(data, name, 5 if horizon is None else horizon, label_threshold,
                                          vol_window)
    else:
        raise EvaluationError(f"walk_forward takes one symbol's bars (DataFrame), a Dataset or a LabelledSeries; "
                              f"got {type(data).__name__}")
    if horizon is not None and horizon != series.horizon:
        raise EvaluationError(f"horizon={horizon} but the data's labels use horizon {series.horizon}")
    if check_spec and spec_obj is not None and spec_obj.input_size != series.X.shape[1]:
        raise EvaluationError(f"the spec takes {spec_obj.input_size} inputs but the data has "
                              f"{series.X.shape[1]} features")
    return series, spec_obj


# --------------------------------------------------------------------------- plot

def plot_equity(result: BacktestResult, path, *, title: str | None = None, log_scale: bool | None = None):
    """Write a PNG of the equity curves (strategy and baselines, 1 at the start) above the
    strategy's drawdown, with the periods the strategy was in the market shaded. Needs
    matplotlib; draws on a bare ``Figure`` (the Agg canvas), so pyplot's global state and any
    interactive backend are left alone. ``log_scale=None`` (default): a log axis for long
    histories (more than 5 years, or curves that span a factor of 4 or more), where equal
    percentage moves should look equal. Returns the Figure."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise EvaluationError("plot_equity needs matplotlib: pip install matplotlib") from None
    x = np.concatenate([[result.start], result.dates])
    fig = Figure(figsize=(10, 6), layout="tight")
    ax, ax_dd = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for leg in result.legs():
        strategy = leg is result.strategy
        ax.plot(x, np.concatenate([[1.0], leg.equity]), lw=1.6 if strategy else 1.0,
                color="black" if strategy else None, alpha=1.0 if strategy else 0.8, zorder=3 if strategy else 2,
                label=f"{leg.name} (Sharpe {_fmt(leg.metrics['sharpe'], 'f')})")
    P = float(result.settings.get("periods_per_year") or M.PERIODS_PER_YEAR)
    if log_scale is None:
        curves = np.concatenate([leg.equity for leg in result.legs()])
        curves = curves[curves > 0]
        log_scale = len(result.dates) / P > 5 or (curves.size > 0 and curves.max() / curves.min() >= 4)
    if log_scale:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    held = np.asarray(result.strategy.positions) != 0
    if held.any():
        exposure = float(held.mean())
        ax.fill_between(x[1:], 0, 1, where=held, step="pre", transform=ax.get_xaxis_transform(), color="tab:blue",
                        alpha=0.08, lw=0, label=f"strategy in the market ({exposure:.0%} of periods)", zorder=1)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_ylabel("equity (start = 1)")
    s = result.settings
    ax.set_title(title or f"net of {s['cost_bps']:g} + {s['slippage_bps']:g} bps per unit traded")
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    dd = np.concatenate([[0.0], M.drawdown(result.returns)])
    ax_dd.fill_between(x, -dd, 0.0, color="firebrick", alpha=0.5, lw=0)
    ax_dd.set_ylabel("strategy drawdown")
    ax_dd.grid(alpha=0.3)
    fig.savefig(path, dpi=110, format="png")
    return fig
