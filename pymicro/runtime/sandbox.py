"""Sandbox nodes: pymicro.wasm (or any module implementing its ABI) in a fenced wasmtime store.

In the spirit of the seed's sandbox_create / sandbox_upload / sandbox_execute::

    node = pymicro.runtime.sandbox.create(fuel=10**9, timeout=2.0, memory_mb=64)
    node.upload(blob)                  # the blob is parsed and validated *inside* the node
    result = node.execute(x)           # result.probabilities, .fuel_used, .seconds
    node.reset()                       # a fresh store, nothing loaded; node.recycle(): and reloaded

A node is one wasmtime store and one instance with

* a fuel budget per request (``fuel``: wasmtime fuel units, about one per wasm instruction);
* a wall-clock deadline per request (``timeout`` seconds, enforced by epoch interruption:
  a shared ticker thread advances the engine's epoch every :data:`TICK_S` while any node is
  running, so a request is stopped no earlier than ``timeout`` and at most one tick later);
* a memory cap (``memory_mb``: ``memory.grow`` beyond it fails; the guest reports it);
* no imports at all: no WASI, no files, no network, no clock, no environment. A module that
  imports anything is refused before it is instantiated;
* a custom module (``module=``) of at most :data:`MAX_MODULE_BYTES` (4 MiB; else
  :class:`ModuleTooLarge`, before anything is compiled), compiled in a child process under
  ``compile_timeout`` seconds (default 10, its start included) and ``compile_memory_mb`` MiB
  of address space (default 1024; an rlimit, where the OS has one), else
  :class:`CompileLimitExceeded`. The parent deserialises the compiled code; the last 16
  custom modules are cached by content.

The limits' ranges (anything else, infinities and NaN included, is a
:class:`SandboxLimitError` naming the argument and the range; it is also an InputError, so a
ValueError): ``fuel`` an int in [1, 2**63 - 1] or None; ``timeout`` seconds in (0, 86400] or
None; ``memory_mb`` in [1/16, 4096]; ``compile_timeout`` in (0, 600]; ``compile_memory_mb``
in [16, 16384].

Everything that stops a request becomes a :class:`SandboxError` subclass naming the cause
(:class:`FuelExhausted`, :class:`DeadlineExceeded`, :class:`MemoryLimitExceeded`,
:class:`GuestTrap`, :class:`ModuleRejected` (:class:`ModuleTooLarge`,
:class:`CompileLimitExceeded`), :class:`ProtocolViolation`,
:class:`SandboxBlobError`), with ``fuel_used`` and ``seconds`` of the failed request. The host
process and every other node carry on. A node that trapped refuses further requests
(:class:`NodeStateError`) until :meth:`Node.reset` or :meth:`Node.recycle`; a refused blob
or a refused batch (memory) leaves it usable.

The CLI: ``pymicro sandbox run BLOB INPUT.npy [--fuel N] [--timeout S] [--memory MB]``
(:func:`add_parser` / :func:`sandbox_run_main`).
"""

from __future__ import annotations

import atexit
import functools
import itertools
import math
import numbers
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from pymicro.runtime.inputs import coerce, nonfinite_error
from pymicro.errors import (BlobError, CompileLimitExceeded, DeadlineExceeded,  # noqa: F401
                     FuelExhausted, GuestTrap, InputError, InputTypeError, MemoryLimitExceeded, ModuleRejected,
                     ModuleTooLarge, NodeStateError, ProtocolViolation, PymicroError,
                     SandboxBlobError, SandboxError, SandboxLimitError)
from pymicro.runtime.wasm import (F32, Guest, GuestMemoryError, GuestProtocolError, _wasmtime, check_module,
                   close_at_exit, deterministic_config, wasm_bytes)
from pymicro.runtime.model import _read_source

DEFAULT_FUEL = 10_000_000_000  # about ten seconds of pymicro.wasm on a 3-4 GHz core
DEFAULT_TIMEOUT = 10.0         # seconds per request
DEFAULT_MEMORY_MB = 128        # linear memory cap per node
TICK_S = 0.005                 # the epoch ticker's period: the deadline's resolution
UNLIMITED_FUEL = (1 << 63) - 1

