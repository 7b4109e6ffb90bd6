"""Random kill -9 trials against the model registry (not a pytest suite: a script).

    python benchmarks/registry_kill_trials.py [trials=100]

Each trial starts one writer process that adds and removes models in a loop, kills it with
SIGKILL after a random delay, then inspects the store *before* reopening it through
``Registry`` (whose open sweeps orphans): a trial is inconsistent if a row names a blob file
that is missing. Orphan files (no row) are counted apart: they are allowed, and the next
open must remove them. ``tests/test_registry.py`` kills deterministically at every step;
this script hunts for the steps nobody named.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

WRITER = textwrap.dedent("""
    import sys
    import pymicro
    from pymicro.store.registry import Registry
    reg = Registry(sys.argv[1])
    blobs = [pymicro.freeze(pymicro.preset("momentum").init(seed=i)) for i in range(4)]
    print("ready", flush=True)
    while True:
        ids = [reg.add(b, "w", report={"i": i}) for i, b in enumerate(blobs)]
        for i in ids:
            reg.remove(i)
""")


def trial(root: Path, rng: random.Random) -> tuple[bool, int, bool]:
    """(consistent, orphans before reopening, no orphans after reopening)."""
    from pymicro.store.registry import Registry

    p = subprocess.Popen([sys.executable, "-P", "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "ready\n"
    time.sleep(rng.uniform(0.0, 0.3))
    p.kill()
    p.wait()
    con = sqlite3.connect(root / "index.sqlite3")
    rows = {r[0] for r in con.execute("SELECT blob_file FROM models")}
    con.close()
    files = {f.name for f in (root / "blobs").iterdir()}
    consistent = rows <= files
    orphans = len(files - rows)
    Registry(root)
    clean = {f.name for f in (root / "blobs").iterdir()} == rows
    return consistent, orphans, clean


def main(trials: int = 100) -> int:
    rng = random.Random(0)
    bad = orphaned = unswept = 0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(trials):
            ok, orphans, clean = trial(Path(tmp) / f"s{k}", rng)
            bad += not ok
            orphaned += orphans > 0
            unswept += not clean
    print(f"{trials} kill trials: {bad} left a listed model without its blob, {orphaned} left orphan files "
          f"; {trials - unswept} of {trials} stores held no orphan after reopening")
    return 1 if bad or unswept else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100))
