"""Export a blob to ONNX, so the same weights run in ONNX Runtime (interop, and the
benchmarks' peer). The graph computes exactly what the core computes: normalisation,
the layers, the softmax head; attention models also output their attention weights.
"""

from __future__ import annotations

import os

import numpy as np

from pymicro.errors import require, BackendError
from pymicro.runtime.activations import BY_NAME as ACTIVATIONS_BY_NAME

OPSET = 17
IR_VERSION = 8  # what opset 17 needs; readable by every ONNX Runtime since 1.11


def export_onnx(source, path: str | os.PathLike | None = None) -> bytes:
    """ONNX model bytes for a blob (path, bytes or a loaded Model); also written to ``path``.

    Inputs: ``x`` (batch, input_size) float32. Outputs: ``probabilities``
    (batch, n_classes) and, for attention models, ``attention`` (batch, width).
    """
    onnx = require("onnx", "onnx", purpose="export_onnx")  # MissingDependencyError without it
    from onnx import TensorProto, helper, numpy_helper
    from pymicro import _core
    from pymicro.runtime.blob import write_atomic
    from pymicro.runtime.model import Model, _read_source

    blob = source.blob if isinstance(source, Model) else _read_source(source)
    if blob[:4] == b"PMBC":  # an ensemble container: members and combiner as one graph
        from pymicro.runtime.onnx_ensemble import export_ensemble_onnx

        return export_ensemble_onnx(blob, path)
    d = _core.parse(blob)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    attention_out = network_nodes(d, node, const, "x", "probabilities")

    n, c = d["input_size"], d["n_classes"]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", c])]
    if attention_out:
        width = next(l["in"] for l in d["layers"] if l["kind"] == "attention")
        outputs.append(helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["batch", width]))
    graph = helper.make_graph(
        nodes, d["metadata"].get("name", "pymicro"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="pymicro")
    for key, value in d["metadata"].items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if path is not None:
        write_atomic(path, data)
    return data


def network_nodes(d: dict, node, const, x: str, out: str, prefix: str = "",
                  attention_name: str = "attention") -> str | None:
    """One parsed blob's nodes, from input ``x`` to probabilities ``out`` (names prefixed
    with ``prefix``); returns its first attention output's name, or None."""
    h = x
    if d["mean"] is not None:
        h = node("Sub", [h, const(prefix + "norm_mean", d["mean"])], prefix + "centred")
        h = node("Div", [h, const(prefix + "norm_std", d["std"])], prefix + "normalised")
    attention_out = None
    for i, layer in enumerate(d["layers"]):
        p = f"{prefix}l{i}_"
        if layer["kind"] == "attention":
            logits = node("Gemm", [h, const(p + "W_a", layer["W_a"]), const(p + "b_a", layer["b_a"])],
                          p + "logits", transB=1)
            a = node("Softmax", [logits], attention_name if attention_out is None else p + "attention",
                     axis=-1)
            attention_out = attention_out or a
            gated = node("Mul", [a, h], p + "gated")
            h = node("Gemm", [gated, const(p + "W_v", layer["W_v"]), const(p + "b_v", layer["b_v"])],
                     p + "values", transB=1)
            continue
        z = node("Gemm", [h, const(p + "W", layer["W"]), const(p + "b", layer["b"])], p + "z",
                 transB=1)
        h = ACTIVATIONS_BY_NAME[layer["activation"]].onnx(node, const, z, p)  # pymicro/activations.py
    node("Softmax", [h], out, axis=-1)
    return attention_out
