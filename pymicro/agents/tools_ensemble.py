"""The ensemble tools: ``neural_ensemble_create`` and ``neural_ensemble_predict``.

An ensemble is one container blob (``PMBC``, docs/blob-format.md): several member networks,
the columns of a shared input row each reads, a map of their classes onto down/flat/up, and a
combiner, run in one core call. The registry stores it like a model (``kind="ensemble"``,
its members linked to the registered models with the same bytes), so ``neural_predict``,
``neural_model_status``, ``list_models`` and ``verify_model`` take an ensemble id too.

``neural_ensemble_create`` either trains the specialists (``members`` are preset names:
:func:`pymicro.training.ensemble.train_specialists`, the combiner fitted on out-of-fold
predictions only, then compared out of sample with each member and the baselines) or
assembles registered models (``members`` are model ids) under a vote. A stacked combiner
is only trained here, never assembled: a meta-model fitted to predictions the members made
on their own training rows learns to trust whichever memorised them best.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import numpy as np
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from pymicro.agents.server import (
    MAX_CELLS, MAX_EPOCHS, NAME_PATTERN, RESOURCE_PREFIX, SYMBOLS, Backend, Bps, ModelId, ModelName, Progress,
    Rows, Symbol, TrainPreset, canonical_symbols, float32_rows, server_of, tool,
)
from pymicro.errors import PymicroError
from pymicro.runtime.ensemble import COMBINERS, DEFAULT_ALIASES, MAX_MEMBERS, Ensemble
from pymicro.store.registry import ID_PATTERN, Registry

#: A member of neural_ensemble_create: a preset to train, or a registered model's id.
MemberRef = Annotated[str, Field(
    description="A preset to train ('momentum', 'reversal', 'sentiment') or a registered model's id.",
    pattern=f"({ID_PATTERN})|({NAME_PATTERN})", max_length=113)]
Combiner = Literal[tuple(COMBINERS)]  # type: ignore[valid-type]
COORDINATOR_RULE = ("The dominant member of a row is the one with the largest share of the decision: under a "
                    "vote, weight x confidence in the chosen label (a member that voted for another label gets "
                    "0 under the majority vote); under stacking, the drop in the chosen label's probability "
                    "when the member abstains (its inputs set to the uniform 1/C). docs/ensembles.md.")


class EnsembleMember(BaseModel):
    name: str
    model_id: str | None = Field(default=None, description="The registered model with these bytes, if any.")
    preset: str | None = None
    params: int
    input_size: int
    columns: list[int] = Field(description="The columns of the ensemble's input row this member reads.")
    labels: list[str]
    class_map: list[int] = Field(description="For each of its classes, the index of the common label it counts towards.")
    weight: float


class EnsembleOutcome(BaseModel):
    model_id: str
    name: str
    kind: Literal["ensemble"] = "ensemble"
    mode: Literal["trained", "assembled"]
    combiner: str
    params: int = Field(description="Members and meta-model together.")
    input_size: int
    labels: list[str]
    feature_names: list[str]
    members: list[EnsembleMember]
    content_hash: str
    blob_size: int
    oof_rows: int | None = Field(default=None, description="Trained: the out-of-fold rows the combiner was fitted on.")
    test_start: str | None = Field(default=None, description="Trained: the first date of the held-out test period.")
    comparison: dict[str, Any] | None = Field(default=None, description=
                                              "Trained: the ensemble beside each member alone, the majority class "
                                              "and buy-and-hold on the held-out test period (never fitted on): "
                                              "accuracy with its 95 % interval, balanced accuracy, Sharpe and return "
                                              "net of costs.")
    seconds: float
    resource_uri: str


class EnsemblePredictResult(BaseModel):
    model_id: str
    backend: str
    combiner: str
    labels: list[str]
    members: list[str]
    probabilities: list[list[float]] = Field(description="The ensemble's probabilities, one row per input row.")
    predicted: list[str]
    predicted_index: list[int]
    member_probabilities: list[list[list[float]]] | None = Field(default=None, description=
        "explain: rows x members x labels, each member's probabilities mapped onto the common labels.")
    confidence: list[list[float]] | None = Field(default=None, description="explain: rows x members, each member's top probability.")
    share: list[list[float]] | None = Field(default=None, description="explain: rows x members, each member's share of the decision.")
    dominant: list[str] | None = Field(default=None, description="explain: the member with the largest share, per row.")
    rule: str | None = Field(default=None, description="explain: how the dominant member is chosen.")


# ----------------------------------------------------------------------------- helpers


def member_entries(model: Ensemble, linked: list[dict] | None = None,
                   presets: list[str] | None = None) -> list[EnsembleMember]:
    """The members of a loaded container, with the registry's links (``ModelRecord.members``)."""
    out = []
    for i, m in enumerate(model.info.members):
        link = linked[i] if linked and i < len(linked) else {}
        out.append(EnsembleMember(name=m.name, model_id=link.get("model_id"),
                                  preset=presets[i] if presets else None, params=m.params, input_size=m.input_size,
                                  columns=list(m.columns), labels=list(m.labels), class_map=list(m.class_map),
                                  weight=float(m.weight)))
    return out


