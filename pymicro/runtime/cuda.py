"""backend="cuda": the per-sample code of cpp/cuda/pymicro_cuda.cuh, compiled at run time.

The blob is parsed by the C++ core (``_core._cuda_plan``), which also gives the flat weights;
the plan (ops, widths, offsets) is written into the source as a compile-time constant, NVRTC
compiles it for the GPU present (a CUBIN for its exact architecture), the weights go to
``__constant__`` memory (global memory when they exceed 60 KB), and each thread runs one or
more samples. Device buffers are kept and grown, never freed per call; ``predict_into``
takes device arrays (``__cuda_array_interface__`` or DLPack) in place, with no copy.

Two libraries, both through ctypes, neither needing a CUDA toolkit:

* NVRTC, from the PyPI wheel ``nvidia-cuda-nvrtc`` (``pip install 'pymicro[cuda]'``), or
  ``$PYMICRO_NVRTC`` (a path to ``libnvrtc.so``);
* the CUDA driver API, ``libcuda.so.1``, which comes with the NVIDIA driver (never from pip).

Why ctypes rather than ``cuda-python`` (cuda.bindings) or CuPy: NVRTC and the driver API are
stable C ABIs and pymicro calls about twenty functions of them; cuda.bindings would add an
8.4 MB wheel whose Python API changed between CUDA 12 and 13, CuPy a much larger one with its
own NVRTC. Without a driver or GPU, ``load(..., backend="cuda")`` raises
:class:`~pymicro.BackendError` saying so; without NVRTC, :class:`~pymicro.MissingDependencyError`
naming the extra. ``compile_ptx`` needs only NVRTC (no GPU): the tests use it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import hashlib
import importlib.util
import os
import re
import threading

import numpy as np

from pymicro.errors import BackendError, InputError, MissingDependencyError
from pymicro.runtime.inputs import check_threads

EXTRA = "cuda"
# __constant__ memory is 64 KiB; leave room for the compiler's own constants.
CONSTANT_WEIGHT_BYTES = 60 * 1024
# Networks up to this many multiply-adds a row compile fully unrolled, their activations in
# registers and every weight an operand from the constant bank (PM_UNROLL_OPS in
# pymicro_cuda.cuh); larger ones keep their loops and local-memory scratch. NVRTC's time grows
# faster than the work (measured, sm_90, NVRTC 13: 1,048 multiply-adds 1.7 s, 2,304 6 s, 4,096
# 18 s; the loop form 0.2-0.3 s), so the line is where a load still compiles in about 2 s:
# momentum and reversal unroll, sentiment (4,264) does not.
UNROLL_MAX_MACS = 2048
BLOCK = 128  # threads a block

# ------------------------------------------------------------------------------- NVRTC


_nvrtc_lib = None
_lock = threading.Lock()


def _nvrtc_candidates() -> list[str]:
    if os.environ.get("PYMICRO_NVRTC"):
        return [os.environ["PYMICRO_NVRTC"]]
    found = []
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        # nvidia-cuda-nvrtc 13.x: nvidia/cu13/lib; nvidia-cuda-nvrtc-cu12: nvidia/cuda_nvrtc/lib
        found += sorted(glob.glob(os.path.join(root, "cu1*", "lib", "libnvrtc.so.1*")), reverse=True)
        found += sorted(glob.glob(os.path.join(root, "cuda_nvrtc", "lib", "libnvrtc.so.1*")), reverse=True)
    return found


def nvrtc():
    """The NVRTC library (ctypes), or MissingDependencyError naming ``pymicro[cuda]``."""
    global _nvrtc_lib
    with _lock:
        if _nvrtc_lib is not None:
            return _nvrtc_lib
        errors = []
        for path in _nvrtc_candidates():
            try:
                lib = ctypes.CDLL(path)
                break
            except OSError as e:
                errors.append(f"{path}: {e}")
        else:
            where = "; ".join(errors) or "no libnvrtc.so in the nvidia-cuda-nvrtc wheel's place"
            raise MissingDependencyError(
                f"backend 'cuda' compiles its kernel at run time with NVRTC, which was not found "
                f"({where}); install it with pip install 'pymicro[{EXTRA}]' (no CUDA toolkit needed), "
                f"or point $PYMICRO_NVRTC at a libnvrtc.so", module="nvidia-cuda-nvrtc", extra=EXTRA)
        P, I, S = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        for name, args in {
            "nvrtcVersion": [ctypes.POINTER(I), ctypes.POINTER(I)],
            "nvrtcCreateProgram": [ctypes.POINTER(P), ctypes.c_char_p, ctypes.c_char_p, I, P, P],
            "nvrtcCompileProgram": [P, I, ctypes.POINTER(ctypes.c_char_p)],
            "nvrtcGetProgramLogSize": [P, ctypes.POINTER(S)],
            "nvrtcGetProgramLog": [P, ctypes.c_char_p],
            "nvrtcGetPTXSize": [P, ctypes.POINTER(S)],
            "nvrtcGetPTX": [P, ctypes.c_char_p],
            "nvrtcGetCUBINSize": [P, ctypes.POINTER(S)],
            "nvrtcGetCUBIN": [P, ctypes.c_char_p],
            "nvrtcDestroyProgram": [ctypes.POINTER(P)],
        }.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, I
        lib.nvrtcGetErrorString.argtypes, lib.nvrtcGetErrorString.restype = [I], ctypes.c_char_p
        lib.path = path
        _nvrtc_lib = lib
        return lib


def nvrtc_version() -> tuple[int, int]:
    lib = nvrtc()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def source(plan: dict) -> str:
    """The CUDA source for one model: a prelude with its plan, then pymicro_cuda.cuh."""
    from pymicro import _core

    n_weights = len(plan["weights"])
    ops = ", ".join("{%d, %d, %d, %d, %d, %d}" % op for op in plan["ops"])
    lines = [
        "// generated by pymicro.runtime.cuda for one model",
        f"#define PM_MAX_OPS {plan['n_ops']}",
        f"#define PM_MAXW {plan['max_width']}",
        f"#define PM_N_WEIGHTS {n_weights}",
        "#define PM_PLAN_INIT {%d, %d, %d, %d, %d, %d, %d, {%s}}" % (
            plan["n_ops"], plan["input_size"], plan["n_classes"], plan["attn_width"],
            plan["max_width"], plan["mean"], plan["inv"], ops),
    ]
    if n_weights * 4 <= CONSTANT_WEIGHT_BYTES:
        lines.append("#define PM_WEIGHTS_CONSTANT 1")
    if sum(op[2] * op[3] for op in plan["ops"]) <= UNROLL_MAX_MACS:  # (kind, act, in, out, w, b)
        lines.append("#define PM_UNROLL_OPS 1")
    return "\n".join(lines) + "\n" + _core._cuda_source()


def _compile(src: str, arch: str, cubin: bool, log_to: list | None = None,
             extra: tuple[bytes, ...] = ()) -> bytes:
    lib = nvrtc()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"pymicro_cuda.cu", 0, None, None)
    if rc:
        raise BackendError(f"NVRTC could not create the program: {lib.nvrtcGetErrorString(rc).decode()}")
    try:
        opts = [f"-arch={arch}".encode(), b"-std=c++17", b"-default-device", *extra]
        arr = (ctypes.c_char_p * len(opts))(*opts)
        rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        if log_to is not None:
            log_to.append(log.value.decode(errors="replace"))
        if rc:
            raise BackendError(f"NVRTC failed to compile pymicro's kernel for {arch} "
                               f"({lib.nvrtcGetErrorString(rc).decode()}):\n{log.value.decode(errors='replace')}")
        get_size, get = ((lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN) if cubin
                         else (lib.nvrtcGetPTXSize, lib.nvrtcGetPTX))
        get_size(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        get(prog, buf)
        return buf.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_ptx(blob: bytes, arch: str = "compute_90") -> str:
    """PTX for ``blob``'s kernel (NVRTC only: no GPU or driver needed)."""
    from pymicro import _core

    return _compile(source(_core._cuda_plan(blob)), arch, cubin=False).rstrip(b"\0").decode()


