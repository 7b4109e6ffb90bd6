"""The tinygrad trainer: structure, parity with the frozen blob, determinism, early stopping,
learning, class weights, and the clang-free toolchain path.

Every training here is tiny (a few hundred rows, a few epochs); the arrays keep the same
shapes across tests so tinygrad's in-process kernel caches are reused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pymicro
from pymicro import Attention, Dense, Dropout, Spec
from pymicro.errors import PymicroError, TrainingError
from pymicro.training.train import TinyNet, class_weights, normalization, tinygrad_predict, train

N_TRAIN, N_VAL, BATCH = 320, 160, 32

# Every activation, attention and dropout in one small spec (the presets use relu only).
MIXED = Spec(10, (Attention(6), Dense(8, "gelu"), Dropout(0.1), Dense(7, "tanh"), Dense(6, "sigmoid"),
                  Dense(5, "linear")), 3, name="mixed")


def spec_named(name: str) -> Spec:
    return MIXED if name == "mixed" else pymicro.preset(name)


def learnable(spec: Spec, seed: int = 0, n: int = N_TRAIN + N_VAL):
    """Raw (un-normalised) features and labels set by two of the features: learnable, unbalanced."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, spec.input_size)) * rng.uniform(0.5, 20, spec.input_size) + rng.uniform(-50, 50, spec.input_size)
    z = (X[:, 0] - X[:, 0].mean()) / X[:, 0].std() + 0.5 * (X[:, 1] - X[:, 1].mean()) / X[:, 1].std()
    edges = np.quantile(z, np.linspace(0, 1, spec.n_classes + 1)[1:-1] ** 0.7)  # unequal class sizes
    y = np.searchsorted(edges, z)
    return X.astype(np.float32), y.astype(np.int64)


def split(X, y):
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


@pytest.fixture(scope="module", params=[*pymicro.PRESETS, "mixed"])
def trained(request):
    spec = spec_named(request.param)
    X, y = learnable(spec)
    Xtr, ytr, Xva, yva = split(X, y)
    result = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=1)
    return spec, result, Xtr, ytr, Xva, yva


# ------------------------------------------------------------------ structure

@pytest.mark.parametrize("name", [*pymicro.PRESETS, "mixed"])
def test_tinygrad_net_has_exactly_the_spec_parameters(name):
    spec = spec_named(name)
    net = TinyNet(spec.init(seed=0))
    assert net.n_params == spec.params
    back = net.numpy_params()
    for ours, theirs in zip(back, spec.init(seed=0).params):
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert ours[key].shape == theirs[key].shape and ours[key].dtype == np.float32
            np.testing.assert_array_equal(ours[key], theirs[key])


@pytest.mark.slow  # trains every preset with tinygrad (the `trained` fixture)
def test_result_carries_history_normalisation_and_timings(trained):
    spec, result, Xtr, _, _, _ = trained
    assert result.network.spec is spec
    assert set(result.history) >= {"train_loss", "val_loss", "train_acc", "val_acc", "seconds"}
    assert all(len(v) == result.epochs_run == 3 for v in result.history.values())
    assert 1 <= result.best_epoch <= 3
    assert result.history["val_loss"][result.best_epoch - 1] == min(result.history["val_loss"])
    mean, std = normalization(Xtr)  # from the training split only
    np.testing.assert_array_equal(result.network.mean, mean)
    np.testing.assert_array_equal(result.network.std, std)
    np.testing.assert_allclose(mean, Xtr.astype(np.float64).mean(axis=0), rtol=1e-6)
    assert result.seconds > 0 and result.seconds_per_epoch > 0
    assert result.device.startswith(("CPU", "CUDA", "NV", "AMD", "METAL"))


# ------------------------------------------------------------------ parity

@pytest.mark.slow  # trains every preset with tinygrad (the `trained` fixture)
def test_frozen_blob_reproduces_tinygrad(trained):
    spec, result, _, _, Xva, _ = trained
    ours = tinygrad_predict(result, Xva)
    model = pymicro.load(pymicro.freeze(result.network))
    native = model.predict(Xva)
    assert native.shape == ours.shape == (len(Xva), spec.n_classes)
    np.testing.assert_allclose(native, ours, atol=1e-5, rtol=0)
    assert np.array_equal(native.argmax(axis=1), ours.argmax(axis=1))
    reference = pymicro.load(pymicro.freeze(result.network), backend="reference", dtype=np.float64).predict(Xva)
    np.testing.assert_allclose(reference, ours, atol=1e-5, rtol=0)
    # one row in, one row of probabilities out
    np.testing.assert_allclose(tinygrad_predict(result, Xva[0]), native[0], atol=1e-5)


# ------------------------------------------------------------------ determinism

