"""Shared set-up for the benchmark suite: models, peers, inputs, recorded medians, budgets.

Run with ``pytest benchmarks/`` (the normal ``pytest`` runs tests/ only). At the end
the run prints a table (machine included) and writes it to benchmarks/results/latest.md;
``--benchmark-json=PATH`` also saves pytest-benchmark's raw data.
"""

from __future__ import annotations

import datetime as _dt
import platform
import statistics
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import budgets  # benchmarks/ is on the path (pyproject's pythonpath): every number lives there
import pymicro
from pymicro.runtime import bench

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "latest.md"

# Runtime labels, in table order. "pymicro" is pymicro.predict(model, x): the public
# call, allocating its output; every ratio is taken against it.
PYMICRO, INTO, NUMPY, ORT = "pymicro", "pymicro predict_into", "numpy", "onnxruntime"
RUNTIMES = (PYMICRO, INTO, NUMPY, ORT)


@dataclass
class Case:
    """One preset: its blob, the native model, both peers, a row and a batch."""

    name: str
    blob: bytes
    model: pymicro.Model
    x: np.ndarray
    X: np.ndarray
    peers: dict = field(default_factory=dict)
    unavailable: dict = field(default_factory=dict)  # runtime -> why it cannot run here

    def call(self, runtime: str, kind: str):
        """(function, args) to time for ``runtime`` on one row or on the batch.

        Skips the test, saying why, when the runtime cannot run on this machine; the
        table and the budget checks then report it as not measured.
        """
        arg = self.x if kind == "single" else self.X
        if runtime == PYMICRO:
            return partial(pymicro.predict, threads=1), (self.model, arg)  # one thread, as the peers
        if runtime == INTO:
            out = np.empty((self.model.n_classes,) if kind == "single"
                           else (len(arg), self.model.n_classes), np.float32)
            return partial(self.model.predict_into, threads=1), (arg, out)
        if runtime not in (NUMPY, ORT):
            raise ValueError(f"unknown runtime label {runtime!r}; known: {RUNTIMES}")
        if runtime not in self.peers and runtime not in self.unavailable:
            try:
                self.peers[runtime] = (bench.numpy_peer(self.blob) if runtime == NUMPY
                                       else bench.onnxruntime_peer(self.blob))
            except pymicro.BackendError as e:
                self.unavailable[runtime] = str(e)
        if runtime in self.unavailable:
            pytest.skip(f"not measured: {self.unavailable[runtime]}")
        return self.peers[runtime], (arg,)


