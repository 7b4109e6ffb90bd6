"""The options of the MCP server (``pymicro mcp`` and ``python -m pymicro.agents.mcp_server``).

Cheap to import: building the CLI's parser must not load the MCP SDK.
"""

from __future__ import annotations

import argparse

DESCRIPTION = ("Serve pymicro's models and tools over the Model Context Protocol: stdio by default, "
               "or streamable HTTP on loopback (--transport http). Tools: neural_predict, "
               "neural_model_status, list_models, verify_model, neural_train, neural_evaluate, "
               "neural_backtest, analyze_news, psycho_symbolic_reason, validate_model; resources "
               "pymicro://models/{model_id}. Logs go to stderr; stdout carries only the protocol.")


def arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``pymicro mcp`` (and ``python -m pymicro.agents.mcp_server``)."""
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio",
                   help="stdio (default; what MCP clients spawn) or streamable HTTP")
    p.add_argument("--http", dest="transport", action="store_const", const="http",
                   help="short for --transport http")
    p.add_argument("--host", default="127.0.0.1",
                   help="HTTP: address to listen on; loopback only unless --allow-remote (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="HTTP: port, 0 for any free one (default: %(default)s)")
    p.add_argument("--allow-remote", action="store_true",
                   help="HTTP: allow a non-loopback --host (use --token there)")
    p.add_argument("--token", help="HTTP: require 'Authorization: Bearer TOKEN' on every request (at least 16 "
                                   "characters; default: $PYMICRO_MCP_TOKEN, else none); ignored on stdio")
    p.add_argument("--store", help="model store folder (default: $PYMICRO_HOME/models or ~/.pymicro/models)")
    p.add_argument("--data-dir", help="folder whose OHLCV and headline files clients may name (neural_train's "
                                      "data_path, neural_evaluate's test_data file, analyze_news); "
                                      "default: $PYMICRO_HOME/data or ~/.pymicro/data")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="stderr log level (default: %(default)s)")