def _weights(result):
    return [v for layer in result.network.params for v in layer.values()]


def test_same_seed_gives_identical_weights_and_another_seed_does_not():
    spec = pymicro.preset("reversal")  # has dropout: its masks must be seeded too
    Xtr, ytr, Xva, yva = split(*learnable(spec))
    a = train(spec, Xtr, ytr, Xva, yva, epochs=2, batch_size=BATCH, seed=7)
    b = train(spec, Xtr, ytr, Xva, yva, epochs=2, batch_size=BATCH, seed=7)
    c = train(spec, Xtr, ytr, Xva, yva, epochs=2, batch_size=BATCH, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    assert a.history["val_loss"] == b.history["val_loss"]
    assert not all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(c)))


# ------------------------------------------------------------------ early stopping

def test_early_stopping_restores_the_best_epoch():
    spec = pymicro.preset("reversal")
    X, _ = learnable(spec)
    y = np.random.default_rng(3).integers(0, 3, len(X))  # pure noise: validation loss soon rises
    Xtr, ytr, Xva, yva = split(X, y)
    seen = []
    result = train(spec, Xtr, ytr, Xva, yva, epochs=40, batch_size=BATCH, learning_rate=0.03, seed=0,
                   patience=2, progress=lambda e, total, m: seen.append((e, total, m)))
    h = result.history
    assert result.stopped_early and result.epochs_run < 40
    assert result.epochs_run == result.best_epoch + 2
    assert result.best_epoch < result.epochs_run
    assert result.best_epoch == int(np.argmin(h["val_loss"])) + 1
    # the returned weights are the best epoch's: their validation loss is the best one
    probs = pymicro.load(pymicro.freeze(result.network), backend="reference", dtype=np.float64).predict(Xva)
    w = result.class_weights
    loss = -(w[yva] * np.log(probs[np.arange(len(yva)), yva])).sum() / w[yva].sum()
    assert loss == pytest.approx(h["val_loss"][result.best_epoch - 1], abs=1e-5)
    assert loss < h["val_loss"][-1] - 1e-6
    # progress saw every epoch, 1-based, with the metrics
    assert [e for e, _, _ in seen] == list(range(1, result.epochs_run + 1))
    assert all(total == 40 for _, total, _ in seen)
    assert {"train_loss", "val_loss", "train_acc", "val_acc", "best_epoch"} <= set(seen[-1][2])


# ------------------------------------------------------------------ learning

def test_learns_a_learnable_task_well_above_the_majority_class():
    # Two informative features among 32 and 320 training rows: an MLP generalises (~0.83-0.90
    # over data seeds 0-4); the attention presets overfit so little data (~0.6-0.7), and so
    # does PyTorch with the same init and batches (checked: identical epoch accuracies).
    spec = pymicro.preset("reversal")
    Xtr, ytr, Xva, yva = split(*learnable(spec, seed=3))
    result = train(spec, Xtr, ytr, Xva, yva, epochs=20, batch_size=BATCH, learning_rate=1e-2, seed=0, patience=20)
    majority = np.bincount(yva).max() / len(yva)
    acc = (pymicro.load(pymicro.freeze(result.network)).predict(Xva).argmax(axis=1) == yva).mean()
    assert acc >= majority + 0.25, (acc, majority)
    assert result.history["train_loss"][result.best_epoch - 1] < result.history["train_loss"][0]


# ------------------------------------------------------------------ class weights

def test_balanced_class_weights_come_from_the_training_labels():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    w = class_weights(y, 3)
    np.testing.assert_allclose(w, [12 / (3 * 6), 12 / (3 * 2), 12 / (3 * 4)])
    assert (np.bincount(y) * w).tolist() == pytest.approx([4.0, 4.0, 4.0])  # each class weighs the same
    np.testing.assert_array_equal(class_weights(y, 3, None), [1, 1, 1])
    np.testing.assert_allclose(class_weights(y, 3, {1: 5.0}), [1, 5, 1])
    np.testing.assert_allclose(class_weights(np.array([0, 0, 1]), 3), [0.5, 1.0, 1.0])  # absent class: 1
    with pytest.raises(TrainingError, match="class_weight"):
        class_weights(y, 3, "inverse")
    with pytest.raises(TrainingError, match="3 entries"):
        class_weights(y, 3, [1.0, 2.0])


@pytest.mark.slow  # trains every preset with tinygrad (the `trained` fixture)
def test_trainer_uses_training_labels_for_class_weights(trained):
    spec, result, _, ytr, _, yva = trained
    np.testing.assert_allclose(result.class_weights, class_weights(ytr, spec.n_classes))
    assert not np.allclose(class_weights(ytr, spec.n_classes), class_weights(yva, spec.n_classes))