class Lab:
    """Everything measured in this run; the budgets are checked against it."""

    def __init__(self):
        self.cases: dict[str, Case] = {}
        self.medians: dict[tuple[str, str, str], float] = {}  # (preset, runtime, kind) -> s/call
        self.pairs: dict[tuple[str, str], dict | None] = {}  # (preset, kind) -> paired medians
        self.blas_note = ""

    def case(self, name: str) -> Case:
        if name not in self.cases:
            blob = bench.preset_blob(name, seed=0)
            model = pymicro.load(blob)
            x, X = bench.inputs(model.input_size, budgets.BATCH, seed=0)
            self.cases[name] = Case(name, blob, model, x, X)
        return self.cases[name]

    def record(self, preset: str, runtime: str, kind: str, benchmark) -> None:
        stats = getattr(benchmark, "stats", None)
        if benchmark.disabled or stats is None or not stats.stats:
            return  # --benchmark-disable: nothing was timed, nothing is claimed
        self.medians[(preset, runtime, kind)] = stats.stats.median
        benchmark.extra_info.update(preset=preset, runtime=runtime, kind=kind,
                                    machine=bench.machine_name(), isa=self.case(preset).model.info.isa)

    def why_missing(self, preset: str, runtime: str) -> tuple[str, str]:
        """("not measured", why) if the runtime cannot run here, else ("not run", ...)."""
        case = self.cases.get(preset)
        reason = case.unavailable.get(runtime) if case else None
        if reason:
            return "not measured", f"{runtime}: {reason}"
        return "not run", (f"{preset}/{runtime} was not timed in this session "
                           "(deselected, or benchmarks disabled)")

    def rows(self) -> list[bench.Row]:
        rows = []
        for preset in pymicro.PRESETS:
            base_s = self.medians.get((preset, PYMICRO, "single"))
            base_b = self.medians.get((preset, PYMICRO, "batch"))
            for runtime in RUNTIMES:
                s = self.medians.get((preset, runtime, "single"))
                b = self.medians.get((preset, runtime, "batch"))
                if s is None and b is None:
                    status, why = self.why_missing(preset, runtime)
                    if status == "not measured":  # cannot run here: say so, never drop it
                        rows.append(bench.Row(preset, runtime, None, None, None, None,
                                              f"not measured: {why}"))
                    continue
                rows.append(bench.Row(
                    preset, runtime,
                    None if s is None else s * 1e6,
                    None if b is None else budgets.BATCH / b / 1e6,
                    None if s is None or base_s is None else s / base_s,
                    None if b is None or base_b is None else b / base_b,
                    self.blas_note if runtime == NUMPY else ""))
        return rows

    # ---------------------------------------------------------------- budgets
    #
    # Verdicts come from a paired measurement: pymicro and ONNX Runtime sampled in
    # turn (bench.interleaved), so a burst of load from a neighbour lands on both.
    # pytest-benchmark times each runtime in its own block, and one such burst was
    # seen to halve ORT's throughput for a whole block and flip a verdict. Its
    # medians are shown beside the paired ones.

    PAIRED_SINGLE = dict(repeats=31, target_s=0.002)
    PAIRED_BATCH = dict(repeats=15, target_s=0.02)
    PLAIN = "pymicro.predict(model, x)"  # pairs[(preset, "single")][PLAIN]: no threads argument
    FMA = "fma peak"  # pairs[(preset, "batch")][FMA]: the median FMA peak (multiply-adds/s) of those rounds
    EXP = "exp rate"  # pairs[(preset, "batch")][EXP]: the median exponentials/s of the same rounds

    def pair(self, preset: str, kind: str) -> dict | None:
        """Interleaved medians (s/call) of pymicro.predict and ORT, or None if ORT cannot run."""
        key = (preset, kind)
        if key not in self.pairs:
            case = self.case(preset)
            arg = case.x if kind == "single" else case.X
            try:
                peer = case.peers.get(ORT) or bench.onnxruntime_peer(case.blob)
            except pymicro.BackendError as e:
                case.unavailable[ORT] = str(e)
                self.pairs[key] = None
                return None
            case.peers[ORT] = peer
            cases = {PYMICRO: (partial(pymicro.predict, case.model, threads=1), arg), ORT: (peer, arg)}
            peaks: list[float] = []
            exps: list[float] = []
            if kind == "single":  # the plain calls (one row never splits), for the latency goals
                out = np.empty(case.model.n_classes, np.float32)
                model, into, predict = case.model, case.model.predict_into, pymicro.predict
                cases[self.PLAIN] = (lambda a: predict(model, a), arg)
                cases[INTO] = (lambda a: into(a, out), arg)
            else:  # the FMA peak sampled in the same rounds: the roofline's floor under the same load
                isa = case.model.info.isa
                cases[self.FMA] = (lambda _: peaks.append(pymicro._core.fma_rate(isa, 0.004)), None)
                cases[self.EXP] = (lambda _: exps.append(pymicro._core.exp_rate(isa, 0.004)), None)
            samples = bench.interleaved(cases, **(self.PAIRED_SINGLE if kind == "single" else self.PAIRED_BATCH))
            self.pairs[key] = {r: statistics.median(v) for r, v in samples.items()
                               if r not in (self.FMA, self.EXP)}
            if peaks:
                self.pairs[key][self.FMA] = statistics.median(peaks)
                self.pairs[key][self.EXP] = statistics.median(exps)
        return self.pairs[key]

    def _suite_ratio(self, preset: str, kind: str) -> str:
        pm, ort = self.medians.get((preset, PYMICRO, kind)), self.medians.get((preset, ORT, kind))
        if pm is None or ort is None:
            return ""
        return f"; pytest-benchmark medians: {ort / pm:.2f}×"

    def checks(self) -> list[tuple[str, str, str]]:
        """(budget, status, detail) for every budget.

        status: "pass", "FAIL", "goal not met" (a goal of budgets.py, reported with its
        figure, an XFAIL: see the policy there), "not measured" (ONNX Runtime cannot run
        on this machine: the budget is unverified, which fails the run) or "not run" (its
        budget test was deselected in this session).
        """
        out = []

        def missing(preset, kind):
            if (preset, kind) not in self.pairs:
                return "not run", "its budget test did not run in this session"
            return "not measured", f"{ORT}: {self.cases[preset].unavailable.get(ORT)}"

        single = self.pairs.get(("momentum", "single"))
        name = f"momentum single call ≤ {budgets.MOMENTUM_SINGLE_CALL_MAX_US:g} µs"
        pm_suite = self.medians.get(("momentum", PYMICRO, "single"))
        if single is None and pm_suite is None:
            out.append((name, "not run", "momentum single call was not timed in this session"))
        else:
            # Both medians of this run must meet it: the paired one and the suite's.
            worst = max(v for v in (single and single[PYMICRO], pm_suite) if v is not None)
            ok = worst * 1e6 <= budgets.MOMENTUM_SINGLE_CALL_MAX_US
            shown = [f"{label} {v * 1e6:.3f} µs" for label, v in
                     (("paired median", single and single[PYMICRO]),
                      ("pytest-benchmark median", pm_suite)) if v is not None]
            out.append((name, "pass" if ok else "FAIL", ", ".join(shown)))

        name = (f"momentum single call ≥ {budgets.MOMENTUM_SINGLE_CALL_MIN_SPEEDUP_VS_ORT:g}× "
                "faster than ORT")
        if single is None:
            out.append((name, *missing("momentum", "single")))
        else:
            ratio = single[ORT] / single[PYMICRO]
            ok = ratio >= budgets.MOMENTUM_SINGLE_CALL_MIN_SPEEDUP_VS_ORT
            out.append((name, "pass" if ok else "FAIL",
                        f"{ratio:.1f}× paired (ORT {single[ORT] * 1e6:.3f} µs, pymicro "
                        f"{single[PYMICRO] * 1e6:.3f} µs){self._suite_ratio('momentum', 'single')}"))

        name = f"goal: momentum pymicro.predict single call ≤ {budgets.GOAL_MOMENTUM_SINGLE_CALL_MAX_US:g} µs"
        if single is None:
            out.append((name, *missing("momentum", "single")))
        else:
            us = single[self.PLAIN] * 1e6
            out.append((name, "pass" if us <= budgets.GOAL_MOMENTUM_SINGLE_CALL_MAX_US else "goal not met",
                        f"paired median {us:.3f} µs (pymicro.predict(model, x))"))
        name = f"goal: momentum predict_into single call ≤ {budgets.GOAL_MOMENTUM_PREDICT_INTO_MAX_US:g} µs"
        if single is None:
            out.append((name, *missing("momentum", "single")))
        else:
            us = single[INTO] * 1e6
            out.append((name, "pass" if us <= budgets.GOAL_MOMENTUM_PREDICT_INTO_MAX_US else "goal not met",
                        f"paired median {us:.3f} µs (model.predict_into(x, out))"))

        for preset in pymicro.PRESETS:
            pair = self.pairs.get((preset, "batch"))
            attention = any(layer["kind"] == "attention"
                            for layer in pymicro._core.parse(self.case(preset).blob)["layers"])
            if attention:  # stated against the FMA + exp floor, both rates measured in the same rounds
                name = (f"goal: {preset} batch at ≥ {budgets.GOAL_ATTENTION_BATCH_FLOOR_FRACTION:.0%} "
                        "of the FMA + exp floor")
                if pair is None:
                    out.append((name, *missing(preset, "batch")))
                else:
                    roof = self.roofline(preset)
                    rows_s = len(self.cases[preset].X) / pair[PYMICRO]
                    frac = roof.exp_fraction(rows_s)
                    out.append((name, "pass" if frac >= budgets.GOAL_ATTENTION_BATCH_FLOOR_FRACTION
                                else "goal not met",
                                f"{frac:.0%} of {roof.exp_floor_rows_per_s / 1e6:.1f} M rows/s "
                                f"({roof.macs_per_row:,} multiply-adds/row at {roof.peak_macs / 1e9:.1f} G/s "
                                f"and {roof.exps_per_row} exponentials/row at {roof.exp_rate / 1e9:.2f} G/s, "
                                f"paired medians); {roof.fraction(rows_s):.0%} of the FMA floor alone "
                                f"({roof.floor_rows_per_s / 1e6:.1f} M rows/s)"))
            else:  # dense presets: the 2x ORT is a budget
                name = f"{preset} (dense) batch throughput ≥ {budgets.DENSE_BATCH_MIN_SPEEDUP_VS_ORT:g}× ORT"
                if pair is None:
                    out.append((name, *missing(preset, "batch")))
                else:
                    ratio = pair[ORT] / pair[PYMICRO]
                    out.append((name, "pass" if ratio >= budgets.DENSE_BATCH_MIN_SPEEDUP_VS_ORT else "FAIL",
                                f"{ratio:.2f}× paired"))
            floor = f"{preset} batch throughput ≥ {budgets.BATCH_MIN_SPEEDUP_VS_ORT:g}× ORT"
            goal = f"goal: {preset} batch throughput ≥ {budgets.GOAL_BATCH_SPEEDUP_VS_ORT:g}× ORT"
            pair = self.pairs.get((preset, "batch"))
            if pair is None:
                out += [(floor, *missing(preset, "batch")), (goal, *missing(preset, "batch"))]
                continue
            ratio = pair[ORT] / pair[PYMICRO]
            rows = len(self.cases[preset].X)
            roof = self.roofline(preset)
            need = roof.fraction(budgets.GOAL_BATCH_SPEEDUP_VS_ORT * rows / pair[ORT])
            detail = (f"{ratio:.2f}× paired (pymicro {rows / pair[PYMICRO] / 1e6:.2f} M/s, "
                      f"ORT {rows / pair[ORT] / 1e6:.2f} M/s){self._suite_ratio(preset, 'batch')}; "
                      f"pymicro is at {roof.fraction(rows / pair[PYMICRO]):.0%} of this core's "
                      f"FMA floor, {budgets.GOAL_BATCH_SPEEDUP_VS_ORT:g}× ORT needs {need:.0%}")
            out.append((floor, "pass" if ratio >= budgets.BATCH_MIN_SPEEDUP_VS_ORT else "FAIL", detail))
            out.append((goal, "pass" if ratio >= budgets.GOAL_BATCH_SPEEDUP_VS_ORT else "goal not met", detail))
        return out

    def roofline(self, preset: str) -> bench.Roofline:
        """The preset's roofline, its FMA peak and exp rate those sampled in the batch's own
        rounds where the batch was paired (else measured once for the process)."""
        case = self.case(preset)
        pair = self.pairs.get((preset, "batch"))
        if not pair or self.FMA not in pair:
            return bench.roofline(case.blob, case.model.info.isa)
        return bench.Roofline(case.model.info.isa, pair[self.FMA], bench.multiply_adds_per_row(case.blob),
                              pair[self.EXP], bench.exps_per_row(case.blob))

    def check(self, prefix: str) -> tuple[str, str, str]:
        return next(c for c in self.checks() if c[0].startswith(prefix))

    # ---------------------------------------------------------------- report

    def report(self) -> str:
        try:
            import onnxruntime

            ort_version = onnxruntime.__version__
        except ImportError:
            ort_version = "not installed"
        isa = next(iter(self.cases.values())).model.info.isa if self.cases else "?"
        lines = [
            "# pymicro benchmarks: latest run",
            "",
            f"- When: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M UTC}",
            f"- Machine: {bench.machine_name()}",
            f"- Python {platform.python_version()}, numpy {np.__version__}, "
            f"onnxruntime {ort_version}, pymicro {pymicro.__version__} (ISA {isa})",
            f"- Weights: preset(name).init(seed=0) with perturbed biases; batch {budgets.BATCH} rows; "
            "one thread per runtime; medians of pytest-benchmark rounds.",
            "- pymicro = `pymicro.predict(model, x)`; ONNX Runtime uses io-binding into "
            "preallocated buffers.",
            "",
            bench.format_table(self.rows(), machine=False) if self.rows()
            else "(no pytest-benchmark timings in this session)",
            "",
            "Ratios: this runtime's median time (per call, per batch) ÷ pymicro.predict's, "
            "same run; above 1 means pymicro is faster. pytest-benchmark's loop adds about "
            "80 ns to every single call (it calls f(*args, **kwargs)).",
            "",
            "## Budgets (benchmarks/budgets.py)",
            "",
            "Verdicts use a paired measurement: pymicro.predict and ONNX Runtime sampled in turn "
            f"({self.PAIRED_SINGLE['repeats']} rounds single, {self.PAIRED_BATCH['repeats']} "
            "batch), medians; the pytest-benchmark ratio is shown beside it.",
            "",
            "| budget | status | measured |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {status} | {detail} |" for name, status, detail in self.checks()]
        batch = [p for p in pymicro.PRESETS if self.pairs.get((p, "batch"))]
        if batch:
            roofs = {p: self.roofline(p) for p in batch}
            any_roof = next(iter(roofs.values()))
            lines += [
                "",
                "## Roofline (batch, one thread)",
                "",
                f"The FMA floor is the rows a second that a network's multiply-adds alone allow at "
                f"this core's measured peak ({any_roof.isa} vector FMAs, `pymicro._core.fma_rate`; "
                f"{any_roof.peak_macs / 1e9:.1f} G multiply-adds/s in {batch[0]}'s rounds), before any "
                "exp, transpose or memory traffic. The FMA + exp floor adds the row's exponentials "
                "(every softmax term and sigmoid) at the kernels' measured exp rate "
                f"(`pymicro._core.exp_rate`; {any_roof.exp_rate / 1e9:.2f} G/s in {batch[0]}'s rounds): "
                "they run on the same vector ports, and a softmax cannot skip them. Both rates are "
                "sampled in each preset's own batch rounds. Paired medians as a share of each:",
                "",
                f"| preset | multiply-adds/row | exps/row | FMA floor M/s | FMA + exp floor M/s | "
                f"pymicro | ORT | {budgets.GOAL_BATCH_SPEEDUP_VS_ORT:g}× ORT would be | pymicro, of FMA + exp |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            ]
            for p in batch:
                pair, roof, rows = self.pairs[(p, "batch")], roofs[p], len(self.cases[p].X)
                lines.append(
                    f"| {p} | {roof.macs_per_row:,} | {roof.exps_per_row} | {roof.floor_rows_per_s / 1e6:.1f} | "
                    f"{roof.exp_floor_rows_per_s / 1e6:.1f} | "
                    f"{roof.fraction(rows / pair[PYMICRO]):.0%} | {roof.fraction(rows / pair[ORT]):.0%} | "
                    f"{roof.fraction(budgets.GOAL_BATCH_SPEEDUP_VS_ORT * rows / pair[ORT]):.0%} | "
                    f"{roof.exp_fraction(rows / pair[PYMICRO]):.0%} |")
        return "\n".join(lines) + "\n"


_LAB = pytest.StashKey[Lab]()


@pytest.fixture(scope="session")
def lab(request) -> Lab:
    the_lab = Lab()
    request.config.stash[_LAB] = the_lab
    with bench.single_thread_blas() as note:  # every runtime on one thread, numpy's BLAS too
        the_lab.blas_note = note
        yield the_lab


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["pymicro_machine"] = bench.machine_name()
    machine_info["pymicro_isa"] = pymicro._core.isas()[0]


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    the_lab = config.stash.get(_LAB, None)
    if the_lab is None or not (the_lab.medians or the_lab.pairs):
        return
    text = the_lab.report()
    terminalreporter.write_sep("=", "pymicro benchmarks")
    for line in text.splitlines():
        terminalreporter.write_line(line)
    try:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text, encoding="utf-8")
        terminalreporter.write_line(f"(written to {RESULTS})")
    except OSError as e:  # a read-only checkout still gets the table on the terminal
        terminalreporter.write_line(f"(could not write {RESULTS}: {e})", red=True)
