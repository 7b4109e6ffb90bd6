"""``pymicro mcp``: the command line of the MCP server, cheap to import.

The server itself (:mod:`pymicro.mcp_server`) imports the MCP SDK, pydantic, starlette and
the training stack, about 1.5 s; it is imported only when the command runs, so building
the CLI's parser for any other subcommand costs nothing.
"""

from __future__ import annotations

import argparse

DESCRIPTION = ("Serve pymicro's models and tools over the Model Context Protocol: stdio by default, "
               "or streamable HTTP on loopback (--transport http). Tools: neural_predict, "
               "neural_model_status, list_models, verify_model, neural_train, neural_evaluate, "
               "neural_backtest, analyze_news, psycho_symbolic_reason, validate_model; resources "
               "pymicro://models/{model_id}. Logs go to stderr; stdout carries only the protocol.")


def arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``pymicro mcp`` (and ``python -m pymicro.mcp_server``)."""
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default; what MCP clients spawn) or streamable HTTP")
    p.add_argument("--host", default="127.0.0.1",
                   help="HTTP: address to listen on; loopback only unless --allow-remote (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="HTTP: port, 0 for any free one (default: %(default)s)")
    p.add_argument("--allow-remote", action="store_true",
                   help="HTTP: allow a non-loopback --host (there is no authentication)")
    p.add_argument("--store", help="model store folder (default: $PYMICRO_HOME/models or ~/.pymicro/models)")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="stderr log level (default: %(default)s)")


def run(args) -> int:
    from .mcp_server import cmd_mcp

    return cmd_mcp(args)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``pymicro mcp`` on the CLI's subparsers (``build_parser`` in pymicro/cli.py)."""
    p = subparsers.add_parser("mcp", help="serve models and tools over MCP (stdio or HTTP on loopback)",
                              description=DESCRIPTION)
    arguments(p)
    p.set_defaults(func=run)
    return p
