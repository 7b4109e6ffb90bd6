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


# --------------------------------------------------------------------------- pymicro report
#
# The report's honest comparison (issue 12, item 5): the ensemble beside its best single member
# and the baselines, out of sample, net of costs, with intervals, on the test split (pooled, as
# the report's presets) and in a walk-forward on every symbol (members and combiner retrained
# before each block on earlier rows only). Nothing is fitted or chosen on the rows it is scored
# on: the combiner on out-of-fold predictions of the training rows, the position rule and the
# "best member" on the validation rows (split) or the training rows' out-of-fold predictions
# (walk-forward).

RETURN_BLOCK_BARS = 4  # Sharpe intervals: blocks of 4 x horizon trading days


class MemberView:
    """One member of a container alone, its classes mapped onto the common labels, reading its own
    columns of the shared row: what :func:`pymicro.evaluation.performance.model_figures` needs
    (``n_classes``, ``predict``)."""

    def __init__(self, model, columns, class_map, n_classes: int = 3, name: str = "member"):
        self.model, self.columns, self.class_map = model, list(columns), list(class_map)
        self.n_classes, self.name = n_classes, name

    def predict(self, X):
        X = np.asarray(X)
        p = self.model.predict(np.ascontiguousarray(X[..., self.columns], np.float32))
        return map_classes(np.atleast_2d(p), self.class_map, self.n_classes).astype(np.float32)


def _log_loss(p, y) -> float:
    p = np.asarray(p, np.float64)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def _shared_rows(frame, presets, horizon):
    """The presets' aligned datasets, the common labels, and one Dataset over the shared row
    (the members' features side by side, ``preset.feature`` names)."""
    from dataclasses import replace

    from pymicro.training.ensemble import LABELS3, aligned_datasets, common_labels

    sets = aligned_datasets(frame, presets, horizon)
    y, maps = common_labels(sets, presets)
    offsets = np.cumsum([0] + [sets[p].X.shape[1] for p in presets]).tolist()
    columns = [list(range(offsets[i], offsets[i + 1])) for i in range(len(presets))]
    names = tuple(f"{p}.{f}" for p in presets for f in sets[p].feature_names)
    X = np.ascontiguousarray(np.concatenate([sets[p].X for p in presets], axis=1), np.float32)
    shared = replace(sets[presets[0]], X=X, y=y, feature_names=names, label_names=LABELS3, preset="ensemble")
    return sets, shared, columns, maps


def _fit_container(presets, sets, columns, maps, rows_idx, y_common, *, combiner, folds, epochs, seed, embargo,
                   fits=None, cache=None):
    """Members and combiner on the rows ``rows_idx`` only (time order): the out-of-fold predictions
    (``folds`` expanding folds, ``embargo`` rows), the combiner fitted to them, the final members
    (from ``cache`` when the same member was fitted on the same rows), one container.
    Returns (container bytes, member blobs, out-of-fold log-loss per member)."""
    from pymicro.runtime.ensemble import freeze_ensemble
    from pymicro.training.ensemble import LABELS3, fit_meta, fit_predict_for, fit_weights, out_of_fold

    members = [fit_predict_for(p, epochs=epochs, seed=seed, feature_names=sets[p].feature_names) for p in presets]
    Xs = [sets[p].X[rows_idx] for p in presets]
    ys = [sets[p].y[rows_idx] for p in presets]
    y = y_common[rows_idx]
    q, have = out_of_fold(members, Xs, y, class_maps=maps, n_classes=3, k=folds, embargo=embargo, ys=ys,
                          progress=(lambda i, t: fits(1)) if fits else None)
    oof_loss = [_log_loss(q[have, m], y[have]) for m in range(len(presets))]
    blobs = []
    key = (int(rows_idx[0]), int(rows_idx[-1]), int(rows_idx.size))
    for p, fp, X, yy in zip(presets, members, Xs, ys):
        if cache is not None and (p, key) in cache:
            blobs.append(cache[(p, key)])
            continue
        keep: list = []
        fp(X, yy, X[:1], keep=keep)
        blobs.append(keep[0])
        if cache is not None:
            cache[(p, key)] = keep[0]
        if fits:
            fits(1)
    kw = {}
    if combiner == "stacked":
        kw["meta"] = fit_meta(q[have], y[have], labels=LABELS3)
    elif combiner == "soft_vote":
        kw["weights"] = fit_weights(q[have], y[have]).tolist()
    container = freeze_ensemble(blobs, combiner=combiner, columns=columns, labels=LABELS3, class_maps=maps,
                                names=list(presets), name=f"report-{combiner}", **kw)
    return container, blobs, oof_loss


