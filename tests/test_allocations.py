"""No heap allocation per prediction, counted at the C heap.

tracemalloc (tests/test_runtime.py) sees only Python's allocator; the core, pybind11
and wasmtime allocate through malloc. Here a tiny LD_PRELOAD shim
(tests/native/count_malloc.c, built with the C compiler the package needs anyway)
counts every malloc, calloc, realloc, posix_memalign and aligned_alloc of a child
process that calls predict_into in a loop.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="LD_PRELOAD and glibc's dlsym: Linux")

CHILD = r"""
import ctypes, json, sys
import numpy as np
import pymicro
from pymicro.runtime import bench

count = ctypes.CDLL(None).pm_malloc_count
count.restype = ctypes.c_ulonglong
from pymicro.runtime.ensemble import freeze_ensemble

result = {}
# an ensemble container: its whole run (gathers, members, combiner) allocates nothing either
ensemble = freeze_ensemble([bench.preset_blob("momentum"), bench.preset_blob("sentiment")],
                           columns=[list(range(24)), list(range(10, 58))])
for backend in ("native", "wasm"):
    for name in ("momentum", "sentiment", "ensemble"):
        model = pymicro.load(ensemble if name == "ensemble" else bench.preset_blob(name), backend)
        for n in (1, 64, 5000):  # one row; a batch under the GIL; a batch without it
            x = np.random.default_rng(0).standard_normal((n, model.input_size), dtype=np.float32)
            x = x[0] if n == 1 else x
            out = np.empty(((model.n_classes,) if n == 1 else (n, model.n_classes)), np.float32)
            for _ in range(50):  # warm: per-thread scratch, lazy set-up
                model.predict_into(x, out)
            calls = [None] * (2000 if n < 5000 else 100)
            before = count()
            for _ in calls:
                model.predict_into(x, out)
            middle = count()
            for _ in calls:
                model.predict(x)
            after = count()
            result[f"{backend}/{name}/{n}"] = [(middle - before) / len(calls),
                                               (after - middle) / len(calls)]
json.dump(result, sys.stdout)
"""


def test_predict_into_makes_no_heap_allocation_native_or_wasm(tmp_path):
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc or gcc) on PATH: pymicro's build needs one", pytrace=False)
    shim = tmp_path / "count_malloc.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(shim), str(HERE / "native" / "count_malloc.c"),
                    "-ldl"], check=True, capture_output=True, timeout=120)
    done = subprocess.run([sys.executable, "-P", "-c", CHILD], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={**os.environ, "LD_PRELOAD": str(shim)})
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert len(counts) == 18
    for case, (into, plain) in counts.items():
        assert into == 0, f"{case}: predict_into made {into} heap allocations per call"
    # The control: predict allocates its (large) output array through malloc, and the shim sees it.
    assert counts["native/sentiment/5000"][1] >= 1 and counts["wasm/sentiment/5000"][1] >= 1, counts


THREADED_CHILD = r"""
import ctypes, json, sys
import numpy as np
import pymicro
from pymicro.runtime import bench

count = ctypes.CDLL(None).pm_malloc_count
count.restype = ctypes.c_ulonglong
result = {}
model = pymicro.load(bench.preset_blob("sentiment"))
x = np.random.default_rng(0).standard_normal((40_000, model.input_size), dtype=np.float32)
out = np.empty((len(x), model.n_classes), np.float32)
for threads in (2, 3, None):  # None: the default, which splits a batch this large
    for _ in range(20):  # warm: the pool's workers and their scratch
        model.predict_into(x, out, threads=threads)
    before = count()
    for _ in range(50):
        model.predict_into(x, out, threads=threads)
    result[str(threads)] = (count() - before) / 50
json.dump(result, sys.stdout)
"""


def test_threaded_predict_into_makes_no_heap_allocation(tmp_path):
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (cc or gcc) on PATH: pymicro's build needs one", pytrace=False)
    shim = tmp_path / "count_malloc.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(shim), str(HERE / "native" / "count_malloc.c"),
                    "-ldl"], check=True, capture_output=True, timeout=120)
    done = subprocess.run([sys.executable, "-P", "-c", THREADED_CHILD], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "LD_PRELOAD": str(shim)})
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert set(counts) == {"2", "3", "None"}
    assert all(c == 0 for c in counts.values()), counts
