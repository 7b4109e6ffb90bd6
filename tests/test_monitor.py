"""Monitoring: the Prometheus /metrics endpoint scraped over HTTP and parsed with the Prometheus
text parser (values equal to what the registry and the prediction log hold), alert rules that
fire and that do not (transitions logged once), pymicro monitor --once, pymicro drift."""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import pytest
from monitor_fixtures import build, decisions
from prometheus_client.parser import text_string_to_metric_families

from pymicro.cli import main
from pymicro.errors import InputError
from pymicro.lifecycle.alerts import AlertRules, evaluate
from pymicro.lifecycle.monitor import LATENCY_BUCKETS, serve, snapshot
from pymicro.live.predictions import performance_report


def scrape(url: str) -> dict:
    with urllib.request.urlopen(url + "metrics", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, metric, **labels):
    return samples[(metric, tuple(sorted(labels.items())))]


def test_metrics_scrape_matches_the_registry_and_the_log(tmp_path):
    reg, log = build(tmp_path)
    rules = AlertRules(sharpe_window=300)
    server = serve(reg, log.path, port=0, rules=rules)
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        first = scrape(server.url)
        samples = scrape(server.url)  # a second scrape: same numbers, the transitions logged once
    finally:
        server.shutdown()
    assert value(samples, "pymicro_model_versions", name="trader") == len(reg.versions("trader")) == 2
    assert value(samples, "pymicro_model_alias_version", name="trader", alias="champion") == 2
    drift = reg.events("trader", "drift")[-1]["payload"]
    for feature, f in drift["features"].items():
        assert value(samples, "pymicro_drift_psi", name="trader", version="2", feature=feature) == f["psi"]
        assert value(samples, "pymicro_drift_ks_statistic", name="trader", version="2", feature=feature) == f["ks"]
    assert drift["features"]["vol_20"]["psi"] > 0.25 > drift["features"]["ret_1"]["psi"]
    for model_id in ("good", "bad"):
        report = performance_report(log, model_id, window=300)
        assert value(samples, "pymicro_logged_predictions", model=model_id, name=model_id) == log.count(model_id) == 400
        assert value(samples, "pymicro_rolling_sharpe", model=model_id, name=model_id) == report["model"]["sharpe"]
        assert value(samples, "pymicro_rolling_sharpe_always_long", model=model_id, name=model_id) == \
            report["baseline_always_long"]["sharpe"]
        assert value(samples, "pymicro_max_drawdown", model=model_id, name=model_id) == report["model"]["max_drawdown"]
        # the hit rate recomputed from the raw rows: sign of the held position against the next move
        rows = log.recent(model_id, limit=300)
        held = np.array([r.position for r in rows])[:-1]
        move = np.diff([r.price for r in rows])
        scored = (held != 0) & (move != 0)
        assert value(samples, "pymicro_hit_rate", model=model_id, name=model_id) == pytest.approx(
            np.mean(np.sign(held[scored]) == np.sign(move[scored])), abs=1e-12)
        lat = log.latencies(model_id)
        assert value(samples, "pymicro_prediction_latency_seconds_count", model=model_id, name=model_id) == lat.size
        assert value(samples, "pymicro_prediction_latency_seconds_sum", model=model_id, name=model_id) == \
            pytest.approx(lat.sum(), rel=1e-12)
        for bound in LATENCY_BUCKETS:
            assert value(samples, "pymicro_prediction_latency_seconds_bucket", model=model_id, name=model_id,
                         le=str(bound) if bound < 1 else "1.0") == np.count_nonzero(lat <= bound)
    assert value(samples, "pymicro_hit_rate", model="good", name="good") > 0.6 > 0.4 > \
        value(samples, "pymicro_hit_rate", model="bad", name="bad")
    alert = {k: v for (n, k), v in samples.items() if n == "pymicro_alert_active"}
    assert alert[(("name", "bad"), ("rule", "sharpe"), ("subject", "sharpe:bad"))] == 1
    assert alert[(("name", "good"), ("rule", "sharpe"), ("subject", "sharpe:good"))] == 0
    assert alert[(("name", "trader"), ("rule", "drift"), ("subject", "drift"))] == 1
    assert value(samples, "pymicro_alert_threshold", name="trader", rule="drift", subject="drift") == 0.25
    for s in (first, samples):  # fired once, not once per scrape
        assert value(s, "pymicro_alerts_fired_total", name="trader", rule="drift", subject="drift") == 1
        assert value(s, "pymicro_alerts_fired_total", name="bad", rule="sharpe", subject="sharpe:bad") == 1
    assert alert[(("name", "trader"), ("rule", "range"), ("subject", "range"))] == 1
    for feature, f in drift["features"].items():
        assert value(samples, "pymicro_drift_out_of_range", name="trader", version="2", feature=feature) == \
            f["out_of_range"]
    assert [e["payload"]["rule"] for e in reg.events("trader", "alert")] == ["drift", "range"]
    assert len(reg.events("bad", "alert")) == 1
    assert reg.events("good", "alert") == []  # never fired: nothing logged


