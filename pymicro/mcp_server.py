"""pymicro's MCP server: registered models and their tools, served to agents.

    pymicro mcp                                   # stdio: what an MCP client spawns
    pymicro mcp --transport http --port 8765      # streamable HTTP, http://127.0.0.1:8765/mcp
    python -m pymicro.mcp_server ...              # the same, without the CLI

Built on the official ``mcp`` SDK (2.x, ``MCPServer``). It serves the model store of
:mod:`pymicro.registry` (``--store``, else ``$PYMICRO_HOME/models``, else
``~/.pymicro/models``).

Tools: ``neural_predict``, ``neural_model_status``, ``list_models``, ``verify_model``,
``neural_train``. Resources: ``pymicro://models/{model_id}`` (a model's metadata as JSON);
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
  the SDK's DNS-rebinding protection is on for loopback hosts. There is no authentication.
* Nothing is written to stdout except the protocol; logs go to stderr.
* One training job at a time per server; a second ``neural_train`` is refused, not queued.

Adding a tool: write one ``async def`` under "Tools" below, decorated with :func:`tool`,
with typed parameters (``Annotated[..., Field(...)]`` for bounds, ``Literal`` for enums), a
``ctx: Context`` keyword argument and a pydantic model as its return type (the structured
output). Long work runs through :class:`Progress`, which sends one MCP progress
notification per step and stops the work when the client cancels. Nothing else changes.
"""

from __future__ import annotations

import argparse
import functools
import ipaddress
import json
import logging
import math
import re
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import numpy as np
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, Resource, ToolAnnotations, jsonrpc_message_adapter
from pydantic import BaseModel, Field, ValidationError

from .errors import PymicroError
from .registry import ID_MAX_LEN, ID_PATTERN, STATUSES, ModelRecord, Registry

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

# ----------------------------------------------------------------------------- results


class PredictResult(BaseModel):
    model_id: str
    backend: str
    labels: list[str] = Field(description="Class labels, in the order of each probability row.")
    probabilities: list[list[float]] = Field(description="One row of class probabilities per input row.")
    predicted: list[str] = Field(description="The most probable label of each row.")
    predicted_index: list[int] = Field(description="The index of that label in `labels`.")


class ModelSummary(BaseModel):
    model_id: str
    name: str
    status: str
    created: str
    params: int
    input_size: int
    n_classes: int
    content_hash: str
    resource_uri: str


class ModelList(BaseModel):
    models: list[ModelSummary]
    total: int = Field(description="How many models matched (models holds at most `limit`).")
    store: str


class ModelStatus(BaseModel):
    model_id: str
    name: str
    status: str
    created: str
    params: int
    flops: int
    input_size: int
    n_classes: int
    labels: list[str]
    feature_names: list[str]
    layers: list[str]
    has_normalization: bool
    content_hash: str
    blob_size: int
    metadata: dict[str, str] = Field(description="The blob's own metadata (strings).")
    metrics: dict[str, Any] = Field(description="Metrics recorded in the registry (training, evaluation).")
    has_report: bool
    resource_uri: str


class Check(BaseModel):
    name: str
    passed: bool
    detail: str


class VerificationResult(BaseModel):
    model_id: str
    passed: bool
    checks: list[Check]
    samples: int
    max_abs_diff: float = Field(description="Largest |native - reference| probability difference.")
    seconds: float


class TrainOutcome(BaseModel):
    model_id: str
    name: str
    preset: str
    architecture: str
    params: int
    data: dict[str, Any] = Field(description="Symbols, dates, rows per split (chronological), features, "
                                             "horizon and threshold.")
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    seconds: float
    seconds_per_epoch: float
    device: str
    validation: dict[str, float] = Field(description="Loss and accuracy of both splits at the best epoch.")
    performance: dict[str, Any] = Field(description="Out-of-sample (test split) accuracy with a confidence "
                                                    "interval, beside the majority-class baseline on the same "
                                                    "rows; the same figures `pymicro train` reports.")
    parity: dict[str, Any] = Field(description="The frozen blob (native core) against tinygrad on the "
                                               "validation rows.")
    resource_uri: str


