"""Agents: pymicro's tools served over MCP (``mcp_server``) and the reasoning engine (``reasoning``)."""

from pymicro.errors import require as _require

_require("mcp", "mcp", purpose="pymicro.agents (the MCP server and the reasoning engine)")
