"""`pymicro report`: the seed's benchmark table, measured out-of-sample, with baselines.

For each preset: train on the embedded history (chronological split, embargo), freeze,
and on the test split (never seen in training or early stopping) measure accuracy beside
the majority class, and trade it: positions from the native runtime's probabilities, one
bar later, net of costs, per symbol, then an equal-weight portfolio of the symbols on each
date, beside buy-and-hold, the majority class and a plain momentum rule on the same dates.
Writes a Markdown table and PNG plots.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pymicro.runtime.spec import PRESETS
from pymicro.evaluation.positions import MIN_EXPOSURE, exposure_warning
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.plots import _pyplot
from pymicro.runtime.bench import machine_name
from pymicro.runtime.bench import single_call_latency
from pymicro.runtime.model import load
from pymicro.training.reasoning_loss import ablation
from pymicro.training.trainer import run_training

def evaluate_model(model, frame, preset: str, *, cost_bps: float, slippage_bps: float, threshold=None,
                   seed: int = 0, train: float = 0.7, validation: float = 0.15, horizon: int = 5,
                   label_threshold: float = 0.5) -> dict:
    """A frozen model's test-split figures, the same function validate and backtest use
    (:func:`pymicro.evaluation.performance.model_figures`): the rule chosen on the validation
    split, the test split traded with it per symbol, net of costs, equal weight across symbols."""
    from pymicro.evaluation.performance import model_figures
    from pymicro.evaluation.plausibility import FREQUENCIES
    from pymicro.evaluation.rows import as_rows, price_table

    ds = make_dataset(frame, preset, horizon=horizon, threshold=label_threshold)
    rows = as_rows(ds, None, train, validation, None)
    table = price_table(frame, rows.symbols)
    figs = model_figures(model, rows, table, FREQUENCIES["daily"], cost_bps, slippage_bps, threshold=threshold,
                         seed=seed)
    trade, series = figs["trade"], figs["series"]
    trading, curves = {}, {}
    if trade is not None:
        from pymicro import metrics as M

        for leg in ("strategy", "buy_and_hold", "momentum", "majority_class"):
            trading[leg] = {k: trade[leg][k] for k in ("sharpe", "max_drawdown", "annualised_return")}
            curves[leg] = (series["dates"], M.equity_curve(series[leg]))
        trading["strategy"]["exposure"] = trade["exposure"]
    return {"figures": figs, "trading": trading, "curves": curves, "rule": figs["rule"].to_dict(),
            "symbols": [] if trade is None else trade["symbols"]}


def evaluate_preset(name: str, frame, *, epochs: int, batch_size: int, patience: int, seed: int,
                    cost_bps: float, slippage_bps: float, threshold, out_dir: Path, progress=None) -> dict:

    run = run_training(name, data=frame, epochs=epochs, batch_size=batch_size, patience=patience, seed=seed,
                       name=f"{name}-report", out_dir=out_dir / "models", plot=False, progress=progress)
    model = load(run.blob)
    perf = run.performance
    ev = evaluate_model(model, frame, name, cost_bps=cost_bps, slippage_bps=slippage_bps, threshold=threshold,
                        seed=seed)
    summ = ev["figures"]["summary"]
    test = make_dataset(frame, name).split().test
    x = np.ascontiguousarray(test.X[0], dtype=np.float32)
    return {
        "preset": name, "architecture": run.spec.describe(), "params": run.spec.params,
        "inference_us": single_call_latency(model.predict, x) * 1e6,
        "training_seconds": run.training_seconds, "epochs_run": run.settings["epochs_run"],
        "accuracy": summ["accuracy"], "accuracy_ci": summ["accuracy_ci"], "ci_method": summ["ci_method"],
        "balanced_accuracy": summ["balanced_accuracy"], "majority_accuracy": summ["majority_accuracy"],
        "test_class_frequencies": summ["test_class_frequencies"], "labels": list(run.spec.labels),
        "p_value_vs_majority": summ["p_value_block"], "test_rows": summ["n"],
        "test_start": run.data["test_start"], "symbols": ev["symbols"], "position_rule": ev["rule"],
        "trading": ev["trading"], "_curves": ev["curves"], "trained_accuracy": perf["accuracy"],
    }


def _plot(results: list[dict], path: Path) -> None:

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, res in zip(axes[0], results):
        for leg, (dates, equity) in res["_curves"].items():
            ax.plot(dates.astype("datetime64[D]"), equity, label=leg.replace("_", " "),
                    lw=2 if leg == "strategy" else 1)
        ax.set_title(f"{res['preset']}: equal-weight portfolio, net of costs")
        ax.set_ylabel("equity (1 = start)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _markdown(results: list[dict], settings: dict, machine: str, ablation: dict | None) -> str:
    lines = ["# pymicro report", "",
             f"Generated by `pymicro report` on {machine}. Every figure is out-of-sample: the test split "
             "of the embedded daily history (dates after the validation period and an embargo), never seen by "
             f"training or early stopping. Trading figures are net of {settings['cost_bps']} bp cost + "
             f"{settings['slippage_bps']} bp slippage per unit traded; positions from the native runtime's "
             f"probabilities with one confidence threshold per model, chosen on the validation split (never the "
             f"test split) unless given ({settings['threshold']}), taken one bar later; an equal-weight "
             "portfolio of the symbols trading on each date. Baselines on the same dates and costs.", "",
             "| preset | params | inference (µs, one call) | accuracy (95% CI) | majority class | balanced acc. | "
             "test-split class frequencies | Sharpe: model / buy&hold / momentum / majority | max DD: model / buy&hold | "
             "model in market (threshold) | training (s) |",
             "|---|---:|---:|---|---:|---|---:|---|---|---:|---:|"]
    for r in results:
        t = r["trading"]
        lo, hi = r["accuracy_ci"]
        sharpe = " / ".join(f"{t[k]['sharpe']:.2f}" if k in t else "-" for k in
                            ("strategy", "buy_and_hold", "momentum", "majority_class"))
        dd = " / ".join(f"{t[k]['max_drawdown']:.1%}" if k in t else "-" for k in ("strategy", "buy_and_hold"))
        freqs = ", ".join(f"{lab} {f:.0%}" for lab, f in zip(r["labels"], r["test_class_frequencies"]))
        e = t.get("strategy", {}).get("exposure")
        expo = "-" if e is None else (f"{e:.0%} ({r['position_rule']['threshold']:g})"
                                      + (" **low**" if exposure_warning(e) else ""))
        lines.append(f"| {r['preset']} | {r['params']:,} | {r['inference_us']:.2f} | {r['accuracy']:.1%} "
                     f"({lo:.1%}-{hi:.1%}) | {r['majority_accuracy']:.1%} | {freqs} | {r['balanced_accuracy']:.1%} | "
                     f"{sharpe} | {dd} | {expo} | {r['training_seconds']:.0f} |")
    lines += ["", f"**low**: in the market less than {MIN_EXPOSURE:.0%} of the test periods; such a Sharpe ratio "
              "rests on few positions.", "", "Test periods and symbols:", ""]
    for r in results:
        lines.append(f"- {r['preset']}: {r['test_rows']:,} test rows from {r['test_start']}; traded: "
                     f"{', '.join(r['symbols'])}; p-value of beating the majority class {r['p_value_vs_majority']:.3f} "
                     f"(block bootstrap: the {r.get('horizon', 5)}-bar labels overlap); accuracy CI: "
                     f"{r['ci_method']}; position rule: {r['position_rule']['chosen_on']}")
    lines += ["", "![equity curves](report/equity.png)", ""]
    if ablation:
        lines += ["## Reasoning-aware loss: ablation", "",
                  f"Rule ({ablation['preset']}): {ablation['rule']}. Same split and seeds "
                  f"({', '.join(map(str, ablation['seeds']))}); {ablation['test_rows']:,} test rows.", "",
                  "| rule weight | accuracy (mean ± sd over seeds) | balanced acc. | predictions contradicting the rule | "
                  "Δ accuracy vs 0 | seeds better / worse |", "|---:|---|---:|---:|---:|---|"]
        for row in ablation["table"]:
            lines.append(f"| {row['rule_weight']} | {row['accuracy_mean']:.1%} ± {row['accuracy_sd']:.1%} | "
                         f"{row['balanced_accuracy_mean']:.1%} | {row['contradicts_rule_mean']:.1%} | "
                         f"{row['accuracy_diff_vs_0']:+.1%} | {row['seeds_better']} / {row['seeds_worse']} |")
        lines += ["", f"Verdict: {ablation['verdict']}", ""]
    lines += ["Daily direction is close to unpredictable from price history; figures near the baselines are the "
              "honest expectation. Settings: " + json.dumps(settings), ""]
    return "\n".join(lines)


def _pm(v: float) -> str:
    return f"{v:+.2f}" if v else "0.00"


def _ci(ci) -> str:
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _ensemble_markdown(split: dict | None, wf: dict | None, settings: dict) -> list[str]:
    """The ensemble section: beside its best member and the baselines, test split and walk-forward."""
    e = settings["ensemble"]
    lines = ["## Ensemble of specialists beside its best member", "",
             f"The container of {', '.join(e['presets'])} with a {e['combiner']} combiner (one core call), "
             "beside each member alone (its classes mapped onto down/flat/up), its **best member** and the "
             "baselines. Nothing is fitted or chosen on the rows it is scored on: the combiner is fitted on "
             "out-of-fold predictions of the training rows (chronological expanding folds with an embargo), "
             "the members on the training rows, each model's position rule and the best member on the "
             "validation rows (test split) or on the training rows' out-of-fold predictions (walk-forward). "
             f"Net of {settings['cost_bps']} bp cost + {settings['slippage_bps']} bp slippage. Sharpe intervals: "
             "95 % paired moving-block bootstrap of the daily net returns (blocks of "
             f"{4 * e['horizon']} days); accuracy intervals: block bootstrap as above.", ""]
    if split is not None:
        best = split["best_member"]
        lines += [f"### Test split ({split['test_start']} .. {split['test_end']}, {split['test_rows']:,} rows, the "
                  f"rows all three feature sets share; combiner fitted on {split['oof_rows']:,} training rows)", "",
                  f"Best member (lowest validation log-loss): **{best}**.", "",
                  "| model | accuracy (95% CI) | balanced acc. | majority class | Sharpe (95% CI) | max DD | in market |",
                  "|---|---|---:|---:|---|---:|---:|"]
        for name, m in split["models"].items():
            lo, hi = m["accuracy_ci"]
            sh = split.get("sharpe", {}).get(name)
            t = m["trading"] or {}
            label = name + (" (best member)" if name == best else "")
            lines.append(f"| {label} | {m['accuracy']:.1%} ({lo:.1%}-{hi:.1%}) | {m['balanced_accuracy']:.1%} | "
                         f"{m['majority_accuracy']:.1%} | "
                         + (f"{_pm(sh['sharpe'])} {_ci(sh['ci'])}" if sh else "-")
                         + f" | {t.get('max_drawdown', float('nan')):.1%} | {t.get('exposure', float('nan')):.0%} |")
        for b in ("buy and hold", "momentum rule", "majority class"):
            sh = split.get("sharpe", {}).get(b)
            if sh:
                lines.append(f"| {b} | | | | {_pm(sh['sharpe'])} {_ci(sh['ci'])} | | |")
        a, d = split["accuracy_difference"], split.get("sharpe_difference")
        lines += ["", f"Ensemble minus {best}: accuracy {a['difference'] * 100:+.1f} points "
                      f"[{a['ci'][0] * 100:+.1f}, {a['ci'][1] * 100:+.1f}] ({a['method']})"
                  + (f"; Sharpe {_pm(d['difference'])} {_ci(d['ci'])}" if d else "") + ".", "",
                  "Per symbol (Sharpe, net; the test split's dates are cut once for all symbols, so a series "
                  "that ends soon after the cut has few test days: read those Sharpe ratios as noise, and the "
                  "walk-forward below for every symbol's whole history):", "",
                  f"| symbol | test days | ensemble | {best} (best member) | buy and hold | momentum rule | majority class |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for sym, v in split["per_symbol"].items():
            s = v["sharpe"]
            lines.append(f"| {sym} | {v['days']} ({v['start']} .. {v['end']}) | {_pm(s['ensemble'])} | {_pm(s['best member'])} | {_pm(s['buy and hold'])} | "
                         f"{_pm(s['momentum rule'])} | {_pm(s['majority class'])} |")
        lines += ["", "![ensemble equity](report/ensemble.png)", ""]
    if wf is not None:
        lines += [f"### Walk-forward on every symbol (expanding, {wf['train_window']} bars before the first block, "
                  f"blocks of {wf['step']} bars, {wf['folds']} out-of-fold folds, {wf['epochs']} epochs a fit)", "",
                  "Before each block the members and the combiner are retrained on earlier rows only. Sharpe, net, "
                  "with 95 % intervals; accuracy beside the majority class of each block's training rows.", "",
                  "| symbol | blocks | ensemble | best member | " + " | ".join(wf["presets"])
                  + " | buy and hold | momentum rule | ensemble - best member | accuracy: ensemble / best / majority |",
                  "|---|---:|---|---|" + "---|" * len(wf["presets"]) + "---|---|---|---|"]
        rows = list(wf["symbols"].items()) + ([("**all (equal weight)**", wf["portfolio"])] if wf.get("portfolio")
                                              else [])
        for sym, v in rows:
            sh = v["sharpe"]
            cell = lambda n: f"{_pm(sh[n]['sharpe'])} {_ci(sh[n]['ci'])}"  # noqa: E731
            acc = v.get("accuracy") or {}
            acc_text = (f"{acc['ensemble']['accuracy']:.1%} / {acc['best member']['accuracy']:.1%} / "
                        f"{acc['ensemble']['majority_accuracy']:.1%}" if "ensemble" in acc else "")
            d = v["ensemble_minus_best_member"]
            lines.append(f"| {sym} | {v.get('blocks', '')} | {cell('ensemble')} | {cell('best member')} | "
                         + " | ".join(cell(p) for p in wf["presets"])
                         + f" | {cell('buy and hold')} | {cell('momentum rule')} | {_pm(d['sharpe'])} {_ci(d['ci'])} | "
                           f"{acc_text} |")
        lines.append("")
    lines += ["The seed's ensemble claims (Sharpe 2.2-2.8) are claims to test, not targets: the figures above are "
              "what this run measured.", ""]
    return lines


def _plot_ensemble(split: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (dates, equity) in split["_curves"].items():
        ax.plot(np.asarray(dates).astype("datetime64[D]"), equity, label=name, lw=2 if name == "ensemble" else 1)
    ax.set_title("ensemble vs its best member, test split, net of costs")
    ax.set_ylabel("equity (1 = start)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_report(presets=PRESETS, *, out_dir="docs", epochs: int = 40, batch_size: int = 64, patience: int = 8,
                 seed: int = 0, cost_bps: float = 1.0, slippage_bps: float = 1.0, threshold: float | None = None,
                 ablation_seeds=(0, 1, 2), ablation_weights=(0.0, 0.1, 0.5), symbols=None,
                 ensemble_presets=("momentum", "reversal", "sentiment"), ensemble_combiner: str = "stacked",
                 ensemble_epochs: int = 10, ensemble_folds: int = 3, walk_forward_symbols=None,
                 walk_forward_window: int = 756, walk_forward_step: int = 504, walk_forward_folds: int = 2,
                 walk_forward_epochs: int = 5, progress=None) -> dict:
    """Train and evaluate each preset, write ``out_dir/report.md`` and ``out_dir/report/*.png``.

    ``ensemble_presets`` (empty: skip): the ensemble beside its best member and the baselines on
    the test split (:func:`pymicro.evaluation.ensemble.split_comparison`) and in a walk-forward on
    ``walk_forward_symbols`` (default: every symbol of the data; empty: skip;
    :func:`pymicro.evaluation.ensemble.walk_forward_comparison`).
    ``progress(description, total, unit="epoch")``, if given, returns a (bar, callback) pair
    like the CLI's tqdm bars: the callback goes to the trainer.
    """

    out_dir = Path(out_dir)
    (out_dir / "report").mkdir(parents=True, exist_ok=True)
    frame = load_embedded(symbols)
    settings = {"epochs": epochs, "batch_size": batch_size, "patience": patience, "seed": seed,
                "cost_bps": cost_bps, "slippage_bps": slippage_bps, "threshold": threshold}
    results = []
    for name in presets:
        bar, update = progress(f"training {name}", epochs) if progress else (None, None)
        results.append(evaluate_preset(name, frame, out_dir=out_dir / "report", progress=update, **settings))
        if bar is not None:
            bar.close()
    ab = None
    if ablation_seeds:

        runs = len(set((0.0, *ablation_weights))) * len(ablation_seeds)
        bar, update = progress("loss ablation (momentum)", runs, unit="run") if progress else (None, None)
        ab = ablation("momentum", weights=ablation_weights, seeds=ablation_seeds, data=frame, epochs=epochs,
                      batch_size=batch_size, patience=patience,
                      progress=(lambda done, total, info: bar.update(done - bar.n)) if bar is not None else None)
        if bar is not None:
            bar.close()
    split = wf = None
    if ensemble_presets:
        from pymicro.evaluation.ensemble import split_comparison, walk_forward_comparison

        ens = {"presets": list(ensemble_presets), "combiner": ensemble_combiner, "epochs": ensemble_epochs,
               "folds": ensemble_folds, "horizon": 5}
        n = len(ensemble_presets)
        bar, _ = progress("ensemble: test split", ensemble_folds * n + n, unit="fit") if progress else (None, None)
        split = split_comparison(frame, presets=ensemble_presets, combiner=ensemble_combiner,
                                 folds=ensemble_folds, epochs=ensemble_epochs, cost_bps=cost_bps,
                                 slippage_bps=slippage_bps, seed=seed,
                                 progress=(lambda k: bar.update(k)) if bar is not None else None)
        if bar is not None:
            bar.close()
        wf_symbols = (sorted(set(map(str, frame["symbol"].unique()))) if walk_forward_symbols is None
                      else list(walk_forward_symbols))
        if wf_symbols:
            bars: dict = {}

            def wf_progress(sym, k, total):
                if progress and sym not in bars:
                    bars[sym] = progress(f"ensemble walk-forward {sym}", total, unit="block")[0]
                if sym in bars:
                    bars[sym].update(k - bars[sym].n)

            wf = walk_forward_comparison(frame, wf_symbols, presets=ensemble_presets, combiner=ensemble_combiner,
                                         folds=walk_forward_folds, epochs=walk_forward_epochs,
                                         train_window=walk_forward_window, step=walk_forward_step,
                                         cost_bps=cost_bps, slippage_bps=slippage_bps, seed=seed, progress=wf_progress)
            for b in bars.values():
                b.close()
            for v in wf["symbols"].values():
                v.pop("_returns", None)
        settings["ensemble"] = ens | {"walk_forward": {"symbols": wf_symbols, "train_window": walk_forward_window,
                                                       "step": walk_forward_step, "folds": walk_forward_folds,
                                                       "epochs": walk_forward_epochs}}
        if split.get("_curves"):
            _plot_ensemble(split, out_dir / "report" / "ensemble.png")
    _plot(results, out_dir / "report" / "equity.png")
    text = _markdown(results, settings, machine_name(), ab)
    if ensemble_presets:
        cut = text.rindex("Daily direction is close")
        text = text[:cut] + "\n".join(_ensemble_markdown(split, wf, settings)) + "\n" + text[cut:]
    (out_dir / "report.md").write_text(text)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    ensemble = None if split is None else {"split": {k: v for k, v in split.items() if not k.startswith("_")},
                                           "walk_forward": wf}
    (out_dir / "report" / "report.json").write_text(json.dumps({"results": clean, "ablation": ab,
                                                                 "ensemble": ensemble, "settings": settings},
                                                                indent=2, default=str))
    return {"results": clean, "ablation": ab, "ensemble": ensemble, "markdown": text,
            "path": str(out_dir / "report.md")}
