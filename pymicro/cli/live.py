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
    if source.startswith("redis://"):
        raise InputError("redis:// sources are not implemented yet (issue 14, item 4); replay a CSV of ticks")
    try:
        df = pd.read_csv(source)
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read ticks from {source!r}: {e}") from None
    cols = {c.lower(): c for c in df.columns}
    if not {"ts", "price", "volume"} <= set(cols):
        raise InputError(f"{source}: a tick CSV needs columns ts, price, volume (found {list(df.columns)})")
    return pd.DataFrame({"ts": pd.to_datetime(df[cols["ts"]]), "price": df[cols["price"]],
                         "volume": df[cols["volume"]]})


def cmd_live(args) -> int:
    import numpy as np

    from pymicro.live.stream import Pipeline
    from pymicro.market.intraday import session_seconds

    ticks = _ticks(args.source)
    pipe = Pipeline(args.blob, bar=args.bar, bar_size=args.bar_size, threshold=args.threshold)
    price, size, ts = ticks.price.to_numpy(float), ticks.volume.to_numpy(float), session_seconds(ticks)
    t0 = time.perf_counter()
    pos, probs = pipe.replay_ticks(price, size, ts)
    dt = time.perf_counter() - t0
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
    p.add_argument("--source", default="es", help="ticks: a CSV file (ts, price, volume) or 'es' (default)")
    p.add_argument("--bar", default="volume", choices=["time", "tick", "volume"], help="how ticks become bars")
    p.add_argument("--bar-size", type=float, default=1000.0, help="seconds, ticks or volume per bar (default 1000)")
    p.add_argument("--threshold", type=float, default=0.5, help="minimum top-class probability to take a position")
    p.add_argument("--out", help="write ts, price, position and probabilities per tick to this CSV")
    p.set_defaults(func=cmd_live)
