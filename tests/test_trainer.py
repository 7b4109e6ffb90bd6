"""The seed's quick start, end to end on a small config, and the training CLI."""

import asyncio
import json

import numpy as np
import pytest

import pymicro
from pymicro import TrainingError
from pymicro.cli import main
from pymicro.store.registry import Registry
from pymicro.training.trainer import MicroNeuralTrainer, spec_for

SMALL = {"symbols": ["SP500", "IBM"], "epochs": 2, "batch_size": 64, "learning_rate": 0.001,
         "hidden_sizes": [8, 8], "use_attention": True, "distributed": False}


@pytest.fixture(scope="module")
def seed_quickstart(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    trainer = MicroNeuralTrainer(registry=Registry(root / "store"), out_dir=root / "out")
    model = asyncio.run(trainer.train_reasoning_enhanced_model(model_name="my_micro_trader",
                                                               training_config=SMALL))
    return trainer, model


@pytest.mark.slow
def test_the_seeds_quick_start_trains_freezes_and_registers(seed_quickstart):
    trainer, model = seed_quickstart
    perf = model["performance"]
    assert model["parameters"] == spec_for("momentum", [8, 8], True).params
    assert model["architecture"].startswith("Input(24) -> Attention(8) -> Dense(8, relu)")
    assert model["training_time"] > 0 and model["data"]["symbols"] == ["IBM", "SP500"]
    for key in ("accuracy", "balanced_accuracy", "per_class_recall", "majority_accuracy", "accuracy_ci"):
        assert key in perf
    assert 0 <= perf["accuracy"] <= 1 and len(perf["per_class_recall"]) == 3
    # out-of-sample means after the validation period: the test dates start after training ends
    assert model["data"]["test_start"] > model["data"]["validation_start"]
    assert perf["n"] == model["data"]["rows"]["test"]
    # the registered blob is the frozen model, and it predicts what tinygrad predicted
    assert model["parity"]["max_abs_diff"] < 1e-5 and model["parity"]["classes_agree"]
    record = trainer.registry.get(model["model_id"])
    assert record.status == "registered"
    loaded = trainer.registry.load(model["model_id"])
    assert loaded.info.feature_names[:2] == ("ret_1", "ret_2") or len(loaded.info.feature_names) == 24
    assert loaded.info.has_normalization
    report = json.loads(open(model["report_path"]).read())
    assert report["performance"]["accuracy"] == perf["accuracy"] and len(report["history"]["val_loss"]) >= 1


# The seed's quick start (shared/seed/micro-neural-network-training-guide.md), verbatim but for the
# import (src.micro_neural_trainer -> pymicro.training.trainer) and epochs (100 -> 2, a test's budget).
SEED_QUICK_START = """
from pymicro.training.trainer import MicroNeuralTrainer

trainer = MicroNeuralTrainer()

config = {
    "symbols": ["AAPL", "GOOGL"],
    "lookback_days": 20,
    "hidden_sizes": [32, 16, 8],  # Micro architecture
    "epochs": 2,
    "batch_size": 32,
    "learning_rate": 0.001,
    "use_attention": True,  # Reasoning attention layer
    "distributed": True     # Use Flow Nexus
}

model = await trainer.train_reasoning_enhanced_model(
    model_name="my_micro_trader",
    training_config=config
)

print(f"Accuracy: {model['performance']['accuracy']:.1%}")
"""


def test_the_seeds_quick_start_runs_as_printed(tmp_path, monkeypatch, capsys):
    import textwrap

    monkeypatch.setenv("PYMICRO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PYMICRO_DASK_SCHEDULER", raising=False)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec("async def quick_start():\n" + textwrap.indent(SEED_QUICK_START, "    ") + "\n    return model\n", scope)
    model = asyncio.run(scope["quick_start"]())
    out = capsys.readouterr().out
    assert out.startswith("Accuracy: ") and out.strip().endswith("%")
    # lookback_days=20 is the feature look-back: only features reading <= 20 bars are inputs
    features = model["data"]["features"]
    assert len(features) == 20 and "ret_60" not in features and "ret_20" in features
    assert model["architecture"].startswith("Input(20) -> Attention(32) -> Dense(16, relu) -> Dense(8, relu)")
    assert model["data"]["symbols"] == ["AAPL", "GOOG"]
    report = json.loads(open(model["report_path"]).read())
    assert report["settings"]["distributed"] is True and report["settings"]["feature_lookback"] == 20
    loaded = pymicro.load(model["blob_path"])
    assert loaded.info.feature_names == tuple(features)


def test_the_seed_config_keys_are_honoured_or_refused_clearly(tmp_path):
    from pymicro.training.lookback import feature_lookbacks, features_within

    trainer = MicroNeuralTrainer(registry=tmp_path / "store", out_dir=tmp_path)
    with pytest.raises(TrainingError, match="unknown training_config keys"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**SMALL, "gpu": True}))
    with pytest.raises(TrainingError, match="distributed must be True or False"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**SMALL, "distributed": "yes"}))
    with pytest.raises(TrainingError, match="scheduler is the Dask cluster of distributed=True"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**SMALL, "scheduler": "tcp://127.0.0.1:1"}))
    with pytest.raises(TrainingError, match="feature look-back window"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**SMALL, "lookback_days": 0}))
    with pytest.raises(TrainingError, match="too little history|labelled rows"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**SMALL, "history_days": 20}))
    with pytest.raises(TrainingError, match="start must be a date"):
        asyncio.run(trainer.train_reasoning_enhanced_model("m", {**SMALL, "start": "soon"}))
    with pytest.raises(TrainingError, match="hidden_sizes"):
        spec_for("momentum", [0, 8], False)
    lb = feature_lookbacks("momentum")
    assert lb["ret_60"] == 60 and lb["ret_1"] == 1 and lb["rsi_14"] == 14
    assert set(features_within("momentum", 20)) == {n for n, k in lb.items() if k <= 20}
    assert len(features_within("momentum", 20)) == 20 and len(features_within("momentum", 60)) == 24


def test_googl_is_the_embedded_class_a_series(tmp_path):
    from pymicro.training.trainer import SYMBOL_ALIASES

    assert SYMBOL_ALIASES["GOOGL"] == "GOOG"
    assert "GOOG" in pymicro.market.data.embedded_symbols() if hasattr(pymicro, "data") else True


@pytest.mark.slow
def test_train_cli_writes_blob_report_and_curves(tmp_path, capsys):
    code = main(["train", "--symbols", "SP500", "--epochs", "2", "--batch-size", "64", "--out", str(tmp_path),
                 "--name", "cli-model", "--register", "--store", str(tmp_path / "store")])
    assert code == 0
    out = capsys.readouterr().out
    assert "majority class" in out and "registered as cli-model-" in out
    blob = (tmp_path / "cli-model.pmb").read_bytes()
    assert pymicro.load(blob).info.name == "cli-model"
    png = (tmp_path / "cli-model.training.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((tmp_path / "cli-model.training.json").read_text())
    assert report["parameters"] == pymicro.preset("momentum").params


def test_cli_help_on_every_command(capsys):
    for command in ("quickstart", "train", "info", "predict", "export-onnx", "bench", "backtest"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        assert "usage: pymicro " + command in capsys.readouterr().out


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.pmb")]) == 2
    assert "cannot read blob file" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    blob_path = tmp_path / "m.pmb"
    pymicro.freeze(pymicro.preset("momentum").init(), blob_path)
    np.save(bad, np.zeros((2, 5), np.float32))
    assert main(["predict", str(blob_path), str(bad)]) == 2
    assert "shape (2, 5)" in capsys.readouterr().err