# The documented ranges of the limits (anything else is a SandboxLimitError naming the range).
MAX_FUEL = UNLIMITED_FUEL      # fuel: an int in [1, 2**63 - 1] (wasmtime's fuel is a u64), or None
MAX_TIMEOUT = 86_400.0         # timeout: seconds, finite, in (0, one day], or None (no deadline)
MIN_MEMORY_MB, MAX_MEMORY_MB = 1 / 16, 4096  # memory_mb: one 64 KiB page to a wasm32's 4 GiB

# Custom modules (``module=``) are refused above MAX_MODULE_BYTES (ModuleTooLarge) and compiled
# in a child process under a wall-clock deadline and a memory cap (CompileLimitExceeded); the
# parent deserialises what the child compiled. pymicro.wasm itself is trusted and compiled here.
MAX_MODULE_BYTES = 4 << 20         # 4 MiB of wasm bytes or WAT text
DEFAULT_COMPILE_TIMEOUT = 10.0     # seconds, including the child's start (about 0.2 s)
MAX_COMPILE_TIMEOUT = 600.0
DEFAULT_COMPILE_MEMORY_MB = 1024   # address space the compiler may add to the child's own
MIN_COMPILE_MEMORY_MB, MAX_COMPILE_MEMORY_MB = 16, 16384


# --------------------------------------------------------------------------- errors
# The family's classes live in pymicro.errors (and are exported from pymicro); imported
# above so ``from pymicro.runtime.sandbox import SandboxError`` keeps working.


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Upload:
    """What a node reported for an uploaded blob, and what loading it cost."""

    input_size: int
    n_classes: int
    attn_width: int
    params: int
    checksum: int
    fuel_used: int
    seconds: float


@dataclass(frozen=True)
class Execution:
    """One execute request: probabilities (rows, n_classes) or (n_classes,) for one row."""

    probabilities: np.ndarray
    rows: int
    nonfinite_rows: int
    fuel_used: int
    seconds: float
    attention: np.ndarray | None = None


# --------------------------------------------------------------------------- the engine


class _Ticker:
    """Advances an engine's epoch every ``tick`` seconds while any node is inside wasm."""

    def __init__(self, engine, tick: float):
        self.engine, self.tick = engine, tick
        self.cond = threading.Condition()
        self.active = 0
        self.thread: threading.Thread | None = None

    def __enter__(self):
        with self.cond:
            self.active += 1
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="pymicro-sandbox-epoch",
                                               daemon=True)
                self.thread.start()
            self.cond.notify_all()
        return self

    def __exit__(self, *exc):
        with self.cond:
            self.active -= 1

    def _loop(self):
        while True:
            with self.cond:
                while not self.active:
                    self.cond.wait()
            time.sleep(self.tick)
            self.engine.increment_epoch()

    def ticks_for(self, seconds: float) -> int:
        """Epoch ticks that cover at least ``seconds`` from now, whatever the ticker's phase."""
        return math.ceil(seconds / self.tick) + 1


def _config():
    """The sandbox engine's config (the compile child builds the same one: deserialising needs it)."""
    config = deterministic_config()  # the same bits on every host, as backend="wasm"
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = 512 * 1024
    return config


@functools.lru_cache(maxsize=None)
def _engine():
    """The sandbox engine: fuel metering and epoch interruption compiled in; the ticker."""
    wasmtime = _wasmtime()
    engine = wasmtime.Engine(_config())
    atexit.register(close_at_exit, engine)
    return engine, _Ticker(engine, TICK_S)


@functools.lru_cache(maxsize=None)
def _pymicro_module():
    wasmtime = _wasmtime()
    module = wasmtime.Module(_engine()[0], wasm_bytes())
    check_module(module)
    atexit.register(close_at_exit, module)
    return module


