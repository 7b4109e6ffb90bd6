"""Type stubs for pymicro's compiled core (cpp/python/module.cpp)."""

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

ACTIVATIONS: tuple[tuple[str, int], ...]
"""(name, code) of every dense activation, from PM_ACTIVATIONS in cpp/pymicro/format.hpp."""

def parse(data: bytes | bytearray | memoryview, check_crc: bool = True) -> dict[str, Any]:
    """Validate a blob and return its contents as Python data (raises BlobError)."""

def isas() -> list[str]:
    """Instruction sets this CPU can run, best first."""

def fma_rate(isa: str = "auto", seconds: float = 0.3) -> float:
    """Peak float32 multiply-adds per second of one ISA's kernels on this core (one thread)."""

def _exp(x: npt.NDArray[np.float32], isa: str) -> npt.NDArray[np.float32]:
    """The kernels' own vectorised exp, elementwise (for tests)."""

def parse_container(data: bytes | bytearray | memoryview, check_crc: bool = True) -> dict[str, Any]:
    """Validate an ensemble container (PMBC) and return its contents (raises BlobError)."""

class NativeModel:
    def __init__(self, data: bytes | bytearray | memoryview, isa: str = "auto",
                 nan_policy: str = "raise") -> None: ...
    def fast_calls(self) -> tuple[Callable[..., npt.NDArray[np.float32]], Callable[..., None]]: ...
    def predict(self, x: Any) -> npt.NDArray[np.float32]: ...
    def predict_into(self, x: npt.NDArray[np.float32], out: npt.NDArray[np.float32]) -> None: ...
    def explain(self, x: Any) -> npt.NDArray[np.float32]: ...
    def explain_members(self, x: Any) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.float32]]: ...
    @property
    def input_size(self) -> int: ...
    @property
    def n_classes(self) -> int: ...
    @property
    def attn_width(self) -> int: ...
    @property
    def isa(self) -> str: ...
    @property
    def tile(self) -> int: ...
    @property
    def raises_on_nonfinite(self) -> bool: ...
    def blob(self) -> bytes: ...
    def info(self) -> dict[str, Any]: ...
