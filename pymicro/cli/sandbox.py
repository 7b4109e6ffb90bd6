"""``pymicro sandbox``."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from pymicro.errors import PymicroError
from pymicro.cli._common import load_rows
from pymicro.runtime.sandbox import DEFAULT_FUEL, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, create


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers) -> None:
    """Register ``sandbox`` (with ``run``) on the CLI's subparsers; dispatch via ``args.func(args)``."""
    sandbox = subparsers.add_parser(
        "sandbox", help="run a blob inside a fenced WebAssembly node",
        description="Run predictions inside a wasmtime sandbox node: no imports, a fuel budget, "
                    "a wall-clock deadline and a memory cap.")
    sub = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND")
    sub.required = True
    run = sub.add_parser(
        "run", help="predict INPUT.npy with BLOB inside a sandbox node",
        description="Upload BLOB into a fresh sandbox node, execute the rows of INPUT.npy "
                    "((d,) or (batch, d) numbers), and report the probabilities with the fuel and "
                    "time used. Exit status 0 on success, 1 if the node refused or stopped the "
                    "request (the error names the cause: fuel, deadline, memory, blob, ...).")
    _run_arguments(run)
    run.set_defaults(func=_run_command)


def _run_arguments(p) -> None:
    p.add_argument("blob", metavar="BLOB", help="a .pmb blob file")
    p.add_argument("input", metavar="INPUT.npy", help="a .npy array of shape (d,) or (batch, d)")
    p.add_argument("--fuel", type=int, default=DEFAULT_FUEL,
                   help=f"fuel budget per request, wasmtime units (default {DEFAULT_FUEL:,})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"wall-clock deadline per request, seconds (default {DEFAULT_TIMEOUT:g})")
    p.add_argument("--memory", type=float, default=DEFAULT_MEMORY_MB, metavar="MB",
                   help=f"memory cap of the node, MiB (default {DEFAULT_MEMORY_MB})")
    p.add_argument("--output", metavar="PATH.npy", help="save all probabilities to this .npy file")
    p.add_argument("--nan-policy", choices=("raise", "propagate"), default="raise",
                   help="NaN/Inf inputs: refuse (default) or give NaN probabilities for those rows")
    p.add_argument("--show", type=int, default=10, metavar="N", help="rows to print (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def _run_command(args) -> int:

    try:
        x = load_rows(args.input)
        with create(fuel=args.fuel, timeout=args.timeout, memory_mb=args.memory,
                    nan_policy=args.nan_policy) as node:
            up = node.upload(args.blob)
            ex = node.execute(x)
    except PymicroError as e:
        print(f"pymicro sandbox run: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    probs = ex.probabilities.reshape(-1, up.n_classes)
    if args.output:
        np.save(args.output, ex.probabilities)
    if args.json:
        print(json.dumps({
            "rows": ex.rows, "n_classes": up.n_classes, "input_size": up.input_size,
            "upload": {"fuel_used": up.fuel_used, "seconds": up.seconds},
            "execute": {"fuel_used": ex.fuel_used, "seconds": ex.seconds},
            "nonfinite_rows": ex.nonfinite_rows,
            "limits": {"fuel": args.fuel, "timeout": args.timeout, "memory_mb": args.memory},
            "classes": [None if np.isnan(r).any() else int(np.argmax(r)) for r in probs],
            "probabilities": probs.tolist() if args.output is None else args.output,
        }))
        return 0
    print(f"sandbox node: model {up.input_size} -> {up.n_classes} ({up.params} params), "
          f"{ex.rows} row{'s' if ex.rows != 1 else ''}")
    print(f"upload:  fuel {up.fuel_used:,}  time {up.seconds * 1e3:.2f} ms")
    print(f"execute: fuel {ex.fuel_used:,} of {args.fuel:,}  time {ex.seconds * 1e3:.2f} ms "
          f"(deadline {args.timeout:g} s, memory cap {args.memory:g} MiB)")
    show = max(0, min(args.show, len(probs)))
    if show:
        print("row  class  probabilities")
        for i in range(show):
            row = probs[i]
            cls = "-" if np.isnan(row).any() else str(int(np.argmax(row)))
            print(f"{i:<4} {cls:<6} " + " ".join(f"{v:.6f}" for v in row))
        if show < len(probs):
            print(f"({show} of {len(probs)} rows shown; --output PATH.npy saves them all)")
    return 0


def sandbox_run_main(argv=None) -> int:
    """``pymicro sandbox run`` as a stand-alone entry point: ``sandbox_run_main(["BLOB", "X.npy"])``."""

    parser = argparse.ArgumentParser(prog="pymicro sandbox run",
                                     description="Run BLOB on INPUT.npy inside a sandbox node.")
    _run_arguments(parser)
    return _run_command(parser.parse_args(argv))
