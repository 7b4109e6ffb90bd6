"""The honest comparison of an ensemble: beside each of its members, the majority class and
buy-and-hold, on held-out rows, with intervals and net of costs (issue 12).

:func:`compare` takes a container and held-out rows; :func:`compare_run` takes what
:func:`pymicro.training.ensemble.train_specialists` returns.
"""

from __future__ import annotations

import numpy as np

from pymicro.runtime.ensemble import map_classes


def compare_run(run, *, cost_bps: float = 5.0, slippage_bps: float = 2.0) -> dict:
    """:func:`compare` on a training run's held-out test period."""
    t = run.test
    return compare(run.blob, t["X"], t["y"], t["y_train"], dates=t["dates"], symbols=t["symbols"],
                   frame=t["frame"], cost_bps=cost_bps, slippage_bps=slippage_bps)

def compare(container: bytes, X, y, y_train, *, dates=None, symbols=None, frame=None, horizon: int = 5,
            cost_bps: float = 5.0, slippage_bps: float = 2.0) -> dict:
    """The ensemble beside each member alone and the baselines, on held-out rows.

    Classification (every row): accuracy with its 95 % Wilson interval and balanced
    accuracy, for the ensemble, each member (its classes mapped onto down/flat/up) and the
    majority class of ``y_train``. Trading (when ``frame``, ``dates`` and ``symbols`` are
    given): per symbol, positions from the probabilities (long when P(up) is the largest,
    short when P(down) is), backtested net of ``cost_bps`` + ``slippage_bps`` by
    :func:`pymicro.evaluation.backtest.run_backtest` on that symbol's closes, beside its
    buy-and-hold and majority-class baselines; Sharpe and total return averaged over the
    symbols. Nothing here was fitted on these rows.
    """
    from pymicro.metrics import accuracy_interval, balanced_accuracy, majority_class
    from pymicro.runtime.model import load

    model = load(container)
    d = model.described
    y = np.asarray(y)
    probs = {"ensemble": model.predict(np.ascontiguousarray(X, np.float32))}
    for i, m in enumerate(d["members"]):
        p = model.member(i).predict(np.ascontiguousarray(X[:, m["columns"]], np.float32))
        probs[m["name"]] = map_classes(p, m["class_map"], 3)
    maj = majority_class(y_train, 3)
    rows = {}
    for name, p in probs.items():
        pred = np.asarray(p).argmax(axis=1)
        lo, hi = accuracy_interval(y, pred)
        rows[name] = {"accuracy": float((pred == y).mean()), "accuracy_ci": [float(lo), float(hi)],
                      "balanced_accuracy": float(balanced_accuracy(y, pred, 3))}
    rows["majority class"] = {"accuracy": float((y == maj).mean()),
                              "accuracy_ci": [float(v) for v in accuracy_interval(y, np.full_like(y, maj))],
                              "balanced_accuracy": 1.0 / 3}
    out = {"rows": int(len(y)), "classification": rows, "trading": None}
    if frame is not None and dates is not None and symbols is not None:
        out["trading"] = _trading(probs, frame, np.asarray(dates), np.asarray(symbols), maj,
                                  cost_bps, slippage_bps)
    return out


def _trading(probs, frame, dates, symbols, maj, cost_bps, slippage_bps) -> dict:
    from pymicro.evaluation.backtest import positions_from_probabilities, run_backtest

    per = {}
    for sym in sorted(set(symbols.tolist())):
        rows = symbols == sym
        bars = frame[frame["symbol"] == sym]
        bar_days = bars["date"].to_numpy().astype("datetime64[D]")
        close = dict(zip(bar_days.tolist(), bars["close"].to_numpy(np.float64)))
        days = dates[rows]
        prices = np.array([close[dd] for dd in days.tolist()])
        for name, p in probs.items():
            pos = positions_from_probabilities(np.asarray(p)[rows], threshold=0.0)
            r = run_backtest(prices, pos, cost_bps, slippage_bps, dates=days, majority_class=maj)
            per.setdefault(name, []).append(r)
    summary = {}
    for name, results in per.items():
        summary[name] = {"sharpe": float(np.mean([r.strategy.metrics["sharpe"] for r in results])),
                         "total_return": float(np.mean([r.strategy.metrics["total_return"] for r in results]))}
    first = per["ensemble"]
    for b in ("buy_and_hold", "majority_class"):
        legs = [r.baselines[b] for r in first if b in r.baselines]
        if legs:
            summary[b.replace("_", " ")] = {"sharpe": float(np.mean([l.metrics["sharpe"] for l in legs])),
                                            "total_return": float(np.mean([l.metrics["total_return"] for l in legs]))}
    summary["note"] = (f"mean over {len(first)} symbols; net of {cost_bps} bps costs + {slippage_bps} bps "
                       "slippage per unit traded; daily bars on the test period")
    return summary
