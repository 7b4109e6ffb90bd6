"""The MCP server's plumbing: argument types and limits, the tool registry, progress, the model
cache, the ``MCPServer`` subclass, argument-error wording and the transports (stdio framing and
refusals, HTTP on loopback with DNS-rebinding protection and an optional bearer token).

The tools live in ``tools_models``, ``tools_training``, ``tools_evaluation`` and ``tools_news``;
:mod:`pymicro.agents.mcp_server` imports them all and runs the server.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import socket
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import numpy as np
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCNotification, Resource,
    ToolAnnotations, jsonrpc_message_adapter,
)
from pydantic import ConfigDict, Field, ValidationError

from pymicro._version import __version__
from pymicro.errors import PymicroError
from pymicro.market.data import embedded_symbols
from pymicro.market.features import FEATURE_SETS
from pymicro.store.registry import ID_MAX_LEN, ID_PATTERN, STATUSES, ModelRecord, Registry
from pymicro.training.trainer import SYMBOL_ALIASES

logger = logging.getLogger("pymicro.mcp")

# ----------------------------------------------------------------------------- limits

MAX_ROWS = 4096  # rows in one neural_predict call
MAX_FEATURES = 4096  # features in one row (the core's widest layer)
MAX_CELLS = 262_144  # rows x features in one call (4096 rows of 64)
MAX_REQUEST_BYTES = 8 << 20  # one JSON-RPC message: a stdio line or an HTTP body
MAX_LIST = 1000  # models in one list_models answer or resources/list
MAX_VERIFY_SAMPLES = 200_000
MAX_EPOCHS = 500
MODEL_CACHE_SIZE = 32  # loaded models kept per server
MAX_ERROR_CHARS = 2000  # an error message never grows with the payload
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,47}$"
RESOURCE_PREFIX = "pymicro://models/"
REFUSED_METHOD = "pymicro/refused_request"  # stand-in for a stdio line that cannot be served

# ----------------------------------------------------------------------------- argument types
# Bounds and enums live in these annotations, so they appear in each tool's input schema.

ModelId = Annotated[str, Field(
    description="A registered model's id, as list_models gives it (e.g. 'momentum-1b925ee6').",
    pattern=ID_PATTERN, min_length=10, max_length=ID_MAX_LEN)]
Feature = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Row = Annotated[list[Feature], Field(min_length=1, max_length=MAX_FEATURES)]
Rows = Annotated[list[Row], Field(
    description=f"Rows of raw features (the model normalises them itself), each as wide as the "
                f"model's input; at most {MAX_ROWS} rows and {MAX_CELLS} numbers in all. "
                "Finite numbers only.",
    min_length=1, max_length=MAX_ROWS)]
Backend = Literal["native", "reference"]
Status = Literal[STATUSES]  # type: ignore[valid-type]
ModelName = Annotated[str, Field(pattern=NAME_PATTERN, max_length=48,
                                 description="1-48 ASCII letters, digits, '_' or '-'.")]

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.^_-]{0,15}$"
Date = Annotated[str, Field(pattern=DATE_PATTERN, description="A date, YYYY-MM-DD.")]
Bps = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
TrainPreset = Literal[tuple(FEATURE_SETS)]  # type: ignore[valid-type]
SYMBOLS = tuple(embedded_symbols()) + tuple(a for a in SYMBOL_ALIASES if a not in embedded_symbols())
Symbol = Literal[SYMBOLS]  # type: ignore[valid-type]


FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_rows(rows: list[list[float]], name: str = "input") -> np.ndarray:
    """Rows as the float32 matrix a model reads; a value beyond float32's range (about 3.4e38)
    is refused here, in words for the MCP caller, rather than reaching the model as inf."""
    x = np.asarray(rows, dtype=np.float64)
    over = np.argwhere(np.abs(x) > FLOAT32_MAX)
    if len(over):
        i, j = (int(k) for k in over[0])
        raise ToolError(f"{name}[{i}][{j}] = {x[i, j]:g} is beyond the range of the model's 32-bit floats "
                        f"(|x| <= {FLOAT32_MAX:.4g}); {len(over)} value(s) in all. Send values within that range; "
                        "a raw feature this large is almost certainly a units or data error")
    return x.astype(np.float32)


def canonical_symbols(symbols: list[str] | None) -> list[str] | None:
    """Symbols with aliases resolved, each once (GOOGL is the embedded GOOG: one series, once)."""
    return list(dict.fromkeys(SYMBOL_ALIASES.get(s, s) for s in symbols)) if symbols else None


def parse_date(value: str | None, name: str):
    if value is None:
        return None
    try:
        return np.datetime64(value, "D")
    except ValueError:
        raise ToolError(f"{name}: {value!r} is not a calendar date") from None

# ----------------------------------------------------------------------------- plumbing


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Any]
    title: str
    annotations: ToolAnnotations


TOOLS: list[ToolSpec] = []
"""Every tool the server offers, in the order it lists them (filled by :func:`tool`)."""
RESOURCES: list[tuple[str, dict[str, Any], Callable[..., Any]]] = []
"""Every resource template the server offers (filled by :func:`resource`)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def tool(title: str, *, read_only: bool = True, idempotent: bool = True,
         destructive: bool = False) -> Callable[[_F], _F]:
    """Register an ``async def`` as a tool of every :class:`PymicroServer`.

    A :class:`~pymicro.PymicroError` raised by the tool becomes a ``ToolError``: the client
    gets an error result carrying its message.
    """

    def register(fn: _F) -> _F:
        @functools.wraps(fn)
        async def run(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except PymicroError as e:
                raise ToolError(str(e)) from None

        TOOLS.append(ToolSpec(run, title, ToolAnnotations(
            read_only_hint=read_only, idempotent_hint=idempotent, destructive_hint=destructive,
            open_world_hint=False)))
        return fn

    return register


def resource(uri_template: str, **options: Any) -> Callable[[_F], _F]:
    """Register an ``async def`` as a resource template of every server (``MCPServer.resource`` options)."""

    def register(fn: _F) -> _F:
        RESOURCES.append((uri_template, options, fn))
        return fn

    return register


class Progress:
    """A long tool's progress, sent to the client as MCP ``notifications/progress``.

        result = await Progress(ctx, total=epochs).run(work, arg1, ..., key=value)

    runs ``work(report, arg1, ..., key=value)`` in a worker thread, so the server keeps answering other
    requests. The work calls ``report(done, message)`` after each step (an epoch, a chunk);
    each call sends one notification (``progress=done, total=total``) before it returns, in
    order; a ``done`` not above the last one sent is skipped (MCP wants progress to rise).
    ``report`` is also where the work stops when the client cancels the request: it raises
    there. A client that sent no progress token gets no notifications; the work runs the same.
    """

    def __init__(self, ctx: Context, total: float):
        self._ctx = ctx
        self.total = float(total)
        self.sent = 0
        self._last = -math.inf

    def report(self, done: float, message: str | None = None) -> None:
        anyio.from_thread.check_cancelled()
        if done <= self._last:  # MCP: progress must increase with each notification
            return
        self._last = float(done)
        anyio.from_thread.run(self._ctx.report_progress, float(done), self.total, message)
        self.sent += 1

    async def run(self, work: Callable[..., Any], *args, **kwargs) -> Any:
        return await anyio.to_thread.run_sync(functools.partial(work, self.report, *args, **kwargs))


class ModelCache:
    """Loaded models by (id, backend), checked against the index's content hash on each use."""

    def __init__(self, registry: Registry, size: int = MODEL_CACHE_SIZE):
        self.registry = registry
        self.size = size
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], tuple[str, Any]] = OrderedDict()

    def get(self, model_id: str, backend: str = "native") -> tuple[ModelRecord, Any]:
        record = self.registry.get(model_id)
        key = (model_id, backend)
        with self._lock:
            hit = self._models.get(key)
            if hit is not None and hit[0] == record.content_hash:
                self._models.move_to_end(key)
                return record, hit[1]
        model = self.registry.load(model_id, backend=backend)
        with self._lock:
            self._models[key] = (record.content_hash, model)
            self._models.move_to_end(key)
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return record, model


