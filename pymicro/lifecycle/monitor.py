"""Monitoring: one snapshot of the registry and the prediction log, as Prometheus metrics
(``/metrics``) and as an HTML dashboard (:mod:`pymicro.lifecycle.dashboard`), served on
loopback by :func:`serve` (``pymicro monitor``).

    snap = snapshot(Registry(), PredictionLog("~/.pymicro/live/predictions.db"))
    text = metrics_text(snap)          # Prometheus text format (prometheus-client)
    server = serve(registry_root, log_path, port=0); server.url; server.shutdown()

Where each number comes from (nothing is measured by the monitor itself):

* per registered name: versions and aliases (:class:`~pymicro.store.registry.Registry`),
  the newest ``drift`` event (written by ``pymicro learn`` and ``pymicro drift``): PSI and
  KS per feature, PSI of the predicted classes; alert transitions (``alert`` events);
* per model in the prediction log (:class:`~pymicro.live.predictions.PredictionLog`, keyed
  by model id): decisions logged, their ``latency_s`` (when the writer measured it:
  ``pymicro live --log`` and the MCP ``realtime_subscribe`` store the C++ replay's mean per
  decision), and :func:`~pymicro.live.predictions.performance_report` over the alert rules'
  window: rolling Sharpe and hit rate beside always-long, max drawdown;
* alerts: :func:`pymicro.lifecycle.alerts.evaluate` (each snapshot evaluates the rules and
  logs transitions).

Metric names (all gauges unless said): ``pymicro_model_versions{name}``,
``pymicro_model_alias_version{name,alias}``, ``pymicro_logged_predictions{model,name}``
(rows now in the bounded log, so a gauge), ``pymicro_prediction_latency_seconds{model,name}``
(histogram), ``pymicro_drift_psi{name,version,feature}``,
``pymicro_drift_ks_statistic{name,version,feature}``, ``pymicro_drift_out_of_range{name,version,feature}``,
``pymicro_prediction_drift_psi{name,version}``,
``pymicro_rolling_sharpe{model,name}``, ``pymicro_rolling_sharpe_always_long{model,name}``,
``pymicro_hit_rate{model,name}``, ``pymicro_max_drawdown{model,name}``,
``pymicro_alert_active{name,rule,subject}`` (1 firing, 0 not), ``pymicro_alert_threshold{name,rule,subject}``,
``pymicro_alerts_fired_total{name,rule,subject}`` (counter: firing transitions logged).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import json
import math
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from pymicro import metrics
from pymicro.errors import InputError, require
from pymicro.lifecycle.alerts import AlertRules, evaluate, log_name, model_figures
from pymicro.live.predictions import PredictionLog, strategy_returns
from pymicro.store.registry import Registry

#: Histogram buckets of the decision latency, seconds (a micro network's call is ~0.3 µs).
LATENCY_BUCKETS = (1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1.0)
SERIES_ROWS = 5000  # the newest decisions per model that the dashboard's curves show

__all__ = ["LATENCY_BUCKETS", "MonitorServer", "default_log_path", "metrics_text", "serve", "snapshot"]


def default_log_path(registry: Registry) -> Path:
    """Where the MCP live tools keep the prediction log: ``<store>/../live/predictions.db``."""
    return Path(registry.root).parent / "live" / "predictions.db"


def _series(rows, report: dict, window: int) -> dict:
    """Equity (strategy and always-long), drawdown and rolling Sharpe over ``rows``."""
    ret, _, move = strategy_returns(rows)
    w = max(2, min(window - 1, len(ret)))
    ts = np.array([r.ts for r in rows[1:]])
    return {"ts": ts, "equity": metrics.equity_curve(ret), "always_long": metrics.equity_curve(move),
            "drawdown": metrics.drawdown(ret), "rolling_ts": ts[w - 1:],
            "rolling_sharpe": metrics.rolling_sharpe(ret, w, report["periods_per_year"])[w - 1:], "rolling_window": w}


def snapshot(registry: Registry, log: PredictionLog | None = None, rules: AlertRules | None = None, *,
             record_alerts: bool = True, series: bool = False) -> dict:
    """Everything the metrics and the dashboard show, read once (module docstring)."""
    rules = rules or AlertRules()
    names = {}
    for name in registry.names():
        drift = registry.events(name, "drift", limit=1)
        decision = registry.events(name, "decision", limit=1)
        names[name] = {"versions": [v.to_dict() for v in registry.versions(name)], "aliases": registry.aliases(name),
                       "history": registry.alias_history(name),
                       "drift": ({**drift[0]["payload"], "at": drift[0]["at"], "version": drift[0]["version"]}
                                 if drift else None),
                       "decision": decision[0]["payload"] if decision else None}
    models, figures = {}, {}
    if log is not None:
        for model_id in log.models():
            report = model_figures(log, model_id, rules)
            figures[model_id] = report
            name, version = log_name(registry, model_id)
            entry = {"name": name, "version": version, "count": log.count(model_id), "report": report,
                     "latency": log.latencies(model_id)}
            if series and report is not None:
                entry["series"] = _series(log.recent(model_id, limit=max(SERIES_ROWS, rules.sharpe_window)),
                                          report, rules.sharpe_window)
            models[model_id] = entry
    alerts = evaluate(registry, log, rules, record=record_alerts, figures=figures)
    fired = {}  # firing transitions ever logged, per (name, rule, subject)
    for name in sorted(set(names) | {a["name"] for a in alerts}):
        for e in registry.events(name, "alert", limit=1_000_000):
            if e["payload"].get("state") == "firing":
                key = (name, e["payload"].get("rule"), e["payload"].get("subject"))
                fired[key] = fired.get(key, 0) + 1
    return {"generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "store": str(registry.root), "rules": rules.to_dict(), "names": names, "models": models,
            "alerts": alerts, "fired": fired}


def _collector(snap: dict):
    core = require("prometheus_client.core", "monitor", purpose="the /metrics endpoint")

    class SnapshotCollector:
        def collect(self):
            G, H, C = core.GaugeMetricFamily, core.HistogramMetricFamily, core.CounterMetricFamily
            versions = G("pymicro_model_versions", "Versions of a registered name in the store", labels=["name"])
            alias = G("pymicro_model_alias_version", "The version an alias points at", labels=["name", "alias"])
            psi = G("pymicro_drift_psi", "PSI of a feature in the newest drift report (training window vs recent)",
                    labels=["name", "version", "feature"])
            ks = G("pymicro_drift_ks_statistic", "Two-sample KS statistic of a feature in the newest drift report",
                   labels=["name", "version", "feature"])
            oor = G("pymicro_drift_out_of_range", "Share of recent rows outside the training window's central 99%",
                    labels=["name", "version", "feature"])
            pred = G("pymicro_prediction_drift_psi", "PSI of the predicted class shares in the newest drift report",
                     labels=["name", "version"])
            for name, n in snap["names"].items():
                versions.add_metric([name], len(n["versions"]))
                for a, v in n["aliases"].items():
                    alias.add_metric([name, a], v)
                d = n["drift"]
                if d:
                    ver = str(d["version"])
                    for feature, f in d.get("features", {}).items():
                        psi.add_metric([name, ver, feature], f["psi"])
                        ks.add_metric([name, ver, feature], f["ks"])
                        if "out_of_range" in f:
                            oor.add_metric([name, ver, feature], f["out_of_range"])
                    if "predictions" in d:
                        pred.add_metric([name, ver], d["predictions"]["psi"])
            yield from (versions, alias, psi, ks, oor, pred)

            labels = ["model", "name"]
            count = G("pymicro_logged_predictions", "Decisions now in the (bounded) prediction log", labels=labels)
            latency = H("pymicro_prediction_latency_seconds", "Seconds per decision, as logged by the writer",
                        labels=labels)
            sharpe = G("pymicro_rolling_sharpe", "Annualised Sharpe of the rule window's decisions, net of costs",
                       labels=labels)
            base = G("pymicro_rolling_sharpe_always_long", "Always long over the same decisions", labels=labels)
            hit = G("pymicro_hit_rate", "Share of positioned decisions whose sign was right", labels=labels)
            mdd = G("pymicro_max_drawdown", "Largest fall of the window's equity, a fraction", labels=labels)
            for model_id, m in snap["models"].items():
                lab = [model_id, m["name"]]
                count.add_metric(lab, m["count"])
                lat = m["latency"]
                if lat.size:
                    cum = [(str(b), float(np.count_nonzero(lat <= b))) for b in LATENCY_BUCKETS]
                    latency.add_metric(lab, cum + [("+Inf", float(lat.size))], sum_value=float(lat.sum()))
                r = m["report"]
                if r is None:
                    continue
                sharpe.add_metric(lab, r["model"]["sharpe"])
                base.add_metric(lab, r["baseline_always_long"]["sharpe"])
                if r["model"]["hit_rate"] is not None:
                    hit.add_metric(lab, r["model"]["hit_rate"])
                mdd.add_metric(lab, r["model"]["max_drawdown"])
            yield from (count, latency, sharpe, base, hit, mdd)

            labels = ["name", "rule", "subject"]
            active = G("pymicro_alert_active", "1 while the alert fires (rules: pymicro.lifecycle.alerts)",
                       labels=labels)
            threshold = G("pymicro_alert_threshold", "The alert's threshold", labels=labels)
            fired = C("pymicro_alerts_fired", "Firing transitions logged in the registry", labels=labels)
            for a in snap["alerts"]:
                active.add_metric([a["name"], a["rule"], a["subject"]], 1.0 if a["firing"] else 0.0)
                threshold.add_metric([a["name"], a["rule"], a["subject"]], a["threshold"])
            for (name, rule, subject), k in sorted(snap["fired"].items()):
                fired.add_metric([name, str(rule), str(subject)], k)
            yield from (active, threshold, fired)

    return SnapshotCollector()


def metrics_text(snap: dict) -> bytes:
    """The snapshot in the Prometheus text exposition format."""
    client = require("prometheus_client", "monitor", purpose="the /metrics endpoint")
    reg = client.CollectorRegistry(auto_describe=False)
    reg.register(_collector(snap))
    return client.generate_latest(reg)


def _jsonable(x):
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k) if not isinstance(k, tuple) else "/".join(map(str, k)): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


class MonitorServer:
    """A running monitor (:func:`serve`): ``url``, ``port``, ``shutdown()``."""

    def __init__(self, httpd: ThreadingHTTPServer, thread: threading.Thread | None):
        self.httpd, self.thread = httpd, thread
        self.host, self.port = httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}/"

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self.thread is not None:
            self.thread.join(timeout=10)


def _loopback(host: str) -> str:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        if host == "localhost":
            return "127.0.0.1"
    raise InputError(f"the monitor serves on loopback only (127.0.0.1, ::1), not {host!r}: put a reverse proxy "
                     "with authentication in front of it to expose it")


def serve(store, log_path=None, *, host: str = "127.0.0.1", port: int = 0, rules: AlertRules | None = None,
          background: bool = True) -> MonitorServer:
    """Serve ``/`` (the dashboard), ``/plots/<name>.png``, ``/metrics`` and ``/snapshot.json`` on
    loopback. ``port=0`` picks a free port (``server.port``). Each request reads the store and
    the log afresh (and evaluates the alerts); the plots are those of the newest page."""
    from pymicro.lifecycle.dashboard import render

    host = _loopback(host)
    registry = store if isinstance(store, Registry) else Registry(store)
    log_path = Path(log_path) if log_path is not None else default_log_path(registry)
    rules = rules or AlertRules()
    require("prometheus_client", "monitor", purpose="pymicro monitor")
    state = {"plots": {}}
    lock = threading.Lock()

    def take(series: bool) -> dict:
        log = PredictionLog(log_path) if log_path.exists() else None
        try:
            return snapshot(registry, log, rules, series=series)
        finally:
            if log is not None:
                log.close()

    class Handler(BaseHTTPRequestHandler):
        server_version = "pymicro-monitor"

        def log_message(self, *args):  # quiet: the dashboard is polled
            pass

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - the http.server API
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    html, plots = render(take(series=True))
                    with lock:
                        state["plots"] = plots
                    self._send(200, html.encode(), "text/html; charset=utf-8")
                elif path == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST

                    self._send(200, metrics_text(take(series=False)), CONTENT_TYPE_LATEST)
                elif path == "/snapshot.json":
                    body = json.dumps(_jsonable(take(series=False)), indent=1).encode()
                    self._send(200, body, "application/json")
                elif path.startswith("/plots/"):
                    with lock:
                        plots = state["plots"]
                    if not plots:
                        _, plots = render(take(series=True))
                        with lock:
                            state["plots"] = plots
                    data = plots.get(path[len("/plots/"):])
                    if data is None:
                        self._send(404, b"no such plot\n", "text/plain")
                    else:
                        self._send(200, data, "image/png")
                else:
                    self._send(404, b"not found: try /, /metrics, /snapshot.json\n", "text/plain")
            except Exception as e:  # a broken store or log is a 500 with its reason, not a dead server
                self._send(500, f"{type(e).__name__}: {e}\n".encode(), "text/plain; charset=utf-8")

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    httpd = Server((host, int(port)), Handler)
    httpd.daemon_threads = True
    if not background:
        return MonitorServer(httpd, None)
    thread = threading.Thread(target=httpd.serve_forever, name="pymicro-monitor", daemon=True)
    thread.start()
    return MonitorServer(httpd, thread)
