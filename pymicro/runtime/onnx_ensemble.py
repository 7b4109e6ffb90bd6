"""ONNX export of an ensemble container: every member and the combiner as one graph.

``pymicro.export_onnx(container)`` calls this. Per member: ``Gather`` of its columns from
the shared row, its own network (pymicro.runtime.onnx_export.network_nodes), a 0/1 matrix
that sums its classes onto the common labels; then the combiner: a weighted ``Sum`` (soft
vote), ``ArgMax`` -> ``OneHot`` -> weighted ``Sum`` (majority vote), or ``Concat`` and the
meta-model's network (stacked). Outputs ``probabilities`` and, when any member has an
attention layer, ``attention`` (each such member's, concatenated in member order, as
``Ensemble.explain`` splits them).
"""

from __future__ import annotations

import os

import numpy as np

from pymicro.errors import require


def export_ensemble_onnx(blob: bytes, path: str | os.PathLike | None = None) -> bytes:
    onnx = require("onnx", "onnx", purpose="export_onnx")
    from onnx import TensorProto, helper, numpy_helper

    from pymicro import _core
    from pymicro.runtime.blob import write_atomic
    from pymicro.runtime.onnx_export import IR_VERSION, OPSET, network_nodes

    d = _core.parse_container(blob)
    nodes, inits = [], []

    def const(name: str, value, dtype=np.float32) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    C = d["n_classes"]
    weights = np.array([m["weight"] for m in d["members"]], np.float64)
    w = (weights / weights.sum()) if d["combiner"] != "stacked" else weights
    mapped, attentions, widths = [], [], []
    for i, m in enumerate(d["members"]):
        p = f"m{i}_"
        xm = node("Gather", ["x", const(p + "columns", m["columns"], np.int64)], p + "x", axis=1)
        att = network_nodes(m, node, const, xm, p + "probs", prefix=p, attention_name=p + "attention")
        if att:
            attentions.append(att)
            widths.append(next(l["in"] for l in m["layers"] if l["kind"] == "attention"))
        to_labels = np.zeros((m["n_classes"], C), np.float32)
        to_labels[np.arange(m["n_classes"]), m["class_map"]] = 1.0
        mapped.append(node("MatMul", [p + "probs", const(p + "to_labels", to_labels)], p + "q"))
    if d["combiner"] == "soft_vote":
        terms = [node("Mul", [q, const(f"m{i}_w", [w[i]])], f"m{i}_wq") for i, q in enumerate(mapped)]
        node("Sum", terms, "probabilities")
    elif d["combiner"] == "majority_vote":
        terms = []
        for i, q in enumerate(mapped):
            vote = node("ArgMax", [q], f"m{i}_vote", axis=1, keepdims=0)
            hot = node("OneHot", [vote, const(f"m{i}_depth", [C], np.int64), const(f"m{i}_offon", [0.0, 1.0])],
                       f"m{i}_onehot", axis=-1)
            terms.append(node("Mul", [hot, const(f"m{i}_w", [w[i]])], f"m{i}_wvote"))
        node("Sum", terms, "probabilities")
    else:
        z = node("Concat", mapped, "members_q", axis=1)
        network_nodes(d["meta_model"], node, const, z, "probabilities", prefix="meta_",
                      attention_name="meta_attention")
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", C])]
    if attentions:
        node("Concat", attentions, "attention", axis=1)
        outputs.append(helper.make_tensor_value_info("attention", TensorProto.FLOAT, ["batch", sum(widths)]))
    graph = helper.make_graph(
        nodes, d["metadata"].get("name", "pymicro-ensemble"),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", d["input_size"]])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION, producer_name="pymicro")
    for key, value in d["metadata"].items():
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key="members", value=",".join(m["name"] for m in d["members"]))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if path is not None:
        write_atomic(path, data)
    return data