class PymicroServer(MCPServer):
    """An ``MCPServer`` holding a registry, a model cache and the one-training-job lock."""

    def __init__(self, registry: Registry, *, log_level: str = "WARNING", data_dir: str | Path | None = None):

        super().__init__(
            name="pymicro", version=__version__, log_level=log_level,
            instructions="Micro neural networks (under 10,000 parameters) for trading signals. "
                         "list_models shows the registered models; neural_predict runs one on rows "
                         "of features; neural_ensemble_create trains or assembles an ensemble container, and "
                         "neural_ensemble_predict runs one and says which member decided; "
                         "neural_model_status describes one; verify_model checks one runs as "
                         "its blob says; neural_train trains one on the embedded market data and registers "
                         "it; neural_evaluate and neural_backtest measure one beside baselines; "
                         "validate_model looks for leaks and implausible figures; analyze_news scores "
                         "headlines; psycho_symbolic_reason explains a symbol's market, quantitative and "
                         "macro picture from pymicro's features, or judges a model's figures.",
            middleware=[_answer_refused])
        self.registry = registry
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.models = ModelCache(registry)
        self.train_lock = threading.Lock()
        for spec in TOOLS:
            self.add_tool(spec.fn, title=spec.title, annotations=spec.annotations)
            _strict_arguments(self._tool_manager.get_tool(spec.fn.__name__))
        for uri_template, options, fn in RESOURCES:
            self.resource(uri_template, **options)(fn)

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None):
        """MCPServer.call_tool, with argument errors made short: a message names at most
        five bad arguments and never grows with the payload."""
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            message = str(e)
            if isinstance(e.__cause__, ValidationError):
                message = _argument_errors(name, e.__cause__)
            if len(message) > MAX_ERROR_CHARS:
                message = message[:MAX_ERROR_CHARS] + f"... ({len(message)} characters in all)"
            if message == str(e):
                raise
            raise type(e)(message) from e.__cause__

    async def list_resources(self) -> list[Resource]:
        resources = await super().list_resources()
        for r in self.registry.list()[-MAX_LIST:]:
            resources.append(Resource(
                uri=RESOURCE_PREFIX + r.id, name=r.id,
                title=f"{r.name} ({'ensemble of ' + str(len(r.members)) + ', ' if r.kind == 'ensemble' else ''}"
                      f"{r.params} params, {r.status})",
                description=f"{r.input_size} inputs -> {r.n_classes} classes", mime_type="application/json"))
        return resources


