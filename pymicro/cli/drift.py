"""``pymicro drift``: a registered model's drift on a window of bars against its training window."""

from __future__ import annotations

import argparse
import json

from pymicro.cli._common import add_store_argument


def _version(text: str | None):
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def _plot(report: dict, path: str) -> None:
    from pymicro.lifecycle.drift import PSI_MODERATE, PSI_SIGNIFICANT
    from pymicro.plots import _pyplot

    plt = _pyplot()
    feats = sorted(report["features"], key=lambda f: -report["features"][f]["psi"])
    values = [report["features"][f]["psi"] for f in feats]
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(feats)), 4))
    ax.bar(range(len(feats)), values, color=["tab:red" if v >= PSI_SIGNIFICANT else "tab:orange"
                                             if v >= PSI_MODERATE else "tab:green" for v in values])
    ax.set_xticks(range(len(feats)), feats, rotation=70, fontsize=7)
    for level, label in ((PSI_MODERATE, "moderate (0.1)"), (PSI_SIGNIFICANT, "significant (0.25)")):
        ax.axhline(level, color="grey", linestyle="--", linewidth=0.8, label=label)
    w = report["window"]
    ax.set_title(f"{report['name']} v{report['version']}: PSI of {w['current'][0]}..{w['current'][1]} "
                 f"against {w['reference'][0]}..{w['reference'][1]}", fontsize=9)
    ax.set_ylabel("PSI")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _cmd_drift(args) -> int:
    from pymicro.lifecycle.watch import drift_check
    from pymicro.market.data import load_embedded, load_ohlcv
    from pymicro.store.registry import Registry
    from pymicro.tables import table

    reg = Registry(args.store)
    frame = load_ohlcv(args.data) if args.data else load_embedded(args.symbols or None)
    report = drift_check(reg, args.model, frame, version=_version(args.version), start=args.start, end=args.end,
                         store=not args.no_store)
    if args.png:
        _plot(report, args.png)
    if args.json:
        print(json.dumps(report))
        return 0
    rows = sorted(report["features"].items(), key=lambda kv: -kv[1]["psi"])
    print(table(["feature", "PSI", "band", "KS D", "KS p", "KS flag", "outside training 99%"],
                [[f, f"{r['psi']:.4f}", r["band"], f"{r['ks']:.4f}", f"{r['ks_p']:.2g}", "yes" if r["ks_flag"] else "",
                  f"{r['out_of_range']:.1%}"] for f, r in rows]))
    w = report["window"]
    print(f"{report['name']} v{report['version']} ({report['model_id']}): current {w['current'][0]}..{w['current'][1]} "
          f"({report['rows']['current']} rows) against training {w['reference'][0]}..{w['reference'][1]} "
          f"({report['rows']['reference']} rows)")
    if "predictions" in report:
        p = report["predictions"]
        print(f"predicted classes: PSI {p['psi']:.4f} ({p['band']}), shares {p['reference_shares']} -> "
              f"{p['current_shares']}")
    if "accuracy" in report:
        a = report["accuracy"]
        print(f"realised accuracy {a['current']:.3f} (95% CI {a['current_ci95'][0]:.3f}..{a['current_ci95'][1]:.3f}) "
              f"against {a['reference']:.3f} in training: {'DECAYED' if a['decayed'] else 'not decayed'}")
    print(f"rows outside the training window's central 99%: {report['out_of_range']:.1%} on average over the "
          f"features (nominal 1%; the range alert is at {report['thresholds']['out_of_range_alert']:.0%}: on daily "
          "market features PSI exceeds 0.25 on calm days too, docs/monitoring.md)")
    print(f"status: {report['status']} (max PSI {report['max_psi']:.4f}; bands 0.1 / 0.25, Siddiqi 2006; KS at "
          f"p < {report['thresholds']['ks_alpha_per_feature']:.2g} per feature)"
          + ("" if args.no_store else f"; stored as registry event {report['seq']}")
          + (f"; plot {args.png}" if args.png else ""))
    if "note" in report:
        print("note:", report["note"])
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "drift", help="a model's drift (PSI, KS, predictions, accuracy) on new bars against its training window",
        description="Per-feature PSI and two-sample KS, predicted-class PSI and realised accuracy of MODEL (a name "
                    "with versions, or a model id) on the bars from --start (default: the first date it never "
                    "trained on) to --end, against its own training window (pymicro.lifecycle.watch). Prints a "
                    "table, optionally a PNG, and stores the report in the registry (the monitor and MCP "
                    "neural_model_status show it). Thresholds: docs/monitoring.md")
    p.add_argument("model", help="a model name (its champion unless --version) or a model id")
    p.add_argument("--version", help="a version number or an alias (default: champion)")
    add_store_argument(p)
    p.add_argument("--data", help="an OHLCV .csv/.parquet file (default: the embedded history)")
    p.add_argument("--symbols", nargs="*", help="embedded symbols (default: all)")
    p.add_argument("--start", help="first date of the current window (default: the model's first unseen date)")
    p.add_argument("--end", help="last date of the current window (default: the newest labelled bar)")
    p.add_argument("--png", help="write a bar chart of the PSI per feature here")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line")
    p.add_argument("--no-store", action="store_true", help="do not store the report in the registry")
    p.set_defaults(func=_cmd_drift)
    return p
