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


def build_report(presets=PRESETS, *, out_dir="docs", epochs: int = 40, batch_size: int = 64, patience: int = 8,
                 seed: int = 0, cost_bps: float = 1.0, slippage_bps: float = 1.0, threshold: float | None = None,
                 ablation_seeds=(0, 1, 2), ablation_weights=(0.0, 0.1, 0.5), symbols=None,
                 progress=None) -> dict:
    """Train and evaluate each preset, write ``out_dir/report.md`` and ``out_dir/report/*.png``.

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
    _plot(results, out_dir / "report" / "equity.png")
    text = _markdown(results, settings, machine_name(), ab)
    (out_dir / "report.md").write_text(text)
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in results]
    (out_dir / "report" / "report.json").write_text(json.dumps({"results": clean, "ablation": ab,
                                                                 "settings": settings}, indent=2, default=str))
    return {"results": clean, "ablation": ab, "markdown": text, "path": str(out_dir / "report.md")}