def _check_limit(name: str, value, low: float, high: float, *, integer: bool = False,
                 allow_none: bool = False, low_open: bool = False, phase: str = "create"):
    """``value`` if it is a finite number in its documented range, else SandboxLimitError."""
    if value is None and allow_none:
        return None
    closed = "(" if low_open else "["
    if integer:
        what = f"an integer in [{low:,}, {high:,}]"
    else:
        what = f"a finite number of {'seconds' if 'timeout' in name else 'MiB'} in {closed}{low:g}, {high:g}]"
    if allow_none:
        what += " or None"
    ok_type = (isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real))
    if not ok_type or isinstance(value, bool):
        raise SandboxLimitError(f"{name} must be {what}, got {value!r}", phase=phase)
    if integer:
        value = int(value)
        ok = low <= value <= high
    else:
        value = float(value)
        ok = math.isfinite(value) and (low < value if low_open else low <= value) and value <= high
    if not ok:
        raise SandboxLimitError(f"{name} must be {what}, got {value!r}", phase=phase)
    return value


_COMPILE_CHILD = """
from pymicro.runtime.sandbox import _compile_child
_compile_child()
"""


def _compile_child() -> None:
    """The compile child: wasm bytes or WAT on stdin -> the serialised module on stdout.

    argv: [is_text, extra_address_space_bytes, cpu_seconds]. Exit 0 (compiled), 2 (the
    module does not compile: the message on stderr) or 3 (out of memory in Python).
    """
    import sys

    wasmtime = _wasmtime()
    is_text, extra, cpu = sys.argv[1] == "1", int(sys.argv[2]), int(sys.argv[3])
    data = sys.stdin.buffer.read()
    engine = wasmtime.Engine(_config())
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        with open("/proc/self/statm") as f:  # address space mapped so far, in pages
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (mapped + extra, mapped + extra))
    except (ImportError, OSError, ValueError):  # no rlimits here: the deadline still holds
        pass
    try:
        module = wasmtime.Module(engine, data.decode("utf-8") if is_text else data)
        out = module.serialize()
    except wasmtime.WasmtimeError as e:
        sys.stderr.write(str(e))
        sys.exit(2)
    except MemoryError:
        sys.exit(3)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()


_compiled: dict = {}  # sha256 of (kind, source) -> Module, the last few custom modules
atexit.register(lambda: close_at_exit(*_compiled.values()))  # freed while wasmtime still can


