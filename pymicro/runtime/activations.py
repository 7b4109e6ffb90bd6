"""The dense layers' activations: the one Python table.

Each entry is everything the Python side needs to know about one activation: its name
(what a spec says), its code in the blob (the C++ core's table, ``PM_ACTIVATIONS`` in
cpp/pymicro/format.hpp, exposed as ``pymicro._core.ACTIVATIONS``; a test keeps the two
equal), and its function for each place that computes it: the float64 reference backend,
the float32 numpy peer of the benchmarks, tinygrad training, and ONNX export. Adding an
activation is one row here, one ``X(...)`` in format.hpp and its kernel in kernels.inl.

``gelu`` is the tanh approximation everywhere, as the core computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

_GELU_C = math.sqrt(2.0 / math.pi)


def _gelu64(z):
    return 0.5 * z * (1.0 + np.tanh(_GELU_C * (z + 0.044715 * z**3)))


def _relu32(z):
    return np.maximum(z, 0.0, out=z)


def _tanh32(z):
    return np.tanh(z, out=z)


def _sigmoid32(z):  # 1/(1+e^-z) written without overflow: 0.5 tanh(z/2) + 0.5
    z *= 0.5
    np.tanh(z, out=z)
    z *= 0.5
    z += 0.5
    return z


def _gelu32(z):
    inner = z * z
    inner *= 0.044715
    inner += 1.0
    inner *= z
    inner *= np.float32(_GELU_C)
    np.tanh(inner, out=inner)
    inner += 1.0
    z *= 0.5
    z *= inner
    return z


def _gelu_tinygrad(z):
    return 0.5 * z * (1.0 + (_GELU_C * (z + 0.044715 * z * z * z)).tanh())


def _onnx_unary(op: str):
    def build(node, const, z: str, p: str) -> str:
        return node(op, [z], p + op.lower())
    return build


def _onnx_gelu(node, const, z: str, p: str) -> str:
    z3 = node("Mul", [node("Mul", [z, z], p + "z2"), z], p + "z3")
    inner = node("Add", [z, node("Mul", [z3, const(p + "k", 0.044715)], p + "kz3")], p + "inner")
    t = node("Tanh", [node("Mul", [inner, const(p + "c", np.sqrt(2 / np.pi))], p + "scaled")], p + "t")
    half = node("Mul", [z, const(p + "half", 0.5)], p + "halfz")
    return node("Mul", [half, node("Add", [t, const(p + "one", 1.0)], p + "1pt")], p + "gelu")


@dataclass(frozen=True)
class Activation:
    name: str
    code: int  # the layer record's activation field (docs/blob-format.md)
    reference: Callable  # numpy float64 array -> array (backend="reference")
    numpy32: Callable  # float32 array -> the result, computed in place where it can be (bench)
    tinygrad: Callable  # tinygrad Tensor -> Tensor (training)
    onnx: Callable  # (node, const, z, prefix) -> the output's name (export)
    flops: int = 1  # per output, in Spec.flops (linear: 0)


TABLE: tuple[Activation, ...] = (
    Activation("linear", 0, lambda z: z, lambda z: z, lambda z: z, lambda node, const, z, p: z,
               flops=0),
    Activation("relu", 1, lambda z: np.maximum(z, 0.0), _relu32, lambda z: z.relu(),
               _onnx_unary("Relu")),
    Activation("tanh", 2, np.tanh, _tanh32, lambda z: z.tanh(), _onnx_unary("Tanh")),
    Activation("sigmoid", 3, lambda z: 1.0 / (1.0 + np.exp(-z)), _sigmoid32, lambda z: z.sigmoid(),
               _onnx_unary("Sigmoid")),
    Activation("gelu", 4, _gelu64, _gelu32, _gelu_tinygrad, _onnx_gelu),
)

BY_NAME: dict[str, Activation] = {a.name: a for a in TABLE}
NAMES: tuple[str, ...] = tuple(a.name for a in TABLE)
