"""The monitor's HTML dashboard: one page of tables (numbers from the registry and the
prediction log, read in one :func:`pymicro.lifecycle.monitor.snapshot`) and five PNG plots:
equity (beside always-long), rolling Sharpe (with the alert threshold), drawdown, drift per
feature (with the PSI bands) and version history (where each alias pointed over time).

Every number cell carries ``data-key`` and ``data-value`` (the exact value, ``repr``), so a
test (or a scraper) reads the same number the registry holds; the text shows it rounded.
``render(snap)`` returns the page and ``{file name: PNG bytes}``; :func:`write` stores both
in a folder (``pymicro monitor --once --out DIR``).
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import math
from pathlib import Path

import numpy as np

from pymicro.errors import require
from pymicro.lifecycle.drift import PSI_MODERATE, PSI_SIGNIFICANT

PLOTS = ("equity.png", "rolling_sharpe.png", "drawdown.png", "drift.png", "versions.png")

__all__ = ["PLOTS", "render", "write"]


def _plt():
    matplotlib = require("matplotlib", "plots", purpose="the dashboard's plots")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return buf.getvalue()


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _dates(ts) -> list:
    """Epoch seconds as UTC datetimes; small values (session seconds of replayed ticks, not
    epoch times) stay numbers."""
    ts = np.asarray(ts, dtype=np.float64)
    if ts.size and ts.max() < 1e9:  # before 2001 as an epoch time: not one
        return ts.tolist()
    return [_dt.datetime.fromtimestamp(float(t), _dt.timezone.utc) for t in ts]


def _curves(snap, key: str, title: str, ylabel: str, *, baseline: str | None = None, line: float | None = None,
            ts_key: str = "ts") -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    shown = 0
    for model_id, m in snap["models"].items():
        s = m.get("series")
        if not s or not len(s[key]):
            continue
        x = _dates(s[ts_key])
        ax.plot(x, s[key], label=model_id, linewidth=1.2)
        if baseline:
            ax.plot(_dates(s["ts"]), s[baseline], linestyle="--", linewidth=0.9, label=f"{model_id}: always long")
        shown += 1
    if line is not None and shown:
        ax.axhline(line, color="red", linewidth=0.9, linestyle=":", label=f"alert threshold {line:g}")
    if shown:
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.autofmt_xdate()
    else:
        _empty(ax, "no decisions in the prediction log yet")
    ax.set_title(title)
    return _png(fig)


def _drift_plot(snap) -> bytes:
    plt = _plt()
    reports = [(name, n["drift"]) for name, n in snap["names"].items() if n["drift"] and n["drift"].get("features")]
    fig, axes = plt.subplots(max(1, len(reports)), 1, figsize=(8, 3.2 * max(1, len(reports))), squeeze=False)
    if not reports:
        _empty(axes[0][0], "no drift report in the registry yet (pymicro drift, pymicro learn)")
        axes[0][0].set_title("drift per feature (PSI)")
    for ax, (name, d) in zip(axes[:, 0], reports):
        feats = list(d["features"])
        values = [d["features"][f]["psi"] for f in feats]
        colors = ["tab:red" if v >= PSI_SIGNIFICANT else "tab:orange" if v >= PSI_MODERATE else "tab:green"
                  for v in values]
        ax.bar(range(len(feats)), values, color=colors)
        ax.set_xticks(range(len(feats)), feats, rotation=70, fontsize=6)
        for level, label in ((PSI_MODERATE, "moderate 0.1"), (PSI_SIGNIFICANT, "significant 0.25")):
            ax.axhline(level, color="grey", linestyle="--", linewidth=0.8, label=label)
        ax.set_ylabel("PSI")
        ax.set_title(f"{name} v{d['version']}: drift per feature ({d.get('at', '')[:19]})")
        ax.legend(fontsize=7)
    return _png(fig)


def _versions_plot(snap) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    shown = False
    for name, n in snap["names"].items():
        created = [(_dt.datetime.fromisoformat(v["created"]), v["version"]) for v in n["versions"]]
        if created:
            ax.scatter([c[0] for c in created], [c[1] for c in created], marker="o", s=18, color="lightgrey",
                       zorder=1, label=f"{name}: versions")
        for alias in sorted({h["alias"] for h in n["history"]}):
            moves = [h for h in n["history"] if h["alias"] == alias]
            x = [_dt.datetime.fromisoformat(h["at"]) for h in moves]
            y = [h["version"] if h["version"] is not None else np.nan for h in moves]
            ax.step(x, y, where="post", marker=".", label=f"{name}: {alias}", zorder=2)
            shown = True
    if shown:
        ax.set_ylabel("version")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.autofmt_xdate()
    else:
        _empty(ax, "no versions in the registry yet")
    ax.set_title("version history: where each alias pointed (promotions, rollbacks)")
    return _png(fig)


def plots(snap) -> dict[str, bytes]:
    threshold = snap["rules"]["sharpe_below"]
    return {"equity.png": _curves(snap, "equity", "equity (growth of 1), net of costs", "equity",
                                  baseline="always_long"),
            "rolling_sharpe.png": _curves(snap, "rolling_sharpe", "rolling Sharpe (annualised)", "Sharpe",
                                          line=threshold, ts_key="rolling_ts"),
            "drawdown.png": _curves(snap, "drawdown", "drawdown", "fraction below the peak"),
            "drift.png": _drift_plot(snap),
            "versions.png": _versions_plot(snap)}


def _num(key: str, value, digits: int = 4) -> str:
    if value is None:
        return f'<td class="num" data-key="{html.escape(key)}" data-value="">-</td>'
    v = float(value)
    text = f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    return f'<td class="num" data-key="{html.escape(key)}" data-value="{v!r}">{text}</td>'


def _int(key: str, value) -> str:
    return f'<td class="num" data-key="{html.escape(key)}" data-value="{int(value)}">{int(value)}</td>'


def _txt(value) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def _table(head: list[str], rows: list[str], table_id: str) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(f"<tr>{r}</tr>" for r in rows) or f'<tr><td colspan="{len(head)}">none</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}td.num{text-align:right;font-family:monospace}
tr.firing td{background:#fdd}img{display:block;margin:.5em 0;max-width:100%;border:1px solid #eee}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(700px,1fr));gap:8px}"""

