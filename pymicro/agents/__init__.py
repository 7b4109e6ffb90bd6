"""Agents: pymicro's tools served over MCP (``mcp_server``) and the reasoning engine (``reasoning``)."""
