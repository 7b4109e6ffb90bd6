"""The leak checks: does any input, the model's output or the evaluation know the future?

``split`` (chronology, purge, duplicates, the blob's training dates), ``feature_lookahead``
and ``label_shift`` (ties to single future bars, :func:`_scan`), ``normalisation``
(statistics fitted on rows reaching the test period), ``train_test_gap`` and
``shuffled_labels`` (the null of the retraining experiments). docs/validation.md has the
formulas and thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from pymicro.evaluation.plausibility import Frequency
from pymicro.evaluation.resampling import boot_corr, corr, edge_test
from pymicro.evaluation.rows import Bars, Rows
from pymicro.evaluation.verdict import CheckResult, add_risk


Z_FLAG = 4.0  # a statistic must also be this many standard errors from zero to flag a leak


def _scan(signals: np.ndarray, bars: Bars, rows_mask: np.ndarray, h: int, bound_bar: float,
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
    Cl = corr(F, Lk)
    D = Cl[:, :-1] - Cl[:, 1:]  # D[:, k] ~ cov(f, r_{t+k+1}) - cov(f, r_{t+k+h+1})
    Cr = corr(F, R[ok]) if have_prices else None
    # block bootstrap standard errors (rows are date-major: a block spans ~4h dates of every symbol)
    rng = np.random.default_rng(seed)
    block = 4 * h * max(1, len(bars.symbols))
    G = np.hstack([Lk, R[ok]]) if have_prices else Lk
    boot = boot_corr(F, G, block, resamples, rng)
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


def check_split(rows: Rows, bars: Bars, model_meta: dict, model_features) -> CheckResult:
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
        add_risk(c, "critical", f"{k} test rows are dated on or before the last training row "
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
        add_risk(c, "critical", f"{reach} training labels read bars of the test period (their {h}-bar horizon "
                             "ends after the test start): purge/embargo missing")
    elif reach:
        add_risk(c, "medium", f"if the rows are consecutive bars, the last {reach} training labels read bars of the "
                           f"test period ({h}-bar horizon); pass dates and prices (or a Dataset) to check, or leave "
                           f"an embargo of {h} bars between the parts")
    # exact duplicates of test rows among training rows
    if tr.size and te.size:
        train_keys = {r.tobytes() for r in np.ascontiguousarray(rows.X[tr])}
        dup = sum(r.tobytes() in train_keys for r in np.ascontiguousarray(rows.X[te]))
        nums["test_rows_duplicated_in_train"] = int(dup)
        if dup > max(5, 0.01 * te.size):
            add_risk(c, "high", f"{dup} of {te.size} test rows are exact copies of training rows: the model may "
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
                add_risk(c, "critical", f"the blob says it was trained on data up to {train_end}, but {seen} test rows "
                                     f"are dated before that: they are in the model's training period")
    if model_features and rows.feature_names and tuple(model_features) != tuple(rows.feature_names):
        diff = [f"{a}!={b}" for a, b in zip(model_features, rows.feature_names) if a != b][:3]
        add_risk(c, "high", f"the blob's feature names differ from the data's ({', '.join(diff)}): the inputs may be "
                         "in a different order or computed differently from training")
    c.numbers = nums
    c.summary = (f"train {tr.size}, validation {va.size}, test {te.size} rows; chronological, purged" if not c.risks
                 else "; ".join(r.finding for r in c.risks))
    return c


def check_features(rows: Rows, bars: Bars, freq: Frequency, seed: int, resamples: int) -> CheckResult:
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
        add_risk(c, "critical", f"feature {s['name']!r} peeks ahead: " + _peek_findings(s, freq))
    top = max((s for s in scan["signals"] if not s.get("constant")),
              key=lambda s: abs(s.get("max_future_bar_corr", s["max_label_step"])))
    key = "max_future_bar_corr" if scan["prices_used"] else "max_label_step"
    c.summary = (f"{len(bad)} of {len(names)} features tied to future bars: "
                 + ", ".join(s["name"] for s in bad) if bad else
                 f"no feature tied to a future bar ({scan['rows']} rows; largest: {top['name']} "
                 f"{key.replace('_', ' ')} {top[key]:+.3f})")
    return c


def check_label_shift(rows: Rows, bars: Bars, probs_all: np.ndarray, freq: Frequency, seed: int,
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
            add_risk(c, "critical", "the model's predictions know a future bar: " + _peek_findings(s, freq))
    if shift_exp is not None:
        nums["retrain"] = shift_exp
        drop, se = shift_exp["ic_drop"], shift_exp["ic_drop_se"]
        if drop > freq.max_bar_corr and drop > Z_FLAG * se:
            add_risk(c, "critical", f"retrained to predict the label {h} bars later, the same inputs lose their skill: "
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


def check_normalisation(rows: Rows, mean, std) -> CheckResult:
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
                add_risk(c, "critical", f"{what} matches the statistics of the rows up to {end_date} "
                                     f"({m + 1} of {N} rows, distance {best:.1e}), {test_rows} of them test rows: "
                                     "the normalisation was fitted on data that includes the test period")
            elif val_rows:
                add_risk(c, "low", f"{what} matches the rows up to {end_date}, including {val_rows} validation rows "
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
                    add_risk(c, "critical", "the blob's mean/std are the statistics of the test rows")
                else:
                    add_risk(c, "low", "the blob's mean/std match neither the training split nor any date-ordered "
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


def check_gap(rows, pred_all, majority, freq, seed, test_edge) -> CheckResult:
    c = CheckResult("train_test_gap", "pass", "")
    tr = rows.idx(0)
    te = rows.idx(2)
    h = rows.horizon
    y = rows.y
    block = h * max(1, len(set(map(str, rows.symbols))))
    tr_edge = edge_test(y[tr], pred_all[tr], np.full(tr.size, majority), block, seed + 3, 500)
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
        add_risk(c, "medium", f"training edge {tr_edge['edge'] * 100:+.1f} points vs test {test_edge['edge'] * 100:+.1f}: "
                           "the model fits its training rows far better than new ones (overfitting)")
    if -edge_gap > max(0.05, 3 * se) and test_edge["edge"] > freq.max_edge / 2:
        add_risk(c, "high", f"the test edge ({test_edge['edge'] * 100:+.1f} points) is well above the training edge "
                         f"({tr_edge['edge'] * 100:+.1f}): a model is not better on data it never saw unless that "
                         "data leaks into its inputs")
    c.numbers = nums
    c.summary = (f"train {acc_tr:.1%} vs test {acc_te:.1%} (edges {tr_edge['edge'] * 100:+.1f} / "
                 f"{test_edge['edge'] * 100:+.1f} points over the majority class)")
    if c.risks:
        c.summary += ": " + "; ".join(r.finding for r in c.risks)
    return c


def check_shuffled(exp: dict | None, model_acc: float, model_ic: float, base_acc: float, test_se: float,
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
        add_risk(c, "critical", f"models trained on shuffled labels still track the test labels (mean |correlation| "
                             f"{null_abs_ic:.2f}, a random score stays near {exp['null_ic_se']:.2f}): whatever weight "
                             "a fit puts on the inputs by chance carries label information, so some input is tied "
                             f"to the label more than a causal {freq.name} feature can be")
    if null_edge > max(0.03, 3 * test_se):
        add_risk(c, "high", f"models trained on shuffled labels still beat the majority class by "
                         f"{null_edge * 100:.1f} points out of sample: the evaluation itself carries label "
                         "information (or the baseline is misstated)")
    c.summary = (f"{accs.size} retrain{'s' if accs.size != 1 else ''} on block-shuffled labels: test accuracy "
                 f"{accs.mean():.1%} (max {accs.max():.1%}) vs majority {base_acc:.1%}, label corr |{null_abs_ic:.3f}|; "
                 f"model {model_acc:.1%}, {model_ic:+.3f} (permutation p = {p_acc:.2f} / {p_ic:.2f})")
    if exp.get("true_label_accuracy") is not None:
        c.summary += f"; same fit on true labels {exp['true_label_accuracy']:.1%}, {exp['true_label_ic']:+.3f}"
    return c
