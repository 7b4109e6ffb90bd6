"""Make tinygrad's CPU backend usable on a machine that has no clang.

tinygrad 0.14's CPU device compiles every kernel (and, when the device opens, its own
worker programs) by running ``$CC`` (default ``clang``) as::

    $CC -c -x c -O2 -fPIC -ffreestanding -fno-math-errno -nostdlib -fno-ident
        --target=<arch>-none-unknown-elf -march=native - -o -

gcc cannot stand in (it has no ``--target``). PyPI's ``ziglang`` ships a clang that can,
once two things are mapped: ``--target=<arch>-none-unknown-elf`` becomes
``-target <arch>-freestanding-none``, and ``-g0`` is added (zig cc emits debug info by
default, whose relocations tinygrad's ELF loader does not take). :func:`ensure_compiler`
picks, in order:

1. ``$CC`` if the user set it and it compiles tinygrad's test line;
2. ``clang`` on PATH if it does;
3. a wrapper script around the ``zig`` binary of the installed ``ziglang`` package,
   written once to ``$XDG_CACHE_HOME/pymicro`` (default ``~/.cache/pymicro``).

and sets ``os.environ["CC"]`` to it (tinygrad reads ``CC`` through a cached ``getenv``,
whose cache is cleared here). If none works it raises :class:`TrainingError` saying what
to install.

:func:`select_device` picks the tinygrad device: an explicit argument, else ``$DEV`` if
the user set it, else the first GPU backend tinygrad can open and run a kernel on
(CUDA, NV, AMD, METAL, in that order), else ``CPU``. Before tinygrad is imported
:func:`prepare` sets ``DEV=CPU`` in the environment when the user did not set it, so
tinygrad never auto-probes (its probe ends in an opaque "no usable devices" when the
compiler is missing).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

from pymicro.errors import TrainingError

_USER_DEV = os.environ.get("DEV") or None  # what the user asked for, before anything here runs
_USER_CC = os.environ.get("CC") or None
GPU_BACKENDS = ("CUDA", "NV", "AMD", "METAL")

_state: dict = {}

# The line tinygrad's ClangCompiler runs, with a minimal function as its input.
_PROBE_SOURCE = b"float pymicro_probe(float x) { return x * 2.0f + 1.0f; }\n"


def _arch() -> str:
    import platform

    machine = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def _tinygrad_args(arch: str) -> list[str]:
    flags = ["-c", "-x", "c", "-O2", "-fPIC", "-ffreestanding", "-fno-math-errno", "-nostdlib",
             "-fno-ident", f"--target={arch}-none-unknown-elf"]
    flags += ["-ffixed-x18", "-mcpu=native"] if arch == "arm64" else ["-march=native"]
    return flags + ["-", "-o", "-"]


def _compiles(cc: str) -> tuple[bool, str]:
    """Whether ``cc`` compiles the way tinygrad calls it (an ELF object on stdout)."""
    try:
        out = subprocess.run([cc, *_tinygrad_args(_arch())], input=_PROBE_SOURCE,
                             capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    if out.returncode != 0 or not out.stdout.startswith(b"\x7fELF"):
        return False, out.stderr.decode("utf-8", "replace").strip()[-400:] or f"exit {out.returncode}"
    return True, ""


def cache_dir() -> Path:
    """Per-user cache folder for the compiler wrapper."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pymicro"


def _zig_binary() -> Path | None:
    try:
        import ziglang
    except ImportError:
        return None
    path = Path(ziglang.__file__).resolve().parent / "zig"
    return path if path.is_file() and os.access(path, os.X_OK) else None


