"""Every number the benchmark suites judge speed by: all of them, in one place.

Policy
------
Two kinds of number, and only benchmarks/ judges speed (tests/ asserts no timing at all):

* A **budget** (``*_MAX_*``, ``*_MIN_*``) is a promise already kept on the machines we
  measure on. Missing one fails the run: it is a regression, and red is right.
* A **goal** (``GOAL_*``) is a target not yet met everywhere. It is measured and reported
  with its figure on every run, and never turns the run red: met, its test passes; not
  met, its test is an XFAIL (``strict=False``) whose reason carries the measured figure
  (:func:`goal`), and the suite's report lists it as "goal not met". Where a slide below
  today's figure would matter, a goal has a budget floor under it, which does fail.
  A goal that holds on every run for a while becomes a budget (move it, with a note).

Budgets are checked against medians measured in the same run (one thread per runtime,
numpy's BLAS pinned to one thread too). Ratios, not absolute times, carry the claims,
because the machines are shared and noisy; the few absolute budgets are loose enough to
survive a busy neighbour.

Change a number only with a reason written next to it.
"""

from __future__ import annotations

import pytest

# ---------------------------------------------------------------- runtimes (test_runtimes.py)

# pymicro.predict(model, x) on one momentum row (24 features): median at most 1 µs.
# The design's target for a micro network called from Python; pybind11's own call
# overhead is about 65 ns, so this leaves the kernels and the argument checks ~0.9 µs.
MOMENTUM_SINGLE_CALL_MAX_US = 1.0

# The same momentum single call at least 10x faster than ONNX Runtime's best single
# call (io-binding into preallocated buffers, one thread), both medians of this run.
MOMENTUM_SINGLE_CALL_MIN_SPEEDUP_VS_ORT = 10.0

# Goal: batch throughput (BATCH rows per call, pymicro.predict) at least 2x ONNX Runtime's
# (one thread, io-binding) on every preset. Met by momentum (3.0x) and reversal (2.3x);
# not by sentiment (measured 1.80-1.87x on AMD EPYC Zen 4, AVX-512). The design notes
# measured hand-tuned C at 1.0-1.3x ORT on this machine kind; 2x needs several samples
# per SIMD register. The report's roofline section says how far each preset is from the
# FMA floor and what 2x ORT would need of it (sentiment: 84 %).
GOAL_BATCH_SPEEDUP_VS_ORT = 2.0

# Budget floor under that goal, every preset: a regression guard 15-20 % below
# sentiment's 1.80-1.87x, the lowest figure measured.
BATCH_MIN_SPEEDUP_VS_ORT = 1.5

# Issue 16, item 5: budgets restated where physics sets them.
# Attention presets (momentum, sentiment): their batch throughput as a share of the FMA + exp
# floor (bench.Roofline.exp_floor_rows_per_s: the rows/s that the multiply-adds at this core's
# FMA peak plus the softmaxes' exponentials at the kernels' exp rate allow; both rates sampled
# in the same interleaved rounds as the batch, so a neighbour's load lands on all three).
# Restated from "75 % of the FMA floor" (2026-12-05): the exponentials run on the same vector
# ports as the FMAs and no softmax can skip them; on the Xeon below (6.5-6.8 G exps/s,
# pymicro._core.exp_rate; 111-115 G multiply-adds/s) they alone cap momentum (27 exps and 1,048
# multiply-adds a row) at 69 % of the FMA floor and sentiment (53 and 4,264) at 82 %, so the
# old statement left momentum 6 % of its time for the gating, transposes and stores.
# A goal: measured 2026-12-05 on an Intel Xeon (Sapphire Rapids, AVX-512, 2 cores, quiet),
# momentum 36-38 % of the FMA floor = 52-54 % of the FMA + exp floor, sentiment 49-51 % = 60-62 %.
GOAL_ATTENTION_BATCH_FLOOR_FRACTION = 0.75
# Dense presets (reversal): at least 2x ONNX Runtime, a budget (measured 2.3-3.1x).
DENSE_BATCH_MIN_SPEEDUP_VS_ORT = 2.0
# Single call, momentum, paired medians: the targets, goals on a shared machine.
# Met since 2026-12-05 (two-chain dot products, a one-row fast path, recycled result arrays):
# 0.213-0.227 µs through pymicro.predict and 0.180-0.194 µs through predict_into on the quiet
# Xeon below (0.33-0.36 and 0.20-0.25 before); 0.249 / 0.211 in a later run when the whole
# machine ran 10-15 % slower (its FMA peak and ORT alike): goals, not yet budgets.
GOAL_MOMENTUM_SINGLE_CALL_MAX_US = 0.3
GOAL_MOMENTUM_PREDICT_INTO_MAX_US = 0.2

# Rows per batch call in the throughput benchmarks (the design table's batch size).
BATCH = 65536

