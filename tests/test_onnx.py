import numpy as np
import onnxruntime as ort
from netgen import networks, perturbed
from hypothesis import given, settings

import pymicro


def session(blob):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(pymicro.export_onnx(blob), options, providers=["CPUExecutionProvider"])


@settings(max_examples=40, deadline=None)
@given(net=networks())
def test_onnx_runtime_matches_the_reference_within_1e5(net):
    blob = pymicro.freeze(net)
    x = np.random.default_rng(0).normal(0, 2, (33, net.spec.input_size)).astype(np.float32)
    got = session(blob).run(["probabilities"], {"x": x})[0]
    np.testing.assert_allclose(got, pymicro.load(blob, "reference", dtype=np.float64).predict(x), atol=1e-5, rtol=0)


def test_presets_export_with_attention_output_and_metadata(tmp_path, preset_blob):
    model = pymicro.load(preset_blob)
    path = tmp_path / "model.onnx"
    data = pymicro.export_onnx(model, path)
    assert path.read_bytes() == data
    sess = session(preset_blob)
    x = np.random.default_rng(1).normal(0, 2, (10, model.input_size)).astype(np.float32)
    outputs = {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, {"x": x}))}
    np.testing.assert_allclose(outputs["probabilities"], model.predict(x), atol=1e-5)
    if model.described["layers"][0]["kind"] == "attention":
        np.testing.assert_allclose(outputs["attention"], model.explain(x), atol=1e-5)
    else:
        assert set(outputs) == {"probabilities"}
    assert sess.get_modelmeta().custom_metadata_map["name"] == model.info.name


def test_export_rejects_a_corrupt_blob():
    blob = bytearray(pymicro.freeze(perturbed(pymicro.preset("momentum"))))
    blob[300] ^= 1
    try:
        pymicro.export_onnx(bytes(blob))
    except pymicro.BlobError as e:
        assert e.offset == len(blob) - 8
    else:
        raise AssertionError("a corrupt blob was exported")


def test_an_ensemble_exports_as_one_graph_within_1e5():
    from test_ensemble import CONTAINERS, X

    for combiner, blob in CONTAINERS.items():
        sess = session(blob)
        outputs = {o.name: v for o, v in zip(sess.get_outputs(), sess.run(None, {"x": X}))}
        model = pymicro.load(blob)
        ref = pymicro.load(blob, "reference", dtype=np.float64).predict(X)
        tol = 1e-5 if combiner != "majority_vote" else 1e-6
        np.testing.assert_allclose(outputs["probabilities"], ref, atol=tol, rtol=0, err_msg=combiner)
        np.testing.assert_allclose(outputs["attention"], model._impl.explain(X), atol=1e-5)
        assert sess.get_modelmeta().custom_metadata_map["members"] == "momentum,reversal,sentiment"
