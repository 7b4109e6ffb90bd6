"""Tick to signal: pymicro.live's Pipeline beside a numpy peer and talipp, in one run.

Each runtime gets the same ticks (tick bars of TICKS_PER_BAR ticks, after a warm-up that
fills every window) and does, per tick, what a live trader needs: fold the tick into the
forming bar and produce the model's input on (history + forming bar).

Both streamed presets are measured in the same run: momentum (24 features) and reversal (32).

* ``pymicro on_tick``: ``Pipeline.on_tick(price, size, ts)`` from Python: update, peek the
  preset's features, normalise, run the network, size; one native call. Timed per call
  (``perf_counter_ns`` around each, the timer's own cost measured and subtracted) for the
  median and p99, and as a plain loop (total / calls).
* ``pymicro replay (C++)``: ``Pipeline.replay_ticks`` over the same arrays: the C++ loop.
* ``numpy window``: the features recomputed per tick with the batch code
  (``momentum_arrays`` / ``_reversal_arrays``) over the last 61 bars, as serving without a
  stream would, then ``model.predict``: the same numbers (checked here) and the same network.
* ``talipp``: talipp 2.x incremental pure-Python indicators (SMA 10 and 50, StdDev 20,
  RSI 14, ATR 14, Stoch 14), ``add`` for a new bar and ``update`` for a tick inside it. Six
  indicators, not 24 features, and no network: a lower bound on a pure-Python stream.

The table goes to benchmarks/results/stream.md with the CPU model. Budgets: budgets.py.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np

import pymicro
from pymicro.live.stream import Pipeline
from pymicro.market.technical import MOMENTUM_FEATURES, REVERSAL_FEATURES, _reversal_arrays, momentum_arrays
from pymicro.runtime.bench import machine_name

HERE = Path(__file__).resolve().parent
TICKS_PER_BAR = 50
WARMUP_BARS = 80
TIMED_TICKS = 20_000
REPLAY_TICKS = 200_000
CHUNK = 2000


def _budgets():
    spec = importlib.util.spec_from_file_location("pymicro_benchmark_budgets", HERE / "budgets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ticks(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 3e-4, n)))
    size = rng.integers(1, 100, n).astype(float)
    ts = np.arange(n, dtype=float) * 0.01
    return price, size, ts


PRESETS = {"momentum": (MOMENTUM_FEATURES, momentum_arrays), "reversal": (REVERSAL_FEATURES, _reversal_arrays)}


def _blob(preset: str) -> bytes:
    names = PRESETS[preset][0]
    spec = dataclasses.replace(pymicro.preset(preset), feature_names=names)
    net = spec.init(seed=0)
    net.mean, net.std = np.zeros(len(names), np.float32), np.full(len(names), 0.01, np.float32)
    return pymicro.freeze(net)


class NumpyWindowPeer:
    """The batch feature code over the last 61 bars, per tick, then the network."""

    def __init__(self, model, preset: str = "momentum"):
        self.names, self.arrays = PRESETS[preset]
        self.model = model
        self.bars = np.zeros((0, 5))
        self.forming = None
        self.n = 0

    def on_tick(self, price, size, ts):
        if self.forming is None:
            self.forming = [price, price, price, price, size]
            self.n = 1
        else:
            f = self.forming
            f[1], f[2], f[3], f[4] = max(f[1], price), min(f[2], price), price, f[4] + size
            self.n += 1
        window = np.vstack([self.bars[-60:], self.forming])
        cols = {k: window[:, i] for i, k in enumerate(("open", "high", "low", "close", "volume"))}
        f = self.arrays(cols)
        x = np.array([f[name][-1] for name in self.names], np.float32)
        if self.n == TICKS_PER_BAR:
            self.bars = np.vstack([self.bars[-60:], self.forming])
            self.forming = None
        return (self.model.predict(x) if np.isfinite(x).all() else None), x  # warm-up: no signal


class TalippPeer:
    def __init__(self):
        from talipp.indicators import ATR, RSI, SMA, StdDev, Stoch

        self.close_inds = [SMA(10), SMA(50), StdDev(20), RSI(14)]
        self.bar_inds = [ATR(14), Stoch(14, 3)]
        self.forming = None
        self.n = 0

    def on_tick(self, price, size, ts):
        from talipp.ohlcv import OHLCV

        new = self.forming is None
        if new:
            self.forming = [price, price, price, price, size]
            self.n = 1
        else:
            f = self.forming
            f[1], f[2], f[3], f[4] = max(f[1], price), min(f[2], price), price, f[4] + size
            self.n += 1
        bar = OHLCV(*self.forming)
        for ind in self.close_inds:
            ind.add(price) if new else ind.update(price)
        for ind in self.bar_inds:
            ind.add(bar) if new else ind.update(bar)
        if self.n == TICKS_PER_BAR:
            self.forming = None
        return [ind[-1] for ind in self.close_inds]


def _per_call_ns(fn, price, size, ts, start, count):
    pc = time.perf_counter_ns
    out = np.empty(count, np.int64)
    for i in range(count):
        j = start + i
        t0 = pc()
        fn(price[j], size[j], ts[j])
        out[i] = pc() - t0
    empty = np.empty(count, np.int64)
    for i in range(count):
        t0 = pc()
        empty[i] = pc() - t0
    return out - int(np.median(empty))


def _loop_ns(fn, price, size, ts, start, count):
    """Median over chunks of CHUNK calls of (chunk time / CHUNK): a plain Python loop."""
    per = []
    for a in range(start, start + count, CHUNK):
        t0 = time.perf_counter_ns()
        for j in range(a, a + CHUNK):
            fn(price[j], size[j], ts[j])
        per.append((time.perf_counter_ns() - t0) / CHUNK)
    return statistics.median(per)


def _measure(preset, price, size, ts, price_l, size_l, ts_l, warm, rows):
    model = pymicro.load(_blob(preset))
    pipe = Pipeline(model, bar="tick", bar_size=TICKS_PER_BAR, threshold=0.0)
    for j in range(warm):
        pipe.on_tick(price_l[j], size_l[j], ts_l[j])
    assert pipe.ready
    per_call = _per_call_ns(pipe.on_tick, price_l, size_l, ts_l, warm, TIMED_TICKS)
    loop = _loop_ns(pipe.on_tick, price_l, size_l, ts_l, warm + TIMED_TICKS, TIMED_TICKS)
    rows[(preset, "pymicro on_tick (Python)")] = (np.median(per_call), np.percentile(per_call, 99), loop)
    assert np.isfinite(pipe.features).all()

    # the C++ loop over chunks of CHUNK ticks; the median chunk, so a preempted slice of a
    # shared machine does not count as the loop's speed
    r = Pipeline(model, bar="tick", bar_size=TICKS_PER_BAR, threshold=0.0)
    r.replay_ticks(price[:warm], size[:warm], ts[:warm])
    reps = []
    for a in range(warm, warm + REPLAY_TICKS, CHUNK):
        t0 = time.perf_counter_ns()
        r.replay_ticks(price[a:a + CHUNK], size[a:a + CHUNK], ts[a:a + CHUNK])
        reps.append((time.perf_counter_ns() - t0) / CHUNK)
    rows[(preset, "pymicro replay (C++ loop)")] = (None, None, statistics.median(reps))

    peer = NumpyWindowPeer(model, preset)
    for j in range(warm):
        peer.on_tick(price_l[j], size_l[j], ts_l[j])
    per_np = _per_call_ns(peer.on_tick, price_l, size_l, ts_l, warm, 2000)
    rows[(preset, "numpy window (batch code, 61 bars)")] = (np.median(per_np), np.percentile(per_np, 99), None)
    # the peer computes the same features: replay it to where the pipeline stopped
    peer2, pipe2 = NumpyWindowPeer(model, preset), Pipeline(model, bar="tick", bar_size=TICKS_PER_BAR)
    for j in range(warm + 123):
        _, x = peer2.on_tick(price_l[j], size_l[j], ts_l[j])
        pipe2.on_tick(price_l[j], size_l[j], ts_l[j])
    np.testing.assert_allclose(x, pipe2.features.astype(np.float32), rtol=1e-5, atol=1e-7)
    return pipe


def test_tick_to_signal(benchmark):
    budgets = _budgets()
    warm = WARMUP_BARS * TICKS_PER_BAR
    price, size, ts = _ticks(warm + REPLAY_TICKS)
    # plain floats, as a feed handler would pass them
    price_l, size_l, ts_l = price.tolist(), size.tolist(), ts.tolist()
    rows = {}
    pipes = {preset: _measure(preset, price, size, ts, price_l, size_l, ts_l, warm, rows) for preset in PRESETS}

    try:
        tp = TalippPeer()
    except ImportError:
        tp = None
    if tp is not None:
        for j in range(warm):
            tp.on_tick(price_l[j], size_l[j], ts_l[j])
        per_tp = _per_call_ns(tp.on_tick, price_l, size_l, ts_l, warm, 5000)
        rows[("either", "talipp (6 indicators, no network)")] = (np.median(per_tp), np.percentile(per_tp, 99), None)

    pipe = pipes["momentum"]
    benchmark.pedantic(pipe.on_tick, args=(price_l[-1], size_l[-1], ts_l[-1] + 1.0), rounds=2000, iterations=1)

    us = lambda v: "—" if v is None else f"{v / 1000:.3f}"  # noqa: E731
    lines = [f"# Tick to signal ({machine_name()}, one thread, {time.strftime('%Y-%m-%d')})", "",
             f"Tick bars of {TICKS_PER_BAR} ticks; momentum preset (24 features, "
             f"{pymicro.load(_blob('momentum')).info.params} params) and reversal preset (32 features, "
             f"{pymicro.load(_blob('reversal')).info.params} params), measured in one run; per tick: update the "
             "forming bar, features, normalise, predict, size.", "",
             "| preset | runtime | median µs/tick | p99 µs/tick | loop µs/tick (median of 2000-tick chunks) | "
             "median vs pymicro (same preset) |",
             "|---|---|---|---|---|---|"]
    for (preset, name), (med, p99, mean) in rows.items():
        base = rows[("momentum" if preset == "either" else preset, "pymicro on_tick (Python)")][0]
        ratio = "—" if med is None else f"{med / base:.0f}x"
        lines.append(f"| {preset} | {name} | {us(med)} | {us(p99)} | {us(mean)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "stream.md").write_text(text, encoding="utf-8")

    for preset in PRESETS:
        base = rows[(preset, "pymicro on_tick (Python)")][0]
        med_us = base / 1000
        replay_us = rows[(preset, "pymicro replay (C++ loop)")][2] / 1000
        assert med_us <= budgets.STREAM_TICK_FROM_PYTHON_MAX_US, (preset, text)
        assert replay_us <= budgets.STREAM_TICK_REPLAYED_MAX_US, (preset, text)
        assert rows[(preset, "numpy window (batch code, 61 bars)")][0] >= budgets.STREAM_MIN_SPEEDUP_VS_NUMPY * base, \
            (preset, text)
