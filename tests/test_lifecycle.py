"""Continuous learning and drift: a replay on the embedded history (train up to a date, feed
later bars), a regime change that drift must catch, promotion only on out-of-sample
improvement, and rollback to the exact previous blob."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

import pymicro
from pymicro.errors import EvaluationError, TrainingError
from pymicro.lifecycle.drift import drift_report, ks_2samp, out_of_range, psi, psi_band
from pymicro.lifecycle.learn import bootstrap_version, learn, network_of, paired_log_loss_test
from pymicro.market.data import load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.store.registry import Registry
from pymicro.training.train import train

CUT = "2009-01-01"


# ------------------------------------------------------------------ drift (pure numpy)

def test_psi_and_ks_on_known_shifts():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    same, shifted = rng.normal(size=5000), rng.normal(0.5, 1.0, size=5000)
    assert psi(ref, same) < 0.02 and psi_band(psi(ref, same)) == "stable"
    assert psi(ref, shifted) > 0.2  # half a standard deviation: about 0.25 by the formula
    assert psi_band(0.1) == "moderate" and psi_band(0.25) == "significant"
    d, p = ks_2samp(ref, same)
    assert d < 0.04 and p > 0.01
    d, p = ks_2samp(ref, shifted)
    assert 0.15 < d < 0.25 and p < 1e-10
    with pytest.raises(EvaluationError, match="finite"):
        psi(ref, [0.0, np.nan])
    assert 0.005 < out_of_range(ref, same) < 0.02  # nominally 1 %: outside the central 99 %
    assert out_of_range(ref, 3 * shifted) > 0.3
    report = drift_report(np.c_[ref, ref], np.c_[same, 3 * shifted], ["a", "b"])
    assert report["drifted"] == ["b"] and report["status"] == "significant"
    assert report["out_of_range"] == pytest.approx(np.mean([report["features"][k]["out_of_range"] for k in "ab"]),
                                                   abs=1e-6)
    assert report["features"]["a"]["band"] == "stable" and report["ks_flagged"] == ["b"]


def test_paired_log_loss_test_sees_a_better_model():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=600)
    good = np.full((600, 3), 0.2)
    good[np.arange(600), y] = 0.6
    flat = np.full((600, 3), 1 / 3)
    test = paired_log_loss_test(flat, good, y, block=10)
    assert test["improvement"] == pytest.approx(np.log(3) + np.log(0.6), rel=1e-6)
    assert test["interval"][0] > 0 and test["rows"] == 600
    same = paired_log_loss_test(good, good, y, block=10)
    assert same["improvement"] == 0 and same["interval"] == [0.0, 0.0]


# ------------------------------------------------------------------ the replay

def _history() -> pd.DataFrame:
    return load_embedded(["SP500", "NASDAQ"])


def _regime_change(frame: pd.DataFrame, start: str, scale: float = 4.0) -> pd.DataFrame:
    """The same bars until ``start``, then daily moves ``scale`` times larger (a volatile regime)."""
    out = []
    for _, g in frame.groupby("symbol", sort=True):
        g = g.sort_values("date").copy()
        r = np.array(np.log(g["close"]).diff().fillna(0.0), dtype=np.float64)
        late = (g["date"] >= pd.Timestamp(start)).to_numpy()
        r[late] *= scale
        close = g["close"].iloc[0] * np.exp(np.cumsum(r))
        ratio = close / g["close"].to_numpy()
        for col in ("open", "high", "low", "close"):
            g[col] = g[col].to_numpy() * ratio
        out.append(g)
    return pd.concat(out, ignore_index=True)


def _champion(reg: Registry, frame: pd.DataFrame, *, spoil: float = 0.0) -> int:
    """A momentum model trained on bars before CUT (``spoil``: its last layer scaled, confidently wrong)."""
    ds = make_dataset(frame[frame["date"] < CUT], "momentum")
    split = ds.split(train=0.8, validation=0.19)
    result = train(pymicro.preset("momentum"), split.train.X, split.train.y, split.validation.X,
                   split.validation.y, epochs=4, seed=0)
    net = result.network
    if spoil:
        net.params[-1] = {"W": -spoil * net.params[-1]["W"], "b": net.params[-1]["b"]}
    blob = pymicro.freeze(net, preset="momentum", horizon=5, threshold=0.5)
    return bootstrap_version(reg, "replay", blob, start=ds.dates.min(), unseen_from=CUT)["version"]


@pytest.mark.slow
def test_replay_promotes_only_on_out_of_sample_improvement_and_rolls_back(tmp_path):
    reg = Registry(tmp_path / "store")
    history = _history()
    frame = history[history["date"] < "2013-01-01"]
    _champion(reg, frame, spoil=25.0)  # confidently wrong: a fresh network must beat it
    first = reg.get_version("replay", "champion")

    # an impossible margin: the challenger is kept, never promoted, and the decision logged
    kept = learn(reg, "replay", frame, mode="finetune", epochs=3, margin=10.0)
    assert kept["decision"]["promoted"] is False and "margin 10.0" in kept["decision"]["rule"]
    assert reg.aliases("replay") == {"champion": first.version, "challenger": kept["candidate"]["version"]}
    assert reg.events("replay", "decision")[-1]["payload"]["promoted"] is False

    won = learn(reg, "replay", frame, mode="rolling", epochs=8, learning_rate=1e-3)
    test = won["decision"]["test"]
    assert test["interval"][0] > 0 and won["decision"]["promoted"] is True, test
    assert test["log_loss_challenger"] < test["log_loss_champion"]
    champion = reg.get_version("replay", "champion")
    assert champion.version == won["candidate"]["version"] and champion.parent_version == first.version
    assert champion.parent_hash == first.content_hash
    assert "challenger" not in reg.aliases("replay")
    assert champion.data_window["unseen_from"] > CUT  # its holdout is the next round's new data

    back = reg.rollback("replay")  # the exact previous blob
    assert back.version == first.version
    assert hashlib.sha256(reg.read_blob(reg.get_version("replay", "champion").model_id)).hexdigest() \
        == first.content_hash
    assert np.array_equal(network_of(reg.read_blob(back.model_id)).params[0]["W_a"],
                          network_of(reg.read_blob(first.model_id)).params[0]["W_a"])


@pytest.mark.slow
def test_replay_drift_fires_where_the_regime_changes(tmp_path):
    history = _history()
    calm = history[history["date"] < "2011-01-01"]
    wild = _regime_change(calm, "2009-06-01")
    reports = {}
    for label, frame in (("calm", calm), ("wild", wild)):
        reg = Registry(tmp_path / label)
        _champion(reg, frame)
        learn(reg, "replay", frame, epochs=1, margin=10.0)
        reports[label] = reg.events("replay", "drift")[-1]["payload"]
    assert reports["wild"]["status"] == "significant"
    assert reports["wild"]["max_psi"] > 2 * reports["calm"]["max_psi"]
    assert len(reports["wild"]["drifted"]) > len(reports["calm"]["drifted"])
    assert reports["wild"]["window"]["current"][0] >= CUT


def test_learn_refuses_without_a_champion_or_new_bars(tmp_path):
    reg = Registry(tmp_path / "store")
    with pytest.raises(pymicro.PymicroError, match="no alias 'champion'"):
        learn(reg, "none", _history())
    blob = pymicro.freeze(pymicro.preset("momentum").init(0), preset="momentum", horizon=5, threshold=0.5)
    bootstrap_version(reg, "late", blob, start="2000-01-01", unseen_from="2018-12-01")
    with pytest.raises(TrainingError, match="only .* labelled rows"):
        learn(reg, "late", _history())
    with pytest.raises(TrainingError, match="mode"):
        learn(reg, "late", _history(), mode="magic")


@pytest.mark.slow
def test_learn_command_one_shot(tmp_path, capsys):
    import json

    from pymicro.cli import main

    store = tmp_path / "store"
    blob = pymicro.freeze(pymicro.preset("momentum").init(0), preset="momentum", horizon=5, threshold=0.5,
                          symbols="SP500", test_start="2015-01-02")
    model_id = Registry(store).add(blob, "cron")
    assert main(["learn", model_id, "--store", str(store), "--symbols", "SP500", "--epochs", "2"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["challenger"] == 2 and line["promoted"] == (line["interval"][0] > 0)
    assert line["champion"] == (2 if line["promoted"] else 1)
    assert main(["learn", "cron", "--store", str(store), "--every", "soon"]) == 2
    assert "--every" in capsys.readouterr().err
    assert main(["learn", "cron", "--store", str(store), "--keep-last", "-1"]) == 2
    assert "keep_last" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_day_by_day_drift_and_retraining_fire_where_the_regime_changes(tmp_path):
    """The champion trains on bars before CUT; then each later trading day the replay sees only
    the bars up to that day (rows whose labels are known by then): drift against the training
    window on the last 60 dates, and a learn round when it fires (at most one per 120 dates).
    A calm replay and one whose daily moves turn 4x larger on CHANGE agree exactly before
    CHANGE (nothing looks ahead); drift and retraining fire in the volatile one only, after
    CHANGE; every round promotes iff its interval clears the margin; rollback returns the
    exact previous blob."""
    from pymicro.lifecycle.watch import watch_step

    change = np.datetime64("2010-01-04")
    history = _history()
    calm = _regime_change(history[history["date"] < "2011-01-01"], str(change), scale=1.0)  # the same arithmetic
    wild = _regime_change(history[history["date"] < "2011-01-01"], str(change))
    frames = {"calm": calm, "wild": wild}
    ds = {k: make_dataset(f, "momentum") for k, f in frames.items()}
    regs = {k: Registry(tmp_path / k) for k in ds}
    for k in ds:  # both champions confidently wrong: a fresh network can beat them out of sample
        _champion(regs[k], frames[k], spoil=25.0)
    days = np.unique(ds["calm"].dates.astype("datetime64[D]"))
    days = days[days >= np.datetime64(CUT) + 90]
    steps = {"calm": [], "wild": []}
    rounds = []
    for i, day in enumerate(days):
        for k in ("calm", "wild"):
            seen = ds[k].take(ds[k].label_end.astype("datetime64[D]") <= day)
            if k == "wild" and i % 150 == 0:  # the day's rows are what make_dataset gives on the bars so far
                again = make_dataset(wild[wild["date"] <= pd.Timestamp(day)], "momentum")
                assert np.array_equal(again.X, seen.X) and np.array_equal(again.y, seen.y)
            step = watch_step(regs[k], "replay", frames[k][frames[k]["date"] <= pd.Timestamp(day)], dataset=seen,
                              recent_days=60, cooldown_days=120, epochs=2, mode="rolling", learning_rate=1e-3)
            steps[k].append(step)
            if step["learned"] is not None:
                rounds.append((k, day, step["learned"]["decision"], regs[k].get_version("replay", "champion")))
        if day < change:  # identical bars so far: identical reports
            a, b = (regs[k].events("replay", "drift")[-1]["payload"] for k in ("calm", "wild"))
            assert a["features"] == b["features"] and a["out_of_range"] == b["out_of_range"], day
    share = {k: np.array([s["drift"]["out_of_range"] for s in steps[k]]) for k in steps}
    fired = {k: np.array([s["fired"] for s in steps[k]]) for k in steps}
    assert not fired["calm"].any(), share["calm"].max()  # no regime change: no drift, no retraining
    assert not fired["wild"][days < change].any()
    first = days[np.argmax(fired["wild"])]
    assert change <= first <= days[np.searchsorted(days, change) + 60], first  # within 60 dates of the change
    assert share["wild"][days >= first].mean() > 5 * share["calm"][days >= first].mean()
    # retraining: only in the volatile replay, only after the change, rounds 120 dates apart
    assert rounds and {k for k, *_ in rounds} == {"wild"} and min(d for _, d, _, _ in rounds) >= first
    gaps = [np.count_nonzero((days > a) & (days <= b)) for (_, a, _, _), (_, b, _, _) in zip(rounds, rounds[1:])]
    assert all(g >= 120 for g in gaps)
    for _, _, decision, champion in rounds:  # promotion only on out-of-sample improvement
        assert decision["promoted"] == (decision["test"]["interval"][0] > 0)
        assert (champion.version == decision["challenger"]) == decision["promoted"]
    assert rounds[0][2]["promoted"], "a fresh network must beat the spoiled champion out of sample"
    reg = regs["wild"]
    previous = reg.get_version("replay", reg.alias_history("replay", "champion")[-2]["version"])
    back = reg.rollback("replay")
    assert back.version == previous.version
    assert hashlib.sha256(reg.read_blob(back.model_id)).hexdigest() == previous.content_hash