def _outcome(registry: Registry, model_id: str, mode: str, t0: float, presets=None, **extra) -> EnsembleOutcome:
    record = registry.get(model_id)
    model = registry.load(model_id)
    info = model.info
    return EnsembleOutcome(model_id=model_id, name=record.name, mode=mode, combiner=info.combiner,
                           params=info.params, input_size=info.input_size, labels=list(info.labels),
                           feature_names=list(info.feature_names),
                           members=member_entries(model, record.members, presets),
                           content_hash=record.content_hash, blob_size=record.blob_size,
                           seconds=round(time.perf_counter() - t0, 3), resource_uri=RESOURCE_PREFIX + model_id,
                           **extra)


def _common_labels(described: list[dict]) -> list[str]:
    """down/flat/up when every member's classes count towards them (by name or the default
    aliases: sentiment's five classes), else the first member's labels."""
    three = ["down", "flat", "up"]
    if all(all(lab in three or DEFAULT_ALIASES.get(lab) in three for lab in d["labels"]) for d in described):
        return three
    return list(described[0]["labels"])


def _assemble(report: Callable, registry: Registry, ids: list[str], combiner: str, weights, name: str | None,
              labels) -> EnsembleOutcome:
    """A container from registered models: the shared row is the union of their named features
    (a feature two members read is one column), or their inputs side by side when a member has
    no feature names."""
    from pymicro import _core
    from pymicro.runtime.ensemble import freeze_ensemble

    t0 = time.perf_counter()
    blobs, described, names = [], [], []
    for i, model_id in enumerate(ids):
        record = registry.get(model_id)
        if record.kind != "model":
            raise ToolError(f"members[{i}] {model_id!r} is itself an ensemble; members are single models")
        blob = registry.read_blob(model_id)
        blobs.append(blob)
        described.append(_core.parse(blob))
        names.append(record.name)
        report(i + 1, f"read {model_id}")
    if len(set(names)) != len(names):  # members need distinct names: number repeated ones
        names = [f"{n}-{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    if all(d["feature_names"] for d in described):
        feature_names: list[str] = list(dict.fromkeys(f for d in described for f in d["feature_names"]))
        index = {f: i for i, f in enumerate(feature_names)}
        columns = [[index[f] for f in d["feature_names"]] for d in described]
    else:
        offsets = np.cumsum([0] + [d["input_size"] for d in described]).tolist()
        columns = [list(range(offsets[i], offsets[i + 1])) for i in range(len(described))]
        feature_names = [f"{n}.{f}" if d["feature_names"] else f"{n}.x{j}"
                         for n, d in zip(names, described)
                         for j, f in enumerate(d["feature_names"] or range(d["input_size"]))]
    blob = freeze_ensemble(blobs, combiner=combiner, weights=weights, columns=columns,
                           labels=labels or _common_labels(described), feature_names=feature_names, names=names,
                           name=name or f"ensemble-{combiner}", assembled_from=",".join(ids))
    model_id = registry.add(blob, name or f"ensemble-{combiner.replace('_', '-')}",
                            report={"tool": "neural_ensemble_create", "mode": "assembled", "members": ids,
                                    "combiner": combiner, "weights": weights})
    report(len(ids) + 1, f"registered {model_id}")
    return _outcome(registry, model_id, "assembled", t0)


def _train(report: Callable, registry: Registry, presets: list[str], combiner: str, name: str | None,
           symbols, folds: int, epochs: int, horizon: int, test_fraction: float, seed: int,
           cost_bps: float, slippage_bps: float) -> EnsembleOutcome:
    """train_specialists (the combiner on out-of-fold predictions), the out-of-sample comparison,
    then register the container."""
    from pymicro.evaluation.ensemble import compare_run
    from pymicro.training.ensemble import train_specialists

    t0 = time.perf_counter()
    n = len(presets)
    stages = {"out-of-fold": 0, "final members": folds * n}

    def progress(stage: str, done: int, total: int) -> None:
        report(stages.get(stage, 0) + done, f"{stage}: {done}/{total} fits")

    report(0, "building the aligned datasets")
    run = train_specialists(symbols=symbols, combiner=combiner, folds=folds, epochs=epochs, horizon=horizon,
                            test_fraction=test_fraction, seed=seed, presets=presets, progress=progress)
    comparison = compare_run(run, cost_bps=cost_bps, slippage_bps=slippage_bps)
    ensemble_name = name or f"ensemble-{combiner.replace('_', '-')}"
    model_id = registry.add(run.blob, ensemble_name,
                            metrics={"out_of_sample": comparison["classification"]["ensemble"],
                                     "test_rows": comparison["rows"], "test_start": run.test_start},
                            report={"tool": "neural_ensemble_create", "mode": "trained", "presets": presets,
                                    "settings": run.settings, "oof_rows": run.oof_rows,
                                    "test_start": run.test_start, "comparison": comparison})
    report(folds * n + n + 1, f"registered {model_id}")
    return _outcome(registry, model_id, "trained", t0, presets=presets, oof_rows=run.oof_rows,
                    test_start=run.test_start, comparison=comparison)


# ----------------------------------------------------------------------------- tools


@tool("Create an ensemble: train specialists and a combiner, or assemble registered models", read_only=False,
      idempotent=False)
async def neural_ensemble_create(
        members: Annotated[list[MemberRef], Field(min_length=1, max_length=MAX_MEMBERS, description=
                                                  "Either preset names, each once (train them and the combiner), "
                                                  "or registered model ids (assemble them under a vote).")]
        = ["momentum", "reversal", "sentiment"],  # noqa: B006 (pydantic copies defaults)
        combiner: Annotated[Combiner | None, Field(description=
                                                   "stacked (trained only: a meta-model fitted to out-of-fold "
                                                   "predictions), soft_vote or majority_vote. Default: stacked when "
                                                   "training, soft_vote when assembling.")] = None,
        weights: Annotated[list[Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]] | None, Field(
            min_length=1, max_length=MAX_MEMBERS, description="Assembling under a vote: one weight per member "
                                                              "(default 1 each; their sum must be > 0). Trained "
                                                              "soft votes get weights from out-of-fold "
                                                              "predictions.")] = None,
        labels: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]] | None, Field(
            min_length=2, max_length=16, description="Assembling: the common labels (default down/flat/up when "
                                                     "every member maps onto them, else the first member's).")] = None,
        name: ModelName | None = None,
        symbols: Annotated[list[Symbol], Field(min_length=1, max_length=len(SYMBOLS))] | None = None,
        folds: Annotated[int, Field(ge=2, le=8, description="Training: chronological folds for the out-of-fold "
                                                            "predictions.")] = 3,
        epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS, description="Training: epochs per member fit.")] = 20,
        horizon: Annotated[int, Field(ge=1, le=60, description="Label horizon in bars.")] = 5,
        test_fraction: Annotated[float, Field(ge=0.05, le=0.5, description=
                                              "Training: the last fraction of the dates held out for the "
                                              "comparison.")] = 0.2,
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0,
        cost_bps: Bps = 5.0,
        slippage_bps: Bps = 2.0, *,
        ctx: Context) -> EnsembleOutcome:
    """Create an ensemble container and register it (kind "ensemble").

    With preset names in `members` (default: momentum, reversal, sentiment): train each on its
    own feature set of the embedded daily history of `symbols` (the rows all share), fit the
    combiner on their out-of-fold predictions only (chronological expanding folds with an
    embargo), train the final members, and compare the ensemble with each member alone, the
    majority class and buy-and-hold on the held-out test period, net of costs. Progress: one
    notification per member fit, and the total once registered. One training job per server.

    With registered model ids in `members`: assemble them under a soft or majority vote (the
    shared input row is the union of their named features). A stacked combiner cannot be
    assembled from already-trained members (no out-of-fold predictions exist): train it.
    """
    from pymicro.runtime.spec import PRESETS

    server = server_of(ctx)
    is_preset = [m in PRESETS for m in members]
    if any(is_preset) and not all(is_preset):
        raise ToolError("members are either all preset names (trained here) or all registered model ids "
                        "(assembled): not a mix")
    if len(set(members)) != len(members):
        raise ToolError("each member may appear once")
    if all(is_preset):
        if weights is not None or labels is not None:
            raise ToolError("weights and labels are for assembling registered models; a trained ensemble fits its "
                            "combiner on out-of-fold predictions and uses down/flat/up")
        if not server.train_lock.acquire(blocking=False):
            raise ToolError("a training job is already running on this server; try again when it has finished")
        try:
            n = len(members)
            return await Progress(ctx, total=folds * n + n + 1).run(
                _train, server.registry, list(members), combiner or "stacked", name, canonical_symbols(symbols),
                folds, epochs, horizon, test_fraction, seed, cost_bps, slippage_bps)
        finally:
            server.train_lock.release()
    combiner = combiner or "soft_vote"
    if combiner == "stacked":
        raise ToolError("a stacked combiner is trained on out-of-fold predictions, which registered models do not "
                        "have (fitted to their in-sample predictions it trusts whichever member memorised its "
                        "training rows best): assemble them under soft_vote or majority_vote, or give preset names "
                        "to train a stacked ensemble")
    if weights is not None and len(weights) != len(members):
        raise ToolError(f"{len(weights)} weights for {len(members)} members")
    if weights is not None and not sum(weights) > 0:
        raise ToolError("the weights must sum to more than 0")
    for i, m in enumerate(members):
        if m not in server.registry:
            raise ToolError(f"members[{i}] {m!r} is neither a preset ({', '.join(PRESETS)}) nor a registered "
                            "model id (list_models shows them)")
    return await Progress(ctx, total=len(members) + 1).run(_assemble, server.registry, list(members), combiner,
                                                            weights, name, labels)


