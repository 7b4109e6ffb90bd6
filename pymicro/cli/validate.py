"""``pymicro validate``."""

from __future__ import annotations

import json

from pymicro.evaluation.validation import FREQUENCIES, validate


def add_parser(subparsers) -> None:
    """Register ``pymicro validate`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "validate", help="check a frozen model for leaks and implausible figures, and explain the verdict",
        description="Rebuild the features and labels of the model's preset on one or more symbols, split them "
                    "by date as the trainer does, and run the validation checks on the blob: look-ahead scans "
                    "of every feature and of the model's output, label-shift and shuffled-label retraining "
                    "experiments, the normalisation's provenance, the train/test gap, accuracy with its "
                    "confidence interval against the majority class, probabilistic and deflated Sharpe "
                    "ratios, and figures implausible for the frequency. Prints the answer, the risks and a "
                    "confidence.")
    p.add_argument("blob", help="the frozen model (.pmb)")
    p.add_argument("--symbols", nargs="+", default=None,
                   help="embedded symbols (default: the blob's 'symbols' metadata, else SP500); with --data, "
                        "one name for a file without a symbol column")
    p.add_argument("--data", help="a CSV/Parquet file of daily OHLCV bars")
    p.add_argument("--preset", default=None, help="feature set (default: the blob's 'preset' metadata or momentum)")
    p.add_argument("--horizon", type=int, default=None, help="label horizon (default: the blob's, else 5)")
    p.add_argument("--label-threshold", type=float, default=None, help="label band (default: the blob's, else 0.5)")
    p.add_argument("--train", type=float, default=0.7, help="training fraction (default: %(default)s)")
    p.add_argument("--validation", type=float, default=0.15, help="validation fraction (default: %(default)s)")
    p.add_argument("--n-trials", type=int, default=1, help="configurations tried, for the deflated Sharpe")
    p.add_argument("--frequency", default="daily", choices=sorted(FREQUENCIES), help="bar frequency")
    p.add_argument("--fit", default="tinygrad", choices=["tinygrad", "ridge", "none"],
                   help="trainer for the retraining experiments (default: %(default)s)")
    p.add_argument("--shuffles", type=int, default=3, help="shuffled-label retrains (default: %(default)s)")
    p.add_argument("--cost-bps", type=float, default=1.0, help="(default: %(default)s)")
    p.add_argument("--slippage-bps", type=float, default=1.0, help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--json", help="write the full report to this JSON file")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:

    from pymicro.market import data as D
    from pymicro.runtime.model import load
    from pymicro.market.dataset import make_dataset

    model = load(args.blob)
    meta = model.described.get("metadata", {})
    preset = args.preset or meta.get("preset", "momentum")
    horizon = args.horizon or int(str(meta.get("horizon", 5)).rstrip("d"))
    lt = args.label_threshold if args.label_threshold is not None else float(meta.get("threshold", 0.5))
    if args.data:
        bars = D.load_ohlcv(args.data, symbol=args.symbols[0] if args.symbols and len(args.symbols) == 1 else None)
    else:
        syms = args.symbols or (str(meta["symbols"]).split(",") if meta.get("symbols") else ["SP500"])
        bars = D.load_embedded(syms)
    ds = make_dataset(bars, preset, horizon=horizon, threshold=lt)
    report = validate(model, ds, prices=bars, n_trials=args.n_trials, frequency=args.frequency,
                      fit=None if args.fit == "none" else args.fit, shuffles=args.shuffles, train=args.train,
                      validation=args.validation, cost_bps=args.cost_bps, slippage_bps=args.slippage_bps,
                      seed=args.seed)
    print(f"pymicro validate: {args.blob} on {', '.join(sorted(set(map(str, ds.symbols))))} ({preset}, "
          f"horizon {horizon})\n")
    print(report.summary())
    if bars.attrs.get("prices"):
        print(f"prices: {bars.attrs['prices']}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report.to_dict(), f, indent=2, allow_nan=False)
        print(f"report written to {args.json}")
    return 0
