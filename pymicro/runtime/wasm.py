"""The wasm backend: the one C++ core compiled to wasm32 + SIMD128, run by wasmtime.

``pymicro.load(blob, backend="wasm")`` returns a Model whose ``predict``,
``predict_into`` and ``explain`` run ``pymicro.wasm`` (built from
cpp/pymicro/kernels.inl and parse.hpp by wasm/pymicro_wasm.cpp, shipped in the
wheel) in a wasmtime store of its own, with the same input policy, the same
error types and messages as the native backend, and probabilities bit-identical
to the native AVX2/AVX-512 builds (docs/wasm.md says why).

The module imports nothing. It is compiled once per process (about 0.1 s) and
instantiated once per thread that uses a model (a wasmtime store must not be
entered by two threads at once; each thread gets its own, so threads run in
parallel as they do natively).

Call path. ``wasmtime.Func.__call__`` costs 10-30 µs (it rebuilds the function
type and boxes every value on each call). This backend calls the exported
function through wasmtime's C API ``wasmtime_func_call_unchecked`` instead, with
the argument array, the store context and the trap slot built once: about 0.3
µs a crossing. That C function is public and documented; reaching it goes
through three private names of wasmtime-py (``_ffi.dll``, ``Func._func``,
``Store._context()``), so it is used only on the wasmtime-py series it was
written and tested against (:data:`FAST_CALL_SERIES`, pinned in pyproject's
``wasm`` extra) and after each export's signature has been checked; anything
else falls back to the public ``Func.__call__`` (``model.call_path`` says
which). Batches cross once per chunk of :data:`CHUNK_ROWS` rows, not per row.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import os
import threading
import weakref
from pathlib import Path

import numpy as np

from pymicro.errors import (BackendError, BlobError, GuestMemoryError, GuestProtocolError,  # noqa: F401
                            InputError, InputTypeError, require)
from pymicro.runtime.inputs import check_no_overlap, check_threads, coerce, nonfinite_error

ABI_VERSION = 1
FAST_CALL_SERIES = 50  # the wasmtime-py major version the unchecked call path is tested on
CHUNK_ROWS = 4096      # rows per crossing for batches: the x/out buffers stay in L2
F32 = np.dtype(np.float32)

# The exports of ABI version 1 (wasm/README.md): name -> (params, results).
ABI = {
    "pm_abi_version": ((), ("i32",)),
    "pm_isa": ((), ("i32",)),
    "pm_tile": ((), ("i32",)),
    "pm_blob_alloc": (("i32",), ("i32",)),
    "pm_load": (("i32",), ("i32",)),
    "pm_error_message": ((), ("i32",)),
    "pm_error_offset": ((), ("i64",)),
    "pm_input_size": ((), ("i32",)),
    "pm_n_classes": ((), ("i32",)),
    "pm_attn_width": ((), ("i32",)),
    "pm_params": ((), ("i64",)),
    "pm_checksum": ((), ("i32",)),
    "pm_reserve": (("i32",), ("i32",)),
    "pm_out": ((), ("i32",)),
    "pm_attn": ((), ("i32",)),
    "pm_run": (("i32", "i32"), ("i64",)),
}

# Optional exports of pymicro.wasm, not required of a sandbox module (wasm/README.md): the
# incremental feature stream that pymicro.live.stream.WasmFeatureStream drives.
STREAM_ABI = {
    "pm_stream_init": ((), ("i32",)),
    "pm_stream_bar": (("f64", "f64", "f64", "f64", "f64", "i32"), ("i32",)),
    "pm_stream_row": ((), ("i32",)),
    "pm_stream_bars": ((), ("i64",)),
}

# pm_load's return codes
LOAD_OK, LOAD_BLOB_INVALID, LOAD_OUT_OF_MEMORY, LOAD_NO_BUFFER = 0, 1, 2, 3


def _wasmtime():
    """The wasmtime module, or MissingDependencyError (a BackendError) naming ``pymicro[wasm]``."""
    return require("wasmtime", "wasm", purpose="backend 'wasm'")


def wasm_path() -> Path:
    """Where ``pymicro.wasm`` is: ``$PYMICRO_WASM`` if set, else beside the compiled core."""
    env = os.environ.get("PYMICRO_WASM")
    if env:
        return Path(env)
    from pymicro import _core

    candidates = [Path(_core.__file__).with_name("pymicro.wasm"), Path(__file__).with_name("pymicro.wasm")]
    for path in candidates:
        if path.is_file():
            return path
    raise BackendError("pymicro.wasm is missing from this installation (looked in "
                       + ", ".join(str(p.parent) for p in candidates)
                       + "); reinstall pymicro: the package build compiles it")


@functools.lru_cache(maxsize=None)
def wasm_bytes() -> bytes:
    """The bytes of the shipped ``pymicro.wasm``."""
    try:
        return wasm_path().read_bytes()
    except OSError as e:
        raise BackendError(f"cannot read pymicro.wasm: {e}") from None


@functools.lru_cache(maxsize=None)
def wasmtime_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wasmtime")
    except PackageNotFoundError:  # pragma: no cover - installed without metadata
        return "unknown"


# --------------------------------------------------------------------------- the fast call


class _Unchecked:
    """``wasmtime_func_call_unchecked`` for one export of one store, set up once.

    ``args`` is the raw value array (parameters in, results out, overwriting the
    parameters). The caller sets the parameters, calls, and reads the result from
    ``args[0]``. Traps and errors are raised as wasmtime's own exception types.
    """

    __slots__ = ("fn", "ctx", "func_ref", "args", "args_ref", "n", "trap", "trap_ref", "_keep")

    def __init__(self, store, func, slots: int):
        from wasmtime import _ffi as ffi

        self.fn = ffi.dll["wasmtime_func_call_unchecked"]  # a fresh _FuncPtr: wasmtime's own is untouched
        self.fn.restype = ctypes.c_void_p
        self.fn.argtypes = None
        self.ctx = store._context()
        self._keep = (store, func)  # the context and the func struct live as long as these
        self.func_ref = ctypes.byref(func._func)
        self.args = (ffi.wasmtime_val_raw * max(slots, 1))()
        self.args_ref = ctypes.byref(self.args)
        self.n = ctypes.c_size_t(max(slots, 1))
        self.trap = ctypes.c_void_p()
        self.trap_ref = ctypes.byref(self.trap)

    def __call__(self):
        err = self.fn(self.ctx, self.func_ref, self.args_ref, self.n, self.trap_ref)
        if err or self.trap.value:
            self.fail(err)

    def fail(self, err):
        """Raise the trap or error the last call left (taking ownership of it)."""
        from wasmtime import Trap, WasmtimeError
        from wasmtime import _ffi as ffi

        trap, self.trap.value = self.trap.value, None
        if trap:
            if err:  # both set cannot happen per the C API; free the error all the same
                ffi.wasmtime_error_delete(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
            raise Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
        raise WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))


@functools.lru_cache(maxsize=None)
def fast_call_supported() -> tuple[bool, str]:
    """Whether this wasmtime-py is the series the unchecked call path was tested on (and why not)."""
    try:
        major = int(wasmtime_version().split(".")[0])
    except ValueError:
        return False, f"unrecognised wasmtime version {wasmtime_version()!r}"
    if major != FAST_CALL_SERIES:
        return False, (f"wasmtime {wasmtime_version()} is not the {FAST_CALL_SERIES}.x series the "
                       "unchecked call path was tested on")
    try:
        from wasmtime import Store, Trap, WasmtimeError
        from wasmtime import _ffi as ffi

        ffi.dll["wasmtime_func_call_unchecked"]
        for name in ("wasmtime_val_raw", "wasm_trap_t", "wasmtime_error_t", "wasmtime_error_delete"):
            getattr(ffi, name)
        for owner, name in ((Store, "_context"), (Trap, "_from_ptr"), (WasmtimeError, "_from_ptr")):
            getattr(owner, name)
        # Func._func is an instance attribute: Guest checks it on each export.
    except (ImportError, AttributeError) as e:
        return False, f"wasmtime-py internals differ from {FAST_CALL_SERIES}.x ({e})"
    return True, ""


# --------------------------------------------------------------------------- a guest


def _type_names(types) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


class Guest:
    """One instance of a module that implements the pymicro ABI, in its own store.

    Used by :class:`WasmModel` (the trusted ``pymicro.wasm``) and by sandbox nodes
    (any module, hostile ones included): every address the guest returns is checked
    against its memory before the host reads or writes there.
    """

    def __init__(self, store, module, *, fast: bool = True):
        wasmtime = _wasmtime()
        if module not in _checked:  # the unchecked calls below rely on the export types
            check_module(module)
        self.store = store
        self.instance = wasmtime.Instance(store, module, [])
        exports = self.instance.exports(store)
        self.memory = exports["memory"]
        self.funcs = {name: exports[name] for name in ABI}
        ok, self.slow_reason = fast_call_supported() if fast else (False, "disabled by the caller")
        self.calls: dict[str, _Unchecked] = {}
        if ok:
            try:
                for name, (params, results) in ABI.items():
                    self.calls[name] = _Unchecked(store, self.funcs[name],
                                                  max(len(params), len(results)))
            except AttributeError as e:  # wasmtime-py moved Func._func or Store._context
                self.calls, ok = {}, False
                self.slow_reason = f"wasmtime-py internals differ ({e})"
        self.call_path = "c-api-unchecked" if ok else "wasmtime-py"
        self._refresh()

    # ---- calls

    def call(self, name: str, *args: int) -> int:
        """Call an export with integer arguments; i32 results come back unsigned, i64 signed."""
        results = ABI[name][1][0]
        c = self.calls.get(name)
        if c is None:
            value = self.funcs[name](self.store, *args)
        else:
            a = c.args
            for i, v in enumerate(args):
                a[i].i32 = v
            c()
            value = a[0].i64 if results == "i64" else a[0].i32
        return value & 0xFFFFFFFF if results == "i32" else value

    # ---- memory

    def _refresh(self) -> None:
        """Re-read where linear memory is and how long (after anything that may grow it)."""
        self.mem_len = self.memory.data_len(self.store)
        self.mem_base = ctypes.addressof(self.memory.data_ptr(self.store).contents) if self.mem_len else 0

    def moved(self) -> bool:
        """Whether linear memory now starts elsewhere (views made before are then stale);
        refreshes the recorded base and length if so."""
        ptr = self.memory.data_ptr(self.store)
        if self.mem_len and ctypes.addressof(ptr.contents) == self.mem_base:
            return False
        self._refresh()
        return True

    def view(self, addr: int, count: int, dtype=np.uint8) -> np.ndarray:
        """A numpy view of ``count`` items at ``addr`` in linear memory (bounds-checked).

        Valid until the guest's memory grows or the guest is dropped: never hand it out.
        """
        dtype = np.dtype(dtype)
        nbytes = count * dtype.itemsize
        if addr < 0 or addr + nbytes > self.mem_len or (addr % dtype.itemsize):
            raise GuestProtocolError(
                f"the module pointed at bytes {addr}..{addr + nbytes} of its {self.mem_len}-byte "
                "memory (out of bounds or misaligned)")
        if nbytes == 0:
            return np.empty(0, dtype)
        buf = (ctypes.c_ubyte * nbytes).from_address(self.mem_base + addr)
        return np.frombuffer(buf, dtype=dtype)

    def write(self, addr: int, data: bytes) -> None:
        self.view(addr, len(data))[:] = np.frombuffer(data, np.uint8)

    def cstring(self, addr: int, limit: int = 256) -> str:
        if not 0 <= addr < self.mem_len:
            raise GuestProtocolError(f"the module returned a message address {addr} outside its memory")
        raw = bytes(self.view(addr, min(limit, self.mem_len - addr)))
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")

    # ---- the protocol

    def load(self, blob: bytes) -> None:
        """Upload and load a blob: raises BlobError (the core's message and byte offset),
        GuestMemoryError (memory.grow refused) or GuestProtocolError."""
        if len(blob) >= 1 << 31:
            raise GuestMemoryError(f"a blob of {len(blob)} bytes cannot fit in a wasm32 memory")
        addr = self.call("pm_blob_alloc", len(blob))
        self._refresh()
        if addr == 0:
            raise GuestMemoryError(self.cstring(self.call("pm_error_message")) or
                                   f"the module could not reserve {len(blob)} bytes for the blob")
        self.write(addr, blob)
        code = self.call("pm_load", len(blob))
        self._refresh()
        if code == LOAD_BLOB_INVALID:
            raise BlobError(self.cstring(self.call("pm_error_message")), self.call("pm_error_offset"))
        if code == LOAD_OUT_OF_MEMORY:
            raise GuestMemoryError(self.cstring(self.call("pm_error_message")))
        if code != LOAD_OK:
            raise GuestProtocolError(f"pm_load returned {code}: "
                                     + self.cstring(self.call("pm_error_message")))
        self.input_size = self.call("pm_input_size")
        self.n_classes = self.call("pm_n_classes")
        self.attn_width = self.call("pm_attn_width")
        if not (1 <= self.input_size <= 4096 and 2 <= self.n_classes <= 256 and self.attn_width <= 4096):
            raise GuestProtocolError(
                f"the module reports input_size={self.input_size}, n_classes={self.n_classes}, "
                f"attn_width={self.attn_width} for a blob it accepted")

    def reserve(self, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Row buffers for ``rows`` rows, as (rows, width) float32 views: x, out, attn."""
        if not 0 < rows < 1 << 31:
            raise GuestMemoryError(f"{rows} rows cannot fit in a wasm32 memory")
        x = self.call("pm_reserve", rows)
        self._refresh()
        if x == 0:
            raise GuestMemoryError(self.cstring(self.call("pm_error_message")) or
                                   f"the module could not reserve buffers for {rows} rows")
        out = self.call("pm_out")
        attn = self.call("pm_attn") if self.attn_width else 0
        d, c, a = self.input_size, self.n_classes, self.attn_width
        xv = self.view(x, rows * d, F32).reshape(rows, d)
        ov = self.view(out, rows * c, F32).reshape(rows, c)
        av = self.view(attn, rows * a, F32).reshape(rows, a) if a else None
        # the three must not overlap each other (a hostile module could alias them)
        spans = sorted((p, p + 4 * rows * w) for p, w in ((x, d), (out, c), (attn, a)) if w)
        if any(spans[i][1] > spans[i + 1][0] for i in range(len(spans) - 1)):
            raise GuestProtocolError("the module returned overlapping row buffers")
        self.io = (x, out, attn)
        return xv, ov, av


# GuestMemoryError and GuestProtocolError live in pymicro.errors (imported above, so
# ``from pymicro.runtime.wasm import GuestProtocolError`` keeps working).


# --------------------------------------------------------------------------- engines


def deterministic_config():
    """A wasmtime Config with relaxed-simd on in deterministic mode (relaxed_madd always fused,
    relaxed_min/max IEEE): pymicro.wasm then gives the same bits on every host, equal to the
    native AVX2/AVX-512 build's (docs/wasm.md). No threads."""
    wasmtime = _wasmtime()
    config = wasmtime.Config()
    config.wasm_simd = True
    config.wasm_relaxed_simd = True
    config.wasm_relaxed_simd_deterministic = True
    config.wasm_threads = False
    return config


@functools.lru_cache(maxsize=None)
def _engine_and_module():
    """The plain engine (no fuel, no epochs: nothing to pay per instruction) and pymicro.wasm on it."""
    wasmtime = _wasmtime()
    config = deterministic_config()
    engine = wasmtime.Engine(config)
    try:
        module = wasmtime.Module(engine, wasm_bytes())
    except wasmtime.WasmtimeError as e:
        raise BackendError(f"pymicro.wasm does not compile on this wasmtime ({e})") from None
    check_module(module)
    atexit.register(close_at_exit, engine, module)
    return engine, module


def close_at_exit(*objects) -> None:
    """Frees cached wasmtime objects while wasmtime can still free them.

    Left to the garbage collector, they would be finalised after wasmtime's own
    module globals are torn down at interpreter exit, and each would print an
    ignored ``TypeError`` traceback.
    """
    for obj in objects:
        try:
            obj.close()
        except Exception:  # already closed, or wasmtime half torn down: nothing to free
            pass


_checked = weakref.WeakSet()  # modules check_module accepted


def check_module(module) -> None:
    """Raise GuestProtocolError unless ``module`` imports nothing and exports ABI v1 exactly typed."""
    imports = [f"{i.module}.{i.name}" for i in module.imports]
    if imports:
        raise GuestProtocolError("the module imports " + ", ".join(imports)
                                 + "; pymicro modules may import nothing")
    exports = {e.name: e.type for e in module.exports}
    wasmtime = _wasmtime()
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        raise GuestProtocolError("the module does not export a linear memory named 'memory'")
    if exports["memory"].is_64:
        raise GuestProtocolError("the module's memory is 64-bit; the ABI uses a 32-bit memory")
    for name, (params, results) in ABI.items():
        ty = exports.get(name)
        if not isinstance(ty, wasmtime.FuncType):
            raise GuestProtocolError(f"the module does not export the function {name}")
        got = (_type_names(ty.params), _type_names(ty.results))
        if got != (params, results):
            raise GuestProtocolError(
                f"export {name} has type {got[0]} -> {got[1]}; ABI v{ABI_VERSION} needs "
                f"{params} -> {results}")
    _checked.add(module)


# --------------------------------------------------------------------------- the model


class _Runner:
    """One thread's guest with the model loaded, its row buffers, and the hot calls.

    ``row(x)`` writes one row into the guest, runs it and returns how many rows held
    NaN/Inf (0 or 1); the probabilities are then in ``out1``. ``execute(n, attn)`` runs
    the first n rows already written into ``x``. Both are closures over locals, rebuilt
    whenever the buffers move: attribute lookups cost as much as the crossing here.
    """

    __slots__ = ("guest", "rows", "x", "out", "attn", "x1", "out1", "row", "execute")

    def __init__(self, blob: bytes, fast: bool):
        wasmtime = _wasmtime()
        engine, module = _engine_and_module()
        self.guest = Guest(wasmtime.Store(engine), module, fast=fast)
        self.guest.load(blob)
        self.rows = 0
        self.reserve(1)

    def reserve(self, rows: int) -> None:
        if rows <= self.rows:
            return
        self.x, self.out, self.attn = self.guest.reserve(rows)
        self.rows = rows
        self.x1, self.out1 = self.x[0], self.out[0]
        self.row, self.execute = self._calls()

    def _calls(self):
        x1 = self.x1
        c = self.guest.calls.get("pm_run")
        if c is None:  # the public wasmtime-py call
            func, store = self.guest.funcs["pm_run"], self.guest.store

            def execute(n, want_attn):
                bad = func(store, n, want_attn)
                if bad < 0:
                    raise GuestProtocolError(f"pm_run({n}) returned {bad}")
                return bad

            def row(x):
                x1[...] = x
                return execute(1, 0)

            return row, execute

        fn, ctx, fref, aref, slots, tref, trap, fail = (
            c.fn, c.ctx, c.func_ref, c.args_ref, c.n, c.trap_ref, c.trap, c.fail)
        a0, a1 = c.args[0], c.args[1]

        def execute(n, want_attn):
            a0.i32 = n
            a1.i32 = want_attn
            err = fn(ctx, fref, aref, slots, tref)
            if err or trap.value:
                fail(err)
            bad = a0.i64
            if bad < 0:
                raise GuestProtocolError(f"pm_run({n}) returned {bad}")
            return bad

        def row(x):
            x1[...] = x
            a0.i32 = 1
            a1.i32 = 0
            err = fn(ctx, fref, aref, slots, tref)
            if err or trap.value:
                fail(err)
            return a0.i64

        return row, execute


class WasmModel:
    """The native model's interface over ``pymicro.wasm`` (see the module docstring).

    ``predict(x)``, ``predict_into(x, out)``, ``explain(x)``; attributes ``input_size``,
    ``n_classes``, ``attn_width``, ``isa`` ("wasm32-simd128"), ``tile``,
    ``raises_on_nonfinite``, ``call_path``; ``blob()`` and ``info()`` as natively.
    """

    def __init__(self, data, nan_policy: str = "raise", *, fast_call: bool = True):
        try:
            blob = bytes(memoryview(data).cast("B"))
        except TypeError:
            raise InputTypeError("a blob must be a contiguous bytes-like object "
                             "(bytes, bytearray, memoryview)") from None
        if nan_policy not in ("raise", "propagate"):
            raise InputError(f"nan_policy must be 'raise' or 'propagate', got '{nan_policy}'")
        self.raises_on_nonfinite = nan_policy == "raise"
        self._blob = blob
        self._fast = fast_call
        self._local = threading.local()
        first = _Runner(blob, fast_call)  # parses in wasm: a bad blob raises BlobError here
        self._local.r = first
        g = first.guest
        self.input_size, self.n_classes, self.attn_width = g.input_size, g.n_classes, g.attn_width
        self.isa = g.cstring(g.call("pm_isa"), 64)
        self.tile = g.call("pm_tile")
        self.call_path = g.call_path
        self.slow_reason = g.slow_reason
        self._row_shape = (self.input_size,)

    def _runner(self) -> _Runner:
        r = _Runner(self._blob, self._fast)
        self._local.r = r
        return r

    # ---- the three calls

    def predict(self, x, *, threads=None):  # one wasm instance per thread: threads ignored
        check_threads(threads)
        try:
            r = self._local.r
        except AttributeError:
            r = self._runner()
        if type(x) is not np.ndarray or x.dtype is not F32:
            x = coerce(x, self.input_size)
        if x.shape == self._row_shape:  # one row: one crossing, no chunking
            if r.row(x) and self.raises_on_nonfinite:
                raise nonfinite_error(x, r.out1, self._blob)
            return r.out1.copy()
        n = self._rows_of(x)
        out = np.empty((n, self.n_classes), np.float32)
        self._run(r, x, n, out, None)
        return out

    def predict_into(self, x, out, *, threads=None) -> None:
        check_threads(threads)
        if not _fast_array(x):  # not an ndarray at all: a type error, as native's
            raise (InputError if isinstance(x, np.ndarray) else InputTypeError)(
                "predict_into needs x as a float32, C-contiguous, aligned ndarray "
                "(it never copies); use predict() for other inputs")
        n = self._rows_of(x)
        if not _fast_array(out):
            raise (InputError if isinstance(out, np.ndarray) else InputTypeError)(
                "out must be a float32, C-contiguous, aligned ndarray")
        c = self.n_classes
        if out.ndim != x.ndim or out.shape[-1] != c or (out.ndim == 2 and out.shape[0] != n):
            want = f"({c},)" if x.ndim == 1 else f"({n}, {c})"
            raise InputError(f"out has the wrong shape; for this x it must be {want}")
        if not out.flags.writeable:
            raise InputError("out is read-only")
        check_no_overlap(x, out)
        try:
            r = self._local.r
        except AttributeError:
            r = self._runner()
        if x.ndim == 1:  # one row: one crossing
            bad = r.row(x)
            out[...] = r.out1
            if bad and self.raises_on_nonfinite:
                raise nonfinite_error(x, out, self._blob)
            return
        self._run(r, x, n, out, None)

    def explain(self, x):
        if not self.attn_width:
            raise InputError("this model has no attention layer to explain")
        try:
            r = self._local.r
        except AttributeError:
            r = self._runner()
        if type(x) is not np.ndarray or x.dtype is not F32:
            x = coerce(x, self.input_size)
        n = self._rows_of(x)
        attn = np.empty((n, self.attn_width), np.float32)
        self._run(r, x.reshape(n, self.input_size), n, np.empty((n, self.n_classes), np.float32), attn)
        return attn[0] if x.ndim == 1 else attn

    # ---- the rest of the native interface

    def blob(self) -> bytes:
        return self._blob

    def info(self) -> dict:
        from pymicro import _core

        return _core.parse(self._blob)

    # ---- internals

    def _rows_of(self, x: np.ndarray) -> int:
        d = self.input_size
        if x.ndim == 1 and x.shape[0] == d:
            return 1
        if x.ndim == 2 and x.shape[1] == d:
            return x.shape[0]
        raise InputError(f"x has shape {x.shape}; this model takes ({d},) or (batch, {d})")

    def _run(self, r: _Runner, x: np.ndarray, n: int, out: np.ndarray, attn) -> None:
        """Rows of x (n, d) into out (n, c) and attn, CHUNK_ROWS rows per crossing."""
        if n == 0:
            return
        x = x.reshape(n, self.input_size)
        r.reserve(min(n, CHUNK_ROWS))
        bad = 0
        want = 1 if attn is not None else 0
        for s in range(0, n, CHUNK_ROWS):
            k = min(CHUNK_ROWS, n - s)
            r.x[:k] = x[s:s + k]
            bad += r.execute(k, want)
            out[s:s + k] = r.out[:k]
            if want:
                attn[s:s + k] = r.attn[:k]
        if bad and self.raises_on_nonfinite:
            raise nonfinite_error(x, out, self._blob)


def _fast_array(a) -> bool:
    return (isinstance(a, np.ndarray) and a.dtype == F32 and a.flags.c_contiguous
            and a.flags.aligned)
