"""A short atheris run of pymicro.load + predict (tests/fuzz/fuzz_load_atheris.py).

Any exception other than a PymicroError, or a prediction that is not a
probability, makes the fuzzer exit non-zero with the input saved.
"""

import subprocess
import sys
from pathlib import Path

import atheris  # noqa: F401  (in the [test] extra: a broken install fails here, never skips)
from fuzz.fuzz_load_atheris import write_seeds

SCRIPT = Path(__file__).resolve().parent / "fuzz" / "fuzz_load_atheris.py"


def test_atheris_load_and_predict(tmp_path):
    corpus = tmp_path / "corpus"
    write_seeds(corpus)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "-runs=3000", "-seed=1", "-keep_seed=1", "-timeout=20",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    crashes = sorted(p.name for p in tmp_path.glob("crash-*"))
    assert result.returncode == 0, f"crashing inputs in {tmp_path}: {crashes}\n{result.stderr[-6000:]}"
    assert "Done 3000 runs" in result.stderr, result.stderr[-3000:]
