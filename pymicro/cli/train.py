"""``pymicro train``: train a preset and freeze it."""

from __future__ import annotations

import argparse
import json


from pymicro.cli._common import _performance_table, _progress_bar, add_store_argument
from pymicro.errors import PymicroError


def cmd_train(args) -> int:
    from pymicro.market.data import load_ohlcv
    from pymicro.training.trainer import run_training
    from pymicro.agents.training_checks import leak_checks

    if args.symbol and not args.data:
        raise PymicroError("--symbol names the symbol of a --data file without a symbol column; for embedded "
                           "symbols use --symbols")
    data = load_ohlcv(args.data, symbol=args.symbol) if args.data else None
    options = None
    if args.news:
        if args.preset != "sentiment":
            raise PymicroError("--news feeds the sentiment preset; add --preset sentiment")
        from pymicro.market.news import analyze_news, load_headlines

        options = {"news": analyze_news(load_headlines(args.news))}
    if args.no_macro:
        if args.preset != "sentiment":
            raise PymicroError("--no-macro drops the sentiment preset's market and macro inputs; add --preset sentiment")
        options = {**(options or {}), "macro": "none"}
    bar, update = _progress_bar(args.epochs, f"training {args.name or args.preset}")
    with bar:
        run = run_training(args.preset, data=data, symbols=args.symbols or None, hidden_sizes=args.hidden_sizes,
                           use_attention=args.attention, epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
                           horizon=args.horizon, threshold=args.threshold, name=args.name, out_dir=args.out,
                           progress=update, plot=not args.no_plot, feature_options=options)
    checks = leak_checks(run)
    if args.register:
        from pymicro.store.registry import Registry

        run.model_id = Registry(args.store).add(run.blob, run.name, metrics=run.performance, status="registered",
                                                report={**json.loads(run.report_path.read_text()),
                                                        "leak_checks": checks})
    print(_performance_table(run.performance))
    print(f"\n{checks['verdict']}")
    if checks["status"] != "ok":
        print("  run `pymicro validate` on the blob for the full checks and what to do")
    print(f"\nblob: {run.blob_path}  report: {run.report_path}" + (f"  curves: {run.plot_path}" if run.plot_path else "")
          + (f"\nregistered as {run.model_id}" if run.model_id else ""))
    print(f"native vs tinygrad on validation: max |diff| {run.parity['max_abs_diff']:.1e}, "
          f"classes agree: {run.parity['classes_agree']}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a preset in tinygrad and freeze it",
                       description="Train on the embedded daily history (or --data), split by date, freeze "
                                   "the best-validation network, and write the blob, a JSON report and a "
                                   "PNG of the loss and accuracy curves. Figures are out-of-sample.")
    p.add_argument("--preset", default="momentum", choices=["momentum", "reversal", "sentiment"],
                   help="feature set and architecture (default: %(default)s)")
    p.add_argument("--news", help="headlines CSV (timestamp, symbol, headline) for the sentiment preset")
    p.add_argument("--no-macro", action="store_true",
                   help="sentiment preset: set the features that read the shipped market and macro series (which "
                        "end in 2019-01) to 0, so a history of any dates keeps all its rows")
    p.add_argument("--data", help="your own OHLCV file (.csv or .parquet: date, symbol, open, high, low, close, volume)")
    p.add_argument("--symbol", help="the symbol of a --data file that has no symbol column")
    p.add_argument("--symbols", nargs="*", help="embedded symbols to use (default: all)")
    p.add_argument("--hidden-sizes", type=int, nargs="+", help="hidden layer widths (default: the preset's)")
    p.add_argument("--attention", action=argparse.BooleanOptionalAction, default=None,
                   help="first hidden layer is feature attention (default: as the preset)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    p.add_argument("--horizon", type=int, default=5, help="label horizon in bars")
    p.add_argument("--threshold", type=float, default=0.5, help="label threshold in volatility units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", help="model name (default: the preset's)")
    p.add_argument("--out", default="pymicro-models", help="output folder (default: %(default)s)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG of the training curves")
    p.add_argument("--register", action="store_true", help="also add the model to the model store")
    add_store_argument(p)
    p.set_defaults(func=cmd_train)
