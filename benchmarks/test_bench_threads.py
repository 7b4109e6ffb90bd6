"""Model.predict(x, threads=2) against threads=1, same model, same batch, same run: every
preset and an ensemble of the three (issue 16, item 4; issue 12's container honours threads).

Two threads can only help when a second core is free. The goal (GOAL_THREADS_2_SPEEDUP) is
judged on every run (an XFAIL with the figure where unmet); the floor under it
(THREADS_2_MIN_SPEEDUP) fails the run only when the machine had a core to spare: during the
measurement, the CPU time other processes took (and the hypervisor stole), from /proc/stat
less this process's own, stayed under half a core. Otherwise its verdict is an XFAIL naming
that load, never a silent pass. (The load average cannot say it: this benchmark's own two
threads put it near 1.5 on an idle 2-core machine.)
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import pymicro
from pymicro.runtime import bench
from pymicro.runtime.ensemble import freeze_ensemble

_spec = importlib.util.spec_from_file_location("pymicro_benchmark_budgets", Path(__file__).with_name("budgets.py"))
budgets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budgets)

ENSEMBLE = "ensemble of the presets"


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat (steal counts as busy), or None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _blob(name: str) -> bytes:
    if name != ENSEMBLE:
        return bench.preset_blob(name)
    blobs = [bench.preset_blob(p, seed=i) for i, p in enumerate(("momentum", "reversal", "sentiment"))]
    return freeze_ensemble(blobs, columns=[list(range(0, 24)), list(range(24, 56)), list(range(56, 104))],
                           labels=("down", "flat", "up"))


@pytest.mark.parametrize("name", [*pymicro.PRESETS, ENSEMBLE])
def test_two_threads_vs_one(name):
    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("this process may run on one CPU only")
    model = pymicro.load(_blob(name))
    x = np.random.default_rng(0).standard_normal((budgets.BATCH, model.input_size), dtype=np.float32)
    out = np.empty((budgets.BATCH, model.n_classes), np.float32)
    one = np.empty_like(out)
    model.predict_into(x, one, threads=1)
    model.predict_into(x, out, threads=2)
    assert np.array_equal(one, out)
    before, cpu0, wall0 = _cpu_jiffies(), time.process_time(), time.perf_counter()
    samples = bench.interleaved({
        "1": (lambda a: model.predict_into(a, out, threads=1), x),
        "2": (lambda a: model.predict_into(a, out, threads=2), x),
    }, repeats=31, target_s=0.02)
    after, cpu1, wall1 = _cpu_jiffies(), time.process_time(), time.perf_counter()
    others = None  # cores' worth of CPU that other processes (or the hypervisor) took meanwhile
    if before and after and after[1] > before[1]:
        machine = (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or cpus)
        others = max(0.0, machine - (cpu1 - cpu0) / (wall1 - wall0))
    load = f"others took {others:.2f} cores" if others is not None else "other processes' CPU unknown"
    t1, t2 = statistics.median(samples["1"]), statistics.median(samples["2"])
    ratio = t1 / t2
    figure = (f"{name}: threads=1 {budgets.BATCH / t1 / 1e6:.1f} M rows/s, threads=2 "
              f"{budgets.BATCH / t2 / 1e6:.1f} M rows/s, {ratio:.2f}x on {bench.machine_name()}, "
              f"{load} of {cpus} CPUs")
    print("\n" + figure)
    if ratio < budgets.THREADS_2_MIN_SPEEDUP:
        if others is None or others >= 0.5:
            pytest.xfail(f"not judged: no core to spare; {figure}")
        pytest.fail(f"budget not met: threads=2 at least {budgets.THREADS_2_MIN_SPEEDUP}x; {figure}")
    budgets.goal(f"{name} threads=2 vs 1", ratio, budgets.GOAL_THREADS_2_SPEEDUP, why=figure)
