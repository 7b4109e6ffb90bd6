"""Your own history in every command (issue 17, item 5): a one-symbol CSV without a symbol column."""

from __future__ import annotations

import asyncio
import json

import pytest

from pymicro.cli import main
from pymicro.market.data import load_embedded
from pymicro.store.registry import Registry
from pymicro.training.trainer import MicroNeuralTrainer


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "mine.csv"
    bars = load_embedded(["IBM"]).drop(columns=["symbol"]).tail(1500)
    bars.to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_train_backtest_and_validate_a_user_history(history, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--data", str(history), "--symbol", "MINE", "--epochs", "2", "--no-plot",
                 "--out", str(out), "--name", "mine"]) == 0
    blob = out / "mine.pmb"
    assert blob.exists()
    assert main(["backtest", "--data", str(history), "--symbol", "MINE", "--blob", str(blob),
                 "--json", str(tmp_path / "bt.json")]) == 0
    bt = json.loads((tmp_path / "bt.json").read_text())
    assert bt["periods"] > 100 and "exposure" in bt["metrics"]["strategy"]
    assert main(["validate", str(blob), "--data", str(history), "--symbols", "MINE", "--fit", "none",
                 "--json", str(tmp_path / "v.json")]) == 0
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["metrics"]["trading"]["symbols"] == ["MINE"]
    # one rule and one p-value: backtest of the blob and validate agree on the same file
    assert bt["metrics"]["strategy"]["sharpe"] == pytest.approx(v["metrics"]["trading"]["strategy"]["sharpe"])
    assert bt["classification"]["p_value_block"] == pytest.approx(v["metrics"]["test"]["p_value_block"])


def test_train_without_symbol_names_the_flag(history, capsys):
    assert main(["train", "--data", str(history), "--epochs", "1", "--no-plot"]) != 0
    assert "symbol" in capsys.readouterr().err


@pytest.mark.slow
def test_the_seed_trainer_takes_a_data_key(history, tmp_path):
    trainer = MicroNeuralTrainer(registry=Registry(tmp_path / "store"), out_dir=tmp_path / "out")
    model = asyncio.run(trainer.train_reasoning_enhanced_model(
        model_name="mine", training_config={"data": str(history), "symbols": ["MINE"], "epochs": 2,
                                            "hidden_sizes": [8], "use_attention": False}))
    assert model["data"]["symbols"] == ["MINE"]
    assert model["performance"]["n"] > 100
