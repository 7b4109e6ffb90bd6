"""Every error pymicro raises on bad input is a :class:`PymicroError`.

``PymicroError`` subclasses ``ValueError`` so code that already guards numeric
input with ``except ValueError`` keeps working. Each subclass says *where* the
problem is: a byte offset for blobs, a layer for specs, an argument for calls.
"""

from __future__ import annotations


class PymicroError(ValueError):
    """Base class of every error pymicro raises for bad input or bad state."""


class SpecError(PymicroError):
    """An architecture spec is malformed (bad width, unknown activation, ...)."""


class ParameterBudgetError(SpecError):
    """A spec has more parameters than a micro network may have (10,000 by default)."""


class BlobError(PymicroError):
    """A blob failed validation. ``offset`` is the byte where the problem was found."""

    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


class InputError(PymicroError):
    """An argument to predict/explain has the wrong shape, dtype, layout or values."""


class NumericsError(PymicroError):
    """A network's float32 arithmetic overflowed on a finite input row: a value inside it
    became Inf or NaN, so the row has no probabilities. The message names the row. Raised
    under ``nan_policy="raise"``; ``"propagate"`` gives NaN probabilities for the row."""


class BackendError(PymicroError):
    """The requested backend does not exist or cannot run on this machine."""


class DataError(PymicroError):
    """Market data, features, labels or a dataset are malformed or cannot be read.

    The message names the file, column, symbol, row or dates at fault.
    """


class TrainingError(PymicroError):
    """Training cannot run: bad arrays or labels, bad arguments, or no usable compiler/device."""


class RegistryError(PymicroError):
    """The model registry refused a request: an unknown or malformed model id, a path that
    would leave the store, a blob whose bytes no longer match the index, a bad status."""


class EvaluationError(PymicroError):
    """Metrics, backtests or walk-forward runs got unusable input (shapes, NaNs, windows).

    The message names the argument and, where it applies, the index or date at fault.
    """


class ReasoningError(PymicroError):
    """The reasoning server (an MCP server, pymicro's own by default) could not be used: it is
    not configured correctly, cannot start, times out, lacks a tool, or returns an error or a
    malformed result. The message names the server and the stage that failed."""