def split_comparison(frame, *, presets=("momentum", "reversal", "sentiment"), combiner: str = "stacked",
                     folds: int = 3, epochs: int = 10, horizon: int = 5, cost_bps: float = 1.0,
                     slippage_bps: float = 1.0, seed: int = 0, train: float = 0.7, validation: float = 0.15,
                     progress=None) -> dict:
    """The ensemble beside each member, its best member and the baselines on the test split.

    The rows all presets share, split by date as the report splits (train / validation / test,
    embargo): the combiner is fitted on out-of-fold predictions of the training rows; the final
    members on the training rows; the position rule of each model and the best member (lowest
    log-loss) on the validation rows; then every model is scored and traded on the test rows by
    :func:`pymicro.evaluation.performance.model_figures` (what the report does for a preset).
    Intervals: accuracy by block bootstrap (blocks of horizon x symbols rows); Sharpe ratios, and
    the ensemble's Sharpe minus the best member's, by a paired moving-block bootstrap of the daily
    portfolio returns; the accuracy difference by the block bootstrap of the paired row
    differences. ``progress(n)`` is called after each member fit.
    """
    from pymicro.evaluation.performance import model_figures
    from pymicro.evaluation.plausibility import FREQUENCIES
    from pymicro.evaluation.resampling import block_mean, sharpe_intervals
    from pymicro.evaluation.rows import as_rows, price_table
    from pymicro.runtime.model import load

    presets = list(presets)
    sets, shared, columns, maps = _shared_rows(frame, presets, horizon)
    rows = as_rows(shared, None, train, validation, None)
    tr, va, te = rows.idx(0), rows.idx(1), rows.idx(2)
    n_sym = len(set(map(str, rows.symbols[tr])))
    container, blobs, oof_loss = _fit_container(presets, sets, columns, maps, tr, shared.y, combiner=combiner,
                                                folds=folds, epochs=epochs, seed=seed, embargo=horizon * n_sym,
                                                fits=progress)
    models = {"ensemble": load(container)}
    for p, b, cols, cm in zip(presets, blobs, columns, maps):
        models[p] = MemberView(load(b), cols, cm, name=p)
    table = price_table(frame, rows.symbols)
    freq = FREQUENCIES["daily"]
    figs, per_symbol = {}, {}
    for name, model in models.items():
        per_symbol[name] = {}
        figs[name] = model_figures(model, rows, table, freq, cost_bps, slippage_bps, seed=seed,
                                   results=per_symbol[name])
    val_loss = {p: _log_loss(figs[p]["probs_all"][va], rows.y[va]) for p in presets}
    best = min(presets, key=lambda p: val_loss[p])
    out = {"presets": presets, "combiner": combiner, "best_member": best,
           "best_member_rule": "the member with the lowest log-loss on the validation rows",
           "validation_log_loss": val_loss, "oof_log_loss": dict(zip(presets, oof_loss)),
           "test_rows": int(te.size), "test_start": str(np.datetime64(rows.dates[te].min(), "D")),
           "test_end": str(np.datetime64(rows.dates[te].max(), "D")), "oof_rows": int(tr.size),
           "params": models["ensemble"].info.params, "models": {}, "per_symbol": {}}
    for name, f in figs.items():
        s = f["summary"]
        out["models"][name] = {"accuracy": s["accuracy"], "accuracy_ci": list(s["accuracy_ci"]),
                               "ci_method": s["ci_method"], "balanced_accuracy": s["balanced_accuracy"],
                               "majority_accuracy": s["majority_accuracy"], "p_value_vs_majority": s["p_value_block"],
                               "rule": f["rule"].to_dict(), "trading": None}
    # paired differences, ensemble vs best member
    pe, pb = figs["ensemble"]["pred_all"][te], figs[best]["pred_all"][te]
    d = (pe == rows.y[te]).astype(np.float64) - (pb == rows.y[te]).astype(np.float64)
    edge = block_mean(d, figs["ensemble"]["block"], seed)
    out["accuracy_difference"] = {"vs": best, "difference": edge["edge"],
                                  "ci": [edge["edge"] - 1.96 * edge["se"], edge["edge"] + 1.96 * edge["se"]],
                                  "method": f"block bootstrap of the paired row differences, blocks of "
                                            f"{edge['block']} rows"}
    series = figs["ensemble"]["series"]
    if series is not None:
        legs = ["ensemble", *presets]
        R = np.column_stack([figs[n]["series"]["strategy"] for n in legs]
                            + [series[b] for b in ("buy_and_hold", "momentum", "majority_class")])
        names = legs + ["buy and hold", "momentum rule", "majority class"]
        si = sharpe_intervals(R, RETURN_BLOCK_BARS * horizon, freq.periods_per_year,
                              reference=legs.index(best), seed=seed)
        out["sharpe"] = {n: {"sharpe": si["sharpe"][i], "ci": si["ci"][i]} for i, n in enumerate(names)}
        out["sharpe_difference"] = {"vs": best, "difference": si["diff"][0], "ci": si["diff_ci"][0],
                                    "method": "paired " + si["method"] + " (trading days of the equal-weight "
                                                                         "portfolio)"}
        for name in legs:
            t = figs[name]["trade"]
            out["models"][name]["trading"] = {"sharpe": t["strategy"]["sharpe"],
                                              "max_drawdown": t["strategy"]["max_drawdown"],
                                              "annualised_return": t["strategy"]["annualised_return"],
                                              "exposure": t["exposure"]}
        t = figs["ensemble"]["trade"]
        out["baselines"] = {b: {k: t[b][k] for k in ("sharpe", "max_drawdown", "annualised_return")}
                            for b in ("buy_and_hold", "momentum", "majority_class")}
        out["_curves"] = {n: (series["dates"], np.cumprod(1 + R[:, i])) for i, n in enumerate(names)
                          if n in ("ensemble", best, "buy and hold", "momentum rule", "majority class")}
    for sym in sorted(per_symbol["ensemble"]):
        r = per_symbol["ensemble"][sym]
        one = {"ensemble": r.strategy.metrics["sharpe"],
               "best member": per_symbol[best][sym].strategy.metrics["sharpe"]}
        for b, label in (("buy_and_hold", "buy and hold"), ("momentum", "momentum rule"),
                         ("majority_class", "majority class")):
            one[label] = r.baselines[b].metrics["sharpe"]
        out["per_symbol"][sym] = {"sharpe": one, "days": int(len(r.dates)),
                                  "start": str(np.datetime64(r.dates[0], "D")),
                                  "end": str(np.datetime64(r.dates[-1], "D"))}
    return out