def _strict_arguments(registered) -> None:
    """Make a registered tool refuse unknown arguments and arguments of the wrong JSON type (a
    string where a number goes, a float where an integer goes): the SDK's argument model is lax
    and would ignore ``{"bogus": 1}`` and read ``limit: "10"`` as 10. The input schema says so
    too (``additionalProperties: false``)."""
    lax = registered.fn_metadata.arg_model
    strict = type(lax.__name__, (lax,), {"__module__": lax.__module__,
                                         "model_config": ConfigDict(lax.model_config, extra="forbid", strict=True)})
    registered.fn_metadata.arg_model = strict
    registered.parameters = strict.model_json_schema(by_alias=True)


DATA_SUFFIXES = (".csv", ".parquet")


def default_data_dir() -> Path:
    """``$PYMICRO_HOME/data``; ``PYMICRO_HOME`` defaults to ``~/.pymicro``."""
    return Path(os.environ.get("PYMICRO_HOME") or Path.home() / ".pymicro") / "data"


def resolve_data_file(server: "PymicroServer", name: str) -> Path:
    """The data file ``name`` names inside the server's data folder; anything else is refused (a
    client names a file the user put there, never an arbitrary path)."""
    root = server.data_dir.resolve()
    where = f"the server's data folder {root} (--data-dir; default $PYMICRO_HOME/data)"
    candidate = Path(name)
    path = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ToolError(f"data_path {name!r} is outside {where}: put the file there and name it relative to it")
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise ToolError(f"data_path {name!r}: a .csv or .parquet OHLCV file is needed")
    if not path.is_file():
        raise ToolError(f"data_path {name!r}: no such file in {where}")
    return path