def cache_dir() -> str | None:
    """Where compiled kernels are kept: ``$PYMICRO_CUDA_CACHE`` (empty: no cache), else
    ``$XDG_CACHE_HOME/pymicro/cuda`` (default ``~/.cache/pymicro/cuda``)."""
    configured = os.environ.get("PYMICRO_CUDA_CACHE")
    if configured is not None:
        return configured or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pymicro", "cuda")


def _cache_path(src: str, arch: str) -> str | None:
    where = cache_dir()
    if not where:
        return None
    major, minor = nvrtc_version()
    key = hashlib.sha256(f"nvrtc {major}.{minor}\0{arch}\0{src}".encode()).hexdigest()
    return os.path.join(where, f"{key}.cubin")


def cubin(src: str, arch: str) -> bytes:
    """The CUBIN of ``src`` for ``arch``: from the cache (:func:`cache_dir`) when an earlier load
    compiled the same source with the same NVRTC, else compiled now and kept there. The source
    holds a model's plan, not its weights, so models of one architecture share it. NVRTC takes
    about 2 s over an unrolled micro network; a cache hit, a file read. A cache that cannot be
    read or written is no cache, never an error."""
    path = _cache_path(src, arch)
    if path:
        try:
            with open(path, "rb") as f:
                image = f.read()
            if image:
                return image
        except OSError:
            pass
    image = _compile(src, arch, cubin=True)
    if path:
        tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(image)
            os.replace(tmp, path)  # whole or absent: a reader never sees half a file
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return image


