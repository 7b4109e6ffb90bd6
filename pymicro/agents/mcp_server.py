"""pymicro's MCP server: registered models and their tools, served to agents.

    pymicro mcp                                   # stdio: what an MCP client spawns
    pymicro mcp --transport http --port 8765      # streamable HTTP, http://127.0.0.1:8765/mcp
    python -m pymicro.agents.mcp_server ...       # the same, without the CLI

Built on the official ``mcp`` SDK (2.x, ``MCPServer``). It serves the model store of
:mod:`pymicro.store.registry` (``--store``, else ``$PYMICRO_HOME/models``, else
``~/.pymicro/models``).

Tools: ``neural_predict`` (a model or an ensemble), ``neural_ensemble_create``, ``neural_ensemble_predict``,
``neural_model_status``, ``list_models``, ``verify_model``,
``neural_train``, ``neural_evaluate``, ``neural_backtest``, ``analyze_news``,
``psycho_symbolic_reason`` (:mod:`pymicro.agents.reasoning`) and ``validate_model``
(:mod:`pymicro.evaluation.validation`). Resources: ``pymicro://models/{model_id}`` (a model's metadata as JSON);
every registered model is also listed by ``resources/list``.

Safety:

* Every argument is typed, with its bounds and enums in the input schema, and validated
  before a tool runs. A bad request (wrong types, out-of-range numbers, malformed or unknown
  model ids, NaN/Inf, wrong widths, unknown tools) gets an error result and the server
  carries on. pymicro's own errors reach the client as their message; anything else as
  "Error executing tool ..." with the traceback kept on stderr.
* Sizes are bounded: :data:`MAX_ROWS` rows, :data:`MAX_FEATURES` features a row,
  :data:`MAX_CELLS` values a call, :data:`MAX_REQUEST_BYTES` a request (a longer stdio line
  is skipped unread and its id answered with a JSON-RPC error; HTTP answers 413).
* HTTP listens on loopback only (127.0.0.1, ::1, localhost) unless ``--allow-remote``;
  DNS-rebinding protection (Host and Origin must name a loopback host) is on for every loopback
  address (127.0.0.0/8, ::1, localhost). ``--token`` (or ``PYMICRO_MCP_TOKEN``) makes every
  HTTP request carry ``Authorization: Bearer <token>`` (else 401): loopback alone does not keep
  out the other users of a shared machine. stdio needs no token (the client spawned the server).
* Nothing is written to stdout except the protocol; logs go to stderr.
* One training job at a time per server (``neural_train``, a walk-forward ``neural_backtest``,
  ``validate_model`` with ``fit="tinygrad"``); a second is refused, not queued.
* Tools read only the embedded data and the store: no path or URL is taken from a client.

Layout: :mod:`pymicro.agents.server` (argument types, limits, the tool registry, progress, the
model cache, the ``MCPServer`` subclass and the transports); the tools by family in
``tools_models`` (predict, status, list, verify, resources), ``tools_training`` (neural_train),
``tools_evaluation`` (neural_evaluate, neural_backtest, validate_model), ``tools_news``
(analyze_news, psycho_symbolic_reason) and ``tools_live`` (realtime_subscribe, execute_trade,
get_recent_predictions, performance_report, create_syndicate_tool, add_syndicate_member,
allocate_syndicate_funds: paper only, files in ``<store>/../live``). This module imports them all and runs the server.

Adding a tool: write one ``async def`` in the module of its family, decorated with :func:`pymicro.agents.server.tool`,
with typed parameters (``Annotated[..., Field(...)]`` for bounds, ``Literal`` for enums), a
``ctx: Context`` keyword argument and a pydantic model as its return type (the structured
output). Long work runs through :class:`~pymicro.agents.server.Progress`, which sends one MCP progress
notification per step and stops the work when the client cancels. Nothing else changes.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import anyio

# The tool modules register their tools (in this order) when imported.
import pymicro.agents.tools_models  # noqa: F401
import pymicro.agents.tools_training  # noqa: F401
import pymicro.agents.tools_evaluation  # noqa: F401
import pymicro.agents.tools_news  # noqa: F401,E402
import pymicro.agents.tools_tuning  # noqa: F401,E402
import pymicro.agents.tools_live  # noqa: F401,E402
import pymicro.agents.tools_ensemble  # noqa: F401,E402
from pymicro.agents.options import DESCRIPTION, arguments
from pymicro.agents.server import MIN_TOKEN_CHARS, PymicroServer, check_host, serve_http, serve_stdio
from pymicro.errors import PymicroError
from pymicro.store.registry import Registry


def build_server(registry: Registry | None = None, *, log_level: str = "WARNING", data_dir=None) -> PymicroServer:
    """A server over ``registry`` (default: the default store) with every tool; ``data_dir``: the
    folder data files may be read from (default ``$PYMICRO_HOME/data``)."""
    return PymicroServer(registry if registry is not None else Registry(), log_level=log_level, data_dir=data_dir)


def serve(args) -> int:
    """Run the server the parsed ``args`` describe (``pymicro mcp``; see pymicro.cli.mcp)."""
    if not 0 <= args.port <= 65535:
        raise PymicroError(f"--port must be in 0..65535, got {args.port}")
    if args.transport == "http":
        check_host(args.host, args.allow_remote)  # refuse before anything starts
    token = (args.token or os.environ.get("PYMICRO_MCP_TOKEN") or None) if args.transport == "http" else None
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise PymicroError(f"--token / PYMICRO_MCP_TOKEN must have at least {MIN_TOKEN_CHARS} characters")
    server = build_server(Registry(args.store), log_level=args.log_level, data_dir=args.data_dir)
    try:
        if args.transport == "http":
            anyio.run(functools.partial(serve_http, server, args.host, args.port, allow_remote=args.allow_remote,
                                        log_level=args.log_level, token=token))
        else:
            anyio.run(serve_stdio, server)
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pymicro.agents.mcp_server [options]``: the same as ``pymicro mcp [options]``."""

    parser = argparse.ArgumentParser(prog="python -m pymicro.agents.mcp_server", description=DESCRIPTION)
    arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(args)
    except PymicroError as e:
        print(f"pymicro mcp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

