"""``pymicro learn``: one round of continuous learning (cron-friendly), or one every ``--every``."""

from __future__ import annotations

import argparse
import json
import re
import time

from pymicro.cli._common import add_store_argument
from pymicro.errors import RegistryError


def _seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text or "")
    if not m:
        raise RegistryError(f"--every takes a duration like 30m, 6h or 1d, got {text!r}")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _cmd_learn(args) -> int:
    from pymicro.lifecycle.learn import continue_training, learn
    from pymicro.market.data import load_embedded, load_ohlcv
    from pymicro.store.registry import ID_RE, Registry

    reg = Registry(args.store, keep_last=args.keep_last)
    every = _seconds(args.every) if args.every else None
    while True:
        frame = load_ohlcv(args.data) if args.data else load_embedded(args.symbols or None)
        options = {"epochs": args.epochs, "learning_rate": args.learning_rate, "margin": args.margin,
                   "mode": args.mode, "seed": args.seed}
        out = (continue_training(reg, args.model, frame, **options) if ID_RE.fullmatch(args.model)
               else learn(reg, args.model, frame, **options))
        d = out["decision"]
        print(json.dumps({"name": out["name"], "champion": out["aliases"].get("champion"),
                          "challenger": d["challenger"], "promoted": d["promoted"],
                          "improvement": d["test"]["improvement"], "interval": d["test"]["interval"],
                          "accuracy": d["accuracy"], "drift": out["drift"]["status"], "rule": d["rule"]}))
        if every is None:
            return 0
        time.sleep(every)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "learn", help="fine-tune the champion on new bars; promote only on out-of-sample evidence",
        description="One round of continuous learning (pymicro.lifecycle.learn): the champion of MODEL (a name, "
                    "or a model id, which becomes version 1 if it has no versions) is fine-tuned on the bars it "
                    "has not seen, the newest of them held out; the candidate is the challenger, promoted only "
                    "when the 95%% interval of its holdout log-loss improvement clears --margin. Prints one JSON "
                    "line. Cron-friendly; --every loops.")
    p.add_argument("model", help="a model name with a champion, or a model id")
    add_store_argument(p)
    p.add_argument("--data", help="an OHLCV .csv/.parquet file (default: the embedded history)")
    p.add_argument("--symbols", nargs="*", help="embedded symbols (default: all)")
    p.add_argument("--mode", choices=("finetune", "rolling"), default="finetune")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--margin", type=float, default=0.0, help="log-loss per row the interval must clear")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--every", help="repeat every duration (30m, 6h, 1d); default: once")
    p.add_argument("--keep-last", type=int, help="retention after each round: keep the N newest versions besides "
                                                "aliased ones, rollback targets and their parents (default "
                                                "$PYMICRO_KEEP_LAST or 20; 0 keeps everything)")
    p.set_defaults(func=_cmd_learn)
    return p