SCRIPT = """window.addEventListener('load',function(){document.querySelectorAll('img.plot').forEach(function(i){
var r=i.getBoundingClientRect();i.setAttribute('data-natural-width',i.naturalWidth);
i.setAttribute('data-rect',[r.left,r.top+window.scrollY,r.width,r.height].map(Math.round).join(','));});
document.body.setAttribute('data-loaded','1');});"""


def render(snap: dict) -> tuple[str, dict[str, bytes]]:
    """The dashboard page and its plots."""
    images = plots(snap)
    alerts = []
    for a in snap["alerts"]:
        key = f"{a['name']}/{a['subject']}"
        alerts.append(f'<tr class="{"firing" if a["firing"] else "ok"}">' + _txt(a["name"]) + _txt(a["rule"])
                      + _txt(a["subject"]) + _txt("FIRING" if a["firing"] else "ok") + _num(f"alert-value/{key}", a["value"])
                      + _num(f"alert-threshold/{key}", a["threshold"]) + _txt(a["message"]) + "</tr>")
    models = []
    for model_id, m in snap["models"].items():
        r = m["report"]
        fig = (r or {}).get("model", {})
        base = (r or {}).get("baseline_always_long", {})
        lat = m["latency"]
        models.append(_txt(model_id) + _txt(m["name"]) + _int(f"count/{model_id}", m["count"])
                      + _num(f"sharpe/{model_id}", fig.get("sharpe")) + _num(f"baseline-sharpe/{model_id}", base.get("sharpe"))
                      + _num(f"hit-rate/{model_id}", fig.get("hit_rate")) + _num(f"baseline-hit-rate/{model_id}", base.get("hit_rate"))
                      + _num(f"max-drawdown/{model_id}", fig.get("max_drawdown"))
                      + _num(f"latency-median-us/{model_id}", float(np.median(lat)) * 1e6 if lat.size else None, 3))
    names, versions, drift = [], [], []
    for name, n in snap["names"].items():
        aliases = ", ".join(f"{a}&rarr;v{v}" for a, v in n["aliases"].items())
        names.append(_txt(name) + _int(f"versions/{name}", len(n["versions"])) + f"<td>{aliases}</td>"
                     + "".join(_int(f"alias/{name}/{a}", v) for a, v in n["aliases"].items() if a == "champion")
                     + ("" if "champion" in n["aliases"] else "<td>-</td>"))
        for v in n["versions"]:
            versions.append(_txt(name) + _int(f"version/{name}/{v['version']}", v["version"]) + _txt(v["created"][:19])
                            + f'<td data-key="hash/{html.escape(name)}/{v["version"]}">{v["content_hash"][:16]}</td>'
                            + _txt(v["parent_version"] if v["parent_version"] is not None else "-")
                            + _txt(", ".join(v["aliases"]) or "-") + _txt(v["data_window"]))
        d = n["drift"]
        if d:
            for feature, f in d.get("features", {}).items():
                drift.append(_txt(name) + _txt(d["version"]) + _txt(feature) + _num(f"psi/{name}/{feature}", f["psi"])
                             + _txt(f["band"]) + _num(f"ks/{name}/{feature}", f["ks"])
                             + _num(f"out-of-range/{name}/{feature}", f.get("out_of_range")))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>pymicro monitor</title>