def _series_for(shared, frame, symbol: str):
    """One symbol's rows of the shared dataset as a walk-forward series: the shared row plus, as a
    last column, the row's index in ``shared`` (what the fits read their member labels by; the
    predictions never read it)."""
    from pymicro.evaluation.backtest import LabelledSeries

    idx = np.flatnonzero(shared.symbols.astype(str) == symbol)
    bars = frame[frame["symbol"] == symbol]
    close = dict(zip(bars["date"].to_numpy("datetime64[ns]").tolist(), bars["close"].to_numpy(np.float64)))
    dates = shared.dates[idx]
    X = np.column_stack([shared.X[idx].astype(np.float64), idx.astype(np.float64)])
    return LabelledSeries(dates, np.array([close[d] for d in dates.tolist()]), X, shared.y[idx], shared.horizon,
                          None, tuple(shared.label_names)), idx


def walk_forward_comparison(frame, symbols=None, *, presets=("momentum", "reversal", "sentiment"),
                            combiner: str = "stacked", folds: int = 2, epochs: int = 5, horizon: int = 5,
                            train_window: int = 756, step: int = 504, cost_bps: float = 1.0,
                            slippage_bps: float = 1.0, seed: int = 0, progress=None) -> dict:
    """A walk-forward per symbol (:func:`pymicro.evaluation.backtest.walk_forward`, expanding):
    before each block of ``step`` bars, the members and the combiner are fitted on the earlier
    rows only (an embargo of ``horizon`` bars; the combiner on the members' out-of-fold
    predictions of those rows), and predict the block; the position rule is chosen on the last
    rows of the training window, as for any walk-forward. Beside it, on the same blocks: each
    member alone (the same fitted member), the *best member* (per block, the member with the
    lowest out-of-fold log-loss on that block's training rows: chosen on the past, never on the
    block), buy-and-hold, the momentum rule and the majority class. Sharpe intervals: paired
    moving-block bootstrap of the daily net returns. ``progress(symbol, block, blocks)``.
    """
    from pymicro.evaluation.backtest import walk_forward
    from pymicro.evaluation.resampling import sharpe_intervals
    from pymicro.runtime.model import load

    presets = list(presets)
    all_symbols = sorted(set(map(str, frame["symbol"].unique())))
    symbols = list(symbols or all_symbols)
    missing = [s for s in symbols if s not in all_symbols]
    if missing:
        from pymicro.errors import EvaluationError

        raise EvaluationError(f"symbols {missing} are not in the data (it holds {all_symbols})")
    sets, shared, columns, maps = _shared_rows(frame, presets, horizon)
    out = {"presets": presets, "combiner": combiner, "folds": folds, "epochs": epochs, "train_window": train_window,
           "step": step, "best_member_rule": "per block, the member with the lowest out-of-fold log-loss on "
                                             "that block's training rows", "symbols": {}}
    for sym in symbols:
        series, _ = _series_for(shared, frame, sym)
        cache: dict = {}
        chosen: dict = {}

        def key_of(X):
            idx = X[:, -1].astype(np.int64)
            return idx, (int(idx[0]), int(idx[-1]), int(idx.size))

        def ensemble_fit(X, y):
            idx, key = key_of(X)
            container, blobs, oof = _fit_container(presets, sets, columns, maps, idx, shared.y, combiner=combiner,
                                                   folds=folds, epochs=epochs, seed=seed, embargo=horizon,
                                                   cache=cache)
            chosen[key] = presets[int(np.argmin(oof))]
            model = load(container)
            return lambda Xt: model.predict(np.ascontiguousarray(Xt[:, :-1], np.float32))

        def member_fit(p):
            def fit(X, y):
                _, key = key_of(X)
                i = presets.index(p)
                view = MemberView(load(cache[(p, key)]), columns[i], maps[i], name=p)
                return lambda Xt: view.predict(Xt[:, :-1])
            fit.__name__ = p
            return fit

        def best_fit(X, y):
            _, key = key_of(X)
            return member_fit(chosen[key])(X, y)

        results = {}
        kw = dict(train_window=train_window, step=step, horizon=horizon, cost_bps=cost_bps, slippage_bps=slippage_bps)

        def tick(k, n, info):
            if progress:
                progress(sym, k, n)

        results["ensemble"] = walk_forward(series, fit=ensemble_fit, progress=tick, **kw)
        for p in presets:
            results[p] = walk_forward(series, fit=member_fit(p), **kw)
        results["best member"] = walk_forward(series, fit=best_fit, **kw)
        ens = results["ensemble"]
        names = ["ensemble", "best member", *presets]
        R = np.column_stack([results[n].strategy.returns for n in names]
                            + [ens.baselines[b].returns for b in ("buy_and_hold", "momentum", "majority_class")])
        labels = names + ["buy and hold", "momentum rule", "majority class"]
        si = sharpe_intervals(R, RETURN_BLOCK_BARS * horizon, ens.settings.get("periods_per_year", 252.0),
                              reference=1, seed=seed)
        entry = {"blocks": len(ens.windows), "start": str(np.datetime64(ens.dates[0], "D")),
                 "end": str(np.datetime64(ens.dates[-1], "D")), "periods": int(len(ens.dates)),
                 "best_member_per_block": [chosen[k] for k in sorted(chosen)],
                 "windows": [{k: (str(np.datetime64(w[k], "D")) if "start" in k or "end" in k else w[k])
                              for k in ("train_start", "train_end", "test_start", "test_end", "train_rows",
                                        "test_rows", "threshold")} for w in ens.windows],
                 "sharpe": {n: {"sharpe": si["sharpe"][i], "ci": si["ci"][i]} for i, n in enumerate(labels)},
                 "ensemble_minus_best_member": {"sharpe": si["diff"][0], "ci": si["diff_ci"][0],
                                                "method": "paired " + si["method"]},
                 "accuracy": {}, "_returns": (ens.dates, R, labels)}
        for n in names:
            c = results[n].classification
            if c is not None:
                entry["accuracy"][n] = {"accuracy": c["accuracy"], "ci": list(c["accuracy_ci"]),
                                        "majority_accuracy": c["majority_accuracy"], "method": c["ci_method"]}
        out["symbols"][sym] = entry
    # every symbol together: the equal-weight portfolio of the symbols trading on each date
    if out["symbols"]:
        import pandas as pd

        labels = next(iter(out["symbols"].values()))["_returns"][2]
        frames = [pd.DataFrame(e["_returns"][1], index=pd.DatetimeIndex(e["_returns"][0]), columns=labels)
                  for e in out["symbols"].values()]
        pooled = pd.concat(frames).groupby(level=0).mean().sort_index()
        si = sharpe_intervals(pooled.to_numpy(), RETURN_BLOCK_BARS * horizon, 252.0, reference=1, seed=seed)
        out["portfolio"] = {"periods": int(len(pooled)), "start": str(pooled.index[0].date()),
                            "end": str(pooled.index[-1].date()),
                            "sharpe": {n: {"sharpe": si["sharpe"][i], "ci": si["ci"][i]} for i, n in enumerate(labels)},
                            "ensemble_minus_best_member": {"sharpe": si["diff"][0], "ci": si["diff_ci"][0],
                                                           "method": "paired " + si["method"]}}
    return out