def forget_cubin(src: str, arch: str) -> None:
    """Drops ``src``'s cached CUBIN for ``arch`` (one the driver refused)."""
    path = _cache_path(src, arch)
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


_PTXAS = {
    "registers": re.compile(r"Used (\d+) registers"),
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
}


def resources(blob: bytes, arch: str = "sm_90") -> dict:
    """What the kernel for ``blob`` uses per thread on ``arch`` (a real GPU architecture such as
    ``sm_90``, H100), as ptxas reports it when NVRTC builds the CUBIN (no GPU needed):
    ``{"registers", "stack_bytes", "spill_store_bytes", "spill_load_bytes", "unrolled"}``.
    A stack frame or spills mean activations in local memory, not registers."""
    from pymicro import _core

    src = source(_core._cuda_plan(blob))
    log: list[str] = []
    _compile(src, arch, cubin=True, log_to=log, extra=(b"-Xptxas=-v",))
    text = "\n".join(log)
    out = {}
    for key, pattern in _PTXAS.items():
        m = pattern.search(text)
        if not m:
            raise BackendError(f"NVRTC's ptxas report has no {key.replace('_', ' ')}:\n{text}")
        out[key] = int(m.group(1))
    out["unrolled"] = "#define PM_UNROLL_OPS 1" in src
    return out


# ------------------------------------------------------------------------------- driver

_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
_CUDA_ERROR_NO_DEVICE = 100
_driver = None


def _load_driver_library():
    """``libcuda.so.1`` (the driver's), or None. A function so tests can stand in for it."""
    for name in ("libcuda.so.1", ctypes.util.find_library("cuda")):
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    return None


class _Driver:
    def __init__(self, lib):
        self.lib = lib
        self.lib.cuGetErrorString.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        self.lib.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
        for name in ("cuMemcpyHtoD_v2", "cuMemcpyDtoH_v2"):
            getattr(self.lib, name).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.lib.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ctypes.c_uint64), ctypes.c_size_t]
        self.lib.cuMemFree_v2.argtypes = [ctypes.c_uint64]
        self.lib.cuMemsetD8_v2.argtypes = [ctypes.c_uint64, ctypes.c_ubyte, ctypes.c_size_t]

    def check(self, rc: int, what: str) -> None:
        if rc:
            msg = ctypes.c_char_p()
            self.lib.cuGetErrorString(rc, ctypes.byref(msg))
            raise BackendError(f"CUDA {what} failed: error {rc} ({(msg.value or b'?').decode()})")