<style>{CSS}</style><script>{SCRIPT}</script></head><body>
<h1>pymicro monitor</h1>
<p>Store <code>{html.escape(snap['store'])}</code>, read {html.escape(snap['generated'])}. Metrics: <a href="metrics">/metrics</a>.
Alert rules: Sharpe below {snap['rules']['sharpe_below']:g} over the last {snap['rules']['sharpe_window']} decisions
(at least {snap['rules']['sharpe_min_decisions']} scored), drift PSI at or above {snap['rules']['psi_above']:g},
recent rows outside the training window's central 99% at or above {snap['rules']['out_of_range_above']:.0%}
(on daily market features PSI exceeds 0.25 on calm days too: docs/monitoring.md),
realised-accuracy decay (pymicro.lifecycle.alerts).</p>
<h2>Alerts</h2>{_table(["name", "rule", "subject", "state", "value", "threshold", "detail"], alerts, "alerts")}
<h2>Models in the prediction log</h2>
<p>Rolling figures over each model's last {snap['rules']['sharpe_window']} decisions, net of {snap['rules']['cost_bps']:g} bps
per change of position, beside always long over the same decisions.</p>
{_table(["model", "name", "decisions logged", "Sharpe", "always-long Sharpe", "hit rate", "always-long hit rate",
         "max drawdown", "median latency (µs)"], models, "models")}
<div class="grid">
<img class="plot" id="plot-equity" src="plots/equity.png" alt="equity">
<img class="plot" id="plot-rolling_sharpe" src="plots/rolling_sharpe.png" alt="rolling Sharpe">
<img class="plot" id="plot-drawdown" src="plots/drawdown.png" alt="drawdown">
</div>
<h2>Registered names</h2>{_table(["name", "versions", "aliases", "champion"], names, "names")}
<h2>Versions</h2>{_table(["name", "version", "created (UTC)", "content hash", "parent", "aliases", "data window"],
                          versions, "versions")}
<img class="plot" id="plot-versions" src="plots/versions.png" alt="version history">
<h2>Drift (newest report per name)</h2>{_table(["name", "version", "feature", "PSI", "band", "KS D", "outside the training 99%"], drift, "drift")}
<img class="plot" id="plot-drift" src="plots/drift.png" alt="drift per feature">
</body></html>
"""
    return page, images


def write(snap: dict, out_dir) -> list[Path]:
    """Write ``index.html`` and ``plots/*.png`` into ``out_dir``; return the paths."""
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    page, images = render(snap)
    paths = []
    for name, data in images.items():
        path = out / "plots" / name
        path.write_bytes(data)
        paths.append(path)
    (out / "index.html").write_text(page, encoding="utf-8")
    return [out / "index.html", *paths]
