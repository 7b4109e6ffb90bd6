"""``pymicro mcp``: the command line of the MCP server, cheap to import.

The server itself (:mod:`pymicro.agents.mcp_server`) imports the MCP SDK, pydantic, starlette and
the training stack, about 1.5 s; it is imported only when the command runs, so building
the CLI's parser for any other subcommand costs nothing.
"""

from __future__ import annotations

import argparse

from pymicro.agents.options import DESCRIPTION, arguments


def run(args) -> int:
    from pymicro.agents.mcp_server import serve

    return serve(args)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``pymicro mcp`` on the CLI's subparsers (``build_parser`` in pymicro/cli/__init__.py)."""
    p = subparsers.add_parser("mcp", help="serve models and tools over MCP (stdio or HTTP on loopback)",
                              description=DESCRIPTION)
    arguments(p)
    p.set_defaults(func=run)
    return p