_WRAPPER = """#!/bin/sh
# Written by pymicro (pymicro/_toolchain.py): tinygrad calls $CC like clang; zig cc needs
# -target <arch>-freestanding-none instead of --target=<arch>-none-unknown-elf, and -g0.
for arg do
  shift
  case "$arg" in
    --target=arm64-none-unknown-elf) set -- "$@" -target aarch64-freestanding-none ;;
    --target=*-none-unknown-elf)
      arch=${{arg#--target=}}; arch=${{arch%-none-unknown-elf}}
      set -- "$@" -target "$arch-freestanding-none" ;;
    *) set -- "$@" "$arg" ;;
  esac
done
exec {zig} cc "$@" -g0
"""


def _quote(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


def zig_wrapper() -> Path | None:
    """The wrapper script around ziglang's ``zig cc`` (written if missing); None without ziglang."""
    zig = _zig_binary()
    if zig is None:
        return None
    text = _WRAPPER.format(zig=_quote(str(zig)))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = cache_dir()
    target = folder / f"zigcc-{digest}"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir()) / f"pymicro-{os.getuid()}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"zigcc-{digest}"
    fd, tmp = tempfile.mkstemp(prefix=".zigcc.", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    os.replace(tmp, target)  # atomic: concurrent processes write identical content
    return target


def ensure_compiler() -> str:
    """Find a C compiler tinygrad's CPU device can use, set ``$CC`` to it, and return it.

    Order: the user's ``$CC``, ``clang`` on PATH, the ziglang wrapper. Cached per process.
    """
    if "cc" in _state:
        return _state["cc"]
    tried: list[str] = []
    candidates: list[tuple[str, str]] = []
    if _USER_CC:
        candidates.append(("$CC", _USER_CC))
    clang = shutil.which("clang")
    if clang:
        candidates.append(("clang", clang))
    chosen = None
    for what, cc in candidates:
        ok, why = _compiles(cc)
        if ok:
            chosen, _state["kind"] = cc, what
            break
        tried.append(f"{what} ({cc}): {why}")
    if chosen is None:
        wrapper = zig_wrapper()
        if wrapper is None:
            tried.append("ziglang: not installed")
        else:
            ok, why = _compiles(str(wrapper))
            if ok:
                chosen, _state["kind"] = str(wrapper), "ziglang"
            else:
                tried.append(f"ziglang wrapper ({wrapper}): {why}")
    if chosen is None:
        raise TrainingError(
            "training needs a C compiler for tinygrad's CPU device and none works here. "
            "Install clang (apt-get install clang) or the ziglang package (pip install ziglang), "
            "or point $CC at a clang. Tried: " + ("; ".join(tried) or "nothing found"))
    os.environ["CC"] = chosen
    helpers = sys.modules.get("tinygrad.helpers")
    if helpers is not None:  # tinygrad caches getenv(); make it read the new $CC
        helpers.getenv.cache_clear()
    _state["cc"] = chosen
    return chosen


def compiler_kind() -> str | None:
    """'$CC', 'clang' or 'ziglang' once :func:`ensure_compiler` has run, else None."""
    return _state.get("kind")


def prepare() -> None:
    """Everything that must happen before tinygrad is imported: the compiler and ``DEV``."""
    if not _USER_DEV:
        os.environ.setdefault("DEV", "CPU")
    ensure_compiler()


def _probe_gpu(name: str) -> bool:
    import contextlib
    import io

    from tinygrad import Device, Tensor

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            Device[name]
            return (Tensor([1.0, 2.0], device=name) * 2).tolist() == [2.0, 4.0]
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return False


def select_device(device: str | None = None) -> str:
    """The tinygrad device to train on (see the module docstring for the order)."""
    prepare()
    if device is None and _USER_DEV:
        device = _USER_DEV
    if device is None or str(device).lower() == "auto":
        key = "auto_device"
        if key not in _state:
            _state[key] = next((g for g in GPU_BACKENDS if _probe_gpu(g)), "CPU")
        device = _state[key]
    from tinygrad import Device

    name = Device.canonicalize(str(device))
    try:
        Device[name]
    except Exception as e:  # noqa: BLE001
        raise TrainingError(f"tinygrad device {device!r} cannot be opened here: {e}") from None
    return name
