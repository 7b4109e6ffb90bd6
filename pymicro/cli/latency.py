"""``pymicro latency``: tick-to-signal time measured here, beside light time between two exchange sites."""

from __future__ import annotations

from pymicro.tables import table


def cmd_latency(args) -> int:
    from pymicro.live.latency import SITES, light_time, measure
    from pymicro.live.stream import Pipeline
    from pymicro.market.intraday import load_es_ticks, session_seconds

    t = load_es_ticks().iloc[:args.ticks]
    pipe = Pipeline(args.blob, bar=args.bar, bar_size=args.bar_size)
    m = measure(pipe, t.price.to_numpy(float), t.volume.to_numpy(float), session_seconds(t))
    lt = light_time(args.site_from, args.site_to)
    print(table(["what", "µs", "what it is"], [
        ["on_tick, median", f"{m.median_ns / 1e3:.3f}", f"one Python call per tick over {m.ticks} shipped E-mini ticks"],
        ["on_tick, p99", f"{m.p99_ns / 1e3:.3f}", "same (timer included)"],
        ["replay, per tick", f"{m.replay_ns_per_tick / 1e3:.3f}", "the loop in C++"],
        [f"light {args.site_from} -> {args.site_to}, vacuum", f"{lt.vacuum_us:.1f}",
         f"great circle {lt.km:.0f} km: a lower bound"],
        ["same, in fibre", f"{lt.fibre_us:.1f}", "c / 1.47; real routes are longer"]]))
    print(f"{args.site_from}: {SITES[args.site_from][2]}; {args.site_to}: {SITES[args.site_to][2]} "
          "(coordinates approximate, within a few km).")
    print("Measured: compute on this machine only (bars, features, network, position), not the network, NIC, "
          "kernel, feed decoding or the exchange's gateway. A signal comes after its tick; nothing here "
          "predicts before data arrives.")
    return 0


def add_parser(sub) -> None:
    from pymicro.live.latency import SITES

    p = sub.add_parser("latency", help="tick-to-signal time, beside light time between exchange sites",
                       description="Measure Pipeline.on_tick per tick on the shipped E-mini ticks and print it "
                                   "beside the speed-of-light time between two named exchange sites.")
    p.add_argument("blob", help="a .pmb blob whose features the stream computes")
    p.add_argument("--from", dest="site_from", default="CME-Aurora", choices=sorted(SITES))
    p.add_argument("--to", dest="site_to", default="NYSE-Mahwah", choices=sorted(SITES))
    p.add_argument("--ticks", type=int, default=100_000, help="ticks to time (default 100,000)")
    p.add_argument("--bar", default="volume", choices=["time", "tick", "volume"])
    p.add_argument("--bar-size", type=float, default=1000.0)
    p.set_defaults(func=cmd_latency)
