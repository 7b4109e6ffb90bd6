"""The reasoning server, consulted through an MCP ``ClientSession``: the trainer's reasoning
findings and its validation come from the ``psycho_symbolic_reason`` and ``validate_model``
tools of whichever server is configured.

    from pymicro.market.reasoning_client import ReasoningClient, server_config

    async with ReasoningClient(server_config()) as client:
        r = await client.reason("What is the market psychology for AAPL?", symbol="AAPL")
        v = await client.validate_model("my_micro_trader-1a2b3c4d")

**Which server.** :func:`server_config` picks, in order: the ``source`` it is given; the
environment variable ``PYMICRO_REASONING_SERVER``; pymicro's own server started over
stdio (``python -m pymicro.agents.mcp_server --store <the trainer's store>``). A source is a
:class:`ReasoningServer`, a dict, a URL (streamable HTTP, loopback only), inline JSON, or
the path of a ``.toml`` / ``.json`` file holding::

    command = "/opt/reasoner/bin/serve"       # stdio: command, args, env, cwd
    args = ["--stdio"]
    env = { REASONER_HOME = "/srv/reasoner" }
    # url = "http://127.0.0.1:8765/mcp"       # or streamable HTTP on loopback
    timeout = 120                             # seconds a tool call may take
    startup_timeout = 60                      # seconds to start and initialize

(under a ``[reasoning_server]`` table, or at the top level). A stdio server gets only the
environment ``env`` names, besides the few variables the SDK passes (``HOME``, ``PATH``, ...).

**Errors.** Every failure is a :class:`~pymicro.errors.ReasoningError` that names the
server: a command that cannot start, a server that exits or does not answer within its
timeout, a missing tool, an error result, or a result without the fields pymicro reads.
The last lines the server wrote to stderr are quoted when it fails to start.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio

from pymicro.errors import ReasoningError

logger = logging.getLogger("pymicro.market.reasoning_client")

ENV_VAR = "PYMICRO_REASONING_SERVER"
DEFAULT_TIMEOUT = 120.0
DEFAULT_STARTUP_TIMEOUT = 60.0
PASSED_ENV = ("PYMICRO_HOME", "CC", "DEV", "PYTHONPATH", "VIRTUAL_ENV")
"""Variables of this process handed to pymicro's own server (stdio_client passes few by itself)."""
REASON_TOOL, VALIDATE_TOOL = "psycho_symbolic_reason", "validate_model"


