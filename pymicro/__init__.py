"""pymicro: micro neural networks (under 10,000 parameters) frozen into blobs and run by one C++ core.

    spec = pymicro.preset("momentum")
    blob = pymicro.freeze(spec.init(seed=0), "momentum.pmb")
    model = pymicro.load("momentum.pmb")
    probs = pymicro.predict(model, x)     # (3,) for one row of 24 features
"""

from .errors import (
    BackendError, BlobError, DataError, EvaluationError, InputError, NumericsError, ParameterBudgetError,
    PymicroError, ReasoningError, RegistryError, SpecError, TrainingError,
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

__all__ = [
    "Attention", "BackendError", "BlobError", "DataError", "Dense", "EvaluationError", "Dropout", "InputError", "Model",
    "ModelInfo", "NumericsError", "Network", "PRESETS", "ParameterBudgetError", "PymicroError", "ReasoningError", "RegistryError", "Spec",
    "SpecError", "TrainingError", "ValidationReport", "export_onnx", "freeze", "load", "predict", "preset",
    "validate",
]
