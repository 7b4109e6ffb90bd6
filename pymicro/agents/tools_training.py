"""The training tool: ``neural_train`` (what ``pymicro train`` runs, then registered)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from pymicro.agents.server import (
    MAX_EPOCHS, RESOURCE_PREFIX, SYMBOLS, ModelName, Progress, Symbol, TrainPreset, canonical_symbols, server_of, tool,
)
from pymicro.store.registry import Registry
from pymicro.training.trainer import run_training

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



def _train(report: Callable, registry: Registry, name: str, preset: str, epochs: int, **options) -> TrainOutcome:
    """pymicro.training.trainer.run_training (what `pymicro train` runs), then register the model."""
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



@tool("Train a model on the embedded market data and register it", read_only=False, idempotent=False)
async def neural_train(
        preset: TrainPreset = "momentum",
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
    per server: a second call while one runs is refused."""
    server = server_of(ctx)
    if not server.train_lock.acquire(blocking=False):
        raise ToolError("a training job is already running on this server; try again when it has finished")
    try:
        options = {"symbols": canonical_symbols(symbols), "hidden_sizes": hidden_sizes,
                   "use_attention": use_attention, "batch_size": batch_size, "learning_rate": learning_rate,
                   "patience": patience, "horizon": horizon, "threshold": threshold,
                   "lookback_days": lookback_days, "seed": seed}
        return await Progress(ctx, total=epochs + 1).run(_train, server.registry, name or preset, preset,
                                                         epochs, **options)
    finally:
        server.train_lock.release()

