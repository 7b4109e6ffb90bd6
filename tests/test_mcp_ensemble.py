"""MCP over stdio: ensembles in the registry and the ensemble tools (issue 12).

neural_ensemble_create assembles registered models under a vote (and refuses a stacked
combiner there), registers the container (kind "ensemble", members linked to their model
ids); neural_predict and neural_ensemble_predict give this process's numbers; status, list,
resources and verify_model take the ensemble; training from presets (slow) sends progress
and reports the out-of-sample comparison.
"""

from __future__ import annotations

import numpy as np
import pytest
from netgen import perturbed
from test_mcp import error_text, stdio_session

import pymicro
from pymicro.agents import server as S
from pymicro.runtime.ensemble import MAX_MEMBERS
from pymicro.store.registry import Registry

pytestmark = pytest.mark.anyio
PRESETS = ("momentum", "reversal", "sentiment")


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(PYMICRO_HOME, {preset: model id}, {preset: blob}): the three presets, seeded, with their
    features named as the feature sets name them (momentum and reversal share some)."""
    from pymicro.market.features import feature_set

    home = tmp_path_factory.mktemp("pymicro-home-ensemble")
    reg = Registry(home / "models")
    ids, blobs = {}, {}
    for i, p in enumerate(PRESETS):
        spec = pymicro.preset(p)
        names = feature_set(p).names
        spec = type(spec)(spec.input_size, spec.layers, spec.n_classes, name=p, labels=spec.labels,
                          feature_names=tuple(names))
        blobs[p] = pymicro.freeze(perturbed(spec, seed=i + 1), preset=p)
        ids[p] = reg.add(blobs[p], p)
    return home, ids, blobs


def _rows(model, n=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, model.input_size)).astype(np.float32)


async def test_ensemble_tool_schemas(store):
    home, _, _ = store
    async with stdio_session(home) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        create = tools["neural_ensemble_create"].input_schema["properties"]
        assert create["members"]["maxItems"] == MAX_MEMBERS and create["members"]["minItems"] == 1
        assert set(create["combiner"]["anyOf"][0]["enum"]) == {"stacked", "soft_vote", "majority_vote"}
        assert (create["folds"]["minimum"], create["folds"]["maximum"]) == (2, 8)
        assert create["weights"]["anyOf"][0]["items"]["minimum"] == 0
        assert tools["neural_ensemble_create"].annotations.read_only_hint is False
        predict = tools["neural_ensemble_predict"].input_schema["properties"]
        assert predict["model_id"]["pattern"] == S.ID_PATTERN and predict["input"]["maxItems"] == S.MAX_ROWS
        assert tools["neural_ensemble_predict"].output_schema and tools["neural_ensemble_create"].output_schema
        # unknown arguments are refused as for every tool
        bad = await s.call_tool("neural_ensemble_create", {"members": ["momentum"], "bogus": 1})
        assert "bogus" in error_text(bad)


async def test_assemble_register_predict_explain(store):
    home, ids, blobs = store
    members = [ids[p] for p in PRESETS]
    async with stdio_session(home) as s:
        refused = await s.call_tool("neural_ensemble_create", {"members": members, "combiner": "stacked"})
        assert "out-of-fold" in error_text(refused)
        mixed = await s.call_tool("neural_ensemble_create", {"members": ["momentum", ids["reversal"]]})
        assert "not a mix" in error_text(mixed)
        unknown = await s.call_tool("neural_ensemble_create", {"members": [ids["momentum"], "ghost-deadbeef"]})
        assert "ghost-deadbeef" in error_text(unknown)
        wrong = await s.call_tool("neural_ensemble_create", {"members": members, "weights": [1, 2]})
        assert "2 weights for 3 members" in error_text(wrong)

        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total))

        made = await s.call_tool("neural_ensemble_create", {"members": members, "weights": [1, 1, 2],
                                                            "name": "trio"}, progress_callback=on_progress)
        assert not made.is_error, error_text(made)
        out = made.structured_content
        assert out["kind"] == "ensemble" and out["mode"] == "assembled" and out["combiner"] == "soft_vote"
        assert [m["model_id"] for m in out["members"]] == members
        assert [m["weight"] for m in out["members"]] == [1, 1, 2]
        assert out["labels"] == ["down", "flat", "up"]
        assert out["members"][2]["class_map"] == [0, 0, 1, 2, 2]  # sentiment's five classes onto three
        assert seen and seen[-1] == (4, 4) and [p for p, _ in seen] == sorted(p for p, _ in seen)
        # a feature two members read is one column of the shared row
        names = out["feature_names"]
        assert len(names) == len(set(names)) == out["input_size"]
        for m, p in zip(out["members"], PRESETS):
            assert [names[c] for c in m["columns"]] == list(pymicro.load(blobs[p]).info.feature_names)
        eid = out["model_id"]

        container = Registry(home / "models").read_blob(eid)
        model = pymicro.load(container)
        x = _rows(model)
        # neural_predict takes the ensemble id: this process's numbers
        res = (await s.call_tool("neural_predict", {"model_id": eid, "input": x.tolist()})).structured_content
        assert res["kind"] == "ensemble"
        np.testing.assert_allclose(res["probabilities"], model.predict(x), atol=1e-7)
        # the container equals the soft vote of its members run alone
        alone = [pymicro.load(blobs[p]).predict(np.ascontiguousarray(x[:, m["columns"]]))
                 for p, m in zip(PRESETS, out["members"])]
        sentiment = np.stack([alone[2][:, :2].sum(1), alone[2][:, 2], alone[2][:, 3:].sum(1)], axis=1)
        vote = (alone[0] + alone[1] + 2 * sentiment) / 4
        np.testing.assert_allclose(res["probabilities"], vote, atol=1e-5)

        ens = await s.call_tool("neural_ensemble_predict", {"model_id": eid, "input": x.tolist()})
        assert not ens.is_error, error_text(ens)
        e = ens.structured_content
        ref = model.explain(x)
        np.testing.assert_allclose(e["probabilities"], model.predict(x), atol=1e-7)
        np.testing.assert_allclose(e["member_probabilities"], ref.probabilities, atol=1e-6)
        np.testing.assert_allclose(e["share"], ref.share, atol=1e-6)
        assert e["dominant"] == [model.member_names[i] for i in ref.dominant]
        assert e["members"] == list(PRESETS) and "largest share" in e["rule"]
        plain = (await s.call_tool("neural_ensemble_predict", {"model_id": eid, "input": x.tolist(),
                                                               "explain": False})).structured_content
        assert plain["share"] is None and plain["probabilities"] == e["probabilities"]
        single = await s.call_tool("neural_ensemble_predict", {"model_id": ids["momentum"],
                                                               "input": _rows(pymicro.load(blobs["momentum"])).tolist()})
        assert "not an ensemble" in error_text(single)
        narrow = await s.call_tool("neural_ensemble_predict", {"model_id": eid, "input": [[0.0] * 24]})
        assert f"takes {model.input_size}" in error_text(narrow)


async def test_ensemble_in_list_status_resources_and_verify(store):
    home, ids, blobs = store
    reg = Registry(home / "models")
    from pymicro.runtime.ensemble import freeze_ensemble

    container = freeze_ensemble([blobs["momentum"], blobs["reversal"]], combiner="majority_vote",
                                columns=[range(0, 24), range(24, 56)], names=["m", "r"], name="pair")
    eid = reg.add(container, "pair")
    async with stdio_session(home) as s:
        listed = (await s.call_tool("list_models", {})).structured_content["models"]
        entry = next(m for m in listed if m["model_id"] == eid)
        assert entry["kind"] == "ensemble" and [m["model_id"] for m in entry["members"]] == [ids["momentum"],
                                                                                             ids["reversal"]]
        assert all(m["kind"] == "model" and m["members"] == [] for m in listed if m["model_id"] in ids.values())
        status = (await s.call_tool("neural_model_status", {"model_id": eid})).structured_content
        assert status["kind"] == "ensemble" and status["combiner"] == "majority_vote"
        assert status["params"] == pymicro.load(container).info.params
        assert [m["name"] for m in status["members"]] == ["m", "r"]
        assert status["members"][1]["columns"] == list(range(24, 56))
        assert status["flops"] == sum(pymicro.load(blobs[p]).info.flops for p in ("momentum", "reversal"))
        assert status["layers"][0].startswith("m: ")
        resources = {str(r.uri): r for r in (await s.list_resources()).resources}
        assert "ensemble of 2" in resources[f"pymicro://models/{eid}"].title
        verified = (await s.call_tool("verify_model", {"model_id": eid, "n_samples": 512})).structured_content
        assert verified["passed"], verified["checks"]
        evaluate = await s.call_tool("neural_evaluate", {"model_id": eid})
        assert "ensemble" in error_text(evaluate) and "input rows" in error_text(evaluate)
        x = np.random.default_rng(5).normal(size=(40, 56)).astype(np.float32)
        y = np.random.default_rng(6).integers(0, 3, 40)
        rows = await s.call_tool("neural_evaluate", {"model_id": eid, "input": x.tolist(), "labels": y.tolist()})
        assert not rows.is_error, error_text(rows)
        pred = pymicro.load(container).predict(x).argmax(axis=1)
        assert rows.structured_content["accuracy"] == pytest.approx(float((pred == y).mean()))


@pytest.mark.slow
async def test_train_ensemble_from_presets_with_progress(store):
    home, _, _ = store
    seen = []

    async def on_progress(progress, total, message):
        seen.append((progress, total, message))

    async with stdio_session(home) as s:
        res = await s.call_tool("neural_ensemble_create", {
            "members": ["momentum", "reversal"], "symbols": ["SP500"], "folds": 2, "epochs": 1,
            "name": "duo"}, progress_callback=on_progress, read_timeout_seconds=600)
        assert not res.is_error, error_text(res)
        out = res.structured_content
        assert out["mode"] == "trained" and out["combiner"] == "stacked" and out["oof_rows"] > 0
        assert [m["preset"] for m in out["members"]] == ["momentum", "reversal"]
        cls = out["comparison"]["classification"]
        assert {"ensemble", "momentum", "reversal", "majority class"} <= set(cls)
        lo, hi = cls["ensemble"]["accuracy_ci"]
        assert lo <= cls["ensemble"]["accuracy"] <= hi
        assert out["comparison"]["trading"]["buy and hold"]["sharpe"] is not None
        # progress: 2 folds x 2 members, 2 final members, registered = 7
        assert seen[-1][:2] == (7, 7) and [p for p, _, _ in seen] == sorted(p for p, _, _ in seen)
        status = (await s.call_tool("neural_model_status", {"model_id": out["model_id"]})).structured_content
        assert status["kind"] == "ensemble" and status["metrics"]["test_start"] == out["test_start"]
