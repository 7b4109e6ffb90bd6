"""The `pymicro` command: one module per subcommand, each with ``add_parser(subparsers)``.

This package depends on every layer and nothing depends on it. Every subcommand has --help.
"""

from __future__ import annotations

import argparse
import sys

from pymicro.errors import MissingDependencyError, PymicroError

SUBCOMMANDS = ("quickstart", "train", "info", "predict", "export_onnx", "bench", "backtest", "validate",
               "sandbox", "report", "mcp", "models", "learn", "drift", "monitor", "live", "latency", "performance",
               "syndicate", "ensemble",
               "tune")
"""The modules of :mod:`pymicro.cli`, in the order ``pymicro --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="pymicro", description="Micro neural networks frozen into blobs and run by one C++ core.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"pymicro.cli.{name}")
        except MissingDependencyError as e:  # listed anyway; running it says which extra to install
            _unavailable(sub, name.replace("_", "-"), e)
            continue
        module.add_parser(sub)
    return parser


def _unavailable(sub, command: str, error: MissingDependencyError) -> None:
    p = sub.add_parser(command, help=f"(needs pip install 'pymicro[{error.extra}]')", description=str(error))
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def refuse(args) -> int:
        raise error

    p.set_defaults(func=refuse)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PymicroError as e:
        print(f"pymicro {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