def _compile_fenced(data: bytes, is_text: bool, timeout: float, memory_mb: float):
    import hashlib
    import signal
    import subprocess
    import sys

    wasmtime = _wasmtime()
    key = hashlib.sha256(b"wat:" + data if is_text else b"wasm:" + data).hexdigest()
    if key in _compiled:
        return _compiled[key]
    limits = f"(compile limits: {timeout:g} s, {memory_mb:g} MiB)"
    try:
        done = subprocess.run(
            [sys.executable, "-P", "-c", _COMPILE_CHILD, "1" if is_text else "0",
             str(int(memory_mb * (1 << 20))), str(math.ceil(timeout) + 1)],
            input=data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise CompileLimitExceeded(f"compiling the module ran past its deadline of {timeout:g} s "
                                   f"(a {len(data):,}-byte module) {limits}", phase="create") from None
    if done.returncode == 2:
        text = done.stderr.decode("utf-8", "replace").strip()
        first = text.splitlines()[0] if text else "invalid module"
        raise ModuleRejected(f"the module does not compile: {first}", phase="create")
    if done.returncode == -getattr(signal, "SIGXCPU", -1000):
        raise CompileLimitExceeded(f"compiling the module ran past its CPU time of "
                                   f"{math.ceil(timeout) + 1} s {limits}", phase="create")
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise CompileLimitExceeded(
            f"compiling the module ran out of its memory cap of {memory_mb:g} MiB or crashed "
            f"(exit status {done.returncode}{': ' + tail[0][:200] if tail[0] else ''}) {limits}",
            phase="create")
    try:
        module = wasmtime.Module.deserialize(_engine()[0], done.stdout)
    except wasmtime.WasmtimeError as e:  # pragma: no cover - the child's engine is this one's
        raise ModuleRejected(f"the compiled module does not load: {str(e).strip()[:200]}",
                             phase="create") from None
    if len(_compiled) >= 16:
        _compiled.pop(next(iter(_compiled)))
    _compiled[key] = module
    return module


def _too_large(size: int) -> str:
    return (f"the module is {size:,} bytes; a custom module may have at most "
            f"{MAX_MODULE_BYTES:,} bytes (MAX_MODULE_BYTES, {MAX_MODULE_BYTES >> 20} MiB)")


def compile_module(source, *, timeout: float = DEFAULT_COMPILE_TIMEOUT,
                   memory_mb: float = DEFAULT_COMPILE_MEMORY_MB) -> object:
    """A wasmtime Module for nodes from wasm bytes, WAT text (str or bytes) or a path.

    A source over :data:`MAX_MODULE_BYTES` is refused with :class:`ModuleTooLarge` before
    anything is compiled. The rest is compiled in a child process, stopped after ``timeout``
    seconds (its start included) or when the compiler asks for more than ``memory_mb`` MiB
    of address space (:class:`CompileLimitExceeded`); the parent deserialises the result.
    Refused with :class:`ModuleRejected` if it does not compile, imports anything, or does
    not export the pymicro ABI (wasm/README.md) with exactly the right types.
    """
    timeout = _check_limit("compile_timeout", timeout, 0, MAX_COMPILE_TIMEOUT, low_open=True)
    memory_mb = _check_limit("compile_memory_mb", memory_mb, MIN_COMPILE_MEMORY_MB,
                             MAX_COMPILE_MEMORY_MB)
    if isinstance(source, os.PathLike):
        try:
            with open(source, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size > MAX_MODULE_BYTES:
                    raise ModuleTooLarge(_too_large(size), phase="create")
                source = f.read(MAX_MODULE_BYTES + 1)
        except OSError as e:
            raise ModuleRejected(f"cannot read module file {os.fspath(source)!r}: {e.strerror}",
                                 phase="create") from None
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if not isinstance(source, (bytes, str)):
        raise InputTypeError(f"module must be wasm bytes, WAT text or a path, got {type(source).__name__}")
    is_text = isinstance(source, str)
    data = source.encode("utf-8") if is_text else source
    if len(data) > MAX_MODULE_BYTES:
        raise ModuleTooLarge(_too_large(len(data)), phase="create")
    module = _compile_fenced(data, is_text, timeout, memory_mb)
    try:
        check_module(module)
    except GuestProtocolError as e:
        raise ModuleRejected(str(e), phase="create") from None
    return module


# --------------------------------------------------------------------------- nodes

_ids = itertools.count(1)


def _trap_summary(trap) -> str:
    text = str(trap)
    for line in text.splitlines():
        if "wasm trap:" in line:
            return line.split("wasm trap:", 1)[1].strip()
    return text.strip().splitlines()[-1] if text.strip() else "trap"


class Node:
    """One sandbox node (see the module docstring). Not for concurrent use: one request at a time
    (a lock serialises callers). ``state``: "empty", "ready", "failed" or "closed"."""

    def __init__(self, *, fuel: int | None = DEFAULT_FUEL, timeout: float | None = DEFAULT_TIMEOUT,
                 memory_mb: float = DEFAULT_MEMORY_MB, module=None, nan_policy: str = "raise",
                 compile_timeout: float = DEFAULT_COMPILE_TIMEOUT,
                 compile_memory_mb: float = DEFAULT_COMPILE_MEMORY_MB):
        # Every limit is checked against its documented range (module docstring): a value
        # outside it would wrap or overflow inside wasmtime (fuel is a u64, the deadline a
        # count of epoch ticks), so it is refused with SandboxLimitError naming the range.
        fuel = _check_limit("fuel", fuel, 1, MAX_FUEL, integer=True, allow_none=True)
        timeout = _check_limit("timeout", timeout, 0, MAX_TIMEOUT, allow_none=True, low_open=True)
        memory_mb = _check_limit("memory_mb", memory_mb, MIN_MEMORY_MB, MAX_MEMORY_MB)
        compile_timeout = _check_limit("compile_timeout", compile_timeout, 0, MAX_COMPILE_TIMEOUT,
                                       low_open=True)
        compile_memory_mb = _check_limit("compile_memory_mb", compile_memory_mb,
                                         MIN_COMPILE_MEMORY_MB, MAX_COMPILE_MEMORY_MB)
        if nan_policy not in ("raise", "propagate"):
            raise InputError(f"nan_policy must be 'raise' or 'propagate', got '{nan_policy}'")
        self.id = next(_ids)
        self.fuel = fuel
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.raises_on_nonfinite = nan_policy == "raise"
        self._module = _pymicro_module() if module is None else compile_module(
            module, timeout=compile_timeout, memory_mb=compile_memory_mb)
        self._custom = module is not None
        self._lock = threading.Lock()
        self._guest: Guest | None = None
        self._io = None  # (rows, x, out, attn views) reserved in the guest, reused while they fit
        self._blob: bytes | None = None  # the last blob this node loaded (for recycle)
        self.model: Upload | None = None
        self.state = "empty"
        self.requests = 0
        self.fuel_used_total = 0
        self.seconds_total = 0.0
        self.failures = 0
        self.last_error: SandboxError | None = None
        with self._lock:
            self._start()

    # ---- the public requests

    def upload(self, blob) -> Upload:
        """Load a blob (bytes or a path) into the node: the node's own parser validates it."""
        if isinstance(blob, (str, os.PathLike)):

            blob = _read_source(blob)
        try:
            data = bytes(memoryview(blob).cast("B"))
        except TypeError:
            raise InputTypeError("a blob must be a contiguous bytes-like object or a path") from None
        with self._lock:
            self._usable("upload", need_model=False)
            self._io = None
            up = self._request("upload", lambda g: self._load(g, data))
            self._blob, self.model, self.state = data, up, "ready"
            return up

    def execute(self, x, *, explain: bool = False) -> Execution:
        """Class probabilities for x, (d,) or (batch, d), computed inside the node.

        The whole batch goes into the node's memory at once, so a batch larger than the
        memory cap is refused with MemoryLimitExceeded (the node stays usable).
        ``explain=True`` also returns the first attention layer's weights.
        """
        with self._lock:
            self._usable("execute", need_model=True)
            m = self.model
            if type(x) is not np.ndarray or x.dtype is not F32:
                x = coerce(x, m.input_size)
            if x.ndim == 1 and x.shape[0] == m.input_size:
                n = 1
            elif x.ndim == 2 and x.shape[1] == m.input_size:
                n = x.shape[0]
            else:
                raise InputError(f"x has shape {x.shape}; this model takes ({m.input_size},) or "
                                 f"(batch, {m.input_size})")
            if explain and not m.attn_width:
                raise InputError("this model has no attention layer to explain")
            if n == 0:
                empty = np.empty((0, m.n_classes), np.float32)
                attn = np.empty((0, m.attn_width), np.float32) if explain else None
                return Execution(empty, 0, 0, 0, 0.0, attn)
            rows = x.reshape(n, m.input_size)
            ex = self._request("execute", lambda g: self._run(g, rows, n, explain))
            if ex.nonfinite_rows and self.raises_on_nonfinite:
                raise nonfinite_error(x, ex.probabilities, self._blob)
            if x.ndim == 1:
                ex = Execution(ex.probabilities[0], 1, ex.nonfinite_rows, ex.fuel_used, ex.seconds,
                               None if ex.attention is None else ex.attention[0])
            return ex

    def reset(self) -> None:
        """Drop the store (and everything in it) and start a fresh one with nothing loaded."""
        with self._lock:
            if self.state == "closed":
                raise NodeStateError("the node is closed", node=self.id, phase="reset")
            self._guest = None
            self.model = None
            self.state = "empty"
            self._start()

    def recycle(self) -> Upload | None:
        """A fresh store with the last successfully uploaded blob loaded again (if any)."""
        self.reset()
        return self.upload(self._blob) if self._blob is not None else None

    def close(self) -> None:
        with self._lock:
            self._guest = None
            self.model = None
            self.state = "closed"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        m = self.model
        what = f" model {m.input_size}->{m.n_classes}" if m else ""
        return (f"<pymicro.runtime.sandbox.Node {self.id} {self.state}{what} fuel={self.fuel} "
                f"timeout={self.timeout} memory_mb={self.memory_mb}>")

    @property
    def call_path(self) -> str | None:
        return self._guest.call_path if self._guest is not None else None

    # ---- internals

    def _usable(self, phase: str, need_model: bool) -> None:
        if self.state == "closed":
            raise NodeStateError("the node is closed", node=self.id, phase=phase)
        if self.state == "failed":
            cause = self.last_error.cause if self.last_error else "?"
            raise NodeStateError(f"the node stopped on an earlier request ({cause}); "
                                 "call reset() or recycle() first", node=self.id, phase=phase)
        if need_model and self.state != "ready":
            raise NodeStateError("no blob is loaded: upload() one first", node=self.id, phase=phase)

    def _limits(self, store) -> None:
        store.set_limits(memory_size=int(self.memory_mb * (1 << 20)), table_elements=100_000,
                         instances=1, tables=4, memories=1)

    def _start(self) -> None:
        """A fresh store and instance (the module's start function, if any, runs fenced too)."""
        wasmtime = _wasmtime()
        engine = _engine()[0]

        def instantiate(_):
            store = wasmtime.Store(engine)
            self._limits(store)
            self._arm(store)
            holder["store"] = store
            return Guest(store, self._module)

        holder: dict = {}
        self._io = None
        try:
            self._guest = self._request("create", instantiate, store_of=holder)
        except SandboxError:
            self._guest = None
            raise
        self.state = "empty"

    def _arm(self, store) -> None:
        store.set_fuel(UNLIMITED_FUEL if self.fuel is None else self.fuel)
        ticker = _engine()[1]
        store.set_epoch_deadline(1 << 62 if self.timeout is None else ticker.ticks_for(self.timeout))

    def _request(self, phase: str, body, store_of: dict | None = None):
        """Run ``body(guest)`` fenced: fuel and deadline armed, every failure typed."""
        wasmtime = _wasmtime()
        guest = self._guest
        if guest is not None:
            self._arm(guest.store)
        ticker = _engine()[1]
        start = time.perf_counter()
        error: SandboxError | None = None
        result = None
        with ticker:
            try:
                result = body(guest)
            except wasmtime.Trap as trap:
                error = self._from_trap(trap, phase)
            except wasmtime.WasmtimeError as e:
                error = self._from_wasmtime_error(e, phase)
            except GuestMemoryError as e:
                error = MemoryLimitExceeded(f"{e} (the cap is {self.memory_mb:g} MiB)",
                                            node=self.id, phase=phase)
            except GuestProtocolError as e:
                error = ProtocolViolation(str(e), node=self.id, phase=phase)
            except BlobError as e:
                error = SandboxBlobError(str(e).rsplit(" (at byte ", 1)[0], e.offset, node=self.id)
        seconds = time.perf_counter() - start
        store = guest.store if guest is not None else (store_of or {}).get("store")
        if store is None and result is not None:
            store = result.store
        fuel_used = self._fuel_used(store)
        self.requests += 1
        self.seconds_total += seconds
        self.fuel_used_total += fuel_used or 0
        if error is not None:
            error.fuel_used, error.seconds = fuel_used, seconds
            error.args = (f"{error.args[0]} [fuel used {fuel_used if fuel_used is not None else '?'}, "
                          f"{seconds * 1e3:.1f} ms]",)
            self.failures += 1
            self.last_error = error
            if isinstance(error, (FuelExhausted, DeadlineExceeded, GuestTrap, ProtocolViolation)):
                self.state = "failed"
                self.model = None
            elif phase == "upload":
                self.state = "empty"  # pm_blob_alloc unloaded the previous model
                self.model = None
            raise error
        if isinstance(result, Upload):
            result = Upload(**{**result.__dict__, "fuel_used": fuel_used or 0, "seconds": seconds})
        elif isinstance(result, Execution):
            result = Execution(result.probabilities, result.rows, result.nonfinite_rows,
                               fuel_used or 0, seconds, result.attention)
        return result

    def _fuel_used(self, store) -> int | None:
        if store is None:
            return None
        try:
            left = store.get_fuel()
        except Exception:  # noqa: BLE001 - a closed store: unknown
            return None
        budget = UNLIMITED_FUEL if self.fuel is None else self.fuel
        return budget - left

    def _from_trap(self, trap, phase: str) -> SandboxError:
        wasmtime = _wasmtime()
        code = trap.trap_code
        kw = {"node": self.id, "phase": phase}
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return FuelExhausted(f"out of fuel: the request used its whole budget of {self.fuel} units",
                                 **kw)
        if code == wasmtime.TrapCode.INTERRUPT:
            return DeadlineExceeded(f"deadline exceeded: the request ran past {self.timeout} s", **kw)
        if code == wasmtime.TrapCode.STACK_OVERFLOW:
            return GuestTrap("the guest overflowed its stack", **kw)
        if code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS:
            return GuestTrap("the guest accessed memory out of bounds", **kw)
        name = code.name.lower().replace("_", " ") if code is not None else "trap"
        return GuestTrap(f"the guest trapped ({name}): {_trap_summary(trap)}", **kw)

    def _from_wasmtime_error(self, e, phase: str) -> SandboxError:
        text = str(e).strip()
        first = text.splitlines()[0] if text else "wasmtime error"
        kw = {"node": self.id, "phase": phase}
        if "memory" in text and ("limit" in text or "exceed" in text):
            return MemoryLimitExceeded(f"{first} (the cap is {self.memory_mb:g} MiB)", **kw)
        if phase == "create":
            return ModuleRejected(f"the module cannot be instantiated: {first}", **kw)
        return GuestTrap(f"wasmtime refused the call: {first}", **kw)

    @staticmethod
    def _load(guest: Guest, data: bytes) -> Upload:
        guest.load(data)
        return Upload(guest.input_size, guest.n_classes, guest.attn_width, guest.call("pm_params"),
                      guest.call("pm_checksum"), 0, 0.0)

    def _run(self, guest: Guest, rows: np.ndarray, n: int, explain: bool) -> Execution:
        m = self.model
        io = self._io
        if io is None or n > io[0]:
            self._io = None
            try:
                xv, ov, av = guest.reserve(n)
            except GuestMemoryError as e:
                need = 4 * n * (m.input_size + m.n_classes + m.attn_width) / (1 << 20)
                raise GuestMemoryError(f"{e}: {n} rows need {need:.1f} MiB of row buffers") from None
            io = self._io = (n, xv, ov, av)
        _, xv, ov, av = io
        xv[:n] = rows
        bad = guest.call("pm_run", n, 1 if explain else 0)
        if not 0 <= bad <= n:
            raise GuestProtocolError(f"pm_run({n}) reported {bad} rows with NaN/Inf")
        if guest.moved():  # the guest grew its memory and it moved: the views are stale
            self._io = None
            x_addr, out_addr, attn_addr = guest.io
            ov = guest.view(out_addr, io[0] * m.n_classes, F32).reshape(io[0], m.n_classes)
            av = (guest.view(attn_addr, io[0] * m.attn_width, F32).reshape(io[0], m.attn_width)
                  if m.attn_width else None)
        probs = ov[:n].copy()
        attn = av[:n].copy() if explain else None
        return Execution(probs, n, int(bad), 0, 0.0, attn)


def create(*, fuel: int | None = DEFAULT_FUEL, timeout: float | None = DEFAULT_TIMEOUT,
           memory_mb: float = DEFAULT_MEMORY_MB, module=None, nan_policy: str = "raise",
           compile_timeout: float = DEFAULT_COMPILE_TIMEOUT,
           compile_memory_mb: float = DEFAULT_COMPILE_MEMORY_MB) -> Node:
    """A new sandbox node (the seed's sandbox_create). ``module``: None for pymicro.wasm, or
    wasm bytes / WAT text / a path to any module implementing the ABI (hostile ones included),
    at most :data:`MAX_MODULE_BYTES`, compiled under ``compile_timeout`` seconds and
    ``compile_memory_mb`` MiB. The limits' ranges are in the module docstring."""
    return Node(fuel=fuel, timeout=timeout, memory_mb=memory_mb, module=module, nan_policy=nan_policy,
                compile_timeout=compile_timeout, compile_memory_mb=compile_memory_mb)
