"""Tick-to-signal time, measured, beside the time light needs between two exchange sites.

    from pymicro.live.latency import measure, light_time, SITES
    m = measure(pipe, price, size, ts)        # ns per on_tick call from Python, and the C++ replay
    light_time("CME-Aurora", "NYSE-Mahwah")  # great-circle km, µs in vacuum, µs in fibre

What the numbers mean: ``measure`` times ``Pipeline.on_tick`` on this machine (bar, features,
normalisation, network, position: one native call, timed with ``perf_counter_ns`` around
each call, so the timer's own cost is included) and the C++ ``replay_ticks`` per tick. The
light times are a **lower bound** on how fast news of a tick can travel between the two
sites (great circle, speed of light in vacuum; in fibre, about c / 1.47, and real routes
are longer than the great circle). What they do not mean: the measured time excludes the
network, the NIC, the kernel, the market-data decoder and the exchange's gateway, and no
model "predicts before the data arrives": a signal is computed after its tick, and a site
that is X µs of light away sees the tick at least X µs later. Site coordinates are
approximate (the data centres' towns, within a few km: a few µs of light).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from pymicro.errors import InputError

C_KM_S = 299_792.458
FIBRE_INDEX = 1.47
EARTH_RADIUS_KM = 6371.0088  # mean radius (IUGG)

SITES: dict[str, tuple[float, float, str]] = {
    "CME-Aurora": (41.7606, -88.3201, "CME Globex matching engine, Aurora, Illinois"),
    "NYSE-Mahwah": (41.0887, -74.1438, "NYSE data centre, Mahwah, New Jersey"),
    "Nasdaq-Carteret": (40.5773, -74.2282, "Nasdaq data centre, Carteret, New Jersey"),
    "LSE-Slough": (51.5105, -0.5950, "London equities in Slough (LD4 area), England"),
    "Eurex-Frankfurt": (50.0980, 8.6280, "Deutsche Börse / Eurex data centres, Frankfurt"),
    "JPX-Tokyo": (35.6840, 139.7740, "Japan Exchange Group arrowhead, Tokyo"),
}


def great_circle_km(a: str, b: str) -> float:
    for s in (a, b):
        if s not in SITES:
            raise InputError(f"unknown site {s!r}; known: {', '.join(SITES)}")
    (la1, lo1, _), (la2, lo2, _) = SITES[a], SITES[b]
    p1, p2, dl = math.radians(la1), math.radians(la2), math.radians(lo2 - lo1)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class LightTime:
    a: str
    b: str
    km: float
    vacuum_us: float
    fibre_us: float


def light_time(a: str, b: str) -> LightTime:
    km = great_circle_km(a, b)
    return LightTime(a, b, km, km / C_KM_S * 1e6, km / C_KM_S * FIBRE_INDEX * 1e6)


@dataclass(frozen=True)
class Measured:
    ticks: int
    median_ns: float
    p99_ns: float
    max_ns: float
    replay_ns_per_tick: float


def measure(pipe, price, size, ts) -> Measured:
    """Time ``pipe.on_tick`` per tick from Python, then a fresh C++ replay of the same ticks."""
    price, size, ts = (np.asarray(x, dtype=np.float64) for x in (price, size, ts))
    if len(price) < 2:
        raise InputError("measure needs at least 2 ticks")
    pipe.reset()
    on_tick, clock = pipe.on_tick, time.perf_counter_ns
    ns = np.empty(len(price))
    for i in range(len(price)):
        t0 = clock()
        on_tick(price[i], size[i], ts[i])
        ns[i] = clock() - t0
    pipe.reset()
    t0 = clock()
    pipe.replay_ticks(price, size, ts)
    replay = (clock() - t0) / len(price)
    return Measured(len(price), float(np.median(ns)), float(np.percentile(ns, 99)), float(ns.max()), replay)


__all__ = ["LightTime", "Measured", "SITES", "great_circle_km", "light_time", "measure"]
