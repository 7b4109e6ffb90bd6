"""The `pymicro` command. Every subcommand has --help."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import PymicroError


def table(headers: list[str], rows: list[list], right: set[int] | None = None) -> str:
    """A plain aligned text table (numbers right-aligned)."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = right if right is not None else set(range(1, len(headers)))
    lines = []
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _short(spec) -> str:
    """'24 > att8 > 16 > 8 > 3' for the momentum preset."""
    from pymicro.spec import Attention, Dense

    parts = [str(spec.input_size)]
    for layer in spec.layers:
        if isinstance(layer, Attention):
            parts.append(f"att{layer.k}")
        elif isinstance(layer, Dense):
            parts.append(str(layer.out) + ("" if layer.activation == "relu" else f" {layer.activation}"))
    return " > ".join(parts + [str(spec.n_classes)])


def _progress_bar(total: int, desc: str):
    """A tqdm bar and a trainer callback that advances it."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="epoch", leave=True)

    def update(epoch: int, epochs: int, metrics: dict) -> None:
        bar.total = epochs
        bar.update(epoch - bar.n)
        bar.set_postfix(train_loss=f"{metrics['train_loss']:.3f}", val_loss=f"{metrics['val_loss']:.3f}",
                        val_acc=f"{metrics['val_acc']:.3f}")

    return bar, update


def _performance_table(perf: dict) -> str:
    lo, hi = perf["accuracy_ci"]
    rows = [["model (native runtime)", f"{perf['accuracy']:.1%}", f"{lo:.1%} - {hi:.1%}",
             f"{perf['balanced_accuracy']:.1%}"],
            [f"majority class ({perf['labels'][perf['majority_class']]})", f"{perf['majority_accuracy']:.1%}", "",
             f"{perf['majority_balanced_accuracy']:.1%}"]]
    text = table(["out-of-sample", "accuracy", "95% CI", "balanced acc."], rows)
    text += f"\n{perf['n']} test rows; p-value of beating the majority class: {perf['p_value_vs_majority']:.3f}"
    if perf.get("per_symbol"):
        text += "\n\n" + table(["symbol", "test rows", "accuracy", "majority", "balanced acc."],
                                [[s, v["n"], f"{v['accuracy']:.1%}", f"{v['majority_accuracy']:.1%}",
                                  f"{v['balanced_accuracy']:.1%}"] for s, v in perf["per_symbol"].items()])
    return text


def _runtime_table(out_dir: Path, seed: int) -> str:
    import pymicro
    from pymicro.bench import single_call_latency

    rows = []
    for name in pymicro.PRESETS:
        spec = pymicro.preset(name)
        path = out_dir / f"{name}.pmb"
        blob = pymicro.freeze(spec.init(seed=seed), path)
        native = pymicro.load(path)
        reference = pymicro.load(blob, backend="reference")
        x = np.random.default_rng(seed).normal(size=(256, spec.input_size)).astype(np.float32)
        error = float(np.abs(native.predict(x) - reference.predict(x)).max())
        row = x[0]
        t_native = single_call_latency(lambda r: pymicro.predict(native, r), row)
        t_ref = single_call_latency(lambda r: pymicro.predict(reference, r), row)
        rows.append([name, _short(spec), f"{spec.params:,}", f"{spec.flops:,}",
                     f"{len(blob):,}", f"{t_native * 1e6:.2f}", f"{t_ref * 1e6:.2f}",
                     f"{t_ref / t_native:.0f}x", f"{error:.1e}"])
    return table(["preset", "architecture", "params", "FLOPs", "blob bytes", "native us/call",
                  "numpy ref us/call", "speed-up", "max |native-ref|"], rows, right={2, 3, 4, 5, 6, 7, 8})


def cmd_quickstart(args) -> int:
    import pymicro
    from pymicro.bench import machine_name, single_call_latency
    from pymicro.data import load_embedded
    from pymicro.trainer import run_training

    out_dir = Path(args.out)
    print(f"pymicro quickstart on {machine_name()}\n")
    print("1. The runtime: each preset with seeded weights, frozen, loaded back, run; single-call latency\n"
          "   (median of pymicro.predict on one float32 row) beside the numpy float64 reference, same run.\n")
    print(_runtime_table(out_dir, args.seed))
    frame = load_embedded()
    spans = frame.groupby("symbol")["date"].agg(["min", "max"])
    print(f"\n2. Training the momentum preset in tinygrad on the embedded daily history:\n   " +
          ", ".join(f"{s} {a:%Y}-{b:%Y}" for s, (a, b) in spans.iterrows()))
    bar, update = _progress_bar(args.epochs, "training")
    with bar:
        run = run_training("momentum", data=frame, epochs=args.epochs, batch_size=args.batch_size,
                           patience=args.patience, seed=args.seed, name="momentum-trained", out_dir=out_dir,
                           progress=update)
    print(f"   {run.settings['epochs_run']} epochs in {run.training_seconds:.1f} s "
          f"({run.seconds_per_epoch:.2f} s/epoch, best epoch {run.best_epoch}, device {run.settings['device']})")
    print(f"\n3. Out of sample ({run.performance['split']}):\n")
    print(_performance_table(run.performance))
    model = pymicro.load(run.blob)
    x = np.ascontiguousarray(run.network.mean if run.network.mean is not None else
                             np.zeros(run.spec.input_size), dtype=np.float32)
    latency = single_call_latency(lambda r: pymicro.predict(model, r), x)
    print(f"\n4. The frozen blob {run.blob_path} ({len(run.blob):,} bytes, {run.spec.params:,} parameters):\n"
          f"   native vs tinygrad on {run.parity['rows']:,} validation rows: max |diff| "
          f"{run.parity['max_abs_diff']:.1e}, classes agree: {run.parity['classes_agree']}\n"
          f"   single-call latency {latency * 1e6:.2f} us\n"
          f"   report: {run.report_path}   curves: {run.plot_path}")
    print("\nDaily direction is hard to predict: accuracy near the majority-class baseline is the honest\n"
          "expectation, and a figure far above it would point to a leak.")
    return 0


def cmd_train(args) -> int:
    from pymicro.data import load_ohlcv
    from pymicro.trainer import run_training

    data = load_ohlcv(args.data) if args.data else None
    options = None
    if args.news:
        if args.preset != "sentiment":
            raise PymicroError("--news feeds the sentiment preset; add --preset sentiment")
        from pymicro.news import analyze_news, load_headlines

        options = {"news": analyze_news(load_headlines(args.news))}
    bar, update = _progress_bar(args.epochs, f"training {args.name or args.preset}")
    with bar:
        run = run_training(args.preset, data=data, symbols=args.symbols or None, hidden_sizes=args.hidden_sizes,
                           use_attention=args.attention, epochs=args.epochs, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, patience=args.patience, seed=args.seed,
                           horizon=args.horizon, threshold=args.threshold, name=args.name, out_dir=args.out,
                           progress=update, plot=not args.no_plot, feature_options=options)
    if args.register:
        from pymicro.registry import Registry

        run.model_id = Registry(args.store).add(run.blob, run.name, metrics=run.performance, status="registered",
                                                report=json.loads(run.report_path.read_text()))
    print(_performance_table(run.performance))
    print(f"\nblob: {run.blob_path}  report: {run.report_path}" + (f"  curves: {run.plot_path}" if run.plot_path else "")
          + (f"\nregistered as {run.model_id}" if run.model_id else ""))
    print(f"native vs tinygrad on validation: max |diff| {run.parity['max_abs_diff']:.1e}, "
          f"classes agree: {run.parity['classes_agree']}")
    return 0


def cmd_info(args) -> int:
    import pymicro

    info = pymicro.load(args.blob).info
    for key, value in info.__dict__.items():
        print(f"{key:18s} {value}")
    return 0


def cmd_predict(args) -> int:
    import pymicro

    model = pymicro.load(args.blob, backend=args.backend, nan_policy=args.nan_policy)
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise PymicroError(f"cannot read {args.input} as a .npy array: {e}") from None
    probs = model.predict(x)
    if args.out:
        np.save(args.out, probs)
        print(f"wrote {probs.shape} probabilities to {args.out}")
    else:
        labels = model.labels
        rows = np.atleast_2d(probs)
        print(table(["row", *labels, "class"],
                    [[i, *(f"{p:.4f}" for p in r), labels[int(np.argmax(r))]] for i, r in enumerate(rows)]))
    return 0


def cmd_export_onnx(args) -> int:
    import pymicro

    data = pymicro.export_onnx(args.blob, args.out)
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


def cmd_bench(args) -> int:
    from pymicro import bench

    rows = bench.compare(args.presets or None, batch=args.batch)
    print(bench.format_table(rows, bench.machine_name()))
    roof = bench.format_roofline(rows)
    if roof:
        print()
        print(roof)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymicro", description="Micro neural networks frozen into blobs and run by one C++ core.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("quickstart", help="time the three presets, then train momentum and report it",
                       description="Build the momentum, reversal and sentiment presets with seeded "
                                   "weights, freeze them, load them back, predict, and print parameters, "
                                   "FLOPs, blob size and single-call latency beside the numpy reference; "
                                   "then train momentum on the embedded daily history and report its "
                                   "out-of-sample accuracy beside the majority-class baseline.")
    p.add_argument("--out", default="pymicro-quickstart", help="folder for the blobs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="weight and training seed (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=40, help="maximum training epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="training batch size (default: %(default)s)")
    p.add_argument("--patience", type=int, default=8, help="early-stopping patience (default: %(default)s)")
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("train", help="train a preset in tinygrad and freeze it",
                       description="Train on the embedded daily history (or --data), split by date, freeze "
                                   "the best-validation network, and write the blob, a JSON report and a "
                                   "PNG of the loss and accuracy curves. Figures are out-of-sample.")
    p.add_argument("--preset", default="momentum", choices=["momentum", "reversal", "sentiment"],
                   help="feature set and architecture (default: %(default)s)")
    p.add_argument("--news", help="headlines CSV (timestamp, symbol, headline) for the sentiment preset")
    p.add_argument("--data", help="your own OHLCV file (.csv or .parquet: date, symbol, open, high, low, close, volume)")
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
    p.add_argument("--store", help="model store folder (default: $PYMICRO_HOME or ~/.pymicro/models)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("info", help="describe a blob", description="Validate a blob and print what it holds.")
    p.add_argument("blob", help="path to a .pmb blob")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("predict", help="run a blob on rows from a .npy file",
                       description="Run a blob on a .npy array of shape (features,) or (rows, features).")
    p.add_argument("blob", help="path to a .pmb blob")
    p.add_argument("input", help="a .npy file of inputs")
    p.add_argument("--out", help="write probabilities to this .npy file instead of printing them")
    p.add_argument("--backend", default="native", choices=["native", "reference", "wasm"])
    p.add_argument("--nan-policy", default="raise", choices=["raise", "propagate"])
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export-onnx", help="export a blob to ONNX",
                       description="Write an ONNX model computing exactly what the blob computes.")
    p.add_argument("blob", help="path to a .pmb blob")
    p.add_argument("out", help="path of the .onnx file to write")
    p.set_defaults(func=cmd_export_onnx)

    p = sub.add_parser("bench", help="time pymicro against numpy and ONNX Runtime",
                       description="Single-call latency and batch throughput of each preset, with numpy "
                                   "and ONNX Runtime (one thread, same weights) measured in the same run; "
                                   "then each batch figure as a share of the preset's FMA floor (the "
                                   "rows/s its multiply-adds alone allow at this core's measured peak).")
    p.add_argument("presets", nargs="*", help="presets to measure (default: all)")
    p.add_argument("--batch", type=int, default=65536, help="batch size for throughput (default: %(default)s)")
    p.set_defaults(func=cmd_bench)

    from pymicro.backtest import add_parser as add_backtest

    add_backtest(sub)
    from pymicro.validation import add_parser as add_validate

    add_validate(sub)
    from pymicro.sandbox import add_parser as add_sandbox

    add_sandbox(sub)
    from pymicro.report import add_parser as add_report

    add_report(sub)
    from pymicro.mcp_cli import add_parser as add_mcp

    add_mcp(sub)
    from pymicro.registry import add_parser as add_models

    add_models(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PymicroError as e:
        print(f"pymicro {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
