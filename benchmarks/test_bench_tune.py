"""Dask and Optuna speed: walk-forward blocks on 1 vs 2 workers, and 100 tuning trials with pruning.

Both are ratios or budgets from benchmarks/budgets.py measured in this run (a shared machine:
1 and 2 workers are timed back to back on the same blocks). Slow: minutes.
"""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("optuna")
pytest.importorskip("distributed")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

_spec = importlib.util.spec_from_file_location("pymicro_tune_budgets", Path(__file__).with_name("budgets.py"))
_budgets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_budgets)
TUNE_100_TRIALS_MAX_S = _budgets.TUNE_100_TRIALS_MAX_S
WALK_FORWARD_MIN_SPEEDUP_2_WORKERS = _budgets.WALK_FORWARD_MIN_SPEEDUP_2_WORKERS

from pymicro.training.cluster import dask_client, default_workers  # noqa: E402

pytestmark = pytest.mark.slow


def _walk(client):
    from pymicro.evaluation.backtest import walk_forward
    from pymicro.market.data import load_embedded

    bars = load_embedded(["SP500"])
    bars = bars.tail(1900)
    t = time.perf_counter()
    # independent blocks (no warm-start chains): this measures how blocks spread over workers
    r = walk_forward(bars, "momentum", train_window=756, step=126, mode="rolling", client=client,
                     warm_start=False, train_kwargs={"epochs": 30, "patience": None, "batch_size": 64})
    return time.perf_counter() - t, r


@pytest.mark.skipif(default_workers() < 2, reason="needs 2 cores")
def test_walk_forward_speeds_up_with_two_workers(benchmark):
    times = {}
    results = {}
    for workers in (1, 2):
        with dask_client(n_workers=workers) as client:
            for _ in range(2):  # warm: every worker compiles this shape's kernels (rolling: one shape)
                _walk(client)
            times[workers], results[workers] = _walk(client)
    speedup = times[1] / times[2]
    benchmark.extra_info.update(seconds_1_worker=times[1], seconds_2_workers=times[2], speedup=speedup,
                                blocks=len(results[1].windows))
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\nwalk-forward, {len(results[1].windows)} blocks: 1 worker {times[1]:.1f} s, 2 workers "
          f"{times[2]:.1f} s, speed-up {speedup:.2f}x")
    assert (results[1].positions == results[2].positions).all()
    assert speedup >= WALK_FORWARD_MIN_SPEEDUP_2_WORKERS, f"speed-up {speedup:.2f}x"


def test_tuning_trials_with_pruning_on_two_cores(benchmark, tmp_path):
    from pymicro.training.tune import tune

    trials = int(os.environ.get("PYMICRO_BENCH_TUNE_TRIALS", "100"))
    t = time.perf_counter()
    r = tune("momentum", n_trials=trials, n_workers=2, parallel=4, epochs=10, patience=3, n_folds=2,
             out_dir=tmp_path, plots=False, final_epochs=10)
    seconds = time.perf_counter() - t
    benchmark.extra_info.update(trials=trials, seconds=seconds, **r.n_trials)
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n{trials} trials ({r.n_trials}) in {seconds:.0f} s on 2 workers")
    assert r.n_trials["complete"] >= 1
    if trials >= 100:
        assert seconds <= TUNE_100_TRIALS_MAX_S, f"{trials} trials took {seconds:.0f} s"