# Goal (issue 16): Model.predict(x, threads=2) at least 1.8x threads=1 on every preset and on
# an ensemble of the three, at BATCH rows, both medians of one interleaved run. The rows split
# at whole tiles (an ensemble: whole 240-row chunks) and each thread reads and writes its own
# rows: the only costs are waking a worker (a condition variable) and the memory bandwidth two
# cores share. Was a budget; on the shared 2-core Xeon it measured 1.84x once in a quiet
# moment and 0.86-1.45x whenever a neighbour held the second core (load average 4-8), so it
# is a goal, with the floor below.
GOAL_THREADS_2_SPEEDUP = 1.8
# Floor: judged only when other processes left a core to spare (test_bench_threads.py says
# how); a second thread that does not pay for itself on an idle core is a regression.
# Measured 2026-12-05 in a quiet moment: 1.80-1.94x (momentum 1.84, reversal 1.80-1.81,
# sentiment 1.92-1.94).
THREADS_2_MIN_SPEEDUP = 1.3

# ---------------------------------------------------------------- architectures (test_bench_architectures.py)

# Seven non-preset networks (every activation, narrow and wide, deep and shallow), pymicro.predict
# against ONNX Runtime on the same weights, one thread each, paired medians, on the best ISA
# (and on avx2 where the best is avx512). Issue 16's goals: batch >= 1.5x ORT and single call
# >= 10x ORT on every one. Measured 2026-12-05 on an Intel Xeon (Sapphire Rapids, 2 cores, KVM,
# loaded by neighbours), after the rational tanh: batch 3.2-9.9x (avx512), 1.8-6.4x (avx2), the
# deep tanh stack and sigmoid attention lowest; single call 9.7-57x (the noisiest figure: ORT's
# own call varies 5-20 µs under load). After the two-chain dot products (quiet, same machine):
# batch 1.80-7.6x, single call 11.4-28x: both goals met on all seven, on both ISAs (wide relu's
# single call on avx2, 9.0x before, is 11.4x).
GOAL_ARCH_BATCH_SPEEDUP_VS_ORT = 1.5
GOAL_ARCH_SINGLE_CALL_SPEEDUP_VS_ORT = 10.0
# Budget floors under those goals: never slower than ORT on a batch; a single call at least 4x
# (one loaded run measured 4.9x for a network that measures 12-18x otherwise: the single call
# is the figure a neighbour's time slice moves most).
ARCH_BATCH_MIN_SPEEDUP_VS_ORT = 1.0
ARCH_SINGLE_CALL_MIN_SPEEDUP_VS_ORT = 4.0

# ---------------------------------------------------------------- ISA kernels (test_bench_isa.py)

# pymicro._core.fma_rate on every ISA this CPU runs: a sanity floor (multiply-adds/s); a
# 2010 core's scalar SSE2 path does several G/s.
FMA_RATE_MIN = 1e8

# Goal: the AVX2 build (8 FMA lanes) at least 1.3x the SSE2 build (4 lanes of mul + add).
# Was an assertion in tests/test_bench.py; it failed on an AVX2 host where the two
# rates came out closer, so it is a goal: reported with its ratio, not a red run.
GOAL_FMA_AVX2_VS_SSE2 = 1.3

# ---------------------------------------------------------------- wasm (test_bench_wasm.py)

# One prediction through backend="wasm" (model.predict(x)): median at most 3 µs (the
# issue's goal, met: 1.6-2.1 µs measured).
WASM_SINGLE_CALL_MAX_US = 3.0

# Goal: wasm batch throughput at least 1/2 of native on the best ISA. Not met against
# AVX-512 (0.23-0.24x): SIMD128 has 4 lanes, AVX-512 16 (docs/wasm.md).
GOAL_WASM_BATCH_VS_NATIVE = 0.5

# wasm / native sse2, 4 lanes both: a regression guard for the wasm build. Measured 0.8-0.9
# until the native kernels gained 15-25 % on SSE2 (plain broadcasts, out-of-line micro-kernel,
# unrolled write-back) that wasmtime's code did not gain equally; 0.70-0.79 then, 0.74-0.80
# since vmax/vmin became f32x4.pmax/pmin (2026-11-26).
WASM_MIN_VS_NATIVE_SSE2 = 0.6

# wasm / native best ISA: a floor under the goal above (measured 0.23-0.24 against AVX-512 on
# AMD Zen 4; 0.19-0.20 on the Sapphire Rapids Xeon, 2026-12-05, native on one thread: before
# that fix the benchmark let native split the batch over both cores and measured 0.11).
WASM_MIN_VS_NATIVE_BEST = 0.15

# ---------------------------------------------------------------- training (test_bench_train.py)

# Goal: a tinygrad epoch within 2x of PyTorch's time on the same network and batches (the
# issue's goal). Reported per preset and batch size; PyTorch is an optional peer.
GOAL_TRAIN_MAX_RATIO_VS_TORCH = 2.0

# ---------------------------------------------------------------- backtest (test_bench_backtest.py)