@tool("Predict with a registered ensemble, and say which member decided")
async def neural_ensemble_predict(model_id: ModelId, input: Rows, backend: Backend = "native",
                                  explain: bool = True, *, ctx: Context) -> EnsemblePredictResult:
    """The ensemble's probabilities for rows of its shared input (one core call for all members and the
    combiner), and, with `explain`, each member's probabilities on the common labels, its confidence,
    its share of the decision and the dominant member of each row (the coordinator's rule, in `rule`).
    neural_model_status gives the input width, feature names and each member's columns."""
    width = len(input[0])
    if len(input) * width > MAX_CELLS:
        raise ToolError(f"{len(input)} rows x {width} features = {len(input) * width} numbers; at most {MAX_CELLS} a call")
    record, model = server_of(ctx).models.get(model_id, backend)
    if not isinstance(model, Ensemble):
        raise ToolError(f"{model_id} is a single model, not an ensemble: use neural_predict")
    for i, row in enumerate(input):
        if len(row) != model.input_size:
            raise ToolError(f"input[{i}] has {len(row)} features; ensemble {model_id} takes {model.input_size}")
    x = float32_rows(input)
    try:
        probs = np.asarray(model.predict(x), np.float64)
        e = model.explain(x) if explain else None
    except PymicroError as err:
        raise ToolError(str(err)) from None
    index = probs.argmax(axis=1)
    labels = list(model.labels)
    out = EnsemblePredictResult(model_id=model_id, backend=backend, combiner=model.combiner, labels=labels,
                                members=list(model.member_names), probabilities=np.round(probs, 8).tolist(),
                                predicted=[labels[i] for i in index], predicted_index=index.tolist())
    if e is not None:
        out.member_probabilities = np.round(np.asarray(e.probabilities, np.float64), 8).tolist()
        out.confidence = np.round(np.asarray(e.confidence, np.float64), 8).tolist()
        out.share = np.round(np.asarray(e.share, np.float64), 8).tolist()
        out.dominant = [model.member_names[int(d)] for d in e.dominant]
        out.rule = COORDINATOR_RULE
    return out
