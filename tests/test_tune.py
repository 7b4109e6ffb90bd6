"""Hyper-parameter search (Optuna on Dask), the Dask helpers, walk-forward on Dask and federated averaging.

Small on purpose: one symbol, two folds, two epochs, a narrow search space."""

import json
import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("optuna")
pytest.importorskip("distributed")

import pymicro  # noqa: E402
from pymicro.cli import main  # noqa: E402
from pymicro.errors import ClusterError, TrainingError  # noqa: E402
from pymicro.training.cluster import dask_client, scatter  # noqa: E402
from pymicro.training.tune import DEFAULT_SPACE, journal_storage, portfolio_returns, prepare_data, tune  # noqa: E402

# narrow on purpose: tinygrad compiles kernels per shape (and per dropout rate), and compiling,
# not training, is what a small trial costs; the learning rate varies freely (a tensor, no recompile)
SPACE = {"learning_rate": ("float_log", 1e-3, 1e-2), "hidden_1": ("categorical", (8,)),
         "hidden_2": ("categorical", (4,)), "dropout": ("categorical", (0.0, 0.2)), "attention": ("categorical", (0, 4)),
         "batch_size": ("categorical", (256,)), "label_threshold": ("categorical", (0.5, 1.0))}
SMALL = dict(symbols=["SP500"], epochs=2, patience=None, n_folds=2, parallel=2, space=SPACE, n_startup_trials=1,
             n_warmup_steps=1, final_epochs=2, plots=False)


def test_the_folds_never_reach_the_test_split():
    data, splits, _ = prepare_data("momentum", symbols=["SP500"], thresholds=(0.5,), n_folds=3)
    test_start = splits[0.5].test_start
    assert data.dates.max() < test_start
    for tr, va in data.folds:
        # every training row's label ends before its validation block starts: walk-forward, embargoed
        assert data.dates[tr].max() < data.dates[va].min()
    blocks = [data.dates[va] for _, va in data.folds]
    assert all(a.max() < b.min() for a, b in zip(blocks, blocks[1:]))


def test_portfolio_returns_charge_costs_and_shift_once():
    dates = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], "datetime64[ns]")
    syms = np.array(["A", "A", "A"], object)
    r = portfolio_returns([1.0, 1.0, -1.0], np.array([0.01, 0.02, 0.03]), dates, syms, cost_bps=10.0)
    assert r == pytest.approx([0.01 - 0.001, 0.02, -0.03 - 0.002])


@pytest.mark.slow
def test_same_seed_same_best_parameters_on_one_and_two_workers(tmp_path):
    results = []
    for workers in (1, 2):
        r = tune("momentum", n_trials=4, n_workers=workers, out_dir=tmp_path / f"w{workers}", seed=3, **SMALL)
        results.append(r)
    one, two = results
    assert one.workers == 1 and two.workers == 2
    assert one.best_params == two.best_params and one.best_value == pytest.approx(two.best_value, abs=0)
    assert one.n_trials == two.n_trials and sum(one.n_trials[k] for k in ("complete", "pruned", "failed")) == 4
    # the best trial is frozen to a blob that loads, and the comparison is out-of-sample beside baselines
    model = pymicro.load(one.blob_path)
    assert model.info.input_size == 24
    c = one.comparison
    assert {"tuned", "default", "baselines"} <= set(c) and "buy and hold" in c["baselines"]
    assert c["tuned"]["accuracy_ci"][0] <= c["tuned"]["accuracy"] <= c["tuned"]["accuracy_ci"][1]
    saved = json.loads((tmp_path / "w1" / f"{one.study_name}.json").read_text())
    assert saved["best_params"] == one.best_params


@pytest.mark.slow
def test_a_study_resumes_and_a_trial_left_running_is_run_again(tmp_path):
    import optuna

    first = tune("momentum", n_trials=2, n_workers=1, out_dir=tmp_path, study_name="s", **SMALL)
    storage = journal_storage(tmp_path / "s.journal")
    study = optuna.load_study(study_name="s", storage=storage)
    before = {t.number: (t.params, t.value) for t in study.get_trials()}
    assert len(before) == 2
    # a coordinator killed mid-trial leaves it RUNNING in the journal
    ghost = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    ghost_lr = ghost.params["learning_rate"]
    del ghost
    second = tune("momentum", n_trials=4, n_workers=1, out_dir=tmp_path, study_name="s", **SMALL)
    assert second.recovered == 1 and first.study_name == second.study_name
    trials = optuna.load_study(study_name="s", storage=journal_storage(tmp_path / "s.journal")).get_trials()
    kept = {t.number: (t.params, t.value) for t in trials if t.number in before}
    assert kept == before  # nothing finished was lost or changed
    lost = [t for t in trials if t.user_attrs.get("lost")]
    assert len(lost) == 1 and lost[0].state == optuna.trial.TrialState.FAIL
    rerun = [t for t in trials if t.number > lost[0].number and t.params.get("learning_rate") == ghost_lr]
    assert rerun and rerun[0].state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert second.n_trials["complete"] + second.n_trials["pruned"] + second.n_trials["failed"] == 4


@pytest.mark.slow
def test_a_worker_killed_mid_study_loses_no_finished_trial(tmp_path):
    import distributed

    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        killed = []
        seen = []

        def progress(done, total, info):
            seen.append(info["trial"])
            if not killed:  # after the first finished trial, kill a worker that is busy with another
                busy = [w for w, keys in client.processing().items() if keys] or list(pids)
                os.kill(pids[busy[0]], signal.SIGKILL)
                killed.append(busy[0])

        r = tune("momentum", n_trials=6, scheduler=client, out_dir=tmp_path, study_name="k", progress=progress,
                 **{**SMALL, "parallel": 3})
    assert killed
    import optuna

    trials = optuna.load_study(study_name="k", storage=journal_storage(tmp_path / "k.journal")).get_trials()
    finished = [t for t in trials if t.state.is_finished()]
    assert len(finished) >= 6 and r.n_trials["complete"] >= 1
    assert set(seen) <= {t.number for t in finished}  # every trial reported finished is in the journal


