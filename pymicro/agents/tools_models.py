"""The model tools: ``neural_predict``, ``neural_model_status``, ``list_models``, ``verify_model``
and the resource ``pymicro://models/{model_id}``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from pydantic import BaseModel, Field

from pymicro.agents.server import (
    MAX_CELLS, MAX_LIST, MAX_VERIFY_SAMPLES, RESOURCE_PREFIX, Backend, ModelId, ModelName, Progress, PymicroServer,
    Rows, Status, float32_rows, resource, server_of, tool,
)
from pymicro.errors import InputError, PymicroError
from pymicro.runtime.model import load
from pymicro.store.registry import ModelRecord, Registry

class PredictResult(BaseModel):
    model_id: str
    kind: str = Field(default="model", description="'model', or 'ensemble' (a container run in one core call; "
                                                    "neural_ensemble_predict also says which member decided).")
    backend: str
    labels: list[str] = Field(description="Class labels, in the order of each probability row.")
    probabilities: list[list[float]] = Field(description="One row of class probabilities per input row.")
    predicted: list[str] = Field(description="The most probable label of each row.")
    predicted_index: list[int] = Field(description="The index of that label in `labels`.")


class ModelSummary(BaseModel):
    model_id: str
    name: str
    kind: str = Field(default="model", description="'model' (one network) or 'ensemble' (a container).")
    status: str
    created: str
    params: int
    input_size: int
    n_classes: int
    content_hash: str
    members: list[dict[str, Any]] = Field(default_factory=list, description=
                                          "An ensemble's members: name, params, weight, content hash and the "
                                          "registered model with those bytes (model_id, or null).")
    resource_uri: str


class ModelList(BaseModel):
    models: list[ModelSummary]
    total: int = Field(description="How many models matched (models holds at most `limit`).")
    store: str


class ModelStatus(BaseModel):
    model_id: str
    name: str
    kind: str = Field(default="model", description="'model' (one network) or 'ensemble' (a container).")
    combiner: str | None = Field(default=None, description="An ensemble's combiner.")
    members: list[dict[str, Any]] = Field(default_factory=list, description=
                                          "An ensemble's members: name, params, input width, the columns of the "
                                          "shared row it reads, its labels and class map onto the common labels, "
                                          "its weight, content hash and registered model id (or null).")
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
    versions: list[dict[str, Any]] = Field(default_factory=list, description=
                                           "The versions of this model's name (lineage: parent version and hash, "
                                           "data window, config, aliases), oldest first.")
    aliases: dict[str, int] = Field(default_factory=dict, description="{alias: version}, e.g. champion, challenger.")
    drift: dict[str, Any] | None = Field(default=None, description="The newest drift report stored for this name "
                                                                   "(status, max PSI, drifted features), if any.")
    last_decision: dict[str, Any] | None = Field(default=None, description="The newest promotion decision.")
    alerts: list[dict[str, Any]] = Field(default_factory=list, description=
                                         "The newest state of each alert of this name (rule, subject, state firing or "
                                         "resolved, value, threshold, at), from the registry's alert log "
                                         "(pymicro monitor evaluates the rules: rolling Sharpe, drift PSI, accuracy).")


class VersionOutcome(BaseModel):
    name: str
    version: int
    model_id: str
    content_hash: str
    aliases: dict[str, int]


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


def _summary(record: ModelRecord) -> ModelSummary:
    return ModelSummary(model_id=record.id, name=record.name, kind=record.kind, status=record.status,
                        created=record.created, params=record.params, input_size=record.input_size,
                        n_classes=record.n_classes, content_hash=record.content_hash, members=record.members,
                        resource_uri=RESOURCE_PREFIX + record.id)


def _architecture(record: ModelRecord, model) -> dict:
    """flops, layers, normalisation (and an ensemble's combiner and members) of a loaded model."""
    if record.kind != "ensemble":
        info = model.info
        return {"flops": info.flops, "layers": list(info.layers), "has_normalization": info.has_normalization}
    info = model.info
    parts = [model.member(i).info for i in range(len(info.members))]
    meta = model.meta_model()
    layers = [f"{m.name}: " + " -> ".join(p.layers) for m, p in zip(info.members, parts)]
    if meta is not None:
        layers.append("meta-model: " + " -> ".join(meta.info.layers))
    members = []
    for i, (m, p) in enumerate(zip(info.members, parts)):
        link = record.members[i] if i < len(record.members) else {}
        members.append({"name": m.name, "params": m.params, "input_size": m.input_size, "columns": list(m.columns),
                        "labels": list(m.labels), "class_map": list(m.class_map), "weight": m.weight,
                        "content_hash": link.get("content_hash"), "model_id": link.get("model_id"),
                        "flops": p.flops})
    return {"flops": sum(p.flops for p in parts) + (meta.info.flops if meta is not None else 0), "layers": layers,
            "has_normalization": all(p.has_normalization for p in parts), "combiner": info.combiner,
            "members": members}


def _status(server: PymicroServer, model_id: str) -> ModelStatus:
    record, model = server.models.get(model_id)
    info = model.info
    return ModelStatus(
        model_id=record.id, name=record.name, kind=record.kind, status=record.status, created=record.created,
        params=info.params, input_size=info.input_size, n_classes=info.n_classes,
        labels=list(info.labels), feature_names=list(info.feature_names), **_architecture(record, model),
        content_hash=record.content_hash,
        blob_size=record.blob_size, metadata={str(k): str(v) for k, v in info.metadata.items()},
        metrics=record.metrics, has_report=record.report_file is not None,
        resource_uri=RESOURCE_PREFIX + record.id, **_lifecycle(server.registry, record.name))


def _lifecycle(registry: Registry, name: str) -> dict:
    drift = registry.events(name, "drift", limit=1)
    decision = registry.events(name, "decision", limit=1)
    return {"versions": [v.to_dict() for v in registry.versions(name)], "aliases": registry.aliases(name),
            "drift": ({k: drift[0]["payload"].get(k) for k in ("status", "max_psi", "out_of_range", "drifted",
                                                               "predictions", "accuracy", "window")}
                      | {"at": drift[0]["at"], "version": drift[0]["version"],
                         "psi": {f: v["psi"] for f, v in drift[0]["payload"].get("features", {}).items()}})
            if drift else None,
            "last_decision": decision[0]["payload"] if decision else None,
            "alerts": _alerts(registry, name)}


def _alerts(registry: Registry, name: str) -> list[dict]:
    newest: dict[str, dict] = {}
    for e in registry.events(name, "alert", limit=10_000):
        p = e["payload"]
        newest[p.get("subject", "?")] = {"rule": p.get("rule"), "subject": p.get("subject"), "state": p.get("state"),
                                         "value": p.get("value"), "threshold": p.get("threshold"),
                                         "message": p.get("message"), "at": e["at"], "version": e["version"]}
    return sorted(newest.values(), key=lambda a: (a["state"] != "firing", str(a["subject"])))


def _version_outcome(registry: Registry, record) -> VersionOutcome:
    return VersionOutcome(name=record.name, version=record.version, model_id=record.model_id,
                          content_hash=record.content_hash, aliases=registry.aliases(record.name))


@resource(RESOURCE_PREFIX + "{model_id}", name="model", title="A registered model",
          description="A registered model's metadata, parameters, metrics and status (JSON).",
          mime_type="application/json")
async def model_resource(model_id: str, ctx: Context) -> str:
    """``pymicro://models/{model_id}``: the model's status as JSON."""
    try:
        return _status(server_of(ctx), model_id).model_dump_json(indent=1)
    except PymicroError as e:
        raise ResourceNotFoundError(str(e)) from None


# ----------------------------------------------------------------------------- tools


@tool("Predict with a registered model")
async def neural_predict(model_id: ModelId, input: Rows, backend: Backend = "native", *,
                         ctx: Context) -> PredictResult:
    """Class probabilities, labels and the predicted class for rows of features.

    model_id may name an ensemble (kind "ensemble"): its rows are the shared input row, and all
    members and the combiner run in one core call. Each row must be as wide as the model's input (neural_model_status gives input_size and
    feature_names). backend "native" is the C++ core; "reference" the float64 numpy reference.
    """
    width = len(input[0])
    if len(input) * width > MAX_CELLS:
        raise ToolError(f"{len(input)} rows x {width} features = {len(input) * width} numbers; "
                        f"at most {MAX_CELLS} a call")
    record, model = server_of(ctx).models.get(model_id, backend)
    for i, row in enumerate(input):
        if len(row) != model.input_size:
            raise ToolError(f"input[{i}] has {len(row)} features; model {model_id} takes {model.input_size}")
    x = float32_rows(input)
    probs = np.asarray(model.predict(x), dtype=np.float64)
    index = probs.argmax(axis=1)
    labels = list(model.labels)
    return PredictResult(model_id=model_id, kind=record.kind, backend=backend, labels=labels,
                         probabilities=np.round(probs, 8).tolist(), predicted=[labels[i] for i in index],
                         predicted_index=index.tolist())


@tool("Model status")
async def neural_model_status(model_id: ModelId, *, ctx: Context) -> ModelStatus:
    """A registered model's metadata, architecture, parameter count, metrics and status."""
    return _status(server_of(ctx), model_id)


@tool("List registered models")
async def list_models(status: Status | None = None, name: ModelName | None = None,
                      limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 100, *,
                      ctx: Context) -> ModelList:
    """The registered models, newest last (at most `limit`); optionally one status or name only."""
    server = server_of(ctx)
    records = server.registry.list(status=status, name=name)
    return ModelList(models=[_summary(r) for r in records[-limit:]], total=len(records),
                     store=str(server.registry.root))


def _probe_rows(model) -> Callable:
    """Seeded probe rows in the model's own input distribution: each feature drawn around the
    mean of its normalisation with twice its std, so the normalised values are N(0, 2) (what
    the network sees in use). Rows drawn in raw units instead would be blown up by a small std
    and compare the backends on inputs no data gives (a healthy trained model then 'failed')."""
    mean, std = model.described.get("mean"), model.described.get("std")
    mean = np.zeros(model.input_size) if mean is None else np.asarray(mean, np.float64)
    std = np.ones(model.input_size) if std is None else np.asarray(std, np.float64)
    for i, m in enumerate(model.described.get("members") or ()):  # an ensemble: each member's normalisation
        d = model.member(i).described
        if d.get("mean") is not None:
            mean[m["columns"]] = d["mean"]
            std[m["columns"]] = d["std"]

    def draw(rng, n: int) -> np.ndarray:
        return (mean + std * rng.normal(0.0, 2.0, size=(n, model.input_size))).astype(np.float32)

    return draw


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
    probe = _probe_rows(native)
    max_diff, worst_sum, finite, in_range = 0.0, 0.0, True, True
    for start in range(0, n_samples, chunk):
        x = probe(rng, min(chunk, n_samples - start))
        p, q = native.predict(x), reference.predict(x)
        max_diff = max(max_diff, float(np.abs(p.astype(np.float64) - q).max()))
        finite &= bool(np.isfinite(p).all())
        in_range &= bool(((p >= 0) & (p <= 1)).all())
        worst_sum = max(worst_sum, float(np.abs(p.astype(np.float64).sum(axis=1) - 1).max()))
        n_done += 1
        report(len(checks) + n_done, f"parity: {start + len(x)}/{n_samples} rows")
    check("native vs reference", max_diff <= tolerance,
          f"max |native - reference| = {max_diff:.3g} over {n_samples} seeded rows drawn in the model's own "
          f"input distribution (tolerance {tolerance:g})")
    check("probabilities", finite and in_range and worst_sum <= 1e-5,
          f"finite: {finite}, in [0, 1]: {in_range}, max |row sum - 1| = {worst_sum:.3g}")

    x = probe(rng, min(64, n_samples))
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
    reference on n_samples seeded rows drawn in the model's input distribution (its normalisation), probabilities finite and summing to 1, a row
    giving the same bits alone and batched, NaN inputs refused. Sends progress notifications
    (one per check and per 4096 rows) when the request carries a progress token."""
    server = server_of(ctx)
    server.registry.get(model_id)  # an unknown id fails here, before any work
    n_chunks = -(-n_samples // 4096)
    return await Progress(ctx, total=4 + n_chunks).run(_verify, server.registry, model_id, n_samples,
                                                        seed, tolerance)


@tool("Promote a model version to champion", read_only=False, idempotent=True)
async def neural_model_promote(name: ModelName,
                               version: Annotated[int | None, Field(ge=1, description=
                                                  "The version to promote; default: the challenger.")] = None,
                               reason: Annotated[str | None, Field(max_length=500)] = None, *,
                               ctx: Context) -> VersionOutcome:
    """Point `champion` at `version` (default: the current challenger) in one atomic move;
    the move is logged, so neural_model_rollback undoes it."""
    registry = server_of(ctx).registry
    try:
        return _version_outcome(registry, registry.promote(name, version, reason=reason))
    except PymicroError as e:
        raise ToolError(str(e)) from None


@tool("Roll an alias back to its previous version", read_only=False, idempotent=False)
async def neural_model_rollback(name: ModelName,
                                alias: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")] = "champion",
                                reason: Annotated[str | None, Field(max_length=500)] = None, *,
                                ctx: Context) -> VersionOutcome:
    """Point `alias` back at the version it held before its last move: the exact previous blob."""
    registry = server_of(ctx).registry
    try:
        return _version_outcome(registry, registry.rollback(name, alias, reason=reason))
    except PymicroError as e:
        raise ToolError(str(e)) from None
