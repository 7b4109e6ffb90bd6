"""Ensembles of specialists in one container and one core call: parity and the Model API.

Parity, as issue 12 asks: the container's output equals the combiner applied to each
member run alone (bit for bit natively, where the combiner is reproduced in float32);
native and wasm give the same bits; the float64 reference agrees within 1e-5.
"""

import threading

import numpy as np
import pytest

import pymicro
from pymicro import BackendError, InputError, ParameterBudgetError
from pymicro.runtime.ensemble import Ensemble, EnsembleExplanation, freeze_ensemble, map_classes
from pymicro.runtime.spec import Dense, Spec

LABELS = ("down", "flat", "up")
WIDTH = 80  # the shared input row; members read overlapping windows of it
COLUMNS = [list(range(0, 24)), list(range(20, 52)), list(range(32, 80))]
WEIGHTS = [1.0, 2.0, 0.5]


def _members():
    out = []
    for i, name in enumerate(("momentum", "reversal", "sentiment")):
        net = pymicro.preset(name).init(seed=10 + i)
        if i != 1:  # two of three carry their own normalisation
            rng = np.random.default_rng(i)
            net.mean = rng.normal(0, 0.5, net.spec.input_size).astype(np.float32)
            net.std = rng.uniform(0.5, 2.0, net.spec.input_size).astype(np.float32)
        out.append(pymicro.freeze(net))
    return out


MEMBERS = _members()
META = Spec(9, (Dense(6, "tanh"),), 3, name="meta", labels=LABELS).init(seed=3)


def _container(combiner):
    kw = {"meta": META} if combiner == "stacked" else {"weights": WEIGHTS}
    return freeze_ensemble(MEMBERS, combiner=combiner, columns=COLUMNS, labels=LABELS,
                           name=f"three-{combiner}", **kw)


CONTAINERS = {c: _container(c) for c in ("soft_vote", "majority_vote", "stacked")}
X = np.random.default_rng(42).normal(0, 1.5, (300, WIDTH)).astype(np.float32)  # > one 240-row chunk


@pytest.fixture(params=list(CONTAINERS))
def combiner(request):
    return request.param


def _members_alone(x):
    """Each member loaded alone (natively) on its columns, mapped onto the common labels."""
    d = pymicro._core.parse_container(CONTAINERS["soft_vote"])
    q = [map_classes(pymicro.load(b).predict(np.ascontiguousarray(x[:, cols])), m["class_map"], 3)
         for b, cols, m in zip(MEMBERS, COLUMNS, d["members"])]
    return np.stack(q, axis=1)  # float32, summed in class order as the core sums


