import numpy as np
import pytest

import pymicro
from pymicro import TrainingError
from pymicro.training.reasoning_loss import ablation, contradiction_mask, rule_signal
from pymicro.training.train import train


def test_rule_signals_follow_the_stated_rules():
    names = ["ret_20", "sma_dist_50", "zscore_close_20", "momentum_score", "signal_agreement_score"]
    X = np.array([[0.05, 0.02, 2.5, 0.3, 0.5],
                  [-0.05, -0.01, -2.5, -0.3, -0.5],
                  [0.05, -0.01, 0.0, 0.3, -0.5]])
    assert rule_signal(X, names, "momentum").tolist() == [1, -1, 0]
    assert rule_signal(X, names, "reversal").tolist() == [-1, 1, 0]
    assert rule_signal(X, names, "sentiment").tolist() == [1, -1, 0]
    with pytest.raises(TrainingError, match="needs features"):
        rule_signal(X[:, :1], names[:1], "momentum")


def test_contradiction_masks_mark_the_opposite_classes():
    s = np.array([1, -1, 0])
    assert contradiction_mask(s, 3).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert contradiction_mask(s, 5).tolist() == [[1, 1, 0, 0, 0], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]]


def test_the_penalty_steers_training_away_from_contradicting_the_rule():
    rng = np.random.default_rng(0)
    spec = pymicro.Spec(4, (pymicro.Dense(8),), 3)
    X = rng.normal(size=(600, 4)).astype(np.float32)
    y = rng.integers(0, 3, 600)  # labels carry no signal: only the penalty can shape predictions
    signal = np.where(X[:, 0] > 0, 1, -1)
    mask = contradiction_mask(signal, 3)
    contra = {}
    for weight in (0.0, 2.0):
        result = train(spec, X[:500], y[:500], X[500:], y[500:], epochs=8, batch_size=50, seed=1, patience=None,
                       rule_mask=mask[:500] if weight else None, rule_weight=weight)
        pred = pymicro.load(pymicro.freeze(result.network)).predict(X[:500]).argmax(1)
        contra[weight] = mask[:500][np.arange(500), pred].mean()
        assert result.settings["rule_weight"] == weight
    assert contra[2.0] < contra[0.0] * 0.5
    with pytest.raises(TrainingError, match="rule_mask"):
        train(spec, X[:500], y[:500], X[500:], y[500:], epochs=1, rule_mask=mask[:10], rule_weight=1.0)


@pytest.mark.slow
def test_ablation_reports_every_weight_against_zero():
    out = ablation("momentum", weights=(0.5,), seeds=(0,), symbols=["SP500"], epochs=2)
    weights = [row["rule_weight"] for row in out["table"]]
    assert weights == [0.0, 0.5] and out["table"][0]["accuracy_diff_vs_0"] == 0.0
    assert 0 <= out["table"][1]["accuracy_mean"] <= 1 and out["test_rows"] > 100
    assert out["verdict"].startswith(("No measurable effect", "Measurable"))