# Median seconds of one run_backtest over 2520 bars (ten years of 252 trading days). The
# issue asks for "well under a second"; a tenth of a second for the whole of run_backtest
# (strategy, three baselines, every metric) is about a hundred times what a vectorised
# run takes on the design's machine kind (~1 ms), so a busy neighbour cannot fail it while
# a per-bar Python loop over legs and metrics would.
TEN_YEAR_BACKTEST_MAX_S = 0.1
TEN_YEAR_BARS = 2520

# ---------------------------------------------------------------- MCP (test_bench_mcp.py)

# One MCP stdio neural_predict round trip (one row), median: a sanity bound, not a speed
# claim: a local round trip is milliseconds; 50 ms means something waits.
MCP_ROUND_TRIP_MAX_S = 0.05


def goal(name: str, measured: float, target: float, *, higher_is_better: bool = True,
         unit: str = "×", why: str = "") -> None:
    """Judge a goal by the policy above: return if ``measured`` meets ``target``, else XFAIL
    (not strict) with the measured figure in the reason."""
    met = measured >= target if higher_is_better else measured <= target
    if not met:
        side = "≥" if higher_is_better else "≤"
        pytest.xfail(f"goal not met: {name} {measured:.2f}{unit} (goal {side} {target:g}{unit})"
                     + (f"; {why}" if why else ""))
# ---- pymicro.live: tick to signal (benchmarks/test_bench_stream.py) ----
# Issue 14: one tick through Pipeline.on_tick from Python (update the forming bar, 24
# features, normalise, predict, size) at most 2 µs median, and at most 1 µs a tick when the
# loop itself runs in C++ (Pipeline.replay_ticks).
STREAM_TICK_FROM_PYTHON_MAX_US = 2.0
STREAM_TICK_REPLAYED_MAX_US = 1.0
# The per-tick recomputation with the batch code over 61 bars (numpy) at least 20x slower
# than the native call: the reason the stream exists. Measured far above it; 20x survives noise.
STREAM_MIN_SPEEDUP_VS_NUMPY = 20.0
# Ensembles (benchmarks/test_bench_ensemble.py): a container of the three presets, each
# reading its own columns of one shared input row, run in one core call.
# One row: the ensemble's call at most 1.2x the sum of its members' single calls (each
# member called alone on its own row), medians of interleaved rounds in the same run.
ENSEMBLE_SINGLE_MAX_RATIO_VS_MEMBERS = 1.2
# A batch of ENSEMBLE_BATCH rows: the ensemble's throughput at least 0.8x the members'
# combined throughput (rows / the sum of the members' batch times, each on its own
# contiguous columns), interleaved in the same run.
ENSEMBLE_BATCH_MIN_THROUGHPUT_RATIO = 0.8
ENSEMBLE_BATCH = 65536

# Walk-forward blocks retrained as Dask tasks: 2 local worker processes at least 1.6x faster
# than 1 on the same blocks (issue 13's goal; the blocks are independent, so the ideal is 2x
# less the scatter and the per-process tinygrad compile). Needs 2 cores; skipped with fewer.
WALK_FORWARD_MIN_SPEEDUP_2_WORKERS = 1.6

# 100 tuning trials of momentum with median pruning on 2 cores within 10 minutes (issue 13).
# Measured by benchmarks/test_bench_tune.py with PYMICRO_BENCH_TUNE_TRIALS trials (default 100;
# the figure is reported even when over budget, and the budget is checked only at 100 trials).
TUNE_100_TRIALS_MAX_S = 600.0

# ---- cheaper refits (benchmarks/test_bench_refits.py; issue 17 item 9, issue 13 item 5) ----
# A 10-block momentum walk-forward on one embedded symbol (SP500, expanding, 126-bar blocks,
# default fit: 30 epochs, patience 5, batch 64) within 60 s, serially (issue 13's budget is on 2
# cores; this runs on one worker process). Measured 14.8 s at load average ~3-8 against 106 s
# before the compiled-step reuse and warm starts (2026-12-05, AMD EPYC Zen 4, shared).
WALK_FORWARD_10_BLOCKS_MAX_S = 60.0

# The same walk-forward with compiled steps reused and warm starts at least 3x faster than with
# both off (compile_cache=False, warm_start=False: every refit traces and compiles its own exact
# shapes, as every refit did before), both timed in the same run, in the same process.
REFIT_WALK_FORWARD_MIN_SPEEDUP = 3.0

# validate()'s five tinygrad refits (true labels, shifted labels, 3 shuffled) with compiled
# steps reused at least 1.5x faster than with compile_cache=False, same run, same process.
REFIT_VALIDATE_MIN_SPEEDUP = 1.5

# ---------------------------------------------------------------- CUDA (test_bench_cuda.py)

# Goal (issue 16): backend="cuda", momentum, CUDA_BATCH rows a call already on the GPU
# (predict_into on device arrays, each call synchronised), at least this many predictions a
# second on an H100. An absolute figure on the named card, the one the issue states; ONNX
# Runtime's CUDA provider (onnxruntime-gpu) is measured beside it where installed. Not yet
# measured: no session so far has been lent a GPU.
GOAL_CUDA_MOMENTUM_PREDICTIONS_PER_S = 1e9
CUDA_BATCH = 1 << 20
