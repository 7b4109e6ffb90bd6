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
                                   "majority baselines, training time; plus the reasoning-aware loss ablation. "
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
                          symbols=args.symbols, progress=_bar)
    print(report["markdown"])
    print(f"written: {report['path']}")
    return 0
