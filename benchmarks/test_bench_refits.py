"""Cheaper refits: a walk-forward and validate()'s retraining experiments, before and after, in one run.

"Before" is the trainer with ``compile_cache=False`` (every training traces and compiles its own
exact shapes, a new jitted step each time) and ``warm_start=False`` (every block from scratch); "after"
is the default (power-of-four buffer buckets, one compiled step per shape and process reused,
blocks warm-started from their predecessor in chains of 5). Both run in the same process, "before"
first, after one small warm-up training (tinygrad's import and toolchain), so neither pays that.
Budgets in benchmarks/budgets.py; the machine and the load average are printed with the figures.
Slow: a minute or two.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from budgets import REFIT_VALIDATE_MIN_SPEEDUP, REFIT_WALK_FORWARD_MIN_SPEEDUP, WALK_FORWARD_10_BLOCKS_MAX_S

import pymicro
from pymicro.runtime import bench

pytestmark = pytest.mark.slow

BLOCKS, STEP, WINDOW = 10, 126, 756


def _warm_up():
    from pymicro.training.train import train

    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 24)).astype(np.float32)
    y = rng.integers(0, 3, 100)
    train(pymicro.preset("momentum"), X[:80], y[:80], X[80:], y[80:], epochs=1, batch_size=16, compile_cache=False)


def _walk(bars, after: bool):
    from pymicro.evaluation.backtest import walk_forward

    t = time.perf_counter()
    r = walk_forward(bars, "momentum", train_window=WINDOW, step=STEP, warm_start=after,
                     train_kwargs={"epochs": 30, "patience": 5, "batch_size": 64, "compile_cache": after})
    return time.perf_counter() - t, r


def test_ten_block_walk_forward_refits_before_and_after(benchmark):
    from pymicro.market.data import load_embedded

    bars = load_embedded(["SP500"])
    bars = bars.tail(WINDOW + 60 + BLOCKS * STEP + 5)
    _warm_up()
    load = os.getloadavg()[0]
    t_before, before = _walk(bars, after=False)
    t_after, after = _walk(bars, after=True)
    speedup = t_before / t_after
    benchmark.extra_info.update(machine=bench.machine_name(), blocks=len(after.windows), seconds_before=t_before,
                                seconds_after=t_after, speedup=speedup, load_average=load)
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n{bench.machine_name()}, load average {load:.1f}: {len(after.windows)}-block walk-forward "
          f"{t_before:.1f} s before, {t_after:.1f} s after ({speedup:.1f}x); out-of-sample Sharpe "
          f"{before.metrics['sharpe']:.2f} vs {after.metrics['sharpe']:.2f}, accuracy "
          f"{before.classification['accuracy']:.3f} vs {after.classification['accuracy']:.3f}")
    assert len(after.windows) == len(before.windows) == BLOCKS
    assert sum(w["warm_start"] for w in after.windows) == BLOCKS - BLOCKS // 5
    assert t_after <= WALK_FORWARD_10_BLOCKS_MAX_S, f"{t_after:.1f} s"
    assert speedup >= REFIT_WALK_FORWARD_MIN_SPEEDUP, f"{speedup:.2f}x"


def test_validate_refits_before_and_after(benchmark):
    from pymicro.evaluation.validation import validate
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.training.train import train

    bars = load_embedded(["SP500"])
    ds = make_dataset(bars, "momentum", horizon=5)
    split = ds.split()
    res = train(pymicro.preset("momentum"), split.train.X, split.train.y, split.validation.X, split.validation.y,
                epochs=5, batch_size=64)
    blob = pymicro.freeze(res.network, horizon=5)
    _warm_up()
    load = os.getloadavg()[0]
    times, reports = {}, {}
    for key, kw in (("before", {"compile_cache": False}), ("after", {})):
        t = time.perf_counter()
        reports[key] = validate(blob, ds, prices=bars, fit="tinygrad", shuffles=3, fit_kwargs=kw)
        times[key] = time.perf_counter() - t
    speedup = times["before"] / times["after"]
    benchmark.extra_info.update(machine=bench.machine_name(), seconds_before=times["before"],
                                seconds_after=times["after"], speedup=speedup, load_average=load)
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n{bench.machine_name()}, load average {load:.1f}: validate (5 tinygrad refits) "
          f"{times['before']:.1f} s before, {times['after']:.1f} s after ({speedup:.1f}x); confidence "
          f"{reports['before'].confidence} vs {reports['after'].confidence}")
    assert reports["after"].checks["shuffled_labels"].status != "skipped"
    assert speedup >= REFIT_VALIDATE_MIN_SPEEDUP, f"{speedup:.2f}x"