# ----------------------------------------------------------------------------- plumbing


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Any]
    title: str
    annotations: ToolAnnotations


TOOLS: list[ToolSpec] = []
"""Every tool the server offers, in the order it lists them (filled by :func:`tool`)."""

_F = TypeVar("_F", bound=Callable[..., Any])


def tool(title: str, *, read_only: bool = True, idempotent: bool = True,
         destructive: bool = False) -> Callable[[_F], _F]:
    """Register an ``async def`` as a tool of every server :func:`build_server` makes.

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

    def __init__(self, registry: Registry, *, log_level: str = "WARNING"):
        from . import __version__

        super().__init__(
            name="pymicro", version=__version__, log_level=log_level,
            instructions="Micro neural networks (under 10,000 parameters) for trading signals. "
                         "list_models shows the registered models; neural_predict runs one on rows "
                         "of features; neural_model_status describes one; verify_model checks one; "
                         "neural_train trains one on the embedded market data and registers it.",
            middleware=[_answer_refused])
        self.registry = registry
        self.models = ModelCache(registry)
        self.train_lock = threading.Lock()
        for spec in TOOLS:
            self.add_tool(spec.fn, title=spec.title, annotations=spec.annotations)
        self.resource(RESOURCE_PREFIX + "{model_id}", name="model", title="A registered model",
                      description="A registered model's metadata, parameters, metrics and status (JSON).",
                      mime_type="application/json")(model_resource)

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
                uri=RESOURCE_PREFIX + r.id, name=r.id, title=f"{r.name} ({r.params} params, {r.status})",
                description=f"{r.input_size} inputs -> {r.n_classes} classes", mime_type="application/json"))
        return resources


def build_server(registry: Registry | None = None, *, log_level: str = "WARNING") -> PymicroServer:
    """A server over ``registry`` (default: the default store) with every tool in :data:`TOOLS`."""
    return PymicroServer(registry if registry is not None else Registry(), log_level=log_level)


def _server(ctx: Context) -> PymicroServer:
    return ctx.mcp_server  # type: ignore[return-value]


async def _answer_refused(ctx, call_next):
    """Middleware: answer the stand-in for a stdio line that could not be served (too long,
    not JSON, nested too deeply, not JSON-RPC) with the JSON-RPC error it carries."""
    if ctx.method == REFUSED_METHOD:
        params = ctx.params or {}
        code = params.get("code") if params.get("code") in (PARSE_ERROR, INVALID_REQUEST) else INVALID_REQUEST
        raise MCPError(code=code, message=str(params.get("message", "request refused"))[:MAX_ERROR_CHARS])
    return await call_next(ctx)


def _argument_errors(tool_name: str, error: ValidationError) -> str:
    """'invalid arguments for neural_predict: input.0.3: Input should be a valid number; ...'"""
    errors = error.errors(include_url=False, include_input=False)
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '(arguments)'}: {e['msg']}" for e in errors[:5]]
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return f"invalid arguments for {tool_name}: " + "; ".join(parts) + more


def _summary(record: ModelRecord) -> ModelSummary:
    return ModelSummary(model_id=record.id, name=record.name, status=record.status, created=record.created,
                        params=record.params, input_size=record.input_size, n_classes=record.n_classes,
                        content_hash=record.content_hash, resource_uri=RESOURCE_PREFIX + record.id)


def _status(server: PymicroServer, model_id: str) -> ModelStatus:
    record, model = server.models.get(model_id)
    info = model.info
    return ModelStatus(
        model_id=record.id, name=record.name, status=record.status, created=record.created,
        params=info.params, flops=info.flops, input_size=info.input_size, n_classes=info.n_classes,
        labels=list(info.labels), feature_names=list(info.feature_names), layers=list(info.layers),
        has_normalization=info.has_normalization, content_hash=record.content_hash,
        blob_size=record.blob_size, metadata={str(k): str(v) for k, v in info.metadata.items()},
        metrics=record.metrics, has_report=record.report_file is not None,
        resource_uri=RESOURCE_PREFIX + record.id)


async def model_resource(model_id: str, ctx: Context) -> str:
    """``pymicro://models/{model_id}``: the model's status as JSON."""
    try:
        return _status(_server(ctx), model_id).model_dump_json(indent=1)
    except PymicroError as e:
        raise ResourceNotFoundError(str(e)) from None