def test_a_scheduler_that_does_not_answer_is_a_clear_typed_error_within_seconds(monkeypatch):
    started = time.monotonic()
    with pytest.raises(ClusterError, match="did not answer"):
        with dask_client("tcp://127.0.0.1:9", timeout=2):
            pass
    assert time.monotonic() - started < 30  # a bound against hanging, not a timing measurement
    monkeypatch.setenv("PYMICRO_DASK_SCHEDULER", "tcp://127.0.0.1:9")
    with pytest.raises(ClusterError, match="PYMICRO_DASK_SCHEDULER"):
        with dask_client(timeout=1):
            pass
    with pytest.raises(ClusterError, match="looks like tcp://host:port"):
        with dask_client("nonsense"):
            pass


def test_scatter_sends_a_dict_whole_by_reference():
    with dask_client(n_workers=1, processes=False) as client:
        ref = scatter(client, {"X": np.arange(6.0), "y": np.arange(3)})
        assert client.submit(lambda d: float(d["X"].sum()) + len(d["y"]), ref).result() == 18.0


def test_tune_refuses_bad_settings_with_typed_errors(tmp_path):
    with pytest.raises(TrainingError, match="objective"):
        tune("momentum", objective="profit", out_dir=tmp_path)
    with pytest.raises(TrainingError, match="n_trials"):
        tune("momentum", n_trials=0, out_dir=tmp_path)


def test_the_tune_cli_has_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: pymicro tune" in out and "--scheduler" in out and "--trials" in out


@pytest.mark.slow
def test_walk_forward_on_dask_gives_the_loop_s_result():
    from pymicro.evaluation.backtest import walk_forward
    from pymicro.market.data import load_embedded

    bars = load_embedded(["IBM"])
    bars = bars[bars["symbol"] == "IBM"].tail(700)
    kw = dict(train_window=400, step=100, train_kwargs={"epochs": 2, "patience": None, "batch_size": 128})
    local = walk_forward(bars, "momentum", **kw)
    with dask_client(n_workers=2) as client:
        remote = walk_forward(bars, "momentum", client=client, **kw)
    assert len(remote.windows) == len(local.windows) >= 2
    np.testing.assert_array_equal(remote.positions, local.positions)
    assert remote.classification["accuracy"] == local.classification["accuracy"]


@pytest.mark.slow
def test_federated_averaging_against_pooled_and_per_node():
    from pymicro.training.federated import fedavg, neural_train_distributed

    a = [{"W": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}]
    b = [{"W": np.full((2, 2), 4.0, np.float32), "b": np.ones(2, np.float32)}]
    avg = fedavg([a, b], [1, 2])
    np.testing.assert_allclose(avg[0]["W"], 3.0)
    np.testing.assert_allclose(avg[0]["b"], 2 / 3, rtol=1e-6)
    nodes = {"n0": ("IBM",), "n1": ("MSFT",)}  # one calendar: both series end in 2013
    r = neural_train_distributed(nodes=nodes, rounds=2, local_epochs=1, batch_size=256, n_workers=2)
    for key in ("federated", "pooled", "per_node"):
        assert 0 <= r[key]["accuracy"] <= 1 and r[key]["n"] == sum(v["test"] for v in r["settings"]["rows"].values())
        assert set(r[key]["per_node"]) == set(nodes)
    assert len(r["federated"]["rounds"]) == 2
    assert pymicro.load(r["federated"]["blob"]).info.has_normalization
    with pytest.raises(TrainingError, match="two nodes"):
        neural_train_distributed(nodes={"only": ("IBM",)})


@pytest.mark.slow
def test_the_tune_cli_runs_a_study_and_writes_blob_study_and_plots(tmp_path, capsys):
    code = main(["tune", "--symbols", "SP500", "--trials", "3", "--epochs", "1", "--folds", "2", "--workers", "1",
                 "--parallel", "3", "--out", str(tmp_path), "--study", "cli"])
    assert code == 0
    out = capsys.readouterr().out
    assert "best balanced_accuracy on the walk-forward validation folds" in out and "default model" in out
    assert pymicro.load(tmp_path / "momentum-tuned.pmb").info.params > 0
    assert (tmp_path / "cli.journal").stat().st_size > 0
    assert (tmp_path / "cli.history.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cli.importances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_seeds_parameter_ranges_map_to_the_search_space():
    from pymicro.training.tune import neural_optimize, search_space_from_ranges

    space = search_space_from_ranges({"learning_rate": [0.0001, 0.01], "dropout": [0.1, 0.5], "hidden_size": [8, 64]})
    assert space["learning_rate"] == ("float_log", 0.0001, 0.01) and space["dropout"] == ("float", 0.1, 0.5)
    assert space["hidden_1"][1][0] == 8 and space["hidden_1"][1][-1] == 64 and space["hidden_2"] == space["hidden_1"]
    assert space["batch_size"] == DEFAULT_SPACE["batch_size"]
    with pytest.raises(TrainingError, match="tunable"):
        search_space_from_ranges({"momentum": [0, 1]})
    with pytest.raises(TrainingError, match="low < high"):
        search_space_from_ranges({"dropout": [0.5, 0.1]})
    with pytest.raises(TrainingError, match="optimization_metric"):
        neural_optimize(preset="momentum", optimization_metric="profit")
