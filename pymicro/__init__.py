"""pymicro: micro neural networks (under 10,000 parameters) frozen into blobs and run by one C++ core.

    spec = pymicro.preset("momentum")
    blob = pymicro.freeze(spec.init(seed=0), "momentum.pmb")
    model = pymicro.load("momentum.pmb")
    probs = pymicro.predict(model, x)     # (3,) for one row of 24 features
"""

from . import errors as _errors
from .errors import (  # every error class (the sandbox's family too), exported here
    BackendError, BlobError, CompileLimitExceeded, DataError, DeadlineExceeded, EvaluationError,
    FuelExhausted, GuestMemoryError, GuestProtocolError, GuestTrap, InputError, InputTypeError,
    MemoryLimitExceeded, MissingDependencyError, ModuleRejected, ModuleTooLarge, NodeStateError,
    NumericsError, ParameterBudgetError, ProtocolViolation, PymicroError, ReasoningError,
    RegistryError, SandboxBlobError, SandboxError, SandboxLimitError, SpecError, TrainingError,
)

try:
    from . import _core  # noqa: F401
except ImportError as e:  # pragma: no cover - only in a source tree that was never built
    raise ImportError(
        f"pymicro's compiled core is missing ({e}). You are probably importing the source "
        "checkout; install the package (pip install .) and run from outside the tree, or use "
        "`pytest` rather than `python -m pytest`."
    ) from e

from .blob import freeze
from .model import Model, ModelInfo, load, predict
from .onnx_export import export_onnx
from .spec import PRESETS, Attention, Dense, Dropout, Network, Spec, preset
from .validation import ValidationReport, validate


__version__ = "0.1.0"

_ERRORS = tuple(name for name in _errors.__all__ if name != "require")

__all__ = sorted([
    "Attention", "Dense", "Dropout", "Model", "ModelInfo", "Network", "PRESETS", "Spec",
    "ValidationReport", "export_onnx", "freeze", "load", "predict", "preset", "validate",
    *_ERRORS,
])

# Submodules reachable as attributes without importing them up front (``import pymicro``
# stays light and never imports wasmtime): ``pymicro.sandbox.create(...)`` after a plain
# ``import pymicro`` imports pymicro.sandbox on first use.
_LAZY_SUBMODULES = frozenset({"sandbox", "wasm"})


def __getattr__(name: str):
    if name in _LAZY_SUBMODULES:
        import importlib

        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBMODULES)
