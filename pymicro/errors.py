"""Every error pymicro raises is a :class:`PymicroError`, defined here and exported from ``pymicro``.

``PymicroError`` subclasses ``Exception``. Each family also subclasses the built-in
exception a Python programmer would expect, so ``except ValueError`` around numeric code
catches bad *values* but never swallows a broken *environment*:

=====================================  ==========================================================
class                                  also a
=====================================  ==========================================================
``SpecError``, ``ParameterBudgetError``  ``ValueError`` (a malformed or too large spec)
``BlobError``                          ``ValueError`` (``offset``: the byte at fault)
``InputError``                         ``ValueError`` (wrong shape, values, layout, argument)
``InputTypeError``                     ``InputError`` and ``TypeError`` (not numbers at all:
                                       string/object/complex/bool dtypes, non-array garbage)
``NumericsError``                      ``ValueError`` (float32 overflow inside the network)
``DataError``, ``TrainingError``,      ``ValueError``
``EvaluationError``, ``RegistryError``
``BackendError``                       ``RuntimeError`` (a backend missing or unusable here)
``MissingDependencyError``             ``BackendError`` and ``ImportError`` (an optional extra
                                       is not installed; the message names the pip extra)
``ReasoningError``                     ``RuntimeError`` (the reasoning server failed)
``ClusterError``                       ``RuntimeError`` (a Dask scheduler that does not answer,
                                       a cluster that cannot start or lost every worker)
``SandboxError`` and its family        ``RuntimeError`` (a node refused or stopped a request)
``SandboxLimitError``                  ``SandboxError`` and ``InputError`` (so ``ValueError``):
                                       a limit (fuel, timeout, memory_mb) out of its range
``SandboxBlobError``                   ``SandboxError`` and ``BlobError``
=====================================  ==========================================================

Each subclass says *where* the problem is: a byte offset for blobs, a layer for specs, an
argument for calls. ``MemoryError`` from numpy or the core is never wrapped: it is the
interpreter's to handle.
"""

from __future__ import annotations

import importlib


class PymicroError(Exception):
    """Base class of every error pymicro raises."""


# --------------------------------------------------------------------------- bad values


class SpecError(PymicroError, ValueError):
    """An architecture spec is malformed (bad width, unknown activation, ...)."""


class ParameterBudgetError(SpecError):
    """A spec has more parameters than a micro network may have (10,000 by default)."""


class BlobError(PymicroError, ValueError):
    """A blob failed validation. ``offset`` is the byte where the problem was found."""

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


class InputError(PymicroError, ValueError):
    """An argument to predict/explain (or another call) has the wrong shape, values, layout
    or value; the message names the argument."""


class InputTypeError(InputError, TypeError):
    """An argument is not of a type pymicro can use: a string, object, complex or bool dtype
    where real numbers are required, or something that is not array-like at all."""


class NumericsError(PymicroError, ValueError):
    """A network's float32 arithmetic overflowed on a finite input row: a value inside it
    became Inf or NaN, so the row has no probabilities. The message names the row. Raised
    under ``nan_policy="raise"``; ``"propagate"`` gives NaN probabilities for the row."""


class DataError(PymicroError, ValueError):
    """Market data, features, labels or a dataset are malformed or cannot be read.

    The message names the file, column, symbol, row or dates at fault.
    """


class TrainingError(PymicroError, ValueError):
    """Training cannot run: bad arrays or labels, bad arguments, or no usable compiler/device."""


class RegistryError(PymicroError, ValueError):
    """The model registry refused a request: an unknown or malformed model id, a path that
    would leave the store, a blob whose bytes no longer match the index, a bad status."""


class EvaluationError(PymicroError, ValueError):
    """Metrics, backtests or walk-forward runs got unusable input (shapes, NaNs, windows).

    The message names the argument and, where it applies, the index or date at fault.
    """


# --------------------------------------------------------------------------- the environment


class BackendError(PymicroError, RuntimeError):
    """The requested backend does not exist or cannot run on this machine."""


class MissingDependencyError(BackendError, ImportError):
    """An optional dependency is not installed. ``module`` is what was imported, ``extra``
    the pymicro extra that installs it (the message says ``pip install 'pymicro[extra]'``)."""

    def __init__(self, message: str, *, module: str | None = None, extra: str | None = None):
        super().__init__(message)
        self.module, self.extra = module, extra