# ----------------------------------------------------------------------------- tools


@tool("Predict with a registered model")
async def neural_predict(model_id: ModelId, input: Rows, backend: Backend = "native", *,
                         ctx: Context) -> PredictResult:
    """Class probabilities, labels and the predicted class for rows of features.

    Each row must be as wide as the model's input (neural_model_status gives input_size and
    feature_names). backend "native" is the C++ core; "reference" the float64 numpy reference.
    """
    width = len(input[0])
    if len(input) * width > MAX_CELLS:
        raise ToolError(f"{len(input)} rows x {width} features = {len(input) * width} numbers; "
                        f"at most {MAX_CELLS} a call")
    _, model = _server(ctx).models.get(model_id, backend)
    for i, row in enumerate(input):
        if len(row) != model.input_size:
            raise ToolError(f"input[{i}] has {len(row)} features; model {model_id} takes {model.input_size}")
    with np.errstate(over="ignore"):  # a finite float64 beyond float32's range: the core names it
        x = np.asarray(input, dtype=np.float32)
    probs = np.asarray(model.predict(x), dtype=np.float64)
    index = probs.argmax(axis=1)
    labels = list(model.labels)
    return PredictResult(model_id=model_id, backend=backend, labels=labels,
                         probabilities=np.round(probs, 8).tolist(), predicted=[labels[i] for i in index],
                         predicted_index=index.tolist())


@tool("Model status")
async def neural_model_status(model_id: ModelId, *, ctx: Context) -> ModelStatus:
    """A registered model's metadata, architecture, parameter count, metrics and status."""
    return _status(_server(ctx), model_id)


@tool("List registered models")
async def list_models(status: Status | None = None, name: ModelName | None = None,
                      limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 100, *,
                      ctx: Context) -> ModelList:
    """The registered models, newest last (at most `limit`); optionally one status or name only."""
    server = _server(ctx)
    records = server.registry.list(status=status, name=name)
    return ModelList(models=[_summary(r) for r in records[-limit:]], total=len(records),
                     store=str(server.registry.root))