def test_alert_rules_fire_and_resolve(tmp_path):
    reg, log = build(tmp_path)
    rules = AlertRules(sharpe_window=100, psi_above=0.25)
    states = {(s["name"], s["rule"]): s for s in evaluate(reg, log, rules)}
    assert states[("bad", "sharpe")]["firing"] and states[("bad", "sharpe")]["value"] < 0
    assert not states[("good", "sharpe")]["firing"] and states[("good", "sharpe")]["value"] > 0
    assert states[("trader", "drift")]["firing"] and states[("trader", "drift")]["value"] == \
        reg.events("trader", "drift")[-1]["payload"]["max_psi"]
    assert "accuracy" not in {r for _, r in states}  # the report has no labels: no accuracy rule
    # a looser PSI threshold does not fire on the same report; a stricter Sharpe fires on 'good'
    assert states[("trader", "range")]["firing"] and states[("trader", "range")]["value"] == \
        reg.events("trader", "drift")[-1]["payload"]["out_of_range"] > 0.05
    loose = {(s["name"], s["rule"]): s for s in evaluate(reg, log, AlertRules(sharpe_window=100, psi_above=50.0,
                                                                                  out_of_range_above=0.9,
                                                                                  sharpe_below=1e6), record=False)}
    assert not loose[("trader", "drift")]["firing"] and loose[("good", "sharpe")]["firing"]
    assert not loose[("trader", "range")]["firing"]
    # 'bad' turns good: the newest 100 decisions are right 90 % of the time -> resolved, logged once
    ts, price, pos = decisions(120, 0.9, 7)
    last = log.recent("bad", limit=1)[0]
    log.append_many("bad", last.ts + 86_400 * (1 + np.arange(120)), price / price[0] * last.price, pos,
                    np.full((120, 3), 1 / 3))
    evaluate(reg, log, rules)
    evaluate(reg, log, rules)
    kinds = [e["payload"]["state"] for e in reg.events("bad", "alert")]
    assert kinds == ["firing", "resolved"]
    # too few decisions: no state at all (not a false alarm)
    log.append_many("new", [1.0, 2.0, 3.0, 4.0], [1.0, 1.1, 1.0, 1.2], [1, -1, 1, 0], np.full((4, 3), 1 / 3))
    assert all(s["name"] != "new" for s in evaluate(reg, log, rules, record=False))
    with pytest.raises(InputError):
        AlertRules(psi_above=float("nan"))
    with pytest.raises(InputError):
        AlertRules(sharpe_window=1)
    with pytest.raises(Exception, match="append-only"):  # the alert log cannot be rewritten
        reg._connection().execute("DELETE FROM events")


def test_monitor_refuses_a_non_loopback_host(tmp_path):
    reg, log = build(tmp_path)
    with pytest.raises(InputError, match="loopback"):
        serve(reg, log.path, host="0.0.0.0")


