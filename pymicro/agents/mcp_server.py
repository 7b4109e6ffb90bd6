"""pymicro's MCP server: registered models and their tools, served to agents.

    pymicro mcp                                   # stdio: what an MCP client spawns
    pymicro mcp --transport http --port 8765      # streamable HTTP, http://127.0.0.1:8765/mcp
    python -m pymicro.agents.mcp_server ...              # the same, without the CLI

Built on the official ``mcp`` SDK (2.x, ``MCPServer``). It serves the model store of
:mod:`pymicro.store.registry` (``--store``, else ``$PYMICRO_HOME/models``, else
``~/.pymicro/models``).

Tools: ``neural_predict``, ``neural_model_status``, ``list_models``, ``verify_model``,
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
  the SDK's DNS-rebinding protection is on for loopback hosts. There is no authentication.
* Nothing is written to stdout except the protocol; logs go to stderr.
* One training job at a time per server (``neural_train``, a walk-forward ``neural_backtest``,
  ``validate_model`` with ``fit="tinygrad"``); a second is refused, not queued.
* Tools read only the embedded data and the store: no path or URL is taken from a client.

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

from pymicro.errors import PymicroError
from pymicro.store.registry import ID_MAX_LEN, ID_PATTERN, STATUSES, ModelRecord, Registry
from pymicro._version import __version__
from pymicro.agents.options import DESCRIPTION, arguments
from pymicro.agents.reasoning import model_settings
from pymicro.agents.reasoning import validate_on_embedded
from pymicro.errors import InputError
from pymicro.evaluation.backtest import LabelledSeries, positions_from_probabilities, run_backtest, walk_forward
from pymicro.market.data import embedded_symbols, load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.market.news import analyze_news as score_headlines
from pymicro.market.news import load_lm_lexicon, validate_headlines
from pymicro.metrics import classification_summary
from pymicro.metrics import majority_class
from pymicro.runtime.model import load
from pymicro.runtime.model import spec_of
from pymicro.training.trainer import run_training

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

        super().__init__(
            name="pymicro", version=__version__, log_level=log_level,
            instructions="Micro neural networks (under 10,000 parameters) for trading signals. "
                         "list_models shows the registered models; neural_predict runs one on rows "
                         "of features; neural_model_status describes one; verify_model checks one runs as "
                         "its blob says; neural_train trains one on the embedded market data and registers "
                         "it; neural_evaluate and neural_backtest measure one beside baselines; "
                         "validate_model looks for leaks and implausible figures; analyze_news scores "
                         "headlines; psycho_symbolic_reason explains a symbol's market, quantitative and "
                         "macro picture from pymicro's features, or judges a model's figures.",
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
    validation, pymicro.evaluation.validation): blob integrity against the index, the C++ core against the float64 numpy
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
    from pymicro.market.data import embedded_symbols
    from pymicro.market.features import FEATURE_SETS
    from pymicro.agents.reasoning import DOMAINS, MAX_DEPTH, MAX_QUERY_CHARS, reason
    from pymicro.training.trainer import SYMBOL_ALIASES

    _PRESETS_WITH_DATA = tuple(FEATURE_SETS)
    _SYMBOLS = tuple(embedded_symbols()) + tuple(a for a in SYMBOL_ALIASES if a not in embedded_symbols())
except (ImportError, OSError, PymicroError) as _e:  # pragma: no cover - a stripped-down install
    logger.info("neural_train unavailable: %s", _e)
    _PRESETS_WITH_DATA, _SYMBOLS = (), ()


def _train(report: Callable, registry: Registry, name: str, preset: str, epochs: int, **options) -> TrainOutcome:
    """pymicro.training.trainer.run_training (what `pymicro train` runs), then register the model."""
    import tempfile


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


# ----------------------------------------------------------------------------- evaluation, backtests, news,
# reasoning and validation on the embedded data (registered with neural_train: they need the same stack)

MAX_HEADLINES = 5000  # headlines in one analyze_news call
MAX_WF_BLOCKS = 40  # retrains in one walk-forward neural_backtest
MAX_WF_EPOCHS = 50  # epochs per retrain
LM_LICENCE = ("Loughran-McDonald Master Dictionary (Loughran and McDonald, University of Notre Dame): its authors "
              "provide it 'for use by individual researchers. For commercial licenses please contact us.' pymicro "
              "does not ship it; this server reads it at run time. Whoever uses the scores is responsible for "
              "its terms (docs/features.md).")
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.^_-]{0,15}$"
Date = Annotated[str, Field(pattern=DATE_PATTERN, description="A date, YYYY-MM-DD.")]
Bps = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class EvaluationOutcome(BaseModel):
    model_id: str
    source: str = Field(description="'embedded' (a symbol and dates of the embedded data) or 'rows' (given).")
    symbol: str | None
    period: list[str] | None = Field(description="First and last date of the rows evaluated (embedded only).")
    n: int
    labels: list[str]
    classification: dict[str, Any] = Field(description="accuracy with its confidence interval, balanced "
                                                       "accuracy, per-class recall, confusion matrix, the "
                                                       "majority-class baseline on the same rows and the "
                                                       "one-sided binomial p-value of beating it.")
    out_of_sample: dict[str, Any] = Field(description="status ('out_of_sample', 'overlaps_training', 'unknown'), "
                                                      "the blob's train_end/test_start, rows before and from "
                                                      "test_start, and the classification of the rows from "
                                                      "test_start alone when there is an overlap.")
    trading: dict[str, Any] | None = Field(description="Embedded only: the model's positions backtested net of "
                                                       "costs, beside buy-and-hold, majority-class and momentum.")
    notes: list[str]


class BacktestOutcome(BaseModel):
    mode: str = Field(description="'frozen' (one registered model on every bar) or 'walk_forward' (retrained "
                                  "before every test block on earlier data only).")
    model: str
    symbol: str
    start: str
    end: str
    periods: int
    metrics: dict[str, Any] = Field(description="Metrics of the strategy and of each baseline on the same dates "
                                                "and costs: total/annualised return, Sharpe, Sortino, max "
                                                "drawdown, Calmar, profit factor, win rate, turnover, exposure.")
    classification: dict[str, Any] | None
    windows: list[dict[str, Any]] = Field(description="Walk-forward blocks: training and test dates, rows.")
    settings: dict[str, Any]
    notes: list[str]


class NewsDay(BaseModel):
    date: str
    symbol: str
    n_headlines: int
    n_words: int
    n_positive: int
    n_negative: int
    n_uncertainty: int
    n_litigious: int
    tone: float = Field(description="(positive - negative) / (positive + negative) over the day's headlines; "
                                    "0 when they hold neither.")


class NewsAnalysis(BaseModel):
    days: list[NewsDay] = Field(description="One row per (symbol, session) with news, sorted by symbol and date.")
    headlines: int
    unassigned: int = Field(description="Headlines after the last session of the calendar (none counted).")
    rules: dict[str, str]
    lexicon: str
    licence: str


class Headline(BaseModel):
    timestamp: Annotated[str, Field(min_length=10, max_length=40, description=
                                    "ISO 8601: '2010-05-03 14:30' (in tz), '2010-05-03T18:30:00Z', or a date "
                                    "alone (taken as published after that day's close).")]
    symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN)]
    headline: Annotated[str, Field(min_length=1, max_length=1000)]


class ReasoningFinding(BaseModel):
    domain: str
    feature: str
    value: float
    reading: str
    direction: int = Field(description="+1 bullish (or plausible), -1 bearish (or implausible), 0 context.")
    strength: float
    rule: str


class ReasoningOutcome(BaseModel):
    query: str
    symbol: str
    requested_date: str | None
    as_of: str | None = Field(description="The bar the answer reads (None when it cannot know).")
    status: str = Field(description="'answered' or 'cannot_know'.")
    intent: list[str]
    domains: list[str]
    depth: int
    answer: str
    confidence: float = Field(description="How well the data at as_of support the answer (docs/mcp.md), "
                                          "not a probability of a price move.")
    features: dict[str, float | None] = Field(description="The reasoning features read, at as_of.")
    inputs: dict[str, float | None] = Field(description="Their inputs (depth >= 2), at as_of.")
    findings: list[ReasoningFinding]
    synthesis: dict[str, Any]
    steps: list[str]
    limitations: list[str]
    validation: dict[str, Any] | None
    rules_version: str


class ValidationOutcome(BaseModel):
    model_id: str
    symbols: list[str]
    answer: str
    confidence: float
    flagged: bool
    leak_suspected: bool
    risks: list[dict[str, Any]]
    metrics: dict[str, Any]
    checks: dict[str, Any]
    settings: dict[str, Any]
    seconds: float


def _day(value) -> str:
    return str(np.datetime64(value, "D"))


def _parse_date(value: str | None, name: str):
    if value is None:
        return None
    try:
        return np.datetime64(value, "D")
    except ValueError:
        raise ToolError(f"{name}: {value!r} is not a calendar date") from None


def _range_mask(dates: np.ndarray, start, end) -> np.ndarray:
    start, end = _parse_date(start, "start"), _parse_date(end, "end")
    if start is not None and end is not None and start > end:
        raise ToolError(f"start {start} is after end {end}")
    d = dates.astype("datetime64[D]")
    mask = np.ones(d.shape, bool)
    if start is not None:
        mask &= d >= start
    if end is not None:
        mask &= d <= end
    return mask


def _embedded_rows(model, symbol: str | None, start: str | None, end: str | None):
    """(settings, symbol, bars, dataset of the rows in [start, end], rows mask) for ``model``'s
    preset on one embedded symbol; features are computed on the whole history (causal) first."""

    s = model_settings(model)
    if s["preset"] is None:
        raise ToolError(f"cannot tell which feature set this model reads ({model.input_size} inputs, no 'preset' "
                        "metadata): pass input rows and labels instead")
    sym = SYMBOL_ALIASES.get(symbol, symbol) if symbol else next(
        (x for x in s["symbols"] if x in embedded_symbols()), "SP500")
    bars = load_embedded([sym])
    ds = make_dataset(bars, s["preset"], horizon=s["horizon"], threshold=s["threshold"])
    if ds.X.shape[1] != model.input_size:
        raise ToolError(f"the {s['preset']} features are {ds.X.shape[1]} wide; the model takes {model.input_size}")
    mask = _range_mask(ds.dates, start, end)
    if not mask.any():
        raise ToolError(f"no labelled rows of {sym} between {start or 'the start'} and {end or 'the end'} "
                        f"(labelled rows run {_day(ds.dates[0])}..{_day(ds.dates[-1])})")
    return s, sym, bars, ds, mask


def _oos(settings: dict, dates: np.ndarray | None, symbol: str | None) -> tuple[dict, np.ndarray | None, list[str]]:
    """Whether the rows are out of sample for the model, from its train_end/test_start metadata."""
    notes = []
    info = {"train_end": settings["train_end"], "test_start": settings["test_start"],
            "trained_on": settings["symbols"]}
    if dates is None:
        info.update(status="unknown", caveat="rows carry no dates: whether the model saw them in training "
                                             "cannot be checked")
        return info, None, notes
    if settings["test_start"] is None:
        info.update(status="unknown", caveat="the blob records no training dates (train_end/test_start "
                                             "metadata): these rows may have been seen in training")
        return info, None, notes
    later = dates.astype("datetime64[D]") >= np.datetime64(settings["test_start"], "D")
    info.update(rows_before_test_start=int((~later).sum()), rows_from_test_start=int(later.sum()))
    if later.all():
        info.update(status="out_of_sample", caveat=f"every row is dated on or after the model's test_start "
                                                   f"({settings['test_start']}): not seen in training")
    else:
        info.update(status="overlaps_training",
                    caveat=f"{int((~later).sum())} of {later.size} rows are dated before the model's test_start "
                           f"({settings['test_start']}): training or early stopping saw that period, so figures "
                           "over them are in-sample and flattering")
    if symbol and settings["symbols"] and symbol not in settings["symbols"]:
        notes.append(f"the model was trained on {', '.join(settings['symbols'])}, not {symbol}; its training "
                     "period still overlaps these dates for those symbols")
    return info, later, notes


def _majority(ds, first_date) -> tuple[int | None, str]:
    """The most frequent label among the rows whose label was known before ``first_date``."""

    known = ds.label_end < first_date
    if known.sum() >= 20:
        return majority_class(ds.y[known], len(ds.label_names)), "labels of the symbol known before the period"
    return None, "the evaluated labels themselves (hindsight: a conservative baseline)"


def _class_positions(n_classes: int):
    return None if n_classes == 3 else np.linspace(-1.0, 1.0, n_classes).tolist()


def _evaluate(model_id: str, model, symbol, start, end, rows, labels, confidence, cost_bps, slippage_bps,
              threshold) -> EvaluationOutcome:

    n_classes = model.n_classes
    names = list(model.labels)
    if rows is not None:
        if labels is None or len(labels) != len(rows):
            raise ToolError(f"labels must give one class per input row ({len(rows)})")
        if max(labels) >= n_classes:
            raise ToolError(f"labels go up to {max(labels)}; model {model_id} has {n_classes} classes (0..{n_classes - 1})")
        for i, row in enumerate(rows):
            if len(row) != model.input_size:
                raise ToolError(f"input[{i}] has {len(row)} features; model {model_id} takes {model.input_size}")
        with np.errstate(over="ignore"):
            x = np.asarray(rows, np.float32)
        y = np.asarray(labels, np.int64)
        pred = model.predict(x).argmax(axis=1)
        settings = model_settings(model)
        oos, _, notes = _oos(settings, None, None)
        majority = int(np.bincount(y, minlength=n_classes).argmax())
        notes.append("majority-class baseline: the given labels themselves (hindsight: a conservative baseline)")
        summary = classification_summary(y, pred, n_classes=n_classes, majority=majority, confidence=confidence,
                                         block=max(1, settings["horizon"]))
        return EvaluationOutcome(model_id=model_id, source="rows", symbol=None, period=None, n=len(y), labels=names,
                                 classification=summary, out_of_sample=oos, trading=None, notes=notes)
    if labels is not None:
        raise ToolError("labels go with input rows; with a symbol and dates the labels come from the data")
    settings, sym, bars, ds, mask = _embedded_rows(model, symbol, start, end)
    part = ds.take(mask)
    probs = model.predict(part.X)
    pred = probs.argmax(axis=1)
    majority, source = _majority(ds, part.dates[0])
    notes = [f"majority-class baseline: {source}"]
    summary = classification_summary(part.y, pred, n_classes=n_classes,
                                     majority=majority if majority is not None else
                                     int(np.bincount(part.y, minlength=n_classes).argmax()),
                                     confidence=confidence, block=ds.horizon)
    oos, later, more = _oos(settings, part.dates, sym)
    notes += more
    if oos["status"] == "overlaps_training" and later.sum() >= 30:
        oos["classification_from_test_start"] = classification_summary(
            part.y[later], pred[later], n_classes=n_classes, majority=summary["majority_class"],
            confidence=confidence, block=ds.horizon)
    trading = None
    if len(part) >= 2:
        close = bars.set_index("date")["close"].reindex(part.dates).to_numpy(np.float64)
        cp = _class_positions(n_classes)
        pos = positions_from_probabilities(probs, threshold, class_positions=cp)
        result = run_backtest(close, pos, cost_bps, slippage_bps, dates=part.dates, majority_class=majority,
                              class_positions=cp)
        trading = result.to_dict()
    return EvaluationOutcome(model_id=model_id, source="embedded", symbol=sym,
                             period=[_day(part.dates[0]), _day(part.dates[-1])], n=len(part), labels=names,
                             classification=summary, out_of_sample=oos, trading=trading, notes=notes)


@dataclass
class _BacktestPlan:
    """What neural_backtest runs, prepared (and refused if too large) before any training."""

    name: str
    symbol: str
    walk: bool
    part: Any  # the Dataset rows of the period
    close: Any  # pandas Series of closes on part.dates
    full: Any  # the symbol's whole Dataset (for the causal majority class)
    model: Any = None
    spec: Any = None
    settings: dict | None = None
    blocks: int = 0


def _backtest_plan(server: PymicroServer, model_id, preset, symbol, start, end, walk, train_window, step,
                   horizon) -> _BacktestPlan:

    model = spec = settings = None
    if model_id is not None:
        _, model = server.models.get(model_id)
        settings, sym, bars, ds, mask = _embedded_rows(model, symbol, start, end)

        spec, name = spec_of(model.described), model_id
    else:
        sym = SYMBOL_ALIASES.get(symbol, symbol) if symbol else "SP500"
        bars = load_embedded([sym])
        ds = make_dataset(bars, preset, horizon=horizon)
        mask = _range_mask(ds.dates, start, end)
        spec, name = preset, preset
    part = ds.take(mask)
    if len(part) < 3:
        raise ToolError(f"{len(part)} labelled rows of {sym} in the period: too few to backtest")
    plan = _BacktestPlan(str(name), sym, walk, part, bars.set_index("date")["close"].reindex(part.dates), ds,
                         model, spec, settings)
    if walk:
        s0 = train_window + part.horizon
        plan.blocks = -(-(len(part) - s0) // step) if s0 < len(part) - 1 else 0
        if plan.blocks < 1:
            raise ToolError(f"{len(part)} labelled rows in the period are too few for train_window {train_window} "
                            f"+ horizon {part.horizon} and a test block: widen the dates or shorten train_window")
        if plan.blocks > MAX_WF_BLOCKS:
            raise ToolError(f"this walk-forward would retrain {plan.blocks} times; at most {MAX_WF_BLOCKS}: raise "
                            f"step (now {step}) or shorten the dates")
    return plan


def _backtest(report: Callable, server: PymicroServer, plan: _BacktestPlan, cost_bps, slippage_bps, threshold,
              long_only, train_window, step, epochs, patience, batch_size, seed) -> BacktestOutcome:

    part, notes = plan.part, []
    n_classes = len(part.label_names)
    cp = _class_positions(n_classes)
    if not plan.walk:
        probs = plan.model.predict(part.X)
        majority, source = _majority(plan.full, part.dates[0])
        result = run_backtest(plan.close.to_numpy(np.float64),
                              positions_from_probabilities(probs, threshold, long_only, cp), cost_bps,
                              slippage_bps, dates=part.dates, majority_class=majority, class_positions=cp,
                              long_only=long_only)
        result.classification = classification_summary(
            part.y, probs.argmax(axis=1), n_classes=n_classes, block=part.horizon,
            majority=majority if majority is not None else int(np.bincount(part.y, minlength=n_classes).argmax()))
        oos, _, more = _oos(plan.settings, part.dates, plan.symbol)
        notes += [f"out of sample: {oos['status']}: {oos['caveat']}", *more, f"majority class: {source}"]
        report(1, "backtested")
    else:
        def progress(k, total, info):
            report(k, f"block {k}/{total}: trained on {_day(info['train_start'])}..{_day(info['train_end'])} "
                      f"({info['train_rows']} rows), tested {_day(info['test_start'])}..{_day(info['test_end'])}")

        report(0, f"walking forward: {plan.blocks} blocks of {step} bars")
        result = walk_forward(LabelledSeries.from_dataset(part, plan.close), plan.spec, train_window=train_window,
                              step=step, threshold=threshold, cost_bps=cost_bps, slippage_bps=slippage_bps,
                              long_only=long_only, progress=progress,
                              train_kwargs={"epochs": epochs, "patience": patience, "batch_size": batch_size,
                                            "seed": seed})
        if plan.model is not None:
            notes.append(f"walk-forward retrains the architecture of {plan.name} from scratch before each block; "
                         "the registered weights themselves are not used")
        report(plan.blocks + 1, "backtested")
    out = result.to_dict()
    return BacktestOutcome(mode="walk_forward" if plan.walk else "frozen", model=plan.name, symbol=plan.symbol,
                           start=out["start"], end=out["end"], periods=out["periods"], metrics=out["metrics"],
                           classification=out["classification"], windows=out["windows"], settings=out["settings"],
                           notes=notes + out["notes"])


def _news(headlines: list[Headline], calendar: str, close_time: str, tz: str) -> NewsAnalysis:
    import pandas as pd


    frame = pd.DataFrame([h.model_dump() for h in headlines], columns=["timestamp", "symbol", "headline"])
    checked = validate_headlines(frame, tz=tz, source="headlines")
    cal = None
    if calendar == "embedded":

        cal = load_embedded(["SP500"])["date"].to_numpy("datetime64[ns]")
    lexicon = load_lm_lexicon()
    daily = score_headlines(checked, calendar=cal, close_time=close_time, lexicon=lexicon, tz=tz)
    daily = daily[daily["has_news"] > 0]
    days = [NewsDay(date=_day(r.date), symbol=str(r.symbol), n_headlines=int(r.n_headlines), n_words=int(r.n_words),
                    n_positive=int(r.n_positive), n_negative=int(r.n_negative), n_uncertainty=int(r.n_uncertainty),
                    n_litigious=int(r.n_litigious), tone=float(r.tone)) for r in daily.itertuples()]
    rules = {"tz": tz, "close_time": close_time,
             "calendar": "the embedded S&P 500 trading days (1999-01-04..2018-12-31)" if cal is not None else
             "weekdays (no holiday calendar)",
             "session": "a headline counts for the first session whose close is strictly after it; a date alone "
                        "counts as published after that day's close"}
    return NewsAnalysis(days=days, headlines=len(headlines), unassigned=int(daily.attrs.get("unassigned", 0)),
                        rules=rules, lexicon=lexicon.source, licence=LM_LICENCE)


if _PRESETS_WITH_DATA:
    Domain = Literal[DOMAINS]  # type: ignore[valid-type]
    Domains = Annotated[list[Domain], Field(min_length=1, max_length=len(DOMAINS))]

    @tool("Evaluate a registered model on embedded data or on given rows and labels")
    async def neural_evaluate(
            model_id: ModelId,
            symbol: Symbol | None = None,  # type: ignore[valid-type]
            start: Date | None = None,
            end: Date | None = None,
            input: Rows | None = None,
            labels: Annotated[list[Annotated[int, Field(ge=0, le=15)]],
                              Field(min_length=1, max_length=MAX_ROWS)] | None = None,
            confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95,
            cost_bps: Bps = 1.0, slippage_bps: Bps = 1.0,
            threshold: Annotated[Probability, Field(description="Minimum class probability to take a position.")]
            = 0.5, *,
            ctx: Context) -> EvaluationOutcome:
        """Accuracy (with a confidence interval), balanced accuracy, per-class recall and the
        majority-class baseline with a one-sided binomial p-value, for a registered model on either
        (a) an embedded symbol between start and end (default: the model's first training symbol, all
        dates), with the features and labels of the model's preset, horizon and threshold, plus its
        positions backtested net of costs beside buy-and-hold, majority-class and momentum; or (b)
        `input` rows with their `labels` (class indices). `out_of_sample` says whether the rows come
        after the model's training dates (the blob's train_end/test_start metadata); if some do not,
        the figures for the rows from test_start alone are given too."""
        if input is not None and (symbol or start or end):
            raise ToolError("give either input rows with labels, or a symbol and dates, not both")
        if input is not None and len(input) * len(input[0]) > MAX_CELLS:
            raise ToolError(f"{len(input)} rows x {len(input[0])} features; at most {MAX_CELLS} numbers a call")
        _, model = _server(ctx).models.get(model_id)
        return await anyio.to_thread.run_sync(functools.partial(
            _evaluate, model_id, model, symbol, start, end, input, labels, confidence, cost_bps, slippage_bps,
            threshold))

    @tool("Backtest a registered model or a walk-forward of a preset, net of costs, beside baselines")
    async def neural_backtest(
            model_id: ModelId | None = None,
            preset: TrainPreset | None = None,
            symbol: Symbol | None = None,  # type: ignore[valid-type]
            start: Date | None = None,
            end: Date | None = None,
            walk_forward: bool | None = None,
            cost_bps: Bps = 1.0, slippage_bps: Bps = 1.0,
            threshold: Probability = 0.5,
            long_only: bool = False,
            train_window: Annotated[int, Field(ge=60, le=5000, description="Walk-forward training bars.")] = 504,
            step: Annotated[int, Field(ge=5, le=5000, description="Bars per test block (between retrains).")] = 126,
            epochs: Annotated[int, Field(ge=1, le=MAX_WF_EPOCHS)] = 5,
            patience: Annotated[int, Field(ge=1, le=MAX_WF_EPOCHS)] | None = 3,
            batch_size: Annotated[int, Field(ge=8, le=4096)] = 64,
            horizon: Annotated[int, Field(ge=1, le=60, description="Label horizon (preset only; a model uses "
                                                                   "its own).")] = 5,
            seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0, *,
            ctx: Context) -> BacktestOutcome:
        """Trade a model's class probabilities on one embedded symbol (long where P(up) is the
        largest and >= threshold, short likewise for down), net of cost_bps + slippage_bps per unit
        traded, and report the metrics beside buy-and-hold, majority-class and momentum baselines on
        the same dates. With `model_id` (default mode 'frozen'): the registered model on every bar of
        the period, with an out-of-sample caveat from its training dates. With `preset`, or
        walk_forward=true: retrain before every block of `step` bars on the earlier bars only
        (labels embargoed), at most 40 retrains of at most 50 epochs; one progress notification per
        block. One training job per server."""
        if (model_id is None) == (preset is None):
            raise ToolError("give exactly one of model_id (a registered model) or preset (walk-forward training)")
        walk = (model_id is None) if walk_forward is None else walk_forward
        if not walk and model_id is None:
            raise ToolError("walk_forward=false needs a model_id: a preset has no weights until it is trained")
        server = _server(ctx)
        plan = await anyio.to_thread.run_sync(functools.partial(
            _backtest_plan, server, model_id, preset, symbol, start, end, walk, train_window, step, horizon))
        if walk and not server.train_lock.acquire(blocking=False):
            raise ToolError("a training job is already running on this server; try again when it has finished")
        try:
            return await Progress(ctx, total=plan.blocks + 1 if walk else 1).run(
                _backtest, server, plan, cost_bps, slippage_bps, threshold, long_only, train_window, step, epochs,
                patience, batch_size, seed)
        finally:
            if walk:
                server.train_lock.release()

    @tool("Score headlines with the Loughran-McDonald lexicon, per symbol and trading day")
    async def analyze_news(
            headlines: Annotated[list[Headline], Field(min_length=1, max_length=MAX_HEADLINES, description=
                                                       f"At most {MAX_HEADLINES} headlines, given inline.")],
            calendar: Literal["weekdays", "embedded"] = "weekdays",
            close_time: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "16:00",
            tz: Annotated[str, Field(pattern=r"^[A-Za-z]+(/[A-Za-z0-9_+-]+){0,2}$", max_length=64)]
            = "America/New_York", *,
            ctx: Context) -> NewsAnalysis:
        """Loughran-McDonald positive, negative, uncertainty and litigious word counts and tone of the
        headlines, added up per symbol and session without look-ahead: a headline counts for the
        first session whose close (close_time in tz) is strictly after its timestamp. calendar
        'embedded' uses the S&P 500 trading days of the embedded data (holidays skipped); 'weekdays'
        any weekday. Headlines are given inline only: the server reads no files or URLs. The lexicon's
        terms are in `licence`."""
        return await anyio.to_thread.run_sync(_news, headlines, calendar, close_time, tz)

    @tool("Reason about a symbol's market psychology, quantitative and macro picture, or a model's figures")
    async def psycho_symbolic_reason(
            query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS)],
            domains: Domains | None = None,
            force_domains: Annotated[Domains | None, Field(description="The seed guide's name for domains.")]
            = None,
            depth: Annotated[int, Field(ge=1, le=MAX_DEPTH)] = 3,
            symbol: Annotated[str, Field(pattern=SYMBOL_PATTERN, description="Default SP500.")] | None = None,
            date: Annotated[Date | None, Field(description="Default: the symbol's latest date with all twelve "
                                                           "features.")] = None,
            model_id: Annotated[ModelId | None, Field(description="A model to validate (model_validation).")]
            = None,
            analogical_reasoning: bool | None = None, *,
            ctx: Context) -> ReasoningOutcome:
        """A deterministic argument engine over pymicro's twelve reasoning features (no language
        model): each domain's features at the date are read through documented thresholds into
        findings with a direction and a strength, combined into a lean with its agreement, and
        explained step by step; depth 1-5 adds the inputs, historical analogues, stability and
        robustness. Questions about a model's figures ('does 72 % accuracy and Sharpe 1.8 make
        sense?') are checked against the symbol's majority-class rate and pymicro.evaluation.validation's
        plausibility limits, and a model_id is validated on the embedded data. It says when it cannot
        know: symbols not embedded, dates after the data, the future, news it was not given."""
        if domains and force_domains and list(domains) != list(force_domains):
            raise ToolError("domains and force_domains differ: give one of them")
        model = _server(ctx).models.get(model_id)[1] if model_id else None
        if date is not None:
            _parse_date(date, "date")
        result = await anyio.to_thread.run_sync(functools.partial(
            reason, query, domains=domains or force_domains, depth=depth, symbol=symbol, date=date, model=model,
            analogical_reasoning=analogical_reasoning))
        return ReasoningOutcome(**result.to_dict())

    try:
        from pymicro.evaluation.validation import validate as _validate  # noqa: F401
    except ImportError as _e:  # pragma: no cover - a tree without pymicro.evaluation.validation
        logger.info("validate_model unavailable: %s", _e)
    else:
        def _validate_model(report: Callable, server: PymicroServer, model_id, symbols, fit, **options):

            _, model = server.models.get(model_id)
            report(0, "building the features and labels")
            if fit == "tinygrad" and not server.train_lock.acquire(blocking=False):
                raise ToolError("a training job is already running on this server; use fit='ridge' or try again")
            try:
                out = validate_on_embedded(model, symbols, fit=fit, **options)
            finally:
                if fit == "tinygrad":
                    server.train_lock.release()
            report(1, f"validated: confidence {out['confidence']:.2f}")
            return ValidationOutcome(model_id=model_id, **{k: out[k] for k in ValidationOutcome.model_fields
                                                           if k != "model_id"})

        @tool("Validate a registered model: leaks, look-ahead and implausible figures, with an answer")
        async def validate_model(
                model_id: ModelId,
                symbols: Annotated[list[Symbol], Field(min_length=1, max_length=len(_SYMBOLS))] | None = None,  # type: ignore[valid-type]
                lookback_days: Annotated[int, Field(ge=100, le=100_000, description=
                                                    "The last bars of each symbol only: the neural_train "
                                                    "option the model was trained with.")] | None = None,
                fit: Literal["ridge", "tinygrad", "none"] = "ridge",
                shuffles: Annotated[int, Field(ge=0, le=10)] = 2,
                n_trials: Annotated[int, Field(ge=1, le=100_000, description="Configurations tried before this "
                                                                             "one (deflated Sharpe).")] = 1,
                cost_bps: Bps = 1.0, slippage_bps: Bps = 1.0,
                resamples: Annotated[int, Field(ge=50, le=2000)] = 200,
                seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0, *,
                ctx: Context) -> ValidationOutcome:
            """pymicro.evaluation.validation.validate on the embedded data of `symbols` (default: the symbols the
            model was trained on; `lookback_days` as in training): the model's preset features and labels,
            split by date as the trainer splits, then the checks: split and purge, feature and output look-ahead scans, label-shift
            and shuffled-label retraining experiments (`fit`: 'ridge' a fast linear stand-in, 'tinygrad'
            the model's own architecture, 'none' to skip), normalisation provenance, train/test gap,
            accuracy against the majority class, probabilistic and deflated Sharpe, plausibility. Returns
            a plain-language answer, the risks and a confidence (docs/validation.md)."""
            server = _server(ctx)
            server.registry.get(model_id)
            syms = list(dict.fromkeys(SYMBOL_ALIASES.get(s, s) for s in symbols)) if symbols else None
            return await Progress(ctx, total=1).run(
                _validate_model, server, model_id, syms, fit, lookback_days=lookback_days, shuffles=shuffles,
                n_trials=n_trials,
                cost_bps=cost_bps, slippage_bps=slippage_bps, resamples=resamples, seed=seed)


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


def serve(args) -> int:
    """Run the server the parsed ``args`` describe (``pymicro mcp``; see pymicro.cli.mcp)."""
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