def test_load_returns_an_ensemble_with_the_model_api(combiner):
    model = pymicro.load(CONTAINERS[combiner])
    assert isinstance(model, Ensemble) and isinstance(model, pymicro.Model)
    assert model.input_size == WIDTH and model.n_classes == 3 and model.labels == LABELS
    assert model.member_names == ("momentum", "reversal", "sentiment")
    info = model.info
    assert info.combiner == combiner and [m.columns for m in info.members] == [tuple(c) for c in COLUMNS]
    assert info.members[2].class_map == (0, 0, 1, 2, 2)  # five sentiment classes onto three
    assert info.params == sum(m.params for m in info.members) + info.meta_params
    assert info.name == f"three-{combiner}"
    p = model.predict(X)
    assert p.shape == (300, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(pymicro.predict(model, X[7]), p[7])  # one row: the batch's bits
    out = np.empty((300, 3), np.float32)
    model.predict_into(X, out)
    assert np.array_equal(out, p)
    assert repr(model).startswith("<pymicro.Ensemble")


def test_the_container_equals_the_combiner_over_members_run_alone(combiner):
    model = pymicro.load(CONTAINERS[combiner])
    q = _members_alone(X)
    got = model.predict(X)
    if combiner == "soft_vote":  # the core's float32 arithmetic: w / sum, then w * q added in order
        w = np.asarray(WEIGHTS, np.float32)
        s = np.float32(0)
        for v in w:
            s = np.float32(s + v)
        want = np.zeros((len(X), 3), np.float32)
        for k in range(3):
            want = want + (w[k] / s) * q[:, k]
    elif combiner == "majority_vote":
        w = np.asarray(WEIGHTS, np.float32) / np.float32(sum(WEIGHTS))
        want = np.zeros((len(X), 3), np.float32)
        for k in range(3):
            want[np.arange(len(X)), q[:, k].argmax(axis=1)] += w[k]
    else:  # stacked: the meta-model alone on the concatenated mapped probabilities
        want = pymicro.load(pymicro.freeze(META)).predict(np.ascontiguousarray(q.reshape(len(X), 9)))
    if combiner == "majority_vote":
        np.testing.assert_allclose(got, want, atol=1e-6)
    else:
        assert np.array_equal(got, want)


def test_native_and_wasm_are_bit_identical_and_the_reference_agrees(combiner):
    pytest.importorskip("wasmtime")
    blob = CONTAINERS[combiner]
    native = pymicro.load(blob)
    wasm = pymicro.load(blob, backend="wasm")
    ref = pymicro.load(blob, backend="reference", dtype=np.float64)
    assert isinstance(wasm, Ensemble) and isinstance(ref, Ensemble)
    p = native.predict(X)
    assert np.array_equal(wasm.predict(X), p)
    assert np.array_equal(wasm.predict(X[5]), p[5])
    out = np.empty((300, 3), np.float32)
    wasm.predict_into(X, out)
    assert np.array_equal(out, p)
    np.testing.assert_allclose(ref.predict(X), p, atol=1e-5, rtol=0)
    # attention of every member, concatenated: the same bits on both backends
    assert np.array_equal(wasm._impl.explain(X), native._impl.explain(X))


def test_every_isa_gives_the_same_probabilities_within_the_native_spread(combiner):
    ps = {isa: pymicro.load(CONTAINERS[combiner], isa=isa).predict(X) for isa in pymicro._core.isas()}
    base = next(iter(ps.values()))
    for isa, p in ps.items():
        np.testing.assert_allclose(p, base, atol=1e-5, err_msg=isa)


def test_explain_gives_each_members_view_and_its_share(combiner):
    model = pymicro.load(CONTAINERS[combiner])
    e = model.explain(X[:50])
    assert isinstance(e, EnsembleExplanation)
    assert e.members == model.member_names and e.probabilities.shape == (50, 3, 3)
    np.testing.assert_allclose(e.share.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(e.share >= 0)
    assert np.array_equal(e.dominant, e.share.argmax(axis=1))
    assert np.array_equal(e.decision, model.predict(X[:50]).argmax(axis=1))
    np.testing.assert_allclose(e.confidence, e.probabilities.max(axis=2))
    np.testing.assert_allclose(e.probabilities, _members_alone(X[:50]), atol=0)
    # each member's own attention, as the member alone explains it
    assert e.attention["reversal"] is None
    alone = pymicro.load(MEMBERS[0]).explain(np.ascontiguousarray(X[:50, COLUMNS[0]]))
    assert np.array_equal(e.attention["momentum"], alone)
    assert e.attention["sentiment"].shape == (50, 48)
    one = model.explain(X[0])
    assert one.share.shape == (3,) and one.attention["momentum"].shape == (24,)


def test_soft_vote_share_follows_the_weights_when_members_agree():
    """A member's share is its weighted support for the chosen label: with equal
    probabilities everywhere it is exactly the normalised weight."""
    model = pymicro.load(CONTAINERS["soft_vote"])
    e = model.explain(X[:20])
    q = e.probabilities
    w = np.asarray(WEIGHTS) / sum(WEIGHTS)
    support = w * q[np.arange(20), :, e.decision]
    np.testing.assert_allclose(e.share, support / support.sum(axis=1, keepdims=True), rtol=1e-6)


def test_nan_policy_covers_the_whole_input_row():
    x = X[:10].copy()
    x[3, 79] = np.nan  # a column only sentiment reads
    x[6, 5] = np.inf   # one only momentum reads
    with pytest.raises(InputError, match=r"x\[3, 79\] is nan"):
        pymicro.load(CONTAINERS["soft_vote"]).predict(x)
    for backend in ("native", "wasm", "reference"):
        if backend == "wasm":
            pytest.importorskip("wasmtime")
        p = pymicro.load(CONTAINERS["stacked"], backend, nan_policy="propagate").predict(x)
        assert np.isnan(p[[3, 6]]).all() and not np.isnan(np.delete(p, [3, 6], axis=0)).any(), backend


def test_members_and_the_meta_model_load_alone():
    model = pymicro.load(CONTAINERS["stacked"])
    assert [m.blob for m in model.members] == MEMBERS
    assert model.meta_model().blob == pymicro.freeze(META)
    assert pymicro.load(CONTAINERS["soft_vote"]).meta_model() is None


def test_each_member_keeps_the_parameter_budget():
    big = pymicro.freeze(Spec(100, (Dense(100, "relu"),), 3, labels=LABELS, allow_large=True).init(0))  # 10,403 params
    c = freeze_ensemble([MEMBERS[0], big], columns=[list(range(24)), list(range(100))])
    with pytest.raises(ParameterBudgetError, match="member"):
        pymicro.load(c)
    assert pymicro.load(c, allow_large=True).predict(np.zeros(100, np.float32)).shape == (3,)
    # the ensemble itself may exceed 10,000: three presets are 6,687 together, fine; and so is more
    assert pymicro.load(CONTAINERS["soft_vote"]).info.params == 1107 + 1191 + 4389


def test_unknown_backend_for_an_ensemble():
    with pytest.raises(BackendError):
        pymicro.load(CONTAINERS["soft_vote"], backend="cuda")


def test_threads_share_one_ensemble():
    model = pymicro.load(CONTAINERS["stacked"])
    want = model.predict(X)
    got = [None] * 6

    def work(i):
        got[i] = model.predict(X)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(g, want) for g in got)


@pytest.mark.parametrize("threads", [2, 3])
def test_a_batch_split_across_threads_gives_the_same_bits(combiner, threads):
    model = pymicro.load(CONTAINERS[combiner])
    x = np.random.default_rng(7).normal(0, 1.5, (1000, WIDTH)).astype(np.float32)  # 4 chunks and a tail
    want = model.predict(x, threads=1)
    assert np.array_equal(model.predict(x, threads=threads), want)
    out = np.empty_like(want)
    model.predict_into(x, out, threads=threads)
    assert np.array_equal(out, want)
    x[777, 5] = np.nan  # a bad row in a later part is named by its row in the whole batch
    with pytest.raises(InputError, match="777"):
        model.predict(x, threads=threads)


def test_features_by_name_and_a_path(tmp_path):
    names = [f"f{i}" for i in range(6)]
    a = Spec(3, (Dense(3, "relu"),), 3, labels=LABELS, feature_names=("f4", "f0", "f2")).init(1)
    b = Spec(2, (Dense(3, "relu"),), 3, labels=LABELS, feature_names=("f5", "f1")).init(2)
    path = tmp_path / "two.pmb"
    blob = freeze_ensemble([a, b], path, feature_names=names)
    assert path.read_bytes() == blob
    model = pymicro.load(path)
    assert [m.columns for m in model.info.members] == [(4, 0, 2), (5, 1)]
    assert model.info.feature_names == tuple(names)


def test_the_sandbox_runs_a_container():
    pytest.importorskip("wasmtime")
    from pymicro.runtime import sandbox

    node = sandbox.create(fuel=10**10, timeout=10.0, memory_mb=64)
    try:
        node.upload(CONTAINERS["stacked"])
        r = node.execute(X)
        assert np.array_equal(r.probabilities, pymicro.load(CONTAINERS["stacked"]).predict(X))
    finally:
        node.close()


@pytest.mark.parametrize("layout", ["identity", "run", "scattered"])
def test_every_column_layout_agrees_across_backends(layout):
    """A member reading the whole row in order runs on x in place; a contiguous run is
    copied; scattered (and repeated) columns are gathered: the same answers every way."""
    rng = np.random.default_rng(7)
    if layout == "identity":
        cols, width = [list(range(24)), list(range(24))], 24
    elif layout == "run":
        cols, width = [list(range(3, 27)), list(range(10, 34))], 40
    else:
        cols, width = [list(rng.permutation(30)[:24]), [int(c) for c in rng.integers(0, 30, 24)]], 30
    blob = freeze_ensemble([MEMBERS[0], pymicro.freeze(pymicro.preset("momentum").init(5))],
                           columns=cols, weights=[2.0, 1.0], input_size=width)
    x = rng.normal(size=(250, width)).astype(np.float32)
    native = pymicro.load(blob).predict(x)
    alone = [pymicro.load(b).predict(np.ascontiguousarray(x[:, c]))
             for b, c in zip([MEMBERS[0], pymicro.freeze(pymicro.preset("momentum").init(5))], cols)]
    w = np.float32(2.0) / np.float32(3.0), np.float32(1.0) / np.float32(3.0)
    assert np.array_equal(native, np.float32(0) + w[0] * alone[0] + w[1] * alone[1])
    np.testing.assert_allclose(pymicro.load(blob, "reference").predict(x), native, atol=1e-5)
    pytest.importorskip("wasmtime")
    assert np.array_equal(pymicro.load(blob, "wasm").predict(x), native)


def test_the_cli_shows_and_runs_a_container(tmp_path, capsys):
    from pymicro.cli import main

    path = tmp_path / "three.pmb"
    path.write_bytes(CONTAINERS["soft_vote"])
    rows = tmp_path / "rows.npy"
    np.save(rows, X[:4])
    assert main(["ensemble", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "soft_vote of 3 members" in out and "strong_sell->down" in out and "20..51" in out
    assert main(["ensemble", "predict", str(path), str(rows), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "dominant" in out and len(out.strip().splitlines()) == 2 + 4
    np.save(rows, X[:4, :10])
    assert main(["ensemble", "predict", str(path), str(rows)]) == 2  # wrong width: a typed error
    assert "(batch, 80)" in capsys.readouterr().err
    single = tmp_path / "one.pmb"
    single.write_bytes(MEMBERS[0])
    assert main(["ensemble", "info", str(single)]) == 2
    for action in ("train", "info", "predict"):
        with pytest.raises(SystemExit) as e:
            main(["ensemble", action, "--help"])
        assert e.value.code == 0
