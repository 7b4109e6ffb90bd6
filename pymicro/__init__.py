"""pymicro: micro neural networks (under 10,000 parameters) frozen into blobs and run by one C++ core.

    spec = pymicro.preset("momentum")
    blob = pymicro.freeze(spec.init(seed=0), "momentum.pmb")
    model = pymicro.load("momentum.pmb")
    probs = pymicro.predict(model, x)     # (3,) for one row of 24 features

The package is layered; a layer imports only the layers below it (checked by import-linter
in the test suite, see ``pyproject.toml``):

    cli         the ``pymicro`` command, one module per subcommand
    agents      the MCP server, the reasoning engine
    live        incremental features, ticks -> bars -> signal in one native call
    evaluation  backtests, walk-forward validation, the benchmark report (retrains as it walks)
    training    the tinygrad trainer, the seed's MicroNeuralTrainer, reasoning-aware loss
    market | store   data, features, labels, news, macro  |  the model registry
    runtime     spec, blob writer, load/Model/predict, backends, sandbox, ONNX export
    (base)      errors, metrics, tables, plots, the compiled core

``import pymicro`` loads the runtime only (numpy and the compiled core); everything else is
imported when first used, so ``pymicro.validate`` or ``pymicro.sandbox`` cost nothing until
they are touched.
"""

from pymicro import errors as _errors
from pymicro._version import __version__ as __version__
from pymicro.errors import (  # every error class (the sandbox's family too), exported here
    BackendError, BlobError, ClusterError, CompileLimitExceeded, DataError, DeadlineExceeded, EvaluationError,
    FuelExhausted, GuestMemoryError, GuestProtocolError, GuestTrap, InputError, InputTypeError, LeaseHeldError,
    LeaseLostError, MemoryLimitExceeded, MissingDependencyError, ModuleRejected, ModuleTooLarge, NodeStateError,
    NonTickInputsError, NumericsError, ParameterBudgetError, ProtocolViolation, PymicroError, ReasoningError,
    RegistryError, SandboxBlobError, SandboxError, SandboxLimitError, SpecError, StreamUnavailableError,
    TrainingError,
)

try:
    from pymicro import _core  # noqa: F401
except ImportError as e:  # pragma: no cover - only in a source tree that was never built
    raise ImportError(
        f"pymicro's compiled core is missing ({e}). You are probably importing the source "
        "checkout; install the package (pip install .) and run from outside the tree, or use "
        "`pytest` rather than `python -m pytest`."
    ) from e

from pymicro.runtime.blob import freeze
from pymicro.runtime.model import Model, ModelInfo, load, predict
from pymicro.runtime.onnx_export import export_onnx
from pymicro.runtime.spec import PRESETS, Attention, Dense, Dropout, Network, Spec, preset

# Names and submodules resolved on first use (PEP 562): they pull in pandas, wasmtime, ...
_LAZY = {
    "validate": ("pymicro.evaluation.validation", "validate"),
    "ValidationReport": ("pymicro.evaluation.validation", "ValidationReport"),
    "sandbox": ("pymicro.runtime.sandbox", None),
    "wasm": ("pymicro.runtime.wasm", None),
    "stream": ("pymicro.live.stream", None),
    "ensemble": ("pymicro.training.ensemble", None),
}
_SUBPACKAGES = {"runtime", "market", "training", "evaluation", "live", "store", "agents", "cli",
                "errors", "metrics", "tables", "plots"}


def __getattr__(name: str):
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        mod = importlib.import_module(module)
        value = mod if attr is None else getattr(mod, attr)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"pymicro.{name}")
    else:
        raise AttributeError(f"module 'pymicro' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBPACKAGES)


_ERRORS = tuple(name for name in _errors.__all__ if name != "require")

__all__ = sorted([
    "Attention", "Dense", "Dropout", "Model", "ModelInfo", "Network", "PRESETS", "Spec",
    "ValidationReport", "export_onnx", "freeze", "load", "predict", "preset", "validate",
    *_ERRORS,
])
