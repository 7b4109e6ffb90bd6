"""The package's architecture, checked: layers (import-linter), no cycles, a light `import pymicro`.

The layers are declared once, in pyproject.toml ([tool.importlinter]); README "Architecture"
draws them. These tests fail the build on an upward import, an import cycle, a submodule that
imports the package root, or a heavy dependency pulled into `import pymicro`.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

import pymicro

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(pymicro.__file__).resolve().parent
LINT = shutil.which("lint-imports", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


def _lint(config: Path, cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    assert LINT, "import-linter is a test dependency: pip install '.[test]'"
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([LINT, "--config", str(config), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    r = _lint(ROOT / "pyproject.toml", ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def _planted_copy(tmp_path: Path, plant: str | None) -> Path:
    """The package's sources renamed `pmplant` (static analysis only), with one import planted."""
    dst = tmp_path / "pmplant"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.wasm", "__pycache__", "datasets"))
    for p in dst.rglob("*.py"):
        p.write_text(re.sub(r"\bpymicro\b", "pmplant", p.read_text()))
    if plant:
        spec = dst / "runtime" / "spec.py"
        spec.write_text(spec.read_text() + f"\n{plant}\n")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contract = cfg["contracts"][0]
    layers = ",\n".join(f'  "{layer.replace("pymicro", "pmplant")}"' for layer in contract["layers"])
    (tmp_path / "lint.toml").write_text(
        f'[tool.importlinter]\nroot_package = "pmplant"\n\n[[tool.importlinter.contracts]]\n'
        f'name = "planted"\ntype = "layers"\nlayers = [\n{layers}\n]\n')
    return tmp_path


@pytest.mark.parametrize("plant, culprit", [
    ("import pmplant.cli", "pmplant.runtime.spec -> pmplant.cli"),                       # runtime -> cli
    ("from pmplant.training import train", "pmplant.runtime.spec -> pmplant.training.train"),  # a lazy one too
])
def test_an_upward_import_breaks_the_contract(tmp_path, plant, culprit):
    where = _planted_copy(tmp_path, plant)
    r = _lint(where / "lint.toml", where, pythonpath=where)
    assert r.returncode != 0, r.stdout
    assert "BROKEN" in r.stdout and culprit in r.stdout, r.stdout


def test_the_unplanted_copy_keeps_the_contract(tmp_path):
    """The harness above fails because of the plant, not because of the copy."""
    where = _planted_copy(tmp_path, None)
    r = _lint(where / "lint.toml", where, pythonpath=where)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_import_cycles():
    """No module reaches itself through other modules (the package root is left out: it
    re-exports the public names and is imported by nobody but users and the CLI)."""
    graph = grimp.build_graph("pymicro")
    graph.remove_module("pymicro")
    cycles = []
    for a in sorted(graph.modules):
        for b in graph.find_modules_directly_imported_by(a):
            if b.startswith(a + ".") or a.startswith(b + "."):
                continue
            chain = graph.find_shortest_chain(importer=b, imported=a)
            if chain:
                cycles.append((a,) + chain)
    assert not cycles, cycles


def test_submodules_do_not_import_the_package_root():
    """`from pymicro import load` inside the package hides the real dependency (and a cycle);
    only the compiled core is taken from the root, and the CLI (a user of the public API)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "__init__.py" or rel.startswith("cli/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "pymicro" for a in node.names):
                offenders.append(f"{rel}:{node.lineno} import pymicro")
            if isinstance(node, ast.ImportFrom) and node.module == "pymicro":
                bad = [a.name for a in node.names if a.name not in ("_core", "metrics", "plots", "tables", "errors")]
                if bad:
                    offenders.append(f"{rel}:{node.lineno} from pymicro import {bad}")
    assert not offenders, offenders


def test_import_pymicro_stays_light():
    """The runtime path needs numpy and the compiled core only."""
    code = ("import sys, pymicro; heavy = ('pandas', 'tinygrad', 'matplotlib', 'mcp', 'wasmtime', 'onnx', "
            "'onnxruntime', 'scipy', 'tqdm', 'pydantic'); print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_lazy_names_resolve_after_a_plain_import():
    code = ("import pymicro; print(pymicro.validate.__module__, pymicro.ValidationReport.__name__, "
            "pymicro.sandbox.__name__, pymicro.market.__name__)")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pymicro.evaluation.validation", "ValidationReport", "pymicro.runtime.sandbox",
                                  "pymicro.market"]
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        pymicro.nonexistent  # noqa: B018