def server_of(ctx: Context) -> PymicroServer:
    """The server a tool call runs on."""
    return ctx.mcp_server  # type: ignore[return-value]


async def _answer_refused(ctx, call_next):
    """Middleware: answer the stand-in for a stdio line that could not be served (too long,
    not JSON, nested too deeply, not JSON-RPC) with the JSON-RPC error it carries."""
    if ctx.method == REFUSED_METHOD:
        params = ctx.params or {}
        code = params.get("code") if params.get("code") in (PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS) \
            else INVALID_REQUEST
        raise MCPError(code=code, message=str(params.get("message", "request refused"))[:MAX_ERROR_CHARS])
    return await call_next(ctx)


def _argument_errors(tool_name: str, error: ValidationError) -> str:
    """'invalid arguments for neural_predict: input.0.3: Input should be a valid number; ...'"""
    errors = error.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in errors[:5]]
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f"invalid arguments for {tool_name}: " + "; ".join(parts) + more


# ----------------------------------------------------------------------------- transports


_ID_IN_PREFIX = re.compile(rb'"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,200}")')


def _leading_id(prefix: bytes):
    """The JSON-RPC id in the first bytes of a message, if it comes before its params."""
    head = prefix[:4096].split(b'"params"', 1)[0]
    match = _ID_IN_PREFIX.search(head)
    try:
        return None if match is None else json.loads(match.group(1))
    except ValueError:
        return None


def _refusal(request_id, code: int, message: str) -> dict:
    """A stand-in request that ``_answer_refused`` answers with this error."""
    return {"jsonrpc": "2.0", "id": request_id, "method": REFUSED_METHOD,
            "params": {"code": code, "message": message}}


REFUSED_NULL_METHOD = "pymicro/refused_null_id"  # stand-in for a message whose id cannot be answered


def _usable_id(request_id) -> bool:
    """Whether a JSON-RPC id can be echoed: an integer or a short string (not a bool, float,
    null, array or object)."""
    return (isinstance(request_id, str) and len(request_id) <= 200) or (
        isinstance(request_id, int) and not isinstance(request_id, bool))


def _stand_in(request_id, code: int, message: str) -> str:
    """The line the SDK reads in place of one it cannot serve: a request that ``_answer_refused``
    answers with this error, or (id not usable) a notification that ``_AnswerMalformed`` answers
    with ``"id": null``, as JSON-RPC 2.0 asks."""
    if _usable_id(request_id):
        return json.dumps(_refusal(request_id, code, message)) + "\n"
    return json.dumps({"jsonrpc": "2.0", "method": REFUSED_NULL_METHOD,
                       "params": {"code": code, "message": message}}) + "\n"


def _problem(parsed: dict, error: ValidationError) -> tuple[int, str]:
    """The JSON-RPC error code and a short message for a message that is JSON but not JSON-RPC."""
    errors = error.errors(include_url=False, include_input=False)
    if (parsed.get("jsonrpc") == "2.0" and isinstance(parsed.get("method"), str) and "params" in parsed
            and not isinstance(parsed["params"], dict)):
        return INVALID_PARAMS, "invalid params: params must be an object"
    shown = "; ".join(sorted({f"{'.'.join(str(p) for p in e['loc'][1:]) or '(message)'}: {e['msg']}"
                              for e in errors})[:4])
    return INVALID_REQUEST, f"message is not a valid JSON-RPC 2.0 request ({shown})"[:500]