def _verify(report: Callable, registry: Registry, model_id: str, n_samples: int, seed: int,
              tolerance: float) -> VerificationResult:
    """The checks of verify_model; ``report(done, message)`` after each step."""
    from .errors import InputError

    t0 = time.perf_counter()
    checks: list[Check] = []
    chunk = 4096
    n_chunks = -(-n_samples // chunk)
    total = 4 + n_chunks

    def check(name: str, passed: bool, detail: str) -> None:
        checks.append(Check(name=name, passed=bool(passed), detail=detail))
        report(len(checks) + min(n_done, n_chunks), f"{name}: {'pass' if passed else 'FAIL'}")

    n_done = 0
    blob = registry.read_blob(model_id)  # RegistryError if the file no longer matches the index
    from .model import load

    native, reference = load(blob), load(blob, backend="reference")
    check("integrity", True, f"{len(blob)} bytes, sha256 matches the index, the core's parser accepts it")

    rng = np.random.default_rng(seed)
    max_diff, worst_sum, finite, in_range = 0.0, 0.0, True, True
    for start in range(0, n_samples, chunk):
        x = rng.normal(0.0, 2.0, size=(min(chunk, n_samples - start), native.input_size)).astype(np.float32)
        p, q = native.predict(x), reference.predict(x)
        max_diff = max(max_diff, float(np.abs(p.astype(np.float64) - q).max()))
        finite &= bool(np.isfinite(p).all())
        in_range &= bool(((p >= 0) & (p <= 1)).all())
        worst_sum = max(worst_sum, float(np.abs(p.astype(np.float64).sum(axis=1) - 1).max()))
        n_done += 1
        report(len(checks) + n_done, f"parity: {start + len(x)}/{n_samples} rows")
    check("native vs reference", max_diff <= tolerance,
          f"max |native - reference| = {max_diff:.3g} over {n_samples} seeded rows (tolerance {tolerance:g})")
    check("probabilities", finite and in_range and worst_sum <= 1e-5,
          f"finite: {finite}, in [0, 1]: {in_range}, max |row sum - 1| = {worst_sum:.3g}")

    x = rng.normal(0.0, 2.0, size=(min(64, n_samples), native.input_size)).astype(np.float32)
    batch = native.predict(x)
    alone = np.stack([native.predict(row) for row in x])
    same = bool(np.array_equal(batch, alone))
    bad_row = x[:1].copy()
    bad_row[0, 0] = np.nan
    try:
        native.predict(bad_row)
        nan_refused = False
    except InputError:
        nan_refused = True
    check("determinism and NaN policy", same and nan_refused,
          f"{len(x)} rows bit-identical alone and batched: {same}; a NaN input is refused: {nan_refused}")
    assert len(checks) + n_chunks == total
    return VerificationResult(model_id=model_id, passed=all(c.passed for c in checks), checks=checks,
                              samples=n_samples, max_abs_diff=max_diff, seconds=time.perf_counter() - t0)


@tool("Verify a registered model: integrity and runtime parity")
async def verify_model(model_id: ModelId,
                       n_samples: Annotated[int, Field(ge=16, le=MAX_VERIFY_SAMPLES)] = 4096,
                       seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0,
                       tolerance: Annotated[float, Field(gt=0, le=1e-2)] = 1e-5, *,
                       ctx: Context) -> VerificationResult:
    """Verify a model runs as its blob says (not whether its figures are real: that is
    validation, pymicro.validation): blob integrity against the index, the C++ core against the float64 numpy
    reference on n_samples seeded random rows, probabilities finite and summing to 1, a row
    giving the same bits alone and batched, NaN inputs refused. Sends progress notifications
    (one per check and per 4096 rows) when the request carries a progress token."""
    server = _server(ctx)
    server.registry.get(model_id)  # an unknown id fails here, before any work
    n_chunks = -(-n_samples // 4096)
    return await Progress(ctx, total=4 + n_chunks).run(_verify, server.registry, model_id, n_samples,
                                                        seed, tolerance)


# neural_train: registered only when the training stack imports (tinygrad, pandas, datasets).
try:
    from .data import embedded_symbols
    from .features import FEATURE_SETS
    from .trainer import SYMBOL_ALIASES

    _PRESETS_WITH_DATA = tuple(FEATURE_SETS)
    _SYMBOLS = tuple(embedded_symbols()) + tuple(a for a in SYMBOL_ALIASES if a not in embedded_symbols())
except (ImportError, OSError, PymicroError) as _e:  # pragma: no cover - a stripped-down install
    logger.info("neural_train unavailable: %s", _e)
    _PRESETS_WITH_DATA, _SYMBOLS = (), ()


def _train(report: Callable, registry: Registry, name: str, preset: str, epochs: int, **options) -> TrainOutcome:
    """pymicro.trainer.run_training (what `pymicro train` runs), then register the model."""
    import tempfile

    from .trainer import run_training

    report(0, f"building the {preset} dataset")

    def epoch_done(epoch: int, total: int, m: dict) -> None:
        report(epoch, f"epoch {epoch}/{total}: train loss {m['train_loss']:.4f}, val loss {m['val_loss']:.4f}, "
                      f"val acc {m['val_acc']:.3f}")

    with tempfile.TemporaryDirectory(prefix="pymicro-mcp-train-") as out_dir:
        run = run_training(preset, name=name, epochs=epochs, out_dir=out_dir, progress=epoch_done, plot=False,
                           **options)
        training_report = json.loads(run.report_path.read_text())
    for key in ("blob_path", "report_path", "plot_path", "model_id"):  # files of the temporary folder
        training_report.pop(key, None)
    training_report["tool"] = "neural_train"
    model_id = registry.add(run.blob, name, metrics=run.performance, report=training_report)
    stopped = run.settings.get("stopped_early")
    report(epochs + 1, f"registered {model_id}" + (f" (stopped early after epoch {run.settings['epochs_run']})"
                                                   if stopped else ""))
    best = {k: float(v[run.best_epoch - 1]) for k, v in run.history.items()}
    return TrainOutcome(model_id=model_id, name=name, preset=preset, architecture=run.spec.describe(),
                        params=run.spec.params, data=run.data, epochs_run=int(run.settings["epochs_run"]),
                        best_epoch=run.best_epoch, stopped_early=bool(stopped), seconds=run.training_seconds,
                        seconds_per_epoch=run.seconds_per_epoch, device=str(run.settings["device"]),
                        validation=best, performance=run.performance, parity=run.parity,
                        resource_uri=RESOURCE_PREFIX + model_id)


if _PRESETS_WITH_DATA:
    TrainPreset = Literal[_PRESETS_WITH_DATA]  # type: ignore[valid-type]
    Symbol = Literal[_SYMBOLS]  # type: ignore[valid-type]

    @tool("Train a model on the embedded market data and register it", read_only=False, idempotent=False)
    async def neural_train(
            preset: TrainPreset = "momentum",
            symbols: Annotated[list[Symbol], Field(min_length=1, max_length=len(_SYMBOLS))] | None = None,
            hidden_sizes: Annotated[list[Annotated[int, Field(ge=1, le=256)]],
                                    Field(min_length=1, max_length=8)] | None = None,
            use_attention: bool | None = None,
            epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 50,
            batch_size: Annotated[int, Field(ge=8, le=4096)] = 32,
            learning_rate: Annotated[float, Field(gt=0, le=0.1)] = 1e-3,
            patience: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] | None = 10,
            horizon: Annotated[int, Field(ge=1, le=60, description="Label horizon in bars.")] = 5,
            threshold: Annotated[float, Field(gt=0, le=5, description="Label threshold in volatility units.")] = 0.5,
            lookback_days: Annotated[int, Field(ge=100, le=100_000)] | None = None,
            seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
            name: ModelName | None = None, *,
            ctx: Context) -> TrainOutcome:
        """Train a network (tinygrad) on the embedded daily data of `symbols` (default: all), as
        `pymicro train` does: features and labels, a chronological train / validation / test split
        with an embargo, the best-validation-loss epoch kept, frozen, checked against tinygrad, and
        measured on the test split beside the majority-class baseline; then registered. `hidden_sizes`
        and `use_attention` change the preset's architecture (10,000 parameters at most).
        Progress: 0 while the data is prepared, one notification per epoch, and epochs + 1 (the
        total) once the model is registered, early stopping or not. One training job at a time
        per server: a second call while one runs is refused."""
        server = _server(ctx)
        if not server.train_lock.acquire(blocking=False):
            raise ToolError("a training job is already running on this server; try again when it has finished")
        try:
            if symbols:  # GOOGL is the embedded GOOG: one series, once
                symbols = list(dict.fromkeys(SYMBOL_ALIASES.get(s, s) for s in symbols))
            options = {"symbols": symbols or None, "hidden_sizes": hidden_sizes,
                       "use_attention": use_attention, "batch_size": batch_size, "learning_rate": learning_rate,
                       "patience": patience, "horizon": horizon, "threshold": threshold,
                       "lookback_days": lookback_days, "seed": seed}
            return await Progress(ctx, total=epochs + 1).run(_train, server.registry, name or preset, preset,
                                                             epochs, **options)
        finally:
            server.train_lock.release()


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


class _BoundedLines:
    """stdin as an async iterator of lines of at most ``limit`` bytes.

    A longer line is never held in memory: it is read past in 1 MiB pieces, and if its id
    came before its params it is replaced by a stand-in request that the server answers
    with a JSON-RPC error naming the size; otherwise it is dropped (and logged).
    """

    def __init__(self, stream, limit: int = MAX_REQUEST_BYTES):
        self._stream = stream
        self._limit = limit

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        line = await anyio.to_thread.run_sync(self._next, abandon_on_cancel=True)
        if line is None:
            raise StopAsyncIteration
        return line

    def _next(self) -> str | None:
        while True:
            data = self._stream.readline(self._limit + 1)
            if not data:
                return None
            if data.endswith(b"\n") or len(data) <= self._limit:
                return data.decode("utf-8", errors="replace")
            size = len(data)
            while True:
                piece = self._stream.readline(1 << 20)
                size += len(piece)
                if not piece or piece.endswith(b"\n"):
                    break
            request_id = _leading_id(data)
            logger.warning("refused a request line of %d bytes (limit %d), id %r", size, self._limit, request_id)
            if request_id is not None:
                return json.dumps(_refusal(request_id, INVALID_REQUEST,
                                           f"request of {size} bytes is over this server's limit of "
                                           f"{self._limit} bytes; send fewer rows per call")) + "\n"


class _AnswerMalformed:
    """The server's read stream (the SDK's ``ReadStream`` protocol), in which each message the
    SDK could not parse (not JSON, nested too deeply, not JSON-RPC) becomes a stand-in request
    answered with a JSON-RPC error, when its id can be read. The SDK alone would drop such a
    line, and the client would wait for an answer that never comes."""

    def __init__(self, stream):
        self._stream = stream

    @property
    def last_context(self):
        return getattr(self._stream, "last_context", None)

    def _fix(self, item):
        if not isinstance(item, ValidationError):
            return item
        errors = item.errors(include_url=False)
        found = errors[0].get("input") if errors else None
        if isinstance(found, str):
            request_id, code = _leading_id(found[:4096].encode("utf-8", "replace")), PARSE_ERROR
            message = f"message is not valid JSON ({errors[0]['msg']})"
        elif isinstance(found, dict):
            request_id, code = found.get("id"), INVALID_REQUEST
            message = "message is not a valid JSON-RPC request"
        else:
            return item
        if isinstance(request_id, bool) or not isinstance(request_id, (int, str)) or len(str(request_id)) > 200:
            logger.warning("dropped a malformed message without a readable id")
            return item
        logger.warning("answered a malformed message, id %r: %s", request_id, message)
        return SessionMessage(jsonrpc_message_adapter.validate_python(_refusal(request_id, code, message)))

    async def receive(self):
        return self._fix(await self._stream.receive())

    def __aiter__(self):
        return self

    async def __anext__(self):
        return self._fix(await self._stream.__anext__())

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
        await lowlevel.run(_AnswerMalformed(read), write, lowlevel.create_initialization_options())


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


async def serve_http(server: PymicroServer, host: str = "127.0.0.1", port: int = 8765, *,
                     allow_remote: bool = False, max_request_bytes: int = MAX_REQUEST_BYTES,
                     log_level: str = "WARNING") -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` (port 0: any free port; the URL is
    printed to stderr once the socket listens)."""
    import uvicorn

    address = check_host(host, allow_remote)
    if allow_remote and not ipaddress.ip_address(address).is_loopback:
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
    app = server.streamable_http_app(host=address, max_request_body_size=max_request_bytes)
    config = uvicorn.Config(app, log_config=None, access_log=False, log_level=log_level.lower(),
                            lifespan="on", timeout_graceful_shutdown=2)
    print(f"pymicro mcp: streamable HTTP on http://{shown}:{port}/mcp (store {server.registry.root})",
          file=sys.stderr, flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


# ----------------------------------------------------------------------------- command line


def cmd_mcp(args) -> int:
    """Run the server the parsed ``args`` describe (``pymicro mcp``; see pymicro.mcp_cli)."""
    if not 0 <= args.port <= 65535:
        raise PymicroError(f"--port must be in 0..65535, got {args.port}")
    if args.transport == "http":
        check_host(args.host, args.allow_remote)  # refuse before anything starts
    server = build_server(Registry(args.store), log_level=args.log_level)
    try:
        if args.transport == "http":
            anyio.run(functools.partial(serve_http, server, args.host, args.port, allow_remote=args.allow_remote,
                                        log_level=args.log_level))
        else:
            anyio.run(serve_stdio, server)
    except KeyboardInterrupt:
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m pymicro.mcp_server [options]``: the same as ``pymicro mcp [options]``."""
    from .mcp_cli import DESCRIPTION, arguments

    parser = argparse.ArgumentParser(prog="python -m pymicro.mcp_server", description=DESCRIPTION)
    arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_mcp(args)
    except PymicroError as e:
        print(f"pymicro mcp: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
