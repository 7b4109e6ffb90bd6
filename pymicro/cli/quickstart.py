"""``pymicro quickstart``: time the presets, then train momentum and report it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pymicro.tables import table
from pymicro.cli._common import _performance_table, _progress_bar, _short

def _runtime_table(out_dir: Path, seed: int) -> str:
    import pymicro
    from pymicro.runtime.bench import single_call_latency

    rows = []
    for name in pymicro.PRESETS:
        spec = pymicro.preset(name)
        path = out_dir / f"{name}.pmb"
        blob = pymicro.freeze(spec.init(seed=seed), path)
        native = pymicro.load(path)
        reference = pymicro.load(blob, backend="reference", dtype=np.float64)  # the float64 oracle
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
    from pymicro.runtime.bench import machine_name, single_call_latency
    from pymicro.market.data import load_embedded
    from pymicro.training.trainer import run_training

    out_dir = Path(args.out)
    print(f"pymicro quickstart on {machine_name()}\n")
    print("1. The runtime: each preset with seeded weights, frozen, loaded back, run; single-call latency\n"
          "   (median of pymicro.predict on one float32 row) beside the numpy float64 reference, same run.\n")
    print(_runtime_table(out_dir, args.seed))
    frame = load_embedded()
    spans = frame.groupby("symbol")["date"].agg(["min", "max"])
    print("\n2. Training the momentum preset in tinygrad on the embedded daily history:\n   " +
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


def add_parser(sub) -> None:
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
