"""The report's ensemble comparison (issue 12, item 5): intervals, and nothing fitted or chosen
on the rows it is scored on. Member fits are replaced by a fast stand-in that records the rows
it was given (the tinygrad fits are exercised by the slow test and by test_ensemble_training)."""

from __future__ import annotations

import numpy as np
import pytest

import pymicro
import pymicro.training.ensemble as TE
from pymicro import metrics as M
from pymicro.evaluation import ensemble as EE
from pymicro.evaluation.resampling import sharpe_intervals
from pymicro.market.data import load_embedded
from pymicro.runtime.ensemble import map_classes

PRESETS = ("momentum", "reversal", "sentiment")


def test_sharpe_intervals_are_paired_and_contain_the_point():
    rng = np.random.default_rng(0)
    common = rng.normal(0.0004, 0.01, 1500)
    R = np.column_stack([common + rng.normal(0, 0.002, 1500), common, np.zeros(1500), common])
    out = sharpe_intervals(R, 20, 252, reference=1, seed=3)
    for i in range(4):
        assert out["sharpe"][i] == pytest.approx(M.sharpe(R[:, i], 252))
        lo, hi = out["ci"][i]
        assert lo <= out["sharpe"][i] <= hi
    assert out["ci"][2] == [0.0, 0.0]  # a flat leg
    assert out["diff_ci"][3] == [0.0, 0.0] and out["diff"][3] == 0.0  # the reference against itself
    # paired: the difference of two legs that share their noise is far tighter than either Sharpe
    width = lambda ci: ci[1] - ci[0]  # noqa: E731
    assert width(out["diff_ci"][0]) < 0.5 * width(out["ci"][0])
    assert out["block"] == 20 and "moving-block" in out["method"]
    with pytest.raises(ValueError):
        sharpe_intervals(R[:2], 20, 252)


@pytest.fixture
def recorded(monkeypatch):
    """fit_predict_for replaced by an untrained network of the preset per fit (seeded by the rows'
    count), recording the rows (as bytes) every fit was given."""
    seen: list[set] = []

    def fake(preset, *, epochs, seed, feature_names):
        spec = pymicro.preset(preset)

        def fit_predict(X, y, X_pred, *, keep=None):
            seen.append({row.tobytes() for row in np.asarray(X, np.float32)})
            blob = pymicro.freeze(spec.init(seed=len(X) % 97), preset=preset)
            if keep is not None:
                keep.append(blob)
            return pymicro.load(blob).predict(np.ascontiguousarray(X_pred, np.float32))
        return fit_predict

    monkeypatch.setattr(TE, "fit_predict_for", fake)
    return seen


def test_split_comparison_fits_on_training_rows_only(recorded):
    from pymicro.evaluation.rows import as_rows

    frame = load_embedded(["SP500", "IBM"])
    out = EE.split_comparison(frame, folds=2, epochs=1)
    sets, shared, columns, maps = EE._shared_rows(frame, list(PRESETS), 5)
    rows = as_rows(shared, None, 0.7, 0.15, None)
    member_rows = {p: {r.tobytes() for r in sets[p].X[rows.idx(0)]} for p in PRESETS}
    later = {p: {r.tobytes() for r in sets[p].X[np.flatnonzero(rows.part != 0)]} for p in PRESETS}
    assert len(recorded) == 2 * 3 + 3  # folds x members out of fold, then the final members
    for fitted in recorded:
        owner = [p for p in PRESETS if fitted <= member_rows[p]]
        assert owner, "a member was fitted on rows outside the training part"
        assert not any(fitted & later[p] for p in PRESETS)
    # the best member: the lowest log-loss on the validation rows, recomputed here
    assert out["best_member"] == min(PRESETS, key=lambda p: out["validation_log_loss"][p])
    assert set(out["models"]) == {"ensemble", *PRESETS}
    for name, m in out["models"].items():
        lo, hi = m["accuracy_ci"]
        assert lo <= m["accuracy"] <= hi and m["trading"] is not None
    a = out["accuracy_difference"]
    assert a["ci"][0] <= a["difference"] <= a["ci"][1] and a["vs"] == out["best_member"]
    assert out["sharpe"]["ensemble"]["ci"][0] <= out["sharpe"]["ensemble"]["sharpe"] <= out["sharpe"]["ensemble"]["ci"][1]
    assert out["sharpe_difference"]["difference"] == pytest.approx(
        out["sharpe"]["ensemble"]["sharpe"] - out["sharpe"][out["best_member"]]["sharpe"])
    assert set(out["per_symbol"]) <= {"SP500", "IBM"} and "SP500" in out["per_symbol"]
    assert set(out["per_symbol"]["SP500"]["sharpe"]) == {"ensemble", "best member", "buy and hold", "momentum rule",
                                                         "majority class"}


