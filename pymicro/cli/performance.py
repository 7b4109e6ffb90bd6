"""``pymicro performance LOG``: the logged live decisions scored beside always-long, with a PNG."""

from __future__ import annotations

from pathlib import Path

from pymicro.errors import InputError
from pymicro.tables import table


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2%}"


def _num(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _rows(label: str, rep: dict) -> list[list]:
    m, b = rep["model"], rep["baseline_always_long"]
    return [[label, "model", _pct(m["hit_rate"]), m["decisions_scored"], _pct(m["total_return"]), _num(m["sharpe"]),
             _pct(m["max_drawdown"]), _pct(rep["exposure"])],
            ["", "always long", _pct(b["hit_rate"]), b["decisions_scored"], _pct(b["total_return"]),
             _num(b["sharpe"]), _pct(b["max_drawdown"]), "100.00%"]]


def cmd_performance(args) -> int:
    from pymicro.live.predictions import PredictionLog, performance_report, plot_performance

    if not Path(args.log).is_file():
        raise InputError(f"no prediction log at {args.log} (pymicro live ... --log {args.log} writes one)")
    log = PredictionLog(args.log)
    try:
        strategies = args.strategy or log.models()
        if not strategies:
            raise InputError(f"{args.log} holds no predictions")
        for k, strategy in enumerate(strategies):
            rep = performance_report(log, strategy, window=args.window, cost_bps=args.cost_bps,
                                     periods_per_year=args.periods_per_year, periods=args.periods)
            rows = _rows("whole window", rep)
            for i, p in enumerate(rep.get("periods", [])):
                rows += _rows(f"period {i + 1}: ts {p['from_ts']:.0f}-{p['to_ts']:.0f}", {**p})
            print(f"{strategy}: last {rep['window']} logged decisions, ts {rep['from_ts']:.0f}-{rep['to_ts']:.0f}, "
                  f"{rep['cost_bps']:g} bps a change of position, Sharpe annualised at "
                  f"{rep['periods_per_year']:.4g} steps a year")
            print(table(["period", "who", "hit rate", "scored", "return", "Sharpe", "max drawdown", "exposure"],
                        rows, right={2, 3, 4, 5, 6, 7}))
            if args.recent:
                recent = log.recent(strategy, args.recent)
                print(table(["seq", "ts", "price", "position", "probabilities", "tick"],
                            [[r.seq, f"{r.ts:.3f}", r.price, r.position,
                              " ".join("-" if p is None else f"{p:.3f}" for p in r.probabilities), r.tick or "-"]
                             for r in recent]))
            if args.plot:
                path = Path(args.plot)
                if len(strategies) > 1:
                    path = path.with_name(f"{path.stem}-{strategy}{path.suffix}")
                plot_performance(log, strategy, path, window=args.window, cost_bps=args.cost_bps,
                                 periods_per_year=args.periods_per_year, roll=args.roll)
                print(f"wrote {path}")
            if k + 1 < len(strategies):
                print()
    finally:
        log.close()
    print("Each decision is scored on the next logged price (the position held until then); the baseline "
          "is always long over the same rows. Figures are what the log holds: out of sample only if the "
          "model was trained before those ticks.")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("performance", help="score logged live decisions beside always-long (PNG with --plot)",
                       description="Hit rate, Sharpe, return and drawdown of the decisions in a prediction log "
                                   "(pymicro live --log, or the MCP live tools' predictions.db), per strategy "
                                   "(model id) and per period, beside always long over the same rows.")
    p.add_argument("log", help="the prediction log (SQLite)")
    p.add_argument("--strategy", action="append",
                   help="a model id in the log (repeatable; default: every strategy in the log)")
    p.add_argument("--window", type=int, default=1000, help="the last N decisions of each strategy (default 1000)")
    p.add_argument("--periods", type=int, default=4,
                   help="also cut the window into K consecutive periods of equal decisions (default 4; 1: none)")
    p.add_argument("--cost-bps", type=float, default=0.0, help="cost of each change of position, in bps")
    p.add_argument("--periods-per-year", type=float,
                   help="annualisation (default: from the pace of the log's ts, in seconds)")
    p.add_argument("--plot", metavar="PATH", help="write a PNG: equity and drawdown beside always long, rolling "
                                                  "hit rate and Sharpe (PATH-<strategy>.png for several)")
    p.add_argument("--roll", type=int, help="decisions in the plot's rolling windows (default window / 20, >= 20)")
    p.add_argument("--recent", type=int, default=0, metavar="N", help="also print the last N decisions")
    p.set_defaults(func=cmd_performance)
