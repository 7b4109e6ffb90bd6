"""``pymicro bench``: time pymicro against numpy and ONNX Runtime."""

from __future__ import annotations




def cmd_bench(args) -> int:
    from pymicro.runtime import bench

    rows = bench.compare(args.presets or None, batch=args.batch)
    print(bench.format_table(rows, bench.machine_name()))
    roof = bench.format_roofline(rows)
    if roof:
        print()
        print(roof)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time pymicro against numpy and ONNX Runtime",
                       description="Single-call latency and batch throughput of each preset, with numpy "
                                   "and ONNX Runtime (one thread, same weights) measured in the same run; "
                                   "then each batch figure as a share of the preset's FMA floor (the "
                                   "rows/s its multiply-adds alone allow at this core's measured peak) "
                                   "and of its FMA + exp floor (its exponentials counted too, at the "
                                   "kernels' measured exp rate).")
    p.add_argument("presets", nargs="*", help="presets to measure (default: all)")
    p.add_argument("--batch", type=int, default=65536, help="batch size for throughput (default: %(default)s)")
    p.set_defaults(func=cmd_bench)
