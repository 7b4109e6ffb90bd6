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
  imports anything is refused before it is instantiated.

Everything that stops a request becomes a :class:`SandboxError` subclass naming the cause
(:class:`FuelExhausted`, :class:`DeadlineExceeded`, :class:`MemoryLimitExceeded`,
:class:`GuestTrap`, :class:`ModuleRejected`, :class:`ProtocolViolation`,
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


@functools.lru_cache(maxsize=None)
def _engine():
    """The sandbox engine: fuel metering and epoch interruption compiled in; the ticker."""
    wasmtime = _wasmtime()
    config = deterministic_config()  # the same bits on every host, as backend="wasm"
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = 512 * 1024
    engine = wasmtime.Engine(config)
    atexit.register(close_at_exit, engine)
    return engine, _Ticker(engine, TICK_S)


@functools.lru_cache(maxsize=None)
def _pymicro_module():
    wasmtime = _wasmtime()
    module = wasmtime.Module(_engine()[0], wasm_bytes())
    check_module(module)
    atexit.register(close_at_exit, module)
    return module


def compile_module(source) -> object:
    """A wasmtime Module for nodes from wasm bytes, WAT text (str or bytes) or a path.

    Refused with :class:`ModuleRejected` if it does not compile, imports anything, or does
    not export the pymicro ABI (wasm/README.md) with exactly the right types.
    """
    wasmtime = _wasmtime()
    if isinstance(source, os.PathLike):
        try:
            with open(source, "rb") as f:
                source = f.read()
        except OSError as e:
            raise ModuleRejected(f"cannot read module file {os.fspath(source)!r}: {e.strerror}",
                                 phase="create") from None
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if not isinstance(source, (bytes, str)):
        raise InputTypeError(f"module must be wasm bytes, WAT text or a path, got {type(source).__name__}")
    try:
        module = wasmtime.Module(_engine()[0], source)
    except wasmtime.WasmtimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "invalid module"
        raise ModuleRejected(f"the module does not compile: {first}", phase="create") from None
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
                 memory_mb: float = DEFAULT_MEMORY_MB, module=None, nan_policy: str = "raise"):
        if fuel is not None and (not isinstance(fuel, int) or isinstance(fuel, bool) or fuel < 1):
            raise InputError(f"fuel must be a positive integer or None, got {fuel!r}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise InputError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        if not (isinstance(memory_mb, (int, float)) and 0 < memory_mb <= 4096):
            raise InputError(f"memory_mb must be in (0, 4096], got {memory_mb!r}")
        if nan_policy not in ("raise", "propagate"):
            raise InputError(f"nan_policy must be 'raise' or 'propagate', got '{nan_policy}'")
        self.id = next(_ids)
        self.fuel = fuel
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.raises_on_nonfinite = nan_policy == "raise"
        self._module = _pymicro_module() if module is None else compile_module(module)
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
           memory_mb: float = DEFAULT_MEMORY_MB, module=None, nan_policy: str = "raise") -> Node:
    """A new sandbox node (the seed's sandbox_create). ``module``: None for pymicro.wasm, or
    wasm bytes / WAT text / a path to any module implementing the ABI (hostile ones included)."""
    return Node(fuel=fuel, timeout=timeout, memory_mb=memory_mb, module=module, nan_policy=nan_policy)
