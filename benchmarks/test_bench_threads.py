"""Model.predict(x, threads=2) against threads=1, same model, same batch, same run."""

from __future__ import annotations

import importlib.util
import os
import statistics
from pathlib import Path

import numpy as np
import pytest

import pymicro
from pymicro.runtime import bench

_spec = importlib.util.spec_from_file_location("pymicro_benchmark_budgets", Path(__file__).with_name("budgets.py"))
budgets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budgets)


@pytest.mark.parametrize("preset", pymicro.PRESETS)
def test_two_threads_vs_one(preset):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("this process may run on one CPU only")
    model = pymicro.load(bench.preset_blob(preset))
    x = np.random.default_rng(0).standard_normal((budgets.BATCH, model.input_size), dtype=np.float32)
    out = np.empty((budgets.BATCH, model.n_classes), np.float32)
    one = np.empty_like(out)
    model.predict_into(x, one, threads=1)
    model.predict_into(x, out, threads=2)
    assert np.array_equal(one, out)
    samples = bench.interleaved({
        "1": (lambda a: model.predict_into(a, out, threads=1), x),
        "2": (lambda a: model.predict_into(a, out, threads=2), x),
    }, repeats=31, target_s=0.02)
    t1, t2 = statistics.median(samples["1"]), statistics.median(samples["2"])
    ratio = t1 / t2
    print(f"\n{preset}: threads=1 {budgets.BATCH / t1 / 1e6:.1f} M rows/s, threads=2 "
          f"{budgets.BATCH / t2 / 1e6:.1f} M rows/s, {ratio:.2f}x on {bench.machine_name()}")
    assert ratio >= budgets.THREADS_2_MIN_SPEEDUP, (
        f"{preset}: threads=2 is {ratio:.2f}x threads=1; budget {budgets.THREADS_2_MIN_SPEEDUP}x")
