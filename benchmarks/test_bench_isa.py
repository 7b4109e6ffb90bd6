"""The ISA kernels' raw multiply-add rate (pymicro._core.fma_rate), per ISA this CPU runs.

A floor on every ISA (budget FMA_RATE_MIN) and the goal that the AVX2 build's 8 FMA lanes
beat the SSE2 build's 4 lanes of multiply + add by GOAL_FMA_AVX2_VS_SSE2 (an XFAIL with the
ratio where not met: benchmarks/budgets.py). Both were assertions in tests/test_bench.py.
"""

from __future__ import annotations

import math

import pytest
from budgets import FMA_RATE_MIN, GOAL_FMA_AVX2_VS_SSE2, goal

import pymicro

SECONDS = 0.2  # per ISA and rate measurement


@pytest.fixture(scope="module")
def rates() -> dict[str, float]:
    return {isa: max(pymicro._core.fma_rate(isa, SECONDS) for _ in range(3)) for isa in pymicro._core.isas()}


def test_fma_rate_floor_on_every_isa(rates):
    print("\n[fma] " + ", ".join(f"{isa} {r / 1e9:.1f} G/s" for isa, r in rates.items()))
    assert all(math.isfinite(r) and r >= FMA_RATE_MIN for r in rates.values()), rates


def test_goal_avx2_fma_rate_vs_sse2(rates):
    if not {"avx2", "sse2"} <= set(rates):
        pytest.skip(f"this CPU runs no AVX2 and SSE2 builds to compare (ISAs: {sorted(rates)})")
    goal("AVX2 FMA rate / SSE2", rates["avx2"] / rates["sse2"], GOAL_FMA_AVX2_VS_SSE2)