# ------------------------------------------------------------------ argument errors

def test_bad_arguments_raise_training_errors():
    spec = pymicro.preset("reversal")
    Xtr, ytr, Xva, yva = split(*learnable(spec))
    with pytest.raises(TrainingError, match=r"X_train has shape \(320, 31\)"):
        train(spec, Xtr[:, :31], ytr, Xva, yva)
    bad = Xtr.copy()
    bad[5, 3] = np.nan
    with pytest.raises(TrainingError, match=r"X_train\[5, 3\] is nan"):
        train(spec, bad, ytr, Xva, yva)
    with pytest.raises(TrainingError, match=r"y_val\[0\] is 3"):
        train(spec, Xtr, ytr, Xva, np.full(len(yva), 3))
    with pytest.raises(TrainingError, match="one label per row"):
        train(spec, Xtr, ytr[:-1], Xva, yva)
    with pytest.raises(TrainingError, match="batch_size"):
        train(spec, Xtr, ytr, Xva, yva, batch_size=0)
    with pytest.raises(TrainingError, match="learning_rate"):
        train(spec, Xtr, ytr, Xva, yva, learning_rate=-1.0)
    with pytest.raises(TrainingError, match="Spec"):
        train(spec.init(), Xtr, ytr, Xva, yva)
    assert issubclass(TrainingError, PymicroError)


# ------------------------------------------------------------------ plots

@pytest.mark.slow  # trains every preset with tinygrad (the `trained` fixture)
def test_plot_history_writes_a_png(trained, tmp_path):
    from pymicro.plots import plot_history

    _, result, *_ = trained
    path = plot_history(result, tmp_path / "sub" / "history.png", title="test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PymicroError, match="history lacks"):
        plot_history({"train_loss": [1.0]}, tmp_path / "x.png")


# ------------------------------------------------------------------ toolchain

def _path_without_clang() -> str:
    keep = []
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if d and not (os.path.exists(os.path.join(d, "clang")) or any(
                n.startswith("clang") for n in (os.listdir(d) if os.path.isdir(d) else []))):
            keep.append(d)
    return os.pathsep.join(keep)


def _run_child(code: str, tmp_path, **env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "DEV")}
    env.update(PATH=_path_without_clang(), XDG_CACHE_HOME=str(tmp_path / "cache"), **env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=240, cwd=tmp_path, check=False)


@pytest.mark.slow
def test_training_works_without_clang_through_the_ziglang_wrapper(tmp_path):
    child = """
        import json, os, shutil, numpy as np
        assert shutil.which("clang") is None and "CC" not in os.environ
        import tinygrad.runtime.support.compiler_cpu as cc
        calls = []
        real = cc.subprocess.check_output
        def spy(args, **kw):
            calls.append(args[0])
            return real(args, **kw)
        cc.subprocess.check_output = spy
        import pymicro
        from pymicro.training import toolchain as _toolchain
        from pymicro.training.train import train, tinygrad_predict
        spec = pymicro.Spec(4, (pymicro.Dense(3),), 2)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(64, 4)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        r = train(spec, X[:48], y[:48], X[48:], y[48:], epochs=2, batch_size=16)
        p = tinygrad_predict(r, X[48:])
        q = pymicro.load(pymicro.freeze(r.network)).predict(X[48:])
        print(json.dumps({"cc": os.environ["CC"], "kind": _toolchain.compiler_kind(), "device": r.device,
                          "calls": sorted(set(calls)), "n_calls": len(calls),
                          "max_diff": float(abs(p - q).max())}))
    """
    # CACHELEVEL=0: no kernel comes from tinygrad's disk cache; each is compiled by $CC now.
    out = _run_child(child, tmp_path, CACHELEVEL="0")
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    wrapper = str(tmp_path / "cache" / "pymicro")
    assert info["kind"] == "ziglang" and info["cc"].startswith(wrapper)
    assert info["calls"] == [info["cc"]] and info["n_calls"] >= 1  # (kernels compile in a process pool, unseen here)
    assert info["device"] == "CPU"
    assert info["max_diff"] < 1e-5


