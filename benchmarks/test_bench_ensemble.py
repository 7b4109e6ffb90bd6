"""An ensemble container of the three presets against its members called one by one, in the
same run. Run with ``pytest benchmarks/test_bench_ensemble.py``.

The container's input row is 104 wide: momentum reads columns 0-23, reversal 24-55,
sentiment 56-103; the soft vote combines them onto down/flat/up. The peers are the three
member models, each called on its own contiguous copy of its columns (what a caller
without containers would do, minus the slicing, which is not timed). Every number is a
median of interleaved rounds (ensemble, members, ensemble, ...), so a neighbour's burst
lands on both. The report is printed and written to benchmarks/results/ensemble-latest.md.

Budgets (benchmarks/budgets.py): one row at most ENSEMBLE_SINGLE_MAX_RATIO_VS_MEMBERS x the
sum of the members' single calls (enforced); a batch at least
ENSEMBLE_BATCH_MIN_THROUGHPUT_RATIO x the members' combined throughput (a goal: an XFAIL
naming the ratio where unmet, with ENSEMBLE_BATCH_FLOOR enforced as a regression guard).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np
import pytest

import pymicro
from pymicro.runtime.ensemble import freeze_ensemble
from pymicro.runtime.bench import machine_name

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "ensemble-latest.md"
_spec = importlib.util.spec_from_file_location("pymicro_benchmark_budgets", HERE / "budgets.py")
budgets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budgets)

ENSEMBLE_BATCH_FLOOR = 0.65  # regression guard under the goal (measured 0.6-0.7 with the columns copied; 0.82-0.91 read in place, 2026-12-05)
COLUMNS = [list(range(0, 24)), list(range(24, 56)), list(range(56, 104))]
_RESULTS: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup():
    blobs = [pymicro.freeze(pymicro.preset(n).init(seed=i))
             for i, n in enumerate(("momentum", "reversal", "sentiment"))]
    ensemble = pymicro.load(freeze_ensemble(blobs, columns=COLUMNS, labels=("down", "flat", "up")))
    members = [pymicro.load(b) for b in blobs]
    return ensemble, members


def _interleaved(fa, fb, rounds: int, inner: int) -> tuple[float, float]:
    """Medians (seconds per call) of fa and fb, sampled in turn."""
    ta, tb = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(inner):
            fa()
        t1 = time.perf_counter()
        for _ in range(inner):
            fb()
        t2 = time.perf_counter()
        ta.append((t1 - t0) / inner)
        tb.append((t2 - t1) / inner)
    return statistics.median(ta), statistics.median(tb)


def test_single_row_costs_at_most_the_budget_times_the_members(setup):
    ensemble, members = setup
    x = np.random.default_rng(0).normal(size=104).astype(np.float32)
    xs = [np.ascontiguousarray(x[c]) for c in COLUMNS]
    e_pred = ensemble.predict
    m_preds = [m.predict for m in members]

    def members_one_by_one():
        for f, xx in zip(m_preds, xs):
            f(xx)

    assert np.allclose(ensemble.predict(x).sum(), 1.0, atol=1e-5)
    te, tm = _interleaved(lambda: e_pred(x), members_one_by_one, rounds=200, inner=200)
    _RESULTS.update(single_ensemble_us=te * 1e6, single_members_us=tm * 1e6, single_ratio=te / tm)
    _write()
    assert te / tm <= budgets.ENSEMBLE_SINGLE_MAX_RATIO_VS_MEMBERS, (
        f"one row: ensemble {te * 1e6:.2f} us vs members {tm * 1e6:.2f} us = {te / tm:.2f}x "
        f"(budget {budgets.ENSEMBLE_SINGLE_MAX_RATIO_VS_MEMBERS}x)")


def test_batch_throughput_against_the_members_combined(setup):
    ensemble, members = setup
    n = budgets.ENSEMBLE_BATCH
    X = np.random.default_rng(1).normal(size=(n, 104)).astype(np.float32)
    Xs = [np.ascontiguousarray(X[:, c]) for c in COLUMNS]
    out = np.empty((n, 3), np.float32)
    outs = [np.empty((n, m.n_classes), np.float32) for m in members]

    def members_one_by_one():
        for m, xx, o in zip(members, Xs, outs):
            m.predict_into(xx, o, threads=1)  # one core each side: an ensemble runs on one thread

    te, tm = _interleaved(lambda: ensemble.predict_into(X, out, threads=1), members_one_by_one, rounds=15, inner=1)
    ratio = tm / te  # ensemble throughput / members' combined throughput
    _RESULTS.update(batch_ensemble_mps=n / te / 1e6, batch_members_mps=n / tm / 1e6, batch_ratio=ratio)
    _write()
    assert ratio >= ENSEMBLE_BATCH_FLOOR, f"batch throughput ratio {ratio:.2f} under the floor"
    if ratio < budgets.ENSEMBLE_BATCH_MIN_THROUGHPUT_RATIO:
        pytest.xfail(f"goal not met: ensemble batch throughput is {ratio:.2f}x the members' combined "
                     f"({n / te / 1e6:.2f} vs {n / tm / 1e6:.2f} M rows/s; goal "
                     f"{budgets.ENSEMBLE_BATCH_MIN_THROUGHPUT_RATIO}x; docs/ensembles.md says why)")


def _write() -> None:
    r = _RESULTS
    lines = [f"# Ensemble vs its members, same run ({_dt.date.today()}, {machine_name()}, "
             f"ISA {pymicro._core.isas()[0]})", "",
             "| measure | ensemble (one call) | members one by one | ratio | budget |", "|---|---:|---:|---:|---:|"]
    if "single_ratio" in r:
        lines.append(f"| one row, µs (median) | {r['single_ensemble_us']:.2f} | {r['single_members_us']:.2f} | "
                     f"{r['single_ratio']:.2f}x time | <= {budgets.ENSEMBLE_SINGLE_MAX_RATIO_VS_MEMBERS}x |")
    if "batch_ratio" in r:
        lines.append(f"| batch of {budgets.ENSEMBLE_BATCH} rows, M rows/s | {r['batch_ensemble_mps']:.2f} | "
                     f"{r['batch_members_mps']:.2f} | {r['batch_ratio']:.2f}x throughput | "
                     f">= {budgets.ENSEMBLE_BATCH_MIN_THROUGHPUT_RATIO}x |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))