def test_member_view_maps_a_members_classes_onto_the_common_labels():
    blob = pymicro.freeze(pymicro.preset("sentiment").init(seed=2))
    model = pymicro.load(blob)
    x = np.random.default_rng(1).normal(size=(7, 60)).astype(np.float32)
    view = EE.MemberView(model, range(12, 60), [0, 0, 1, 2, 2])
    expect = map_classes(model.predict(np.ascontiguousarray(x[:, 12:60])), [0, 0, 1, 2, 2], 3)
    np.testing.assert_allclose(view.predict(x), expect, rtol=1e-6)
    assert view.n_classes == 3


def test_walk_forward_comparison_retrains_on_the_past_only(recorded):
    frame = load_embedded(["SP500"])
    out = EE.walk_forward_comparison(frame, ["SP500"], folds=2, epochs=1, train_window=1500, step=1200)
    entry = out["symbols"]["SP500"]
    windows = entry["windows"]
    assert entry["blocks"] == len(windows) >= 2
    sets, shared, _, _ = EE._shared_rows(frame, list(PRESETS), 5)
    date_of = {p: {r.tobytes(): d for r, d in zip(sets[p].X, shared.dates)} for p in PRESETS}
    ends = []
    for fitted in recorded:
        p = next(p for p in PRESETS if next(iter(fitted)) in date_of[p])
        ends.append(max(date_of[p][r] for r in fitted))
    # every fit ends before the block it serves: its last row precedes the first test day of some block
    starts = [np.datetime64(w["test_start"]) for w in windows]
    for end in ends:
        assert any(end < s for s in starts)
    for w in windows:
        assert np.datetime64(w["train_end"]) < np.datetime64(w["test_start"])
    assert len(entry["best_member_per_block"]) == len(windows)
    for leg in ("ensemble", "best member", *PRESETS, "buy and hold", "momentum rule", "majority class"):
        lo, hi = entry["sharpe"][leg]["ci"]
        assert lo <= entry["sharpe"][leg]["sharpe"] <= hi
    # one symbol: the portfolio is that symbol (annualised with 252 days against the dates' own rate)
    assert out["portfolio"]["sharpe"]["ensemble"]["sharpe"] == pytest.approx(entry["sharpe"]["ensemble"]["sharpe"],
                                                                              rel=1e-3)
    with pytest.raises(pymicro.PymicroError, match="not in the data"):
        EE.walk_forward_comparison(frame, ["AAPL"])


@pytest.mark.slow
def test_report_has_the_ensemble_section(tmp_path):
    import json

    from pymicro.cli import main

    code = main(["report", "--out", str(tmp_path), "--presets", "reversal", "--symbols", "SP500", "--epochs", "1",
                 "--ablation-seeds", "--ensemble-epochs", "1", "--ensemble-folds", "2", "--walk-forward-epochs", "1",
                 "--walk-forward-step", "1500"])
    assert code == 0
    text = (tmp_path / "report.md").read_text()
    assert "## Ensemble of specialists beside its best member" in text and "(best member)" in text
    assert "### Walk-forward on every symbol" in text and "| SP500 |" in text
    assert (tmp_path / "report" / "ensemble.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    split = data["ensemble"]["split"]
    assert split["best_member"] in ("momentum", "reversal", "sentiment")
    assert data["ensemble"]["walk_forward"]["symbols"]["SP500"]["blocks"] >= 2
