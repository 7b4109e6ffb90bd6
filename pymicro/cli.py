"""The `pymicro` command. Every subcommand has --help."""

from __future__ import annotations

import argparse
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


def cmd_quickstart(args) -> int:
    import pymicro
    from pymicro.bench import machine_name, single_call_latency

    out_dir = Path(args.out)
    print(f"pymicro quickstart: the three presets, seeded weights, frozen, loaded back and run.\n"
          f"machine: {machine_name()}\n")
    rows = []
    for name in pymicro.PRESETS:
        spec = pymicro.preset(name)
        path = out_dir / f"{name}.pmb"
        blob = pymicro.freeze(spec.init(seed=args.seed), path)
        native = pymicro.load(path)
        reference = pymicro.load(blob, backend="reference")
        x = np.random.default_rng(args.seed).normal(size=(256, spec.input_size)).astype(np.float32)
        error = float(np.abs(native.predict(x) - reference.predict(x)).max())
        row = x[0]
        t_native = single_call_latency(lambda r: pymicro.predict(native, r), row)
        t_ref = single_call_latency(lambda r: pymicro.predict(reference, r), row)
        rows.append([name, _short(spec), f"{spec.params:,}", f"{spec.flops:,}",
                     f"{len(blob):,}", f"{t_native * 1e6:.2f}", f"{t_ref * 1e6:.2f}",
                     f"{t_ref / t_native:.0f}x", f"{error:.1e}"])
    print(table(["preset", "architecture", "params", "FLOPs", "blob bytes", "native us/call",
                 "numpy ref us/call", "speed-up", "max |native-ref|"], rows, right={2, 3, 4, 5, 6, 7, 8}))
    print(f"\nSingle-call latency is the median of pymicro.predict(model, row) for one float32 row,\n"
          f"the numpy reference (float64) measured in the same run. Blobs written to {out_dir}/.")
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pymicro", description="Micro neural networks frozen into blobs and run by one C++ core.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("quickstart", help="build, freeze, load and time the three presets",
                       description="Build the momentum, reversal and sentiment presets with seeded "
                                   "weights, freeze them, load them back, predict, and print parameters, "
                                   "FLOPs, blob size and single-call latency beside the numpy reference.")
    p.add_argument("--out", default="pymicro-quickstart", help="folder for the blobs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default: %(default)s)")
    p.set_defaults(func=cmd_quickstart)

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
                                   "and ONNX Runtime (one thread, same weights) measured in the same run.")
    p.add_argument("presets", nargs="*", help="presets to measure (default: all)")
    p.add_argument("--batch", type=int, default=65536, help="batch size for throughput (default: %(default)s)")
    p.set_defaults(func=cmd_bench)
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