def triage(line: str) -> list[str]:
    """What the SDK reads for one stdin line: the line itself when it is a JSON-RPC message the
    SDK serves, else stand-ins that answer it with an error (see :func:`_stand_in`). A message
    with an id always gets an answer: malformed JSON with a readable id, a wrong ``jsonrpc``,
    ``method`` or ``params``, an id that is null, a bool, a float or an object (the SDK would
    take such a message for a notification and never answer), a batch (each element). Only a
    message with no id at all is dropped (logged): there is no one to answer."""
    try:
        message = jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as e:
        error = e
    else:
        if not isinstance(message, JSONRPCNotification) or '"id"' not in line:
            return [line]
        try:
            parsed = json.loads(line)
        except (ValueError, RecursionError):
            return [line]
        if not isinstance(parsed, dict) or "id" not in parsed:
            return [line]
        return [_stand_in(None, INVALID_REQUEST, f"invalid request id {json.dumps(parsed['id'])[:40]}: an id "
                                                 "must be an integer or a string")]
    errors = error.errors(include_url=False, include_input=False)
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError):
        parsed = None
    if parsed is None or any(e["type"] == "json_invalid" for e in errors):  # the SDK's parser refuses it
        request_id = _leading_id(line[:4096].encode("utf-8", "replace"))
        message = f"message is not valid JSON ({errors[0]['msg'] if errors else 'unparseable'})"
        if request_id is None:
            logger.warning("dropped a message that is not JSON and has no readable id")
            return []
        return [_stand_in(request_id, PARSE_ERROR, message)]
    if isinstance(parsed, list):
        ids = [m["id"] for m in parsed if isinstance(m, dict) and "id" in m]
        message = "JSON-RPC batches are not supported (MCP sends one message per line): send each request alone"
        return [_stand_in(i, INVALID_REQUEST, message) for i in ids] or [_stand_in(None, INVALID_REQUEST, message)]
    if not isinstance(parsed, dict) or "id" not in parsed:
        logger.warning("dropped a malformed message without an id")
        return []
    code, message = _problem(parsed, error)
    request_id = parsed["id"]
    if not _usable_id(request_id):
        message = f"invalid request id {json.dumps(request_id)[:40]}: an id must be an integer or a string; " + message
    return [_stand_in(request_id, code, message)]


class _BoundedLines:
    """stdin as an async iterator of the lines the SDK reads: each line of at most ``limit``
    bytes as :func:`triage` makes it (itself, or stand-ins answered with an error).

    A longer line is never held in memory: it is read past in 1 MiB pieces, and if its id
    came before its params it is replaced by a stand-in request that the server answers
    with a JSON-RPC error naming the size; otherwise it is dropped (and logged).
    """

    def __init__(self, stream, limit: int = MAX_REQUEST_BYTES):
        self._stream = stream
        self._limit = limit
        self._pending: list[str] = []

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        while not self._pending:
            lines = await anyio.to_thread.run_sync(self._next, abandon_on_cancel=True)
            if lines is None:
                raise StopAsyncIteration
            self._pending.extend(lines)
        return self._pending.pop(0)

    def _next(self) -> list[str] | None:
        data = self._stream.readline(self._limit + 1)
        if not data:
            return None
        if data.endswith(b"\n") or len(data) <= self._limit:
            return triage(data.decode("utf-8", errors="replace"))
        size = len(data)
        while True:
            piece = self._stream.readline(1 << 20)
            size += len(piece)
            if not piece or piece.endswith(b"\n"):
                break
        request_id = _leading_id(data)
        logger.warning("refused a request line of %d bytes (limit %d), id %r", size, self._limit, request_id)
        if request_id is None:
            return []
        return [json.dumps(_refusal(request_id, INVALID_REQUEST,
                                    f"request of {size} bytes is over this server's limit of "
                                    f"{self._limit} bytes; send fewer rows per call")) + "\n"]


class _AnswerMalformed:
    """The server's read stream (the SDK's ``ReadStream`` protocol), in which the stand-in for a
    message whose id cannot be echoed is answered here, on the write stream, with ``"id": null``
    (the SDK answers only requests, and a request's id cannot be null)."""

    def __init__(self, stream, write):
        self._stream = stream
        self._write = write

    @property
    def last_context(self):
        return getattr(self._stream, "last_context", None)

    async def _fix(self, item):
        while True:
            message = getattr(item, "message", None)
            if not (isinstance(message, JSONRPCNotification) and message.method == REFUSED_NULL_METHOD):
                if isinstance(item, Exception):
                    logger.warning("dropped an unreadable message: %s", str(item)[:200])
                return item
            params = message.params or {}
            await self._write.send(SessionMessage(JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(
                code=int(params.get("code", INVALID_REQUEST)), message=str(params.get("message"))[:MAX_ERROR_CHARS]))))
            item = await self._stream.receive()

    async def receive(self):
        return await self._fix(await self._stream.receive())

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._fix(await self._stream.__anext__())

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self):
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc):
        return await self._stream.__aexit__(*exc)


