"""The training tool: ``neural_train`` (what ``pymicro train`` runs, then registered)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from pymicro.agents.server import (
    MAX_EPOCHS, RESOURCE_PREFIX, SYMBOLS, ModelId, ModelName, Progress, Symbol, TrainPreset, canonical_symbols,
    resolve_data_file, server_of, tool,
)
from pymicro.agents.training_checks import leak_checks
from pymicro.errors import PymicroError
from pymicro.market.data import load_ohlcv
from pymicro.store.registry import Registry
from pymicro.training.toolchain import GPU_BACKENDS, select_device
from pymicro.training.trainer import run_training

class LearnOutcome(BaseModel):
    """neural_train with model_id: one round of continuous learning (pymicro.lifecycle.learn)."""

    name: str
    parent: dict[str, Any] = Field(description="The champion version it was fine-tuned from.")
    candidate: dict[str, Any] = Field(description="The new version (the challenger, or the champion if promoted).")
    decision: dict[str, Any] = Field(description="promoted, the rule, the paired block-bootstrap test on the "
                                                 "holdout (log-loss improvement, its interval), accuracies beside "
                                                 "the majority class.")
    drift: dict[str, Any]
    aliases: dict[str, int]


class TrainOutcome(BaseModel):
    model_id: str
    name: str
    preset: str | None = None
    architecture: str | None = None
    params: int | None = None
    data: dict[str, Any] | None = Field(default=None, description="Symbols, dates, rows per split (chronological), features, "
                                             "horizon and threshold.")
    epochs_run: int | None = None
    best_epoch: int | None = None
    stopped_early: bool | None = None
    seconds: float | None = None
    seconds_per_epoch: float | None = None
    device: str | None = None
    validation: dict[str, float] | None = Field(default=None, description="Loss and accuracy of both splits at the best epoch.")
    performance: dict[str, Any] | None = Field(default=None, description="Out-of-sample (test split) accuracy with a confidence "
                                                    "interval, beside the majority-class baseline on the same "
                                                    "rows; the same figures `pymicro train` reports.")
    parity: dict[str, Any] | None = Field(default=None, description="The frozen blob (native core) against tinygrad on the "
                                               "validation rows.")
    leak_checks: dict[str, Any] | None = Field(default=None, description="The fast leak checks of pymicro.evaluation.validation on this "
                                                    "run's data and split: status ('ok', 'warning', 'critical'), "
                                                    "a verdict to read beside the figures, the risks found.")
    resource_uri: str
    learning: LearnOutcome | None = Field(default=None, description=
        "With model_id: the continuous-learning round (parent, candidate, decision, drift, aliases); the "
        "other fields then describe the candidate where they apply and are null otherwise.")


def _frame_of(rows: list[Any]):
    import pandas as pd

    from pymicro.market.data import validate_ohlcv

    if not all(isinstance(r, dict) for r in rows):
        raise ToolError("continuous learning: new_data rows are OHLCV objects: {date, symbol, open, high, low, close, volume}")
    try:
        return validate_ohlcv(pd.DataFrame(rows), max_gap_days=None, source="new_data")
    except PymicroError as e:
        raise ToolError(f"continuous learning: new_data: {e}") from None


def _learn(report: Callable, registry: Registry, model_id: str, frame, epochs: int, learning_rate: float,
           seed: int) -> TrainOutcome:
    from pymicro.lifecycle.learn import continue_training

    report(0, f"fine-tuning {model_id}")
    try:
        out = continue_training(registry, model_id, frame, epochs=epochs, learning_rate=learning_rate, seed=seed)
    except PymicroError as e:
        raise ToolError(str(e)) from None
    report(1, "promoted" if out["decision"]["promoted"] else "kept as challenger")
    candidate = out["candidate"]
    return TrainOutcome(model_id=candidate["model_id"], name=out["name"], epochs_run=candidate["config"]["epochs_run"],
                        best_epoch=candidate["config"]["best_epoch"], data={"window": candidate["data_window"]},
                        resource_uri=RESOURCE_PREFIX + candidate["model_id"], learning=LearnOutcome(**out))


def _device(use_gpu: bool | None) -> str | None:
    """The tinygrad device for ``use_gpu``: None (the default choice), 'CPU', or a GPU when one is found."""
    if use_gpu is None:
        return None
    if not use_gpu:
        return "CPU"
    device = select_device("auto")
    if device == "CPU":
        raise ToolError(f"use_gpu=true, but tinygrad finds no GPU on this machine (it tried {', '.join(GPU_BACKENDS)}); "
                        "leave use_gpu out or set it false to train on the CPU (these networks train in seconds there)")
    return device


def _train(report: Callable, registry: Registry, name: str, preset: str, epochs: int, data_file: Path | None,
           use_gpu: bool | None, **options) -> TrainOutcome:
    """pymicro.training.trainer.run_training (what `pymicro train` runs), the fast leak checks, then
    register the model."""
    report(0, f"building the {preset} dataset")
    options["device"] = _device(use_gpu)
    if data_file is not None:
        options["data"] = load_ohlcv(data_file)

    def epoch_done(epoch: int, total: int, m: dict) -> None:
        report(epoch, f"epoch {epoch}/{total}: train loss {m['train_loss']:.4f}, val loss {m['val_loss']:.4f}, "
                      f"val acc {m['val_acc']:.3f}")

    with tempfile.TemporaryDirectory(prefix="pymicro-mcp-train-") as out_dir:
        run = run_training(preset, name=name, epochs=epochs, out_dir=out_dir, progress=epoch_done, plot=False,
                           **options)
        training_report = json.loads(run.report_path.read_text())
    for key in ("blob_path", "report_path", "plot_path", "model_id"):  # files of the temporary folder
        training_report.pop(key, None)
    checks = leak_checks(run)
    training_report["tool"] = "neural_train"
    training_report["leak_checks"] = checks
    model_id = registry.add(run.blob, name, metrics=run.performance, report=training_report)
    stopped = run.settings.get("stopped_early")
    report(epochs + 1, f"registered {model_id}" + (f" (stopped early after epoch {run.settings['epochs_run']})"
                                                   if stopped else ""))
    best = {k: float(v[run.best_epoch - 1]) for k, v in run.history.items()}
    return TrainOutcome(model_id=model_id, name=name, preset=preset, architecture=run.spec.describe(),
                        params=run.spec.params, data=run.data, epochs_run=int(run.settings["epochs_run"]),
                        best_epoch=run.best_epoch, stopped_early=bool(stopped), seconds=run.training_seconds,
                        seconds_per_epoch=run.seconds_per_epoch, device=str(run.settings["device"]),
                        validation=best, performance=run.performance, parity=run.parity, leak_checks=checks,
                        resource_uri=RESOURCE_PREFIX + model_id)



@tool("Train a model on the embedded market data (or a data file) and register it", read_only=False,
      idempotent=False)
async def neural_train(
        preset: TrainPreset = "momentum",
        model_type: Annotated[TrainPreset | Literal["custom"] | None, Field(
            description="The seed guide's name for preset; 'custom' is the preset with hidden_sizes and "
                        "use_attention as given.")] = None,
        data_path: Annotated[str | None, Field(max_length=500, description=
                                               "An OHLCV .csv or .parquet file (date, symbol, open, high, low, "
                                               "close, volume) inside the server's data folder (--data-dir, "
                                               "default $PYMICRO_HOME/data), relative to it; default: the "
                                               "embedded history.")] = None,
        validation_split: Annotated[float | None, Field(ge=0.05, le=0.5, description=
                                                        "Fraction of the rows (by date) for validation; the test "
                                                        "split keeps 15 %. Default 0.15.")] = None,
        use_gpu: Annotated[bool | None, Field(description="true: train on a GPU through tinygrad (an error if "
                                                          "there is none); false: the CPU; default: a GPU if "
                                                          "found, else the CPU.")] = None,
        model_id: Annotated[ModelId | None, Field(description=
                                                  "Continuous learning: fine-tune this registered model (its "
                                                  "name's champion) on bars it has not seen; the result is a "
                                                  "LearnOutcome (see pymicro.lifecycle.learn).")] = None,
        new_data: Annotated[list[Any] | None, Field(max_length=10_000, description=
                                                    "With model_id: OHLCV rows {date, symbol, open, high, low, "
                                                    "close, volume}, old bars (for the features' warm-up) and new; "
                                                    "default: the data_path file, else the embedded history of "
                                                    "the model's symbols.")] = None,
        symbols: Annotated[list[Symbol], Field(min_length=1, max_length=len(SYMBOLS))] | None = None,
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
    per server: a second call while one runs is refused. The fast leak checks of
    pymicro.evaluation.validation run after training; their verdict is in `leak_checks`.
    With `model_id` (continuous learning): the model's name's champion is fine-tuned for
    `epochs` on the bars it has not seen, the newest of which are held out; the candidate
    becomes `challenger` and is promoted to `champion` only when a paired block bootstrap of
    the holdout log-loss improvement clears zero at 95 % (pymicro.lifecycle.learn)."""
    if new_data is not None and model_id is None:
        raise ToolError("new_data is for continuous learning: give model_id too (the model to fine-tune)")
    if model_id is not None:
        server = server_of(ctx)
        if new_data is not None:
            frame = _frame_of(new_data)
        elif data_path is not None:
            frame = load_ohlcv(resolve_data_file(server, data_path))
        else:
            from pymicro.market.data import load_embedded
            from pymicro.runtime.model import load as load_blob

            try:
                meta = load_blob(server.registry.read_blob(model_id), backend="reference").described["metadata"]
            except PymicroError as e:
                raise ToolError(str(e)) from None
            frame = load_embedded([s for s in meta.get("symbols", "").split(",") if s] or None)
        if not server.train_lock.acquire(blocking=False):
            raise ToolError("a training job is already running on this server; try again when it has finished")
        try:
            return await Progress(ctx, total=1).run(_learn, server.registry, model_id, frame, epochs,
                                                    learning_rate, seed)
        finally:
            server.train_lock.release()
    if model_type is not None and model_type != "custom":
        if preset != "momentum" and preset != model_type:
            raise ToolError(f"preset {preset!r} and model_type {model_type!r} differ: give one of them")
        preset = model_type
    server = server_of(ctx)
    data_file = resolve_data_file(server, data_path) if data_path is not None else None
    if data_file is not None and symbols:
        raise ToolError("symbols choose embedded series; with data_path the file's own symbols are used")
    if not server.train_lock.acquire(blocking=False):
        raise ToolError("a training job is already running on this server; try again when it has finished")
    try:
        options = {"symbols": canonical_symbols(symbols), "hidden_sizes": hidden_sizes,
                   "use_attention": use_attention, "batch_size": batch_size, "learning_rate": learning_rate,
                   "patience": patience, "horizon": horizon, "threshold": threshold,
                   "lookback_days": lookback_days, "seed": seed, "validation_split": validation_split}
        return await Progress(ctx, total=epochs + 1).run(_train, server.registry, name or preset, preset,
                                                         epochs, data_file, use_gpu, **options)
    finally:
        server.train_lock.release()

