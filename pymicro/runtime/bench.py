"""Measuring pymicro against its peers, honestly.

The CLI (``pymicro bench``, ``pymicro quickstart``) and the benchmark suite
(``benchmarks/``) use these helpers. Rules they follow:

* Times are medians over many samples; each sample times many calls with
  ``time.perf_counter_ns`` (garbage collection paused), so timer resolution and
  one-off hiccups do not move the result. The Python loop around the calls is
  included: it is what a caller pays too (about 10-20 ns a call).
* Speed is reported as a ratio against a peer measured in the same run, with
  samples taken *interleaved* (pymicro, peer, pymicro, peer, ...), because these
  machines are shared and noisy. Absolute times go with :func:`machine_name`.
* A peer that cannot run here is reported as "not measured" with the reason,
  never dropped.

Peers run the same blob: :func:`numpy_peer` (plain numpy, float32) and
:func:`onnxruntime_peer` (ONNX Runtime on :func:`pymicro.export_onnx`, one thread,
io-binding into preallocated buffers, its fastest single-call path).
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from pymicro.errors import BackendError, InputError
from pymicro.runtime.activations import BY_NAME as ACTIVATIONS_BY_NAME
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import Model, _read_source, load, predict
from pymicro.runtime.onnx_export import export_onnx
from pymicro.runtime.spec import PRESETS, preset

BATCH = 65536
RUNTIMES = ("pymicro", "numpy", "onnxruntime")


# --------------------------------------------------------------------------- timing


def _sample_ns(fn, arg, calls: int) -> int:
    """Wall time of ``calls`` calls of ``fn(arg)``, in ns, with the GC paused."""
    loop = itertools.repeat(None, calls)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in loop:
            fn(arg)
        return time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(fn, arg, target_s: float = 0.002, max_calls: int = 1 << 22) -> int:
    """How many calls of ``fn(arg)`` one sample needs to last at least ``target_s``."""
    fn(arg)  # warm caches, allocate scratch, trigger lazy set-up
    calls = 1
    while calls < max_calls:
        elapsed = _sample_ns(fn, arg, calls) / 1e9
        if elapsed >= target_s:
            break
        # Jump near the target once a sample is long enough to trust, else double.
        if elapsed > target_s / 20:
            calls = max(calls + 1, math.ceil(calls * target_s * 1.1 / elapsed))
        else:
            calls *= 2
    return min(calls, max_calls)


def per_call_samples(fn, arg, *, repeats: int = 21, target_s: float = 0.002,
                     calls: int | None = None) -> list[float]:
    """``repeats`` samples of seconds per call of ``fn(arg)`` (each sample many calls)."""
    if repeats < 1:
        raise InputError(f"repeats must be at least 1, got {repeats}")
    calls = calls or calibrate(fn, arg, target_s)
    return [_sample_ns(fn, arg, calls) / 1e9 / calls for _ in range(repeats)]


def single_call_latency(fn, x, *, repeats: int = 21, target_s: float = 0.002) -> float:
    """Median seconds per call of ``fn(x)`` (``x`` typically one 1-D float32 row)."""
    return statistics.median(per_call_samples(fn, x, repeats=repeats, target_s=target_s))


def batch_throughput(fn, X, *, repeats: int = 7, target_s: float = 0.02) -> float:
    """Predictions per second of ``fn(X)`` for a 2-D batch ``X`` (median over samples)."""
    rows = np.shape(X)[0] if np.ndim(X) == 2 else 1
    return rows / statistics.median(per_call_samples(fn, X, repeats=repeats, target_s=target_s))


def interleaved(cases: dict, *, repeats: int = 21, target_s: float = 0.002) -> dict[str, list[float]]:
    """Per-call seconds for several ``name: (fn, arg)`` cases, sampled in turn.

    Each round takes one sample of every case, so a burst of load from another
    process lands on all of them alike and the ratios of medians stay fair.
    """
    calls = {name: calibrate(fn, arg, target_s) for name, (fn, arg) in cases.items()}
    out: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, arg) in cases.items():
            out[name].append(_sample_ns(fn, arg, calls[name]) / 1e9 / calls[name])
    return out


# --------------------------------------------------------------------------- machine


@lru_cache(maxsize=1)
def machine_name() -> str:
    """CPU model and core count, e.g. ``'AMD EPYC 9654 96-Core Processor, 2 cores (x86_64 Linux)'``."""
    model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Processor", "cpu model", "Hardware") and value.strip():
                    model = value.strip()
                    break
    except OSError:
        pass
    if model is None:
        try:
            import subprocess

            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model name" and value.strip():
                    model = value.strip()
                    break
        except (OSError, subprocess.SubprocessError):
            pass
    model = model or platform.processor() or "unknown CPU"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return f"{model}, {cores} core{'s' if cores != 1 else ''} ({platform.machine()} {platform.system()})"


_BLAS_SYMBOLS = (  # (set, get) pairs of the OpenBLAS builds numpy wheels ship
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def _openblas_controls():
    import ctypes

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _BLAS_SYMBOLS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, getter.restype = [ctypes.c_int], ctypes.c_int
                return setter, getter
    return None


@contextmanager
def single_thread_blas():
    """Run numpy's BLAS (OpenBLAS) on one thread inside the block, as every peer is.

    Yields "" when pinned, else a note saying the numpy peer's thread count was not
    controlled (so a table can say so rather than hide it).
    """
    controls = _openblas_controls()
    if controls is None:
        yield "numpy's BLAS thread count not controlled (OpenBLAS not found)"
        return
    setter, getter = controls
    before = getter()
    setter(1)
    try:
        yield ""
    finally:
        setter(before)


# --------------------------------------------------------------------------- inputs


def perturbed_network(name: str, seed: int = 0, bias_scale: float = 0.5):
    """``preset(name).init(seed)`` with random biases, so outputs are not near-uniform.

    Glorot init leaves every bias at zero; benchmarks and parity checks want
    probabilities that differ between classes and rows.
    """

    network = preset(name).init(seed=seed)
    rng = np.random.default_rng(seed + 1)
    for layer in network.params:
        for key, value in layer.items():
            if key.startswith("b"):
                layer[key] = (value + rng.normal(0.0, bias_scale, value.shape)).astype(np.float32)
    return network


def preset_blob(name: str, seed: int = 0) -> bytes:
    """The blob the benchmarks run for a preset: seeded weights, perturbed biases."""

    return freeze(perturbed_network(name, seed))


def inputs(input_size: int, batch: int = BATCH, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One standard-normal float32 row (its own aligned array) and a (batch, input_size) batch."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, input_size), dtype=np.float32)
    return X[0].copy(), X


def _blob_of(source) -> bytes:

    return source.blob if isinstance(source, Model) else _read_source(source)


# --------------------------------------------------------------------------- peers


class NumpyPeer:
    """A plain numpy float32 forward pass of a blob: what a careful numpy user would write.

    Weights are transposed and made contiguous once; activations work in place on
    fresh intermediates. Returns (n_classes,) for a 1-D row, (batch, n_classes) for 2-D.
    """

    def __init__(self, described: dict):
        self.input_size = described["input_size"]
        self.n_classes = described["n_classes"]
        f32 = partial(np.ascontiguousarray, dtype=np.float32)
        self._mean = None if described["mean"] is None else f32(described["mean"])
        self._std = None if described["std"] is None else f32(described["std"])
        steps = []
        for layer in described["layers"]:
            if layer["kind"] == "attention":
                steps.append(("attention", f32(layer["W_a"].T), f32(layer["b_a"]),
                              f32(layer["W_v"].T), f32(layer["b_v"])))
            else:
                steps.append((ACTIVATIONS_BY_NAME[layer["activation"]].numpy32, f32(layer["W"].T),
                              f32(layer["b"])))
        self._steps = steps

    @staticmethod
    def _softmax(z: np.ndarray) -> np.ndarray:
        z -= z.max(axis=-1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=-1, keepdims=True)
        return z

    def __call__(self, x) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        if h.ndim not in (1, 2) or h.shape[-1] != self.input_size:
            raise InputError(f"x has shape {h.shape}; this model takes ({self.input_size},) "
                             f"or (batch, {self.input_size})")
        if self._mean is not None:
            h = (h - self._mean) / self._std
        softmax = self._softmax
        for step in self._steps:
            if step[0] == "attention":
                _, wa, ba, wv, bv = step
                a = h @ wa
                a += ba
                softmax(a)
                a *= h
                h = a @ wv
                h += bv
                continue
            act, w, b = step
            z = h @ w
            z += b
            h = act(z)  # float32, in place where it can be (pymicro/activations.py)
        return softmax(h)


def numpy_peer(model_or_blob) -> NumpyPeer:
    """A numpy float32 forward pass of the same blob (a Model, blob bytes or a path)."""
    from pymicro import _core

    return NumpyPeer(_core.parse(_blob_of(model_or_blob)))


class OnnxRuntimePeer:
    """ONNX Runtime on the blob's ONNX export: one thread, sequential, io-binding.

    A 1-D row is copied into a preallocated, bound (1, n) input and the result is
    written into a preallocated, bound output: ORT's fastest single-call path (the
    plain ``session.run`` is about 1.5x slower for one row). A batch is bound in
    place, its output into a buffer kept per batch size. The returned array is that
    reused buffer: copy it if you keep it past the next call (``reuse_output=False``
    returns copies).
    """

    def __init__(self, source, *, reuse_output: bool = True):
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError(
                f"onnxruntime is not installed ({e}); the ONNX Runtime peer cannot be measured. "
                "Install it with: pip install onnxruntime") from None
        from pymicro import _core

        blob = _blob_of(source)
        described = _core.parse(blob)
        self.input_size, self.n_classes = described["input_size"], described["n_classes"]
        self.reuse_output = reuse_output
        self.version = ort.__version__
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(export_onnx(blob), options,
                                            providers=["CPUExecutionProvider"])
        self._row = np.zeros((1, self.input_size), np.float32)
        self._row_out = np.zeros((1, self.n_classes), np.float32)
        self._row_binding = self._bind(self._row, self._row_out)
        self._batch_out = None
        self._batch_binding = self.session.io_binding()

    def _bind_output(self, binding, out: np.ndarray) -> None:
        binding.bind_output("probabilities", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)

    def _bind(self, x: np.ndarray, out: np.ndarray):
        binding = self.session.io_binding()
        binding.bind_cpu_input("x", x)
        self._bind_output(binding, out)
        return binding

    def __call__(self, x) -> np.ndarray:
        if getattr(x, "ndim", None) == 1 and x.shape[0] == self.input_size:
            self._row[0] = x
            # No RunOptions: passing one sends ORT 1.32's Python wrapper down a path ~30 µs slower.
            self.session.run_with_iobinding(self._row_binding)
            out = self._row_out[0]
        else:
            a = np.ascontiguousarray(x, dtype=np.float32)
            if a.ndim != 2 or a.shape[1] != self.input_size:
                raise InputError(f"x has shape {a.shape}; this model takes ({self.input_size},) "
                                 f"or (batch, {self.input_size})")
            if self._batch_out is None or self._batch_out.shape[0] != a.shape[0]:
                self._batch_out = np.empty((a.shape[0], self.n_classes), np.float32)
                self._bind_output(self._batch_binding, self._batch_out)
            self._batch_binding.bind_cpu_input("x", a)
            self.session.run_with_iobinding(self._batch_binding)
            out = self._batch_out
        return out if self.reuse_output else out.copy()


def onnxruntime_peer(blob, *, reuse_output: bool = True) -> OnnxRuntimePeer:
    """ONNX Runtime on ``pymicro.export_onnx(blob)``, one thread (raises BackendError if
    onnxruntime or onnx is missing)."""
    return OnnxRuntimePeer(blob, reuse_output=reuse_output)


def pymicro_runner(model):
    """The call the benchmarks time for pymicro: ``pymicro.predict(model, x)``, one thread
    (as every peer here runs)."""

    return partial(predict, model, threads=1)


# --------------------------------------------------------------------------- roofline


def multiply_adds_per_row(model_or_blob) -> int:
    """Multiply-adds one row needs: ``in*out`` per dense layer, ``n*n + n*k`` per attention."""
    from pymicro import _core

    total = 0
    for layer in _core.parse(_blob_of(model_or_blob), False)["layers"]:
        n, k = layer["in"], layer["out"]
        total += n * n + n * k if layer["kind"] == "attention" else n * k
    return total


def exps_per_row(model_or_blob) -> int:
    """Exponentials one row needs: each attention gate's softmax (one per input), each
    sigmoid output, and the head's softmax (one per class). tanh and gelu are rational
    functions in the kernels, not exponentials."""
    from pymicro import _core

    described = _core.parse(_blob_of(model_or_blob), False)
    total = described["n_classes"]
    for layer in described["layers"]:
        if layer["kind"] == "attention":
            total += layer["in"]
        elif layer.get("activation") == "sigmoid":
            total += layer["out"]
    return total


@dataclass(frozen=True)
class Roofline:
    """The FMA ceiling for a network's batch throughput on this core, one thread.

    ``peak_macs`` is measured (:func:`pymicro._core.fma_rate`: independent vector FMA
    chains of the ISA's kernels, timed); ``floor_rows_per_s`` is how many rows a second
    the multiply-adds alone would allow at that peak, before any exp, transpose or memory
    traffic. A throughput is then a fraction of it.

    With ``exp_rate`` (exponentials a second, :func:`exp_peak`), ``exp_floor_rows_per_s``
    also counts the row's exponentials (:func:`exps_per_row`) at that rate, which run on
    the same vector ports as the FMAs: a softmax cannot skip them, so for an attention
    network it is the floor physics sets.
    """

    isa: str
    peak_macs: float  # float32 multiply-adds per second
    macs_per_row: int
    exp_rate: float = 0.0  # exponentials per second; 0: not measured
    exps_per_row: int = 0

    @property
    def floor_rows_per_s(self) -> float:
        return self.peak_macs / self.macs_per_row

    @property
    def exp_floor_rows_per_s(self) -> float:
        exp_s = self.exps_per_row / self.exp_rate if self.exp_rate else 0.0
        return 1.0 / (self.macs_per_row / self.peak_macs + exp_s)

    def fraction(self, rows_per_s: float) -> float:
        return rows_per_s / self.floor_rows_per_s

    def exp_fraction(self, rows_per_s: float) -> float:
        return rows_per_s / self.exp_floor_rows_per_s


@lru_cache(maxsize=None)
def fma_peak(isa: str = "auto", seconds: float = 0.3) -> float:
    """Peak float32 multiply-adds per second of ``isa``'s kernels here (cached per process)."""
    from pymicro import _core

    return _core.fma_rate(isa, seconds)


@lru_cache(maxsize=None)
def exp_peak(isa: str = "auto", seconds: float = 0.3) -> float:
    """Exponentials per second of ``isa``'s vectorised exp here (cached per process, as
    :func:`fma_peak`): :func:`pymicro._core.exp_rate`, the kernels' own exp over 4,096 floats
    in [-20, 0] from L1, timed in C++."""
    from pymicro import _core

    return _core.exp_rate(isa, seconds)


def roofline(model_or_blob, isa: str | None = None) -> Roofline:
    """The :class:`Roofline` of a model (or blob) for ``isa`` (default: the best here)."""
    from pymicro import _core

    isa = isa or _core.isas()[0]
    return Roofline(isa, fma_peak(isa), multiply_adds_per_row(model_or_blob),
                    exp_peak(isa), exps_per_row(model_or_blob))


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Row:
    """One runtime on one preset. Ratios are this runtime's time over pymicro's (>1: pymicro wins).

    ``single_us`` and ``batch_mps`` are None when the runtime was not measured;
    ``note`` then says why.
    """

    preset: str
    runtime: str
    single_us: float | None
    batch_mps: float | None
    single_ratio: float | None  # peer's single-call median / pymicro's
    batch_ratio: float | None  # pymicro's batch throughput / peer's (= peer's time / pymicro's)
    note: str = ""

    def as_tuple(self) -> tuple:
        return (self.preset, self.runtime, self.single_us, self.batch_mps, self.single_ratio,
                self.batch_ratio, self.note)


def _make_runner(runtime: str, blob: bytes):

    if runtime == "pymicro":
        return pymicro_runner(load(blob))
    if runtime == "numpy":
        return numpy_peer(blob)
    if runtime == "onnxruntime":
        return onnxruntime_peer(blob)
    raise InputError(f"unknown runtime {runtime!r}; choose from {RUNTIMES}")


def compare(presets=None, batch: int = BATCH, *, runtimes=RUNTIMES, seed: int = 0,
            single_repeats: int = 21, batch_repeats: int = 7,
            single_target_s: float = 0.002, batch_target_s: float = 0.02) -> list[Row]:
    """Measure every runtime on every preset: single-call median and batch throughput.

    Samples of the runtimes are interleaved within each preset, and ratios are taken
    against pymicro measured in the same rounds. A runtime that cannot run here
    (e.g. onnxruntime not installed) gets a row with ``note="not measured: ..."``.
    ``batch=0`` skips the batch measurement.
    """

    presets = list(PRESETS if presets is None else ([presets] if isinstance(presets, str) else presets))
    runtimes = list(runtimes)
    if "pymicro" not in runtimes:
        runtimes.insert(0, "pymicro")
    rows: list[Row] = []
    with single_thread_blas() as blas_note:
        for name in presets:
            rows += _compare_preset(name, batch, runtimes, seed, single_repeats, batch_repeats,
                                    single_target_s, batch_target_s, blas_note)
    return rows


def _compare_preset(name, batch, runtimes, seed, single_repeats, batch_repeats,
                    single_target_s, batch_target_s, blas_note) -> list[Row]:
    from pymicro import _core

    rows: list[Row] = []
    blob = preset_blob(name, seed)
    x, X = inputs(_core.parse(blob)["input_size"], max(batch, 1), seed)
    runners, missing = {}, {}
    for runtime in runtimes:
        try:
            runners[runtime] = _make_runner(runtime, blob)
        except BackendError as e:
            missing[runtime] = f"not measured: {e}"
    single = interleaved({r: (fn, x) for r, fn in runners.items()},
                         repeats=single_repeats, target_s=single_target_s)
    single_med = {r: statistics.median(v) for r, v in single.items()}
    if batch:
        many = interleaved({r: (fn, X) for r, fn in runners.items()},
                           repeats=batch_repeats, target_s=batch_target_s)
        batch_tput = {r: batch / statistics.median(v) for r, v in many.items()}
    else:
        batch_tput = {}
    for runtime in runtimes:
        if runtime in missing:
            rows.append(Row(name, runtime, None, None, None, None, missing[runtime]))
            continue
        s, b = single_med[runtime], batch_tput.get(runtime)
        rows.append(Row(
            name, runtime, s * 1e6, None if b is None else b / 1e6,
            s / single_med["pymicro"],
            None if b is None else batch_tput["pymicro"] / b,
            blas_note if runtime == "numpy" else ""))
    return rows


def format_roofline(rows, seed: int = 0) -> str:
    """Each measured batch throughput in ``rows`` as a share of its preset's floors.

    The FMA floor (:func:`roofline`) is the rows a second the preset's multiply-adds alone
    allow at this core's measured FMA peak; the FMA + exp floor adds its exponentials at
    the kernels' measured exp rate. Empty if no row has a batch figure.
    """
    batch = [r for r in rows if r.batch_mps is not None]
    if not batch:
        return ""
    roofs = {name: roofline(preset_blob(name, seed)) for name in dict.fromkeys(r.preset for r in batch)}
    peak = next(iter(roofs.values()))
    lines = [f"FMA floor: the rows/s a preset's multiply-adds alone allow at this core's peak "
             f"({peak.peak_macs / 1e9:.1f} G multiply-adds/s, {peak.isa}, one thread); FMA + exp "
             f"floor: with its exponentials at the kernels' rate ({peak.exp_rate / 1e9:.2f} G/s).", "",
             "| preset | runtime | batch (M pred/s) | FMA floor (M/s) | share of the floor "
             "| FMA + exp floor (M/s) | share of it |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in batch:
        roof = roofs[r.preset]
        lines.append(f"| {r.preset} | {r.runtime} | {r.batch_mps:.2f} | "
                     f"{roof.floor_rows_per_s / 1e6:.1f} | {roof.fraction(r.batch_mps * 1e6):.0%} | "
                     f"{roof.exp_floor_rows_per_s / 1e6:.1f} | {roof.exp_fraction(r.batch_mps * 1e6):.0%} |")
    return "\n".join(lines)


def format_table(rows, machine: str | bool | None = None, baseline: str = "pymicro") -> str:
    """A markdown table of :class:`Row` s, the machine on top (``machine=False`` omits it).

    The ratio columns are each runtime's median time (per call, per batch) divided by
    ``baseline``'s measured in the same run: above 1 means pymicro is faster.
    """
    def num(v, fmt):
        return "—" if v is None else format(v, fmt)

    lines = []
    if machine is not False:
        lines += [f"Machine: {machine or machine_name()}", ""]
    lines += ["| preset | runtime | single call (µs, median) | batch (M pred/s) | "
              f"single: time ÷ {baseline} | batch: time ÷ {baseline} | note |",
              "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.preset} | {r.runtime} | {num(r.single_us, '.3f')} | "
                     f"{num(r.batch_mps, '.2f')} | {num(r.single_ratio, '.2f')} | "
                     f"{num(r.batch_ratio, '.2f')} | {r.note} |")
    return "\n".join(lines)