async def serve_stdio(server: PymicroServer, max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
    """Serve one client over stdin/stdout (stdout carries only the protocol)."""
    lowlevel = server._lowlevel_server  # what MCPServer.run_stdio_async drives; it takes no stdin
    async with stdio_server(stdin=_BoundedLines(sys.stdin.buffer, max_request_bytes)) as (read, write):
        await lowlevel.run(_AnswerMalformed(read, write), write, lowlevel.create_initialization_options())


LOOPBACK_NAMES = ("localhost",)


def check_host(host: str, allow_remote: bool = False) -> str:
    """The address to bind for ``host``: loopback only unless ``allow_remote``."""
    if host in LOOPBACK_NAMES:
        return "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise PymicroError(f"refusing to listen on {host!r}: the MCP server has no authentication, so it "
                           "listens on loopback only (127.0.0.1, ::1, localhost); pass --allow-remote to "
                           "listen there anyway")
    return host


def transport_security(address: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection for a loopback ``address``: only Host and Origin headers naming a
    loopback host are accepted. The SDK turns it on by itself for 127.0.0.1, ::1 and localhost
    only, so 127.0.0.2 (all of 127.0.0.0/8 is loopback) was left open. None (off) for a remote
    address: clients reach it under names this server cannot know; use a token there."""
    if not ipaddress.ip_address(address).is_loopback:
        return None
    shown = f"[{address}]" if ":" in address else address
    hosts = list(dict.fromkeys([f"{shown}:*", "127.0.0.1:*", "localhost:*", "[::1]:*"]))
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=[f"http://{h}" for h in hosts])


class BearerToken:
    """ASGI middleware: every HTTP request must carry ``Authorization: Bearer <token>``, else 401.
    Loopback alone does not keep out the other users of a shared machine; a token does."""

    def __init__(self, app, token: str):
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                body = b'{"error": "unauthorized: send Authorization: Bearer <token>"}'
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="pymicro"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


MIN_TOKEN_CHARS = 16


async def serve_http(server: PymicroServer, host: str = "127.0.0.1", port: int = 8765, *,
                     allow_remote: bool = False, max_request_bytes: int = MAX_REQUEST_BYTES,
                     log_level: str = "WARNING", token: str | None = None) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` (port 0: any free port; the URL is
    printed to stderr once the socket listens). ``token``: require ``Authorization: Bearer
    <token>`` on every request."""
    import uvicorn

    address = check_host(host, allow_remote)
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise PymicroError(f"the token must have at least {MIN_TOKEN_CHARS} characters")
    if allow_remote and not ipaddress.ip_address(address).is_loopback and token is None:
        logger.warning("listening on %s with no authentication: anyone who can reach it can use it", address)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address, port))
    except OSError as e:
        sock.close()
        raise PymicroError(f"cannot listen on {address}:{port}: {e.strerror}") from None
    sock.listen(128)
    port = sock.getsockname()[1]
    shown = f"[{address}]" if family == socket.AF_INET6 else address
    app = server.streamable_http_app(host=address, max_request_body_size=max_request_bytes,
                                     transport_security=transport_security(address))
    if token is not None:
        app = BearerToken(app, token)
    config = uvicorn.Config(app, log_config=None, access_log=False, log_level=log_level.lower(),
                            lifespan="on", timeout_graceful_shutdown=2)
    print(f"pymicro mcp: streamable HTTP on http://{shown}:{port}/mcp (store {server.registry.root}"
          + ("; bearer token required)" if token is not None else ")"),
          file=sys.stderr, flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])