@dataclass(frozen=True)
class ReasoningServer:
    """How to reach a reasoning server: ``command`` (stdio) or ``url`` (streamable HTTP)."""

    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT
    name: str | None = None

    def __post_init__(self):
        if (self.command is None) == (self.url is None):
            raise ReasoningError("a reasoning server needs exactly one of 'command' (stdio) or 'url' (HTTP)")
        for key in ("timeout", "startup_timeout"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ReasoningError(f"reasoning server {key} must be a positive number of seconds, got {v!r}")
        if self.command is not None and (not isinstance(self.command, str) or not self.command):
            raise ReasoningError(f"reasoning server command must be a non-empty string, got {self.command!r}")
        if not all(isinstance(a, str) for a in self.args):
            raise ReasoningError(f"reasoning server args must be strings, got {list(self.args)!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise ReasoningError("reasoning server env must map names to string values")
        if self.url is not None:
            check_loopback_url(self.url)

    @classmethod
    def pymicro(cls, store=None, **options) -> ReasoningServer:
        """pymicro's own server over stdio, serving ``store`` (default: its default store)."""
        # -P: the caller's working directory is not put on sys.path, so a source checkout
        # there (a pymicro/ folder without the compiled core) cannot shadow the installed package.
        args = ["-P", "-m", "pymicro.agents.mcp_server"] + (["--store", os.fspath(store)] if store is not None else [])
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        return cls(command=sys.executable, args=tuple(args), env=env, name="pymicro", **options)

    def describe(self) -> str:
        where = self.url or " ".join([self.command or "", *self.args])
        return f"{self.name} ({where})" if self.name else where


def check_loopback_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReasoningError(f"reasoning server url must be http(s)://host:port/path, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ReasoningError(f"reasoning server url {url!r} is not on loopback (127.0.0.1, ::1, localhost); "
                             "pymicro connects to HTTP reasoning servers on this machine only")
    return url


def _from_mapping(data: dict, origin: str) -> ReasoningServer:
    if "reasoning_server" in data and isinstance(data["reasoning_server"], dict):
        data = data["reasoning_server"]
    known = {f.name for f in fields(ReasoningServer)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ReasoningError(f"{origin}: unknown reasoning server key(s) {unknown}; known: {sorted(known)}")
    data = dict(data)
    if "args" in data:
        if not isinstance(data["args"], (list, tuple)):
            raise ReasoningError(f"{origin}: args must be a list of strings")
        data["args"] = tuple(data["args"])
    if "env" in data and not isinstance(data["env"], dict):
        raise ReasoningError(f"{origin}: env must be a table of NAME = value")
    try:
        return ReasoningServer(**data)
    except ReasoningError as e:
        raise ReasoningError(f"{origin}: {e}") from None


def server_config(source=None, *, store=None) -> ReasoningServer:
    """The reasoning server to use (see the module docstring); ``store`` is the model store
    pymicro's own server is started on."""
    origin = "reasoning_server"
    if source is None:
        source = os.environ.get(ENV_VAR) or None
        origin = f"${ENV_VAR}"
    if source is None:
        return ReasoningServer.pymicro(store)
    if isinstance(source, ReasoningServer):
        return source
    if isinstance(source, dict):
        return _from_mapping(source, origin)
    if isinstance(source, Path):
        source = os.fspath(source)
    if not isinstance(source, str):
        raise ReasoningError(f"{origin} must be a ReasoningServer, a dict, a URL, JSON or a file path; "
                             f"got {type(source).__name__}")
    text = source.strip()
    if text.startswith(("http://", "https://")):
        return ReasoningServer(url=check_loopback_url(text), name="http")
    if text.startswith("{"):
        try:
            return _from_mapping(json.loads(text), origin)
        except json.JSONDecodeError as e:
            raise ReasoningError(f"{origin} is not valid JSON: {e}") from None
    path = Path(text).expanduser()
    if not path.is_file():
        raise ReasoningError(f"{origin}: {text!r} is not a URL, JSON or an existing .toml/.json file")
    try:
        raw = path.read_bytes()
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ReasoningError(f"{path}: cannot read the reasoning server configuration: {e}") from None
    if not isinstance(data, dict):
        raise ReasoningError(f"{path}: the configuration must be a table / object")
    return _from_mapping(data, str(path))


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups that is not a cancellation."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        exc = (inner or list(exc.exceptions))[0]
    return exc


class ReasoningClient:
    """One MCP session with a reasoning server, open inside ``async with``."""

    def __init__(self, server: ReasoningServer | None = None, *, store=None):
        self.server = server if server is not None else server_config(store=store)
        self.tools: dict[str, Any] = {}
        self._stack: AsyncExitStack | None = None
        self._session = None
        self._stderr = None
        self._stage = "start"

    async def __aenter__(self) -> ReasoningClient:
        from mcp import ClientSession

        self._stack = AsyncExitStack()
        await self._stack.__aenter__()
        try:
            self._stage = "start"
            if self.server.url:
                from mcp.client.streamable_http import streamable_http_client

                read, write = (await self._stack.enter_async_context(streamable_http_client(self.server.url)))[:2]
            else:
                from mcp import StdioServerParameters, stdio_client

                self._stderr = self._stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8",
                                                                                 errors="replace"))
                params = StdioServerParameters(command=self.server.command, args=list(self.server.args),
                                               env=dict(self.server.env), cwd=self.server.cwd)
                read, write = await self._stack.enter_async_context(stdio_client(params, errlog=self._stderr))
            self._session = await self._stack.enter_async_context(ClientSession(read, write))
            self._stage = "initialize"
            with anyio.fail_after(self.server.startup_timeout):
                await self._session.initialize()
                self._stage = "tools/list"
                self.tools = {t.name: t for t in (await self._session.list_tools()).tools}
        except BaseException as e:  # every failure becomes one ReasoningError; cancellation is re-raised
            error = self._error(e, self._stage, self.server.startup_timeout)
            await self._close()
            if not isinstance(_leaf(e), Exception):
                raise
            raise error from None
        return self

    async def __aexit__(self, *exc) -> None:
        await self._close()

    async def _close(self) -> None:
        stack, self._stack, self._session = self._stack, None, None
        if stack is not None:
            try:
                await stack.aclose()
            except Exception as e:  # noqa: BLE001 - closing a broken transport; the real error is raised elsewhere
                logger.debug("closing the reasoning session: %r", e)

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            lines = [line.rstrip() for line in self._stderr.read()[-4000:].splitlines() if line.strip()]
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends: {' | '.join(lines[-3:])[:600]}" if lines else ""

    def _error(self, exc: BaseException, stage: str, limit: float) -> ReasoningError:
        exc = _leaf(exc)
        who = f"reasoning server {self.server.describe()}"
        if isinstance(exc, ReasoningError):
            return exc
        if isinstance(exc, TimeoutError):
            return ReasoningError(f"{who} did not answer {stage} within {limit:g} s (timeout){self._stderr_tail()}")
        if isinstance(exc, OSError) and stage == "start":
            return ReasoningError(f"cannot start {who}: {exc.strerror or exc}")
        text = str(exc) or type(exc).__name__
        return ReasoningError(f"{who} failed during {stage}: {text[:500]}{self._stderr_tail()}")

    async def call(self, tool: str, arguments: dict, required: dict[str, type | tuple] | None = None) -> dict:
        """Call ``tool``; its structured result, checked to hold ``required`` keys of those types."""
        if self._session is None:
            raise ReasoningError("the reasoning client is not open: use 'async with ReasoningClient(...)'")
        if tool not in self.tools:
            raise ReasoningError(f"reasoning server {self.server.describe()} has no tool {tool!r} (it offers: "
                                 f"{', '.join(sorted(self.tools)) or 'none'})")
        try:
            with anyio.fail_after(self.server.timeout):
                result = await self._session.call_tool(tool, arguments)
        except Exception as e:  # noqa: BLE001 - transport, protocol, schema or timeout: one ReasoningError
            raise self._error(e, tool, self.server.timeout) from None
        text = " ".join(getattr(c, "text", "") for c in result.content)[:1000]
        if result.is_error:
            raise ReasoningError(f"{tool} on reasoning server {self.server.describe()} failed: {text}")
        out = result.structured_content
        if out is None and text.startswith("{"):
            try:
                out = json.loads(text)
            except ValueError:
                out = None
        if not isinstance(out, dict):
            raise ReasoningError(f"{tool} on reasoning server {self.server.describe()} returned no structured "
                                 f"result (got {text[:200]!r})")
        for key, kind in (required or {}).items():
            if key not in out:
                raise ReasoningError(f"{tool} on reasoning server {self.server.describe()} returned a malformed "
                                     f"result: no {key!r} (keys: {sorted(out)[:20]})")
            if not isinstance(out[key], kind) or isinstance(out[key], bool) and bool not in _kinds(kind):
                raise ReasoningError(f"{tool} on reasoning server {self.server.describe()} returned a malformed "
                                     f"result: {key!r} is {type(out[key]).__name__}")
        return out

    async def reason(self, query: str, *, symbol: str | None = None, domains=None, depth: int = 3,
                     date: str | None = None) -> dict:
        """``psycho_symbolic_reason``: answer, confidence in [0, 1], features, findings, steps."""
        args = {"query": query, "depth": depth}
        args.update({k: v for k, v in (("symbol", symbol), ("domains", domains), ("date", date)) if v is not None})
        out = await self.call(REASON_TOOL, args, {"answer": str, "confidence": (int, float), "features": dict})
        if not 0 <= out["confidence"] <= 1:
            raise ReasoningError(f"{REASON_TOOL} returned confidence {out['confidence']!r}, outside [0, 1]")
        return out

    async def validate_model(self, model_id: str, **options) -> dict:
        """``validate_model``: answer, confidence, risks, metrics, checks."""
        out = await self.call(VALIDATE_TOOL, {"model_id": model_id, **options},
                              {"answer": str, "confidence": (int, float), "risks": list})
        if not 0 <= out["confidence"] <= 1:
            raise ReasoningError(f"{VALIDATE_TOOL} returned confidence {out['confidence']!r}, outside [0, 1]")
        return out


def _kinds(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


__all__ = ["ENV_VAR", "ReasoningClient", "ReasoningServer", "check_loopback_url", "server_config"]
