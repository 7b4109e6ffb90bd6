"""``pymicro monitor``: the dashboard and the Prometheus ``/metrics`` endpoint on loopback."""

from __future__ import annotations

import argparse
import time

from pymicro.cli._common import add_store_argument


def _cmd_monitor(args) -> int:
    from pymicro.lifecycle.alerts import AlertRules
    from pymicro.lifecycle.monitor import default_log_path, serve, snapshot
    from pymicro.live.predictions import PredictionLog
    from pymicro.store.registry import Registry

    reg = Registry(args.store)
    log_path = args.log or default_log_path(reg)
    rules = AlertRules(sharpe_below=args.sharpe_below, sharpe_window=args.window, psi_above=args.psi_above,
                       out_of_range_above=args.out_of_range_above, cost_bps=args.cost_bps)
    if args.once:
        from pymicro.lifecycle.dashboard import write
        from pymicro.lifecycle.monitor import metrics_text

        from pathlib import Path

        log = PredictionLog(log_path) if Path(log_path).exists() else None
        try:
            snap = snapshot(reg, log, rules, series=True)
        finally:
            if log is not None:
                log.close()
        paths = write(snap, args.out)
        (Path(args.out) / "metrics.txt").write_bytes(metrics_text(snap))
        firing = [a for a in snap["alerts"] if a["firing"]]
        print(f"wrote {paths[0]} and {len(paths) - 1} plots, metrics.txt; {len(snap['names'])} names, "
              f"{len(snap['models'])} logged models, {len(firing)} alerts firing")
        for a in firing:
            print(f"ALERT {a['name']} {a['rule']}: {a['message']}")
        return 0
    server = serve(reg, log_path, host=args.host, port=args.port, rules=rules, background=False)
    print(f"pymicro monitor: {server.url} (dashboard), {server.url}metrics (Prometheus); store {reg.root}, "
          f"prediction log {log_path}; Ctrl-C stops", flush=True)
    t0 = time.monotonic()
    try:
        if args.seconds:
            import threading

            threading.Timer(args.seconds, server.httpd.shutdown).start()
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
    print(f"stopped after {time.monotonic() - t0:.0f} s")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "monitor", help="dashboard and Prometheus /metrics on loopback (versions, drift, rolling Sharpe, alerts)",
        description="Serve an HTML dashboard (equity, rolling Sharpe, drawdown, drift per feature, version history; "
                    "the numbers read from the registry and the prediction log) and /metrics in the Prometheus "
                    "text format, on loopback only. Each request re-reads the store and evaluates the alert rules "
                    "(transitions logged as registry events). --once --out DIR writes index.html, plots/*.png and "
                    "metrics.txt and exits (cron). docs/monitoring.md")
    add_store_argument(p)
    p.add_argument("--log", help="prediction log (default: <store>/../live/predictions.db, where the MCP live "
                                 "tools write; pymicro live --log writes where you say)")
    p.add_argument("--host", default="127.0.0.1", help="a loopback address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--once", action="store_true", help="write the dashboard to --out and exit")
    p.add_argument("--out", default="monitor", help="folder for --once (default ./monitor)")
    p.add_argument("--seconds", type=float, help="stop serving after this many seconds")
    p.add_argument("--sharpe-below", type=float, default=0.0, help="alert when the rolling Sharpe is below (default 0)")
    p.add_argument("--window", type=int, default=500, help="decisions in the rolling window (default 500)")
    p.add_argument("--psi-above", type=float, default=0.25, help="alert when a drift PSI reaches this (default 0.25)")
    p.add_argument("--out-of-range-above", type=float, default=0.05,
                   help="alert when this share of recent rows lies outside the training window's central 99%% "
                        "(default 0.05)")
    p.add_argument("--cost-bps", type=float, default=0.0, help="cost per change of position, bps (default 0)")
    p.set_defaults(func=_cmd_monitor)
    return p