def test_no_compiler_at_all_is_a_clear_training_error(tmp_path):
    child = """
        import sys
        sys.modules["ziglang"] = None  # hide the package: import ziglang now fails
        import numpy as np, pymicro
        from pymicro.training.train import train
        spec = pymicro.Spec(4, (pymicro.Dense(3),), 2)
        X = np.zeros((8, 4), np.float32); y = np.arange(8) % 2
        try:
            train(spec, X, y, X, y, epochs=1)
        except pymicro.PymicroError as e:
            print(type(e).__name__ + ": " + str(e))
    """
    out = _run_child(child, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("TrainingError: training needs a C compiler")
    assert "ziglang" in out.stdout and "clang" in out.stdout


def test_a_cc_that_cannot_build_for_tinygrad_is_skipped(tmp_path):
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no gcc to stand in as a wrong $CC")
    child = """
        import os
        from pymicro.training import toolchain as _toolchain
        print(_toolchain.ensure_compiler(), _toolchain.compiler_kind())
    """
    out = _run_child(child, tmp_path, CC=gcc)
    assert out.returncode == 0, out.stderr[-3000:]
    cc, kind = out.stdout.split()
    assert kind == "ziglang" and cc != gcc


# ------------------------------------------------------------------ compiled steps, padding

def test_a_reused_compiled_step_gives_exactly_what_a_fresh_one_gives():
    """The second training of the same shapes replays the first one's compiled step (weights and Adam
    state loaded into its buffers): bit-identical to a training on a freshly built step, dropout too."""
    from pymicro.training.train import clear_compiled, compiled_engines

    spec = pymicro.preset("reversal")  # dropout: its masks come from the training's generator
    Xtr, ytr, Xva, yva = split(*learnable(spec))
    clear_compiled()
    first = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=5)
    other = train(spec, Xtr[:-17], ytr[:-17], Xva, yva, epochs=2, batch_size=BATCH, seed=9)  # same bucket
    before = compiled_engines()
    again = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=5)
    assert compiled_engines()["reused"] == before["reused"] + 1 and compiled_engines()["built"] == before["built"]
    assert all(np.array_equal(x, y) for x, y in zip(_weights(first), _weights(again)))
    assert first.history["val_loss"] == again.history["val_loss"]
    assert not all(np.array_equal(x, y) for x, y in zip(_weights(first), _weights(other)))
    clear_compiled()
    fresh = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(_weights(first), _weights(fresh)))
    # without the cache: exact sizes, a new step each time; the same training to float rounding
    uncached = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=5, compile_cache=False)
    np.testing.assert_allclose(uncached.history["val_loss"], first.history["val_loss"], rtol=1e-5)


@pytest.mark.slow
def test_a_network_padded_into_a_wider_one_trains_the_same_function():
    """pad_to: the spec trained inside a wider network of the same layers (extra weights masked to 0);
    the result has the spec's shapes, and its losses and weights match the unpadded training to float
    rounding. batch_rows pads each batch with rows of weight 0: the same gradient."""
    spec = Spec(24, (Attention(4), Dense(8), Dropout(0.3), Dense(4)), 3)
    wide = Spec(24, (Attention(16), Dense(32), Dropout(0.5), Dense(16)), 3, allow_large=True)
    Xtr, ytr, Xva, yva = split(*learnable(spec))
    plain = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=2, patience=None)
    padded = train(spec, Xtr, ytr, Xva, yva, epochs=3, batch_size=BATCH, seed=2, patience=None, pad_to=wide,
                   batch_rows=4 * BATCH)
    assert padded.network.spec == spec
    for got, want in zip(padded.network.params, plain.network.params):
        assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=2e-5)
    np.testing.assert_allclose(padded.history["val_loss"], plain.history["val_loss"], rtol=1e-5)
    assert plain.history["val_loss"][0] != plain.history["val_loss"][-1]  # it did train
    # the preset without dropout fits the same padded network (a Dropout there gets rate 0)
    momentum = pymicro.preset("momentum")
    Xm, ym, Xmv, ymv = split(*learnable(momentum))
    a = train(momentum, Xm, ym, Xmv, ymv, epochs=2, batch_size=BATCH, seed=1)
    b = train(momentum, Xm, ym, Xmv, ymv, epochs=2, batch_size=BATCH, seed=1, pad_to=wide)
    np.testing.assert_allclose(b.history["val_loss"], a.history["val_loss"], rtol=1e-5)


def test_pad_to_and_batch_rows_refuse_what_cannot_hold_the_network():
    spec = Spec(24, (Attention(4), Dense(8), Dense(4)), 3)
    Xtr, ytr, Xva, yva = split(*learnable(spec))
    for bad, why in ((Spec(24, (Attention(4), Dense(4), Dense(4)), 3), "does not fit"),
                     (Spec(24, (Dense(8), Dense(4)), 3), "layer 0"),
                     (Spec(24, (Attention(4), Dense(8, "tanh"), Dense(4)), 3), "does not fit"),
                     (Spec(24, (Attention(4), Dense(8), Dense(4)), 5), "classes")):
        with pytest.raises(TrainingError, match=why):
            train(spec, Xtr, ytr, Xva, yva, epochs=1, pad_to=bad)
    with pytest.raises(TrainingError, match="batch_rows"):
        train(spec, Xtr, ytr, Xva, yva, epochs=1, batch_size=64, batch_rows=32)
