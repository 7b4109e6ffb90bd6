"""``pymicro backtest``."""

from __future__ import annotations

import json
import sys

import numpy as np

from pymicro.errors import EvaluationError
from pymicro.evaluation.backtest import _day, plot_equity, walk_forward


# --------------------------------------------------------------------------- CLI

def add_parser(subparsers) -> None:
    """Register ``pymicro backtest`` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "backtest", help="walk-forward backtest of a preset on one symbol, beside baselines",
        description="Walk forward through one symbol's daily bars: retrain the preset before every test "
                    "block on data strictly before it (labels embargoed), predict the block with the frozen "
                    "blob, trade the probabilities (costs and slippage charged) and report metrics beside "
                    "buy-and-hold, majority-class and momentum baselines on the same dates. With --blob, "
                    "backtest one frozen model without retraining instead.")
    p.add_argument("--symbol", default=None,
                   help="an embedded symbol (default: SP500); with --data, the symbol of a file without a "
                        "symbol column")
    p.add_argument("--data", help="a CSV/Parquet file of one symbol's daily OHLCV bars")
    p.add_argument("--preset", default=None,
                   help="architecture and feature set (default: the blob's 'preset' metadata, else momentum)")
    p.add_argument("--blob", help="backtest this frozen model on every bar instead of walking forward")
    p.add_argument("--start", help="first date to use (YYYY-MM-DD)")
    p.add_argument("--end", help="last date to use (YYYY-MM-DD)")
    p.add_argument("--mode", default="expanding", choices=["expanding", "rolling"],
                   help="training window (default: %(default)s)")
    p.add_argument("--train-window", type=int, default=756, help="training bars (default: %(default)s)")
    p.add_argument("--step", type=int, default=63, help="bars per test block / between retrains (default: %(default)s)")
    p.add_argument("--horizon", type=int, default=5, help="label horizon in bars (default: %(default)s)")
    p.add_argument("--label-threshold", type=float, default=0.5,
                   help="flat band in trailing standard deviations (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=None,
                   help="minimum class probability to take a position (default: chosen on validation data: "
                        "each block's early-stopping rows in a walk-forward, the validation split with --blob)")
    p.add_argument("--long-only", action="store_true", help="never short")
    p.add_argument("--cost-bps", type=float, default=1.0, help="commission per unit traded (default: %(default)s)")
    p.add_argument("--slippage-bps", type=float, default=1.0, help="slippage per unit traded (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=30, help="max epochs per retrain (default: %(default)s)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="(default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--cold-start", action="store_true",
                   help="train every block from scratch (default: each block after the first of a chain of "
                        "--warm-chain starts from its predecessor's network, fewer epochs)")
    p.add_argument("--warm-chain", type=int, default=5, help="blocks per warm-start chain (default: %(default)s)")
    p.add_argument("--periods-per-year", type=float, default=None,
                   help="annualisation of a walk-forward's ratios (default: from the data's dates)")
    p.add_argument("--plot", help="write the equity curves to this PNG")
    p.add_argument("--json", help="write settings, metrics, classification and windows to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no per-block progress lines")
    p.set_defaults(func=cmd_backtest)


def _cli_bars(args):
    from pymicro.market import data as D

    bars = D.load_ohlcv(args.data, symbol=args.symbol) if args.data else D.load_embedded([args.symbol or "SP500"])
    if bars["symbol"].nunique() != 1:
        raise EvaluationError(f"{args.data} holds {bars['symbol'].nunique()} symbols; backtest takes one")
    if args.start:
        bars = bars[bars["date"] >= np.datetime64(args.start)]
    if args.end:
        bars = bars[bars["date"] <= np.datetime64(args.end)]
    return bars.reset_index(drop=True)


def _blob_backtest(args, bars):
    """One frozen model on the test split of this symbol's data (the split the trainer makes), with the
    position rule chosen on its validation split: the figures ``pymicro validate`` and ``report`` give."""
    from pymicro.evaluation.performance import model_figures
    from pymicro.evaluation.plausibility import FREQUENCIES
    from pymicro.evaluation.rows import as_rows, price_table
    from pymicro.market.dataset import make_dataset
    from pymicro.runtime.model import load

    model = load(args.blob)
    meta = model.described.get("metadata", {})
    preset = args.preset or meta.get("preset", "momentum")
    ds = make_dataset(bars, preset, horizon=args.horizon, threshold=args.label_threshold)
    rows = as_rows(ds, None, 0.7, 0.15, None)
    results = {}
    figs = model_figures(model, rows, price_table(bars, rows.symbols), FREQUENCIES["daily"], args.cost_bps,
                         args.slippage_bps, threshold=args.threshold, seed=args.seed, results=results,
                         long_only=args.long_only)
    if not results:
        raise EvaluationError("the test split is too short to backtest (fewer than 3 rows with prices)")
    result = next(iter(results.values()))
    result.classification = figs["summary"]
    result.settings.update(preset=preset, labels=list(model.labels))
    te = rows.idx(2)
    result.notes.append(f"one frozen model, no retraining, on the test split ({_day(rows.dates[te[0]])} on, the last 15 % of the "
                        f"labelled rows after an embargo); position rule: {figs['rule'].describe()}")
    if meta.get("test_start") and np.datetime64(rows.dates[te[0]], "D") < np.datetime64(str(meta["test_start"])[:10]):
        result.notes.append(f"these test rows start before the blob's own test_start ({str(meta['test_start'])[:10]}):"
                            " the model may have seen part of them in training")
    return result


def cmd_backtest(args) -> int:

    bars = _cli_bars(args)
    name = args.data or args.symbol or "SP500"
    if args.blob:
        result = _blob_backtest(args, bars)
    else:
        def progress(k, total, info):
            if not args.quiet:
                print(f"  block {k}/{total}: trained on {_day(info['train_start'])}..{_day(info['train_end'])} "
                      f"({info['train_rows']} rows{', warm start' if info.get('warm_start') else ''}), tested "
                      f"{_day(info['test_start'])}..{_day(info['test_end'])} [{info['seconds']:.1f} s]",
                      file=sys.stderr, flush=True)

        result = walk_forward(
            bars, args.preset or "momentum", train_window=args.train_window, step=args.step, mode=args.mode,
            horizon=args.horizon, threshold=args.threshold, cost_bps=args.cost_bps,
            slippage_bps=args.slippage_bps, long_only=args.long_only, label_threshold=args.label_threshold,
            periods_per_year=args.periods_per_year,
            train_kwargs={"epochs": args.epochs, "patience": args.patience, "batch_size": args.batch_size,
                          "learning_rate": args.learning_rate, "seed": args.seed},
            progress=progress, warm_start=not args.cold_start, warm_chain=args.warm_chain)
    print(f"pymicro backtest: {name}, preset {result.settings.get('preset') or args.preset or 'momentum'}"
          + ("" if args.blob else f", walk-forward ({args.mode}, train {args.train_window} bars, "
                                  f"retrain every {args.step}, horizon {args.horizon})"))
    print(result.summary())
    if bars.attrs.get("prices"):
        print(f"prices: {bars.attrs['prices']}")
    if args.plot:
        plot_equity(result, args.plot, title=f"{name}: {result.settings.get('preset') or args.preset or 'momentum'}")
        print(f"equity curves written to {args.plot}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result.to_dict(), f, indent=2, allow_nan=False)
        print(f"report written to {args.json}")
    return 0
