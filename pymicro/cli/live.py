"""``pymicro live``: replay ticks through a blob's live pipeline (features, model, position)."""

from __future__ import annotations

import time

from pymicro.errors import InputError
from pymicro.tables import table


def _ticks(source: str):
    import pandas as pd

    from pymicro.market.intraday import load_es_ticks

    if source == "es":
        return load_es_ticks()
    try:
        df = pd.read_csv(source)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read ticks from {source!r}: {e}") from None
    cols = {c.lower(): c for c in df.columns}
    if not {"ts", "price", "volume"} <= set(cols):
        raise InputError(f"{source}: a tick CSV needs columns ts, price, volume (found {list(df.columns)})")
    return pd.DataFrame({"ts": pd.to_datetime(df[cols["ts"]]), "price": df[cols["price"]],
                         "volume": df[cols["volume"]]})


def _log(args):
    if not args.log:
        return None
    from pymicro.live.predictions import PredictionLog

    args.log_as = args.log_as or __import__("pathlib").Path(args.blob).stem
    return PredictionLog(args.log)


def _redis(args) -> int:
    from pymicro.live.redis_stream import RedisSignals, connect

    client, stream = connect(args.source)
    log = _log(args)
    keep = None
    if log is not None:
        def keep(ids, price, ts, pos, probs):
            log.append_many(args.log_as, ts, price, pos, probs, ticks=ids)
    consumer = RedisSignals(client, args.blob, stream=stream, signals=args.signals, group=args.group,
                            consumer=args.consumer, bar=args.bar, bar_size=args.bar_size,
                            threshold=args.threshold, batch=args.batch, on_signals=keep, lease_ms=args.lease_ms,
                            lease_wait=args.lease_wait)
    print(f"consuming {stream} as group {consumer.group}, consumer {consumer.consumer} (lease {consumer.lease}, "
          f"{consumer.lease_ms} ms, renewed while consuming); signals to "
          f"{consumer.signals} (resumed after {consumer.last_id or 'nothing'}, {consumer.rebuilt} ticks "
          "replayed to rebuild the state)", flush=True)
    t0 = time.perf_counter()
    read = consumer.run(idle_exit=args.idle_exit, max_ticks=args.max_ticks)
    dt = time.perf_counter() - t0
    print(table(["entries read", "applied", "already applied (acked again)", "bars", "last tick id", "s"],
                [[read, consumer.applied, consumer.skipped, consumer.pipe.bars, consumer.last_id or "-",
                  f"{dt:.2f}"]]))
    return 0


def cmd_live(args) -> int:
    import numpy as np

    if args.source.startswith("redis://"):
        return _redis(args)

    from pymicro.live.stream import Pipeline
    from pymicro.market.intraday import session_seconds

    ticks = _ticks(args.source)
    pipe = Pipeline(args.blob, bar=args.bar, bar_size=args.bar_size, threshold=args.threshold)
    price, size, ts = ticks.price.to_numpy(float), ticks.volume.to_numpy(float), session_seconds(ticks)
    t0 = time.perf_counter()
    pos, probs = pipe.replay_ticks(price, size, ts)
    dt = time.perf_counter() - t0
    log = _log(args)
    if log is not None:
        log.append_many(args.log_as, ts, price, pos, probs, latency_s=dt / max(len(pos), 1))  # the replay's mean
        print(f"logged {len(pos)} decisions as {args.log_as!r} in {args.log}")
    if args.out:
        import pandas as pd

        out = pd.DataFrame({"ts": ticks.ts, "price": price, "position": pos})
        for k, label in enumerate(pipe.model.labels):
            out[f"p_{label}"] = probs[:, k]
        out.to_csv(args.out, index=False)
    ready = np.isfinite(probs).all(axis=1)
    changes = int(np.count_nonzero(np.diff(pos) != 0))
    print(table(["ticks", "bars", "ticks with a signal", "long", "short", "flat", "position changes", "µs/tick (C++)"],
                [[len(pos), pipe.bars, int(ready.sum()), int((pos > 0).sum()), int((pos < 0).sum()),
                  int((pos == 0).sum()), changes, f"{dt / max(len(pos), 1) * 1e6:.3f}"]]))
    if args.out:
        print(f"wrote one row per tick to {args.out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("live", help="replay ticks through a blob's live pipeline",
                       description="Replay ticks (a CSV with ts, price, volume, or 'es' for the shipped "
                                   "E-mini S&P 500 ticks) through Pipeline: bars, the blob's features, the "
                                   "model and a position per tick, all in the C++ core.")
    p.add_argument("blob", help="path to a .pmb blob whose feature names the stream computes")
    p.add_argument("--source", default="es",
                   help="ticks: a CSV file (ts, price, volume), 'es' (default), or redis://host:port/stream "
                        "(a Redis stream of price, size, ts; signals go to another stream; docs/live.md)")
    p.add_argument("--bar", default="volume", choices=["time", "tick", "volume"], help="how ticks become bars")
    p.add_argument("--bar-size", type=float, default=1000.0, help="seconds, ticks or volume per bar (default 1000)")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum top-class probability to take a position")
    p.add_argument("--out", help="write ts, price, position and probabilities per tick to this CSV")
    p.add_argument("--log", help="append every decision to this prediction log (SQLite; pymicro.live.predictions)")
    p.add_argument("--log-as", help="the model id to log under (default: the blob's file name)")
    r = p.add_argument_group("redis:// sources (pip install 'pymicro[live]')")
    r.add_argument("--group", help="consumer group (default pymicro-<blob hash>)")
    r.add_argument("--consumer", default="pymicro", help="consumer name in the group (default pymicro)")
    r.add_argument("--signals", help="the stream signals go to (default <stream>:signals:<group>)")
    r.add_argument("--batch", type=int, default=500, help="entries per XREADGROUP and per publication (one Lua script: XADDs and XACK; default 500)")
    r.add_argument("--idle-exit", type=float, help="stop after this many seconds with no new tick (default: never)")
    r.add_argument("--max-ticks", type=int, help="stop after reading this many entries")
    r.add_argument("--lease-ms", type=int, default=5000,
                   help="the group's fenced lease: its time to live, renewed while consuming (default 5000)")
    r.add_argument("--lease-wait", type=float, default=10.0,
                   help="seconds to wait for another consumer's lease to expire before giving up (default 10: "
                        "a killed consumer's lease runs out, a live one keeps renewing it)")
    p.set_defaults(func=cmd_live)