def driver() -> _Driver:
    """The initialised driver on device 0, or BackendError saying why there is none."""
    global _driver
    with _lock:
        if _driver is not None:
            return _driver
        lib = _load_driver_library()
        if lib is None:
            raise BackendError("backend 'cuda' needs an NVIDIA GPU and its driver: no CUDA driver "
                               "(libcuda.so.1) is installed on this machine")
        rc = lib.cuInit(0)
        if rc == _CUDA_ERROR_NO_DEVICE:
            raise BackendError("backend 'cuda' needs an NVIDIA GPU: the CUDA driver is installed "
                               "but found no GPU (cuInit: CUDA_ERROR_NO_DEVICE)")
        d = _Driver(lib)
        d.check(rc, "cuInit")
        count = ctypes.c_int()
        d.check(lib.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
        if count.value == 0:
            raise BackendError("backend 'cuda' needs an NVIDIA GPU: the CUDA driver found none")
        dev = ctypes.c_int()
        d.check(lib.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
        d.device = dev.value
        ctx = ctypes.c_void_p()
        d.check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), d.device), "cuDevicePrimaryCtxRetain")
        d.ctx = ctx
        attr = ctypes.c_int()
        caps = []
        for a in (_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                  _CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT):
            d.check(lib.cuDeviceGetAttribute(ctypes.byref(attr), a, d.device), "cuDeviceGetAttribute")
            caps.append(attr.value)
        d.cc, d.sms = (caps[0], caps[1]), caps[2]
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, d.device)
        d.name = name.value.decode(errors="replace")
        _driver = d
        return d


# ------------------------------------------------------------------------------- arrays


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_KDL_CUDA, _KDL_FLOAT = 2, 2


def device_array(a, name: str):
    """(pointer, shape, keep) for a float32 C-contiguous CUDA array, None for anything else.

    ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) first, then DLPack on a CUDA device
    (JAX, PyTorch, CuPy). ``keep`` holds what must stay alive while the pointer is used.
    """
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is not None:
        shape = tuple(cai["shape"])
        if np.dtype(cai["typestr"]) != np.float32:
            raise InputError(f"{name} is a CUDA array of {cai['typestr']}; predict_into needs float32")
        strides = cai.get("strides")
        if strides is not None and tuple(strides) != _c_strides(shape):
            raise InputError(f"{name} is a strided CUDA array; predict_into needs it C-contiguous")
        ptr = cai["data"][0]
        return ptr, shape, a
    dev = getattr(a, "__dlpack_device__", None)
    if dev is None or isinstance(a, np.ndarray) or dev()[0] != _KDL_CUDA:
        return None
    capsule = a.__dlpack__(stream=1)  # the legacy default stream, which the kernel runs on
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    t = _DLTensor.from_address(get(capsule, b"dltensor"))  # DLManagedTensor starts with it
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if (t.dtype.code, t.dtype.bits, t.dtype.lanes) != (_KDL_FLOAT, 32, 1):
        raise InputError(f"{name} is a DLPack array that is not float32; predict_into needs float32")
    if t.strides and tuple(t.strides[i] * 4 for i in range(t.ndim)) != _c_strides(shape):
        raise InputError(f"{name} is a strided DLPack array; predict_into needs it C-contiguous")
    # The capsule, unconsumed, calls the producer's deleter when it is collected: keep it.
    return t.data + t.byte_offset, shape, (a, capsule)


def _c_strides(shape) -> tuple:
    strides, s = [], 4
    for d in reversed(shape):
        strides.append(s)
        s *= d
    return tuple(reversed(strides))


# ------------------------------------------------------------------------------- the model


