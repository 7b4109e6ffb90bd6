"""Stacking on out-of-fold predictions only: a member that memorises its training rows
must not be trusted by the stacked combiner (issue 12)."""

import numpy as np
import pytest

import pymicro
from pymicro import TrainingError
from pymicro.runtime.ensemble import freeze_ensemble
from pymicro.training.ensemble import (fit_meta, fit_weights, member_trust, out_of_fold,
                                       time_series_folds)

LABELS = ("down", "flat", "up")
N = 1200


def _data(seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=N)
    y = np.digitize(signal + rng.normal(0, 0.8, N), [-0.5, 0.5])  # 3 classes, learnable from signal
    X_honest = np.stack([signal, rng.normal(size=N)], axis=1)
    X_memo = rng.normal(size=(N, 2))                             # no signal at all
    return y, X_honest, X_memo


def honest(X_fit, y_fit, X_pred):
    """A weak, real model: class frequencies in bins of the first feature (fit rows only)."""
    edges = np.quantile(X_fit[:, 0], [0.2, 0.4, 0.6, 0.8])
    bins_fit, bins_pred = np.digitize(X_fit[:, 0], edges), np.digitize(X_pred[:, 0], edges)
    table = np.ones((5, 3))
    np.add.at(table, (bins_fit, y_fit), 1)
    table /= table.sum(axis=1, keepdims=True)
    return table[bins_pred]


def memoriser(X_fit, y_fit, X_pred):
    """Perfect on rows it has seen (a lookup by exact features), uniform noise elsewhere."""
    seen = {row.tobytes(): label for row, label in zip(X_fit, y_fit)}
    rng = np.random.default_rng(len(X_fit))
    out = rng.dirichlet(np.ones(3), size=len(X_pred))
    for i, row in enumerate(X_pred):
        if row.tobytes() in seen:
            out[i] = np.eye(3)[seen[row.tobytes()]] * 0.98 + 0.01 / 1.5
    return out / out.sum(axis=1, keepdims=True)


def test_folds_are_chronological_and_never_predict_a_fitted_row():
    folds = time_series_folds(100, k=4, embargo=3)
    assert len(folds) == 4
    for fit, pred in folds:
        assert fit.max() + 3 < pred.min() and len(np.intersect1d(fit, pred)) == 0
        assert np.all(np.diff(pred) == 1)
    with pytest.raises(TrainingError):
        time_series_folds(5, k=4)


def test_the_stacked_combiner_does_not_trust_a_member_that_memorised_its_training_rows():
    y, Xh, Xm = _data()
    maps = [[0, 1, 2], [0, 1, 2]]
    q, have = out_of_fold([honest, memoriser], [Xh, Xm], y, class_maps=maps, n_classes=3, k=4, embargo=5)
    assert have.sum() == N - round(N / 5) and not np.isnan(q[have]).any()
    meta = fit_meta(q[have], y[have], labels=LABELS)
    trust = member_trust(meta, 2)
    assert trust[0] > 4 * trust[1], trust  # the honest member carries the decision

    # The trap the out-of-fold rule avoids: predictions of members on their own training rows
    # make the memoriser look perfect, and a combiner fitted to them trusts it.
    in_sample = np.stack([honest(Xh, y, Xh), memoriser(Xm, y, Xm)], axis=1)
    naive = fit_meta(in_sample, y, labels=LABELS)
    assert member_trust(naive, 2)[1] > member_trust(naive, 2)[0]

    # Out of sample (fresh rows the memoriser never saw), stacking on OOF beats the naive one.
    y2, Xh2, Xm2 = _data(seed=1)
    test_q = np.stack([honest(Xh, y, Xh2), memoriser(Xm, y, Xm2)], axis=1)
    members = [pymicro.freeze(pymicro.Spec(2, (), 3, labels=LABELS).init(i)) for i in range(2)]
    acc = {}
    for name, m in (("oof", meta), ("naive", naive)):
        container = pymicro.load(freeze_ensemble(members, combiner="stacked", meta=m,
                                                 columns=[[0, 1], [2, 3]]))
        p = container.meta_model().predict(test_q.reshape(N, 6).astype(np.float32))
        acc[name] = float((p.argmax(axis=1) == y2).mean())
    assert acc["oof"] > acc["naive"] + 0.05, acc


def test_soft_vote_weights_from_out_of_fold_predictions_drop_the_memoriser():
    y, Xh, Xm = _data()
    q, have = out_of_fold([honest, memoriser], [Xh, Xm], y, class_maps=[[0, 1, 2]] * 2, n_classes=3)
    w = fit_weights(q[have], y[have])
    assert w[0] > 0.9 and w[1] < 0.1, w


def test_out_of_fold_refuses_mismatched_inputs():
    y, Xh, Xm = _data()
    with pytest.raises(TrainingError):
        out_of_fold([honest], [Xh, Xm], y, class_maps=[[0, 1, 2]], n_classes=3)
    with pytest.raises(TrainingError):
        fit_meta(np.full((4, 2, 3), np.nan), np.zeros(4, int), labels=LABELS)


def test_compare_reports_the_ensemble_beside_members_and_the_majority_class():
    from pymicro.cli.ensemble import comparison_table
    from pymicro.evaluation.ensemble import compare

    rng = np.random.default_rng(3)
    members = [pymicro.freeze(pymicro.preset(n).init(seed=i)) for i, n in enumerate(("momentum", "sentiment"))]
    blob = freeze_ensemble(members, columns=[list(range(24)), list(range(24, 72))], labels=LABELS)
    X = rng.normal(size=(400, 72)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    y_train = np.r_[np.full(50, 1), rng.integers(0, 3, 30)]
    c = compare(blob, X, y, y_train)
    assert set(c["classification"]) == {"ensemble", "momentum", "sentiment", "majority class"}
    maj = c["classification"]["majority class"]
    assert maj["accuracy"] == pytest.approx(float((y == 1).mean()))
    for row in c["classification"].values():
        lo, hi = row["accuracy_ci"]
        assert lo <= row["accuracy"] <= hi
    ens = pymicro.load(blob).predict(X).argmax(axis=1)
    assert c["classification"]["ensemble"]["accuracy"] == pytest.approx(float((ens == y).mean()))
    assert c["trading"] is None and "majority class" in comparison_table(c)


@pytest.mark.slow
def test_cli_ensemble_train_registers_the_container(tmp_path, capsys):
    from pymicro.cli import main
    from pymicro.store.registry import Registry

    out = tmp_path / "duo.pmb"
    code = main(["ensemble", "train", "--out", str(out), "--symbols", "SP500", "--folds", "2", "--epochs", "1",
                 "--register", "spx-trio", "--store", str(tmp_path / "store")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "registered spx-trio-" in printed and "majority class" in printed
    (record,) = Registry(tmp_path / "store").list(kind="ensemble")
    assert record.name == "spx-trio" and [m["name"] for m in record.members] == ["momentum", "reversal", "sentiment"]
    assert Registry(tmp_path / "store").read_blob(record.id) == out.read_bytes()
    assert record.metrics["test_start"] and 0 <= record.metrics["out_of_sample"]["accuracy"] <= 1