def require(module_name: str, extra: str, *, purpose: str | None = None):
    """Import an optional module, or raise :class:`MissingDependencyError` naming its extra.

    ``require("wasmtime", "wasm")`` returns the module; without it installed, the error says
    ``pip install 'pymicro[wasm]'``. ``purpose`` (e.g. "backend 'wasm'") opens the message.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        what = purpose or "this feature"
        raise MissingDependencyError(
            f"{what} needs the {module_name} package ({e}); install it with "
            f"pip install 'pymicro[{extra}]'", module=module_name, extra=extra) from e


class GuestMemoryError(BackendError):
    """A wasm guest could not grow its memory (a sandbox node maps this to MemoryLimitExceeded)."""


class GuestProtocolError(BackendError):
    """A wasm guest broke the ABI: an address outside its memory, an impossible count, ..."""


class ReasoningError(PymicroError, RuntimeError):
    """The reasoning server (an MCP server, pymicro's own by default) could not be used: it is
    not configured correctly, cannot start, times out, lacks a tool, or returns an error or a
    malformed result. The message names the server and the stage that failed."""


class ClusterError(PymicroError, RuntimeError):
    """The Dask cluster pymicro fans work out to could not be used: a scheduler address that
    does not answer (within the connect timeout), a local cluster that cannot start, or work
    lost with every worker. The message names the address and what to do."""



# --------------------------------------------------------------------------- the live path
class StreamUnavailableError(BackendError):
    """The Redis server of a live stream cannot be reached (refused, timed out, closed the
    connection)."""


class LeaseHeldError(BackendError):
    """Another consumer holds the stream group's lease (``.holder``: its name and fencing
    token)."""

    def __init__(self, message: str, holder: str | None = None):
        super().__init__(message)
        self.holder = holder


class LeaseLostError(BackendError):
    """This stream consumer's lease expired or was taken over: it must not publish, and stops."""


class NonTickInputsError(DataError):
    """The features named need inputs a tick stream does not carry (index bars, macro
    series, news); ``.inputs`` names those inputs, ``.features`` the features."""

    def __init__(self, message: str, inputs: tuple[str, ...], features: tuple[str, ...]):
        super().__init__(message)
        self.inputs, self.features = inputs, features

# --------------------------------------------------------------------------- the sandbox


class SandboxError(PymicroError, RuntimeError):
    """A sandbox node refused or stopped a request. ``cause`` names why, in one word.

    ``node`` is the node's id, ``phase`` what it was doing ("create", "upload", "execute"),
    ``fuel_used`` and ``seconds`` what the failed request consumed (None where unknown).
    """

    cause = "sandbox"

    def __init__(self, message: str, *, node: int | None = None, phase: str | None = None,
                 fuel_used: int | None = None, seconds: float | None = None):
        where = f"sandbox node {node}" if node is not None else "sandbox"
        if phase:
            where += f" ({phase})"
        super().__init__(f"{where}: {message}")
        self.node, self.phase, self.fuel_used, self.seconds = node, phase, fuel_used, seconds


class FuelExhausted(SandboxError):
    """The request used up its fuel budget (a runaway or too-large computation)."""

    cause = "fuel"


class DeadlineExceeded(SandboxError):
    """The request ran past its wall-clock deadline (epoch interruption)."""

    cause = "deadline"


class MemoryLimitExceeded(SandboxError):
    """The node's memory cap refused what the request needed (a blob, a model, a batch)."""

    cause = "memory"


class GuestTrap(SandboxError):
    """The guest trapped for another reason: unreachable, out-of-bounds access, stack overflow, ..."""

    cause = "trap"


class ModuleRejected(SandboxError):
    """The module was refused before it ran: not wasm, imports something, lacks the ABI, too
    large, or its compilation ran past the compile deadline or memory cap."""

    cause = "module"


class ModuleTooLarge(ModuleRejected):
    """A custom module is larger than :data:`pymicro.sandbox.MAX_MODULE_BYTES`; the message
    names its size and the limit. Nothing was compiled."""

    cause = "module-size"


class CompileLimitExceeded(ModuleRejected):
    """Compiling a custom module ran past the compile deadline or memory cap (it is compiled
    in a child process, which was stopped); the message names the limit."""

    cause = "compile"


class ProtocolViolation(SandboxError):
    """The guest returned something impossible (an address outside its memory, a bad count)."""

    cause = "protocol"


class NodeStateError(SandboxError):
    """The node cannot take this request now (closed, trapped earlier, nothing uploaded)."""

    cause = "state"


class SandboxLimitError(InputError, SandboxError):
    """A node's limit (``fuel``, ``timeout``, ``memory_mb``, a compile limit) is not a finite
    number within its documented range; the message names the argument and the range.
    Also an :class:`InputError`, so a ``ValueError``."""

    cause = "limit"


class SandboxBlobError(BlobError, SandboxError):
    """The node's parser refused the blob (``offset``: the byte at fault). Also a BlobError."""

    cause = "blob"

    def __init__(self, message: str, offset: int | None = None, *, node: int | None = None,
                 fuel_used: int | None = None, seconds: float | None = None):
        text = message if offset is None else f"{message} (at byte {offset})"
        SandboxError.__init__(self, text, node=node, phase="upload", fuel_used=fuel_used, seconds=seconds)
        self.offset = offset


__all__ = [name for name, obj in list(globals().items())
           if isinstance(obj, type) and issubclass(obj, PymicroError)] + ["require"]
