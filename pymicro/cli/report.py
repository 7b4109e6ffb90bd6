"""``pymicro report``."""

from __future__ import annotations

from pymicro.errors import require


from pymicro.evaluation.report import build_report
from pymicro.runtime.spec import PRESETS


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="the out-of-sample benchmark table of every preset, with baselines",
                       description="Train each preset on the embedded history and measure, on the test split: "
                                   "parameters, single-call inference time, accuracy beside the majority class, "
                                   "Sharpe and maximum drawdown net of costs beside buy-and-hold, momentum and "
                                   "majority baselines, training time; the ensemble of specialists beside its best member and "
                                   "the baselines (test split and a walk-forward on every symbol, with intervals); "
                                   "plus the reasoning-aware loss ablation. "
                                   "Writes OUT/report.md and OUT/report/*.png.")
    p.add_argument("--out", default="docs", help="folder for report.md and report/ (default: %(default)s)")
    p.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    p.add_argument("--symbols", nargs="+", help="embedded symbols (default: all)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cost-bps", type=float, default=1.0)
    p.add_argument("--slippage-bps", type=float, default=1.0)
    p.add_argument("--threshold", type=float, default=None,
                   help="confidence needed to take a position (default: chosen per model on the validation "
                        "split, as backtest and validate do)")
    p.add_argument("--ablation-seeds", type=int, nargs="*", default=[0, 1, 2],
                   help="seeds for the reasoning-loss ablation (none: skip it)")
    p.add_argument("--ensemble-presets", nargs="*", default=list(PRESETS), choices=list(PRESETS),
                   help="the ensemble compared with its best member and the baselines, on the test split and in "
                        "a walk-forward (none: skip it)")
    p.add_argument("--ensemble-combiner", default="stacked", choices=["stacked", "soft_vote", "majority_vote"])
    p.add_argument("--ensemble-epochs", type=int, default=10, help="epochs per member fit (test split)")
    p.add_argument("--ensemble-folds", type=int, default=3, help="out-of-fold folds for the combiner (test split)")
    p.add_argument("--walk-forward-symbols", nargs="*", default=None,
                   help="symbols of the ensemble's walk-forward (default: every symbol; none: skip it)")
    p.add_argument("--walk-forward-window", type=int, default=756, help="bars before the first block")
    p.add_argument("--walk-forward-step", type=int, default=504, help="bars per block (retrained before each)")
    p.add_argument("--walk-forward-folds", type=int, default=2, help="out-of-fold folds per block")
    p.add_argument("--walk-forward-epochs", type=int, default=5, help="epochs per member fit in the walk-forward")
    p.set_defaults(func=_main)


def _bar(desc: str, total: int, unit: str = "epoch"):
    tqdm = require("tqdm", "train", purpose="progress bars").tqdm

    bar = tqdm(total=total, desc=desc, unit=unit)

    def update(epoch: int, epochs: int, metrics: dict) -> None:
        bar.total = epochs
        bar.update(epoch - bar.n)

    return bar, update


def _main(args) -> int:
    report = build_report(args.presets, out_dir=args.out, epochs=args.epochs, batch_size=args.batch_size,
                          seed=args.seed, cost_bps=args.cost_bps, slippage_bps=args.slippage_bps,
                          threshold=args.threshold, ablation_seeds=tuple(args.ablation_seeds),
                          symbols=args.symbols, ensemble_presets=args.ensemble_presets,
                          ensemble_combiner=args.ensemble_combiner, ensemble_epochs=args.ensemble_epochs,
                          ensemble_folds=args.ensemble_folds, walk_forward_symbols=args.walk_forward_symbols,
                          walk_forward_window=args.walk_forward_window, walk_forward_step=args.walk_forward_step,
                          walk_forward_folds=args.walk_forward_folds, walk_forward_epochs=args.walk_forward_epochs,
                          progress=_bar)
    print(report["markdown"])
    print(f"written: {report['path']}")
    return 0
