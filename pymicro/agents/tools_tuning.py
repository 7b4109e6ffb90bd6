"""The tuning tool: ``neural_optimize`` (the seed's hyper-parameter search), over
:func:`pymicro.training.tune.neural_optimize` (Optuna on Dask, walk-forward folds).

The server runs the search on a local Dask cluster of *threads* (worker processes would share
the stdio server's stdout, which carries the protocol), or on the cluster named by
``$PYMICRO_DASK_SCHEDULER``. One training job at a time, as for ``neural_train``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from pymicro.agents.server import MAX_EPOCHS, ModelId, Progress, TrainPreset, server_of, tool
from pymicro.errors import PymicroError

MAX_TRIALS = 200


class OptimizeOutcome(BaseModel):
    model_id: str | None = None
    tuned_model_id: str | None = Field(default=None, description="The best trial's frozen model, registered.")
    optimization_metric: str
    best_params: dict[str, Any] = Field(description="The best trial's hyper-parameters.")
    result: dict[str, Any] = Field(description="The whole study summary: trials (complete, pruned), the best "
                                               "validation score, and the best model frozen and compared with "
                                               "the default one on the test split beside the baselines.")


def _optimize(report, registry, model_id, preset, parameter_ranges, metric, trials, epochs, out_dir) -> dict:
    from pymicro.training.cluster import dask_client
    from pymicro.training.tune import neural_optimize

    def progress(done, total, info):
        report(float(done), f"trial {done} of {total}")

    with dask_client(os.environ.get("PYMICRO_DASK_SCHEDULER") or None, n_workers=1, processes=False) as client:
        out = neural_optimize(model_id, parameter_ranges=parameter_ranges, optimization_metric=metric,
                              trials=trials, registry=registry, preset=preset, scheduler=client, epochs=epochs,
                              out_dir=out_dir, plots=False, progress=progress)
    if out.get("blob_path"):  # the best trial, frozen: registered so that neural_predict can use it
        blob = Path(out["blob_path"]).read_bytes()
        out["tuned_model_id"] = registry.add(blob, f"{preset or 'model'}-tuned", status="registered",
                                             metrics={"tuning": {k: out[k] for k in ("best_value", "objective")}})
    for key in ("blob_path", "storage", "plots"):  # files in a temporary folder, gone when the call ends
        out.pop(key, None)
    return out


@tool("Optimise a model's hyper-parameters", read_only=False, idempotent=False)
async def neural_optimize(model_id: ModelId | None = None, parameter_ranges: dict[str, Any] | None = None,
                          optimization_metric: Literal["sharpe_ratio", "balanced_accuracy"] = "sharpe_ratio",
                          trials: Annotated[int, Field(ge=1, le=MAX_TRIALS)] = 20,
                          epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 20,
                          preset: TrainPreset | None = None, *, ctx: Context) -> OptimizeOutcome:
    """Search hyper-parameters with Optuna (TPE, median pruning) on walk-forward validation folds,
    never the test split; freeze the best trial and compare it with the default model out of
    sample, beside the baselines. ``model_id``: a registered model (its preset and symbols), or
    ``preset`` for the embedded symbols. ``parameter_ranges``: the seed's ranges (e.g.
    ``{"learning_rate": [1e-4, 1e-2], "batch_size": [16, 64]}``)."""
    if model_id is None and preset is None:
        raise ToolError("give model_id (a registered model) or preset")
    server = server_of(ctx)
    if not server.train_lock.acquire(blocking=False):
        raise ToolError("a training job is already running on this server; try again when it has finished")
    try:
        with tempfile.TemporaryDirectory(prefix="pymicro-tune-") as out_dir:
            try:
                out = await Progress(ctx, total=trials).run(_optimize, server.registry, model_id, preset,
                                                            parameter_ranges, optimization_metric, trials, epochs,
                                                            out_dir)
            except PymicroError as e:
                raise ToolError(str(e)) from None
    finally:
        server.train_lock.release()
    best = out.get("best_params") or out.get("best", {}).get("params") or {}
    return OptimizeOutcome(model_id=model_id, tuned_model_id=out.get("tuned_model_id"),
                          optimization_metric=optimization_metric, best_params=best, result=out)