def test_monitor_once_writes_the_dashboard(tmp_path, capsys):
    reg, log = build(tmp_path)
    out = tmp_path / "dash"
    assert main(["monitor", "--store", str(reg.root), "--log", str(log.path), "--once", "--out", str(out),
                 "--window", "300"]) == 0
    printed = capsys.readouterr().out
    assert "3 alerts firing" in printed and "ALERT bad sharpe" in printed and "ALERT trader range" in printed
    page = (out / "index.html").read_text()
    for name in ("equity", "rolling_sharpe", "drawdown", "drift", "versions"):
        data = (out / "plots" / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f'src="plots/{name}.png"' in page
    cells = dict(re.findall(r'data-key="([^"]+)" data-value="([^"]*)"', page))
    report = performance_report(log, "bad", window=300)
    assert float(cells["sharpe/bad"]) == report["model"]["sharpe"]
    assert float(cells["psi/trader/vol_20"]) == reg.events("trader", "drift")[-1]["payload"]["features"]["vol_20"]["psi"]
    assert int(cells["alias/trader/champion"]) == reg.aliases("trader")["champion"]
    assert (out / "metrics.txt").read_text().count("pymicro_rolling_sharpe{") == 2


def test_snapshot_json_endpoint_and_unknown_paths(tmp_path):
    reg, log = build(tmp_path)
    server = serve(reg, log.path, port=0)
    try:
        with urllib.request.urlopen(server.url + "snapshot.json", timeout=30) as r:
            snap = json.load(r)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + "nothing", timeout=30)
        assert e.value.code == 404
    finally:
        server.shutdown()
    assert snap["names"]["trader"]["aliases"] == reg.aliases("trader")
    assert snap["models"]["good"]["count"] == 400
    assert snapshot(reg, None, record_alerts=False)["models"] == {}


def test_drift_command_stores_the_report_and_draws_it(tmp_path, capsys):
    import pymicro
    from pymicro.lifecycle.drift import psi
    from pymicro.lifecycle.learn import bootstrap_version
    from pymicro.market.data import load_embedded
    from pymicro.market.dataset import make_dataset
    from pymicro.store.registry import Registry

    store = tmp_path / "store"
    reg = Registry(store)
    blob = pymicro.freeze(pymicro.preset("momentum").init(0), preset="momentum", horizon=5, threshold=0.5)
    bootstrap_version(reg, "d", blob, start="2005-01-01", unseen_from="2012-01-01")
    png = tmp_path / "drift.png"
    assert main(["drift", "d", "--store", str(store), "--symbols", "SP500", "--end", "2013-12-31",
                 "--png", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "status: significant" in printed and "stored as registry event" in printed
    assert png.read_bytes()[:4] == b"\x89PNG"
    event = reg.events("d", "drift")[-1]
    report = event["payload"]
    assert event["version"] == 1 and report["window"]["current"] == ["2012-01-03", "2013-12-31"]
    # recomputed here from the dataset: the training window 2005..2011 against 2012..2013
    ds = make_dataset(load_embedded(["SP500"]), "momentum")
    days = ds.dates.astype("datetime64[D]")
    ref = ds.X[(days >= np.datetime64("2005-01-01")) & (days < np.datetime64("2012-01-01"))]
    cur = ds.X[(days >= np.datetime64("2012-01-01")) & (days <= np.datetime64("2013-12-31"))]
    j = ds.feature_names.index("vol_20")
    assert report["features"]["vol_20"]["psi"] == round(psi(ref[:, j], cur[:, j]), 6)
    assert report["rows"] == {"reference": len(ref), "current": len(cur)}
    assert main(["drift", "d", "--store", str(store), "--symbols", "SP500", "--json", "--no-store"]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "d" and len(reg.events("d", "drift")) == 1
    assert main(["drift", "nothing", "--store", str(store), "--symbols", "SP500"]) == 2
    assert "no alias 'champion'" in capsys.readouterr().err


def test_a_prediction_log_from_before_the_latency_column_opens_and_keeps_its_rows(tmp_path):
    import sqlite3

    from pymicro.live.predictions import SCHEMA, PredictionLog

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA)  # the schema as it was: no latency_s column
    assert "latency_s" not in {r[1] for r in db.execute("PRAGMA table_info(predictions)")}
    db.execute("INSERT INTO predictions (model_id, ts, price, position, probabilities) VALUES "
               "('m', 1.0, 100.0, 1.0, '[0.2, 0.3, 0.5]')")
    db.commit()
    db.close()
    log = PredictionLog(path)
    log.append("m", 2.0, 101.0, -1.0, [0.5, 0.3, 0.2], latency_s=3e-7)
    rows = log.recent("m")
    assert [(r.price, r.latency_s) for r in rows] == [(100.0, None), (101.0, 3e-7)]
    assert log.latencies("m").tolist() == [3e-7]
    with pytest.raises(InputError, match="latency_s"):
        log.append("m", 3.0, 101.0, 0.0, [0.3, 0.3, 0.4], latency_s=float("nan"))
    assert PredictionLog(path).count("m") == 2  # a second open finds the column there