class CudaModel:
    """A blob compiled for the GPU; what ``load(..., backend="cuda")`` wraps in a Model."""

    def __init__(self, blob: bytes, nan_policy: str = "raise"):
        from pymicro import _core

        self._d = driver()
        nvrtc()  # MissingDependencyError before any work
        self._blob = blob
        self._nan_raise = nan_policy == "raise"
        plan = _core._cuda_plan(blob)
        self.input_size, self.n_classes = plan["input_size"], plan["n_classes"]
        self.attn_width = plan["attn_width"]
        lib, d = self._d.lib, self._d
        self._enter()
        major, minor = d.cc
        src, arch = source(plan), f"sm_{major}{minor}"
        self._module = ctypes.c_void_p()
        if lib.cuModuleLoadData(ctypes.byref(self._module), cubin(src, arch)):
            forget_cubin(src, arch)  # a damaged cache entry: compile afresh, once
            d.check(lib.cuModuleLoadData(ctypes.byref(self._module), _compile(src, arch, cubin=True)),
                    "cuModuleLoadData")
        self._fn = ctypes.c_void_p()
        d.check(lib.cuModuleGetFunction(ctypes.byref(self._fn), self._module, b"pm_predict"),
                "cuModuleGetFunction")
        weights = np.ascontiguousarray(plan["weights"], np.float32)
        self._weights_global = 0
        if weights.nbytes <= CONSTANT_WEIGHT_BYTES:
            ptr, size = ctypes.c_uint64(), ctypes.c_size_t()
            d.check(lib.cuModuleGetGlobal_v2(ctypes.byref(ptr), ctypes.byref(size), self._module,
                                             b"pm_weights"), "cuModuleGetGlobal")
            d.check(lib.cuMemcpyHtoD_v2(ptr.value, weights.ctypes.data, weights.nbytes), "cuMemcpyHtoD")
        else:
            self._weights_global = self._alloc(weights.nbytes)
            d.check(lib.cuMemcpyHtoD_v2(self._weights_global, weights.ctypes.data, weights.nbytes),
                    "cuMemcpyHtoD")
        self._bad = self._alloc(8)
        self._rows = 0  # capacity of the x/out/attn buffers, in rows
        self._x = self._out = self._attn = 0
        self._call = threading.Lock()
        self.isa = f"sm_{major}{minor}"
        self.device_name = d.name

    def _enter(self) -> None:
        self._d.check(self._d.lib.cuCtxSetCurrent(self._d.ctx), "cuCtxSetCurrent")

    def _alloc(self, nbytes: int) -> int:
        p = ctypes.c_uint64()
        self._d.check(self._d.lib.cuMemAlloc_v2(ctypes.byref(p), max(nbytes, 4)), "cuMemAlloc")
        return p.value

    def _reserve(self, n: int) -> None:
        """Grow the reused device buffers to n rows (doubling: no allocation in steady state)."""
        if n <= self._rows:
            return
        rows = max(n, 2 * self._rows)
        for name in ("_x", "_out", "_attn"):
            if getattr(self, name):
                self._d.check(self._d.lib.cuMemFree_v2(getattr(self, name)), "cuMemFree")
                setattr(self, name, 0)
        self._x = self._alloc(rows * self.input_size * 4)
        self._out = self._alloc(rows * self.n_classes * 4)
        if self.attn_width:
            self._attn = self._alloc(rows * self.attn_width * 4)
        self._rows = rows

    def _launch(self, x_ptr: int, out_ptr: int, attn_ptr: int, n: int) -> int:
        """Runs the kernel on device pointers; returns how many rows were bad."""
        lib, d = self._d.lib, self._d
        d.check(lib.cuMemsetD8_v2(self._bad, 0, 8), "cuMemsetD8")
        grid = max(1, min((n + BLOCK - 1) // BLOCK, d.sms * 32))
        args = [ctypes.c_uint64(x_ptr), ctypes.c_uint64(out_ptr), ctypes.c_uint64(attn_ptr),
                ctypes.c_uint64(n), ctypes.c_uint64(self._bad), ctypes.c_uint64(self._weights_global)]
        params = (ctypes.c_void_p * len(args))(*[ctypes.cast(ctypes.byref(a), ctypes.c_void_p) for a in args])
        d.check(lib.cuLaunchKernel(self._fn, grid, 1, 1, BLOCK, 1, 1, 0, None, params, None), "cuLaunchKernel")
        bad = ctypes.c_uint64()
        d.check(lib.cuMemcpyDtoH_v2(ctypes.byref(bad), self._bad, 8), "cuMemcpyDtoH")  # synchronises
        return bad.value

    def _rows_of(self, shape: tuple, name: str) -> int:
        if len(shape) == 1 and shape[0] == self.input_size:
            return 1
        if len(shape) == 2 and shape[1] == self.input_size:
            return shape[0]
        raise InputError(f"{name} has shape {shape}; this model takes ({self.input_size},) or "
                         f"(batch, {self.input_size})")

    def _host_run(self, x, explain: bool):
        from pymicro.runtime.inputs import coerce

        a = coerce(x, self.input_size)
        n = self._rows_of(a.shape, "x")
        out = np.empty((n, self.n_classes), np.float32)
        attn = np.empty((n, self.attn_width), np.float32) if explain else None
        if n:
            with self._call:
                self._enter()
                self._reserve(n)
                lib, d = self._d.lib, self._d
                d.check(lib.cuMemcpyHtoD_v2(self._x, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")
                bad = self._launch(self._x, self._out, self._attn if explain else 0, n)
                d.check(lib.cuMemcpyDtoH_v2(out.ctypes.data, self._out, out.nbytes), "cuMemcpyDtoH")
                if explain:
                    d.check(lib.cuMemcpyDtoH_v2(attn.ctypes.data, self._attn, attn.nbytes), "cuMemcpyDtoH")
            if bad and self._nan_raise:
                self._raise_nonfinite(a, out)
        res = attn if explain else out
        return res[0] if a.ndim == 1 else res

    def _raise_nonfinite(self, x: np.ndarray, out: np.ndarray):
        from pymicro.runtime.inputs import nonfinite_error

        raise nonfinite_error(x.reshape(len(out), -1), out, self._blob)

    def predict(self, x, *, threads=None):  # the GPU's threads, not the CPU's: ignored
        check_threads(threads)
        return self._host_run(x, explain=False)

    def explain(self, x):
        if not self.attn_width:
            raise InputError("this model has no attention layer to explain")
        return self._host_run(x, explain=True)

    def predict_into(self, x, out, *, threads=None) -> None:
        check_threads(threads)
        dx, dout = device_array(x, "x"), device_array(out, "out")
        if dx is None and dout is None:  # host arrays: through the reused device buffers
            if not (isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous):
                raise InputError("predict_into needs x as a float32, C-contiguous ndarray or CUDA array")
            if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.flags.c_contiguous
                    and out.flags.writeable):
                raise InputError("out must be a writeable float32, C-contiguous ndarray or CUDA array")
            self._check_out(x.shape, out.shape)
            out[...] = self.predict(x)
            return
        if dx is None or dout is None:
            raise InputError("predict_into: x and out must both be on the GPU or both on the host")
        (xp, xshape, _kx), (op, oshape, _ko) = dx, dout
        n = self._rows_of(xshape, "x")
        self._check_out(xshape, oshape)
        if n and xp < op + n * self.n_classes * 4 and op < xp + n * self.input_size * 4:
            raise InputError("predict_into: out overlaps x in memory; pass separate buffers")
        if not n:
            return
        with self._call:
            self._enter()
            bad = self._launch(xp, op, 0, n)
        if bad and self._nan_raise:
            xs = np.empty((n, self.input_size), np.float32)
            os_ = np.empty((n, self.n_classes), np.float32)
            self._d.check(self._d.lib.cuMemcpyDtoH_v2(xs.ctypes.data, xp, xs.nbytes), "cuMemcpyDtoH")
            self._d.check(self._d.lib.cuMemcpyDtoH_v2(os_.ctypes.data, op, os_.nbytes), "cuMemcpyDtoH")
            self._raise_nonfinite(xs, os_)

    def _check_out(self, xshape: tuple, oshape: tuple) -> None:
        n = self._rows_of(xshape, "x")
        want = (self.n_classes,) if len(xshape) == 1 else (n, self.n_classes)
        if tuple(oshape) != want:
            raise InputError(f"out has the wrong shape; for this x it must be {want}")

    def __del__(self):
        try:
            lib = self._d.lib
            for p in (self._x, self._out, self._attn, self._bad, self._weights_global):
                if p:
                    lib.cuMemFree_v2(p)
            lib.cuModuleUnload(self._module)
        except Exception:  # interpreter shutdown, or a half-built model
            pass
