"""The model registry: add/get/list/remove, atomic files, confinement to the store, processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from netgen import perturbed

import pymicro
from pymicro.errors import BlobError, PymicroError, RegistryError
from pymicro.store.registry import ID_RE, Registry, default_root, slug


def blob_of(seed: int = 0, preset: str = "momentum") -> bytes:
    return pymicro.freeze(perturbed(pymicro.preset(preset), seed=seed) if seed else pymicro.preset(preset).init(0))


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(tmp_path / "store")


def test_add_get_list_load_remove(reg):
    blob = blob_of()
    model_id = reg.add(blob, "momentum", metrics={"accuracy": 0.41}, report={"epochs": [1, 2]})
    assert ID_RE.fullmatch(model_id) and model_id.startswith("momentum-")
    record = reg.get(model_id)
    assert (record.name, record.params, record.input_size, record.n_classes) == ("momentum", 1107, 24, 3)
    assert record.status == "registered" and record.metrics == {"accuracy": 0.41}
    assert record.blob_size == len(blob) and record.content_hash == pymicro.load(blob).info.content_hash
    assert reg.blob_path(model_id).read_bytes() == blob
    assert reg.blob_path(model_id).parent == reg.root / "blobs"
    assert reg.read_report(model_id) == {"epochs": [1, 2]}
    x = np.linspace(-1, 1, 24, dtype=np.float32)
    np.testing.assert_array_equal(reg.load(model_id).predict(x), pymicro.load(blob).predict(x))
    assert reg.load(model_id, backend="reference").backend == "reference"

    other = reg.add(blob_of(seed=3, preset="reversal"), "rev")
    assert [r.id for r in reg.list()] == [model_id, other]
    assert model_id in reg and "nope-deadbeef" not in reg

    assert reg.set_status(model_id, "validated").status == "validated"
    assert [r.id for r in reg.list(status="validated")] == [model_id]
    assert reg.set_metrics(model_id, {"sharpe": 0.2}).metrics == {"accuracy": 0.41, "sharpe": 0.2}

    removed = reg.remove(model_id)
    assert removed.id == model_id and [r.id for r in reg.list()] == [other]
    assert not (reg.root / "blobs" / f"{model_id}.pmb").exists()
    assert not (reg.root / "reports" / f"{model_id}.json").exists()
    with pytest.raises(RegistryError, match="unknown model id"):
        reg.get(model_id)
    with pytest.raises(RegistryError, match="unknown model id"):
        reg.remove(model_id)


def test_same_bytes_same_id_and_default_name(reg):
    blob = blob_of()
    first = reg.add(blob, "m1")
    assert reg.add(blob, "m1", metrics={"a": 1}) == first
    assert reg.get(first).metrics == {"a": 1} and len(reg.list()) == 1
    assert reg.add(blob, "m2") != first  # another name: another record of the same bytes
    assert reg.add(blob).startswith("momentum-")  # the blob's own name
    assert slug("My trader v2!") == "My-trader-v2" and slug("///") == "model"


def test_persists_across_instances(reg):
    model_id = reg.add(blob_of(), "keep", report="# report\n")
    again = Registry(reg.root)
    assert again.get(model_id) == reg.get(model_id)
    assert again.read_report(model_id) == "# report\n"


def test_files_are_written_atomically(reg, monkeypatch):
    model_id = reg.add(blob_of())
    leftovers = [p.name for p in (reg.root / "blobs").iterdir() if p.name != f"{model_id}.pmb"]
    assert leftovers == []

    # A failure at the rename leaves no temp file, no blob and no row.
    import pymicro.runtime.blob

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pymicro.runtime.blob.os, "replace", broken_replace)
    with pytest.raises(RegistryError, match="No space left"):
        reg.add(blob_of(seed=5), "full")
    monkeypatch.undo()
    assert [r.id for r in reg.list()] == [model_id]
    assert sorted(p.name for p in (reg.root / "blobs").iterdir()) == [f"{model_id}.pmb"]


def test_refuses_bad_blobs_names_metrics_and_statuses(reg):
    good = blob_of()
    with pytest.raises(BlobError):
        reg.add(good[:-1])
    with pytest.raises(RegistryError, match="bytes"):
        reg.add("not bytes")
    for name in ("../x", "a/b", "", "-lead", "é", "a" * 49, "a\0b", "a.b"):
        with pytest.raises(RegistryError, match="not allowed"):
            reg.add(good, name)
    with pytest.raises(RegistryError, match="JSON"):
        reg.add(good, "m", metrics={"x": float("nan")})
    with pytest.raises(RegistryError, match="JSON"):
        reg.add(good, "m", metrics={"x": object()})
    with pytest.raises(RegistryError, match="status"):
        reg.add(good, "m", status="bogus")
    model_id = reg.add(good, "m")
    with pytest.raises(RegistryError, match="status"):
        reg.set_status(model_id, "../../x")
    assert reg.list() and all(isinstance(e, type) for e in (RegistryError,))
    assert issubclass(RegistryError, PymicroError) and issubclass(RegistryError, ValueError)


BAD_IDS = [
    "../x", "..", ".", "", "/", "/etc/passwd", "../../etc/passwd-deadbeef", "momentum-1b925ee6/../../x",
    "momentum-1b925ee6/", "C:\\Windows\\x-deadbeef", "\\\\server\\share-deadbeef", "a\0-deadbeef",
    "momentum-1b925ee6\0", "momentum-1b925ee6\n", " momentum-1b925ee6", "é-deadbeef",
    "momentum-１b925ee6", "mom\u202eentum-deadbeef", "momentum-1B925EE6", "momentum-1b925ee",
    "-deadbeef", "_x-deadbeef", "x" * 200 + "-deadbeef", "momentum.pmb", "%2e%2e%2fx-deadbeef",
    None, 5, 1.5, b"momentum-1b925ee6", ["momentum-1b925ee6"], {"id": 1},
]


@pytest.mark.parametrize("bad", BAD_IDS, ids=[repr(b)[:30] for b in BAD_IDS])
def test_bad_ids_are_refused_everywhere(reg, bad):
    reg.add(blob_of())
    for call in (reg.get, reg.blob_path, reg.read_blob, reg.load, reg.remove, reg.report_path,
                 lambda i: reg.set_status(i, "validated"), lambda i: reg.set_metrics(i, {})):
        with pytest.raises(RegistryError, match="malformed|must be a string"):
            call(bad)
    assert len(reg.list()) == 1


def test_error_messages_do_not_echo_huge_ids(reg):
    with pytest.raises(RegistryError) as e:
        reg.get("x" * 100_000)
    assert len(str(e.value)) < 400


def _set_blob_file(reg, model_id, value):
    with sqlite3.connect(reg.index_path) as con:
        con.execute("UPDATE models SET blob_file = ? WHERE id = ?", (value, model_id))


@pytest.mark.parametrize("stored", ["../../outside.pmb", "/etc/passwd", "../index.sqlite3",
                                    "sub/momentum-1b925ee6.pmb", "momentum-1b925ee6.pmb\0.txt", ".."])
def test_a_tampered_index_cannot_point_outside(reg, stored):
    model_id = reg.add(blob_of())
    _set_blob_file(reg, model_id, stored)
    for call in (reg.blob_path, reg.read_blob, reg.load, reg.remove):
        with pytest.raises(RegistryError):
            call(model_id)


def test_symlink_escape_is_refused(reg, tmp_path):
    model_id = reg.add(blob_of())
    outside = tmp_path / "outside.pmb"
    outside.write_bytes(blob_of())
    path = reg.root / "blobs" / f"{model_id}.pmb"
    path.unlink()
    path.symlink_to(outside)
    for call in (reg.blob_path, reg.read_blob, reg.load):
        with pytest.raises(RegistryError, match="symbolic link"):
            call(model_id)
    # a store whose blob folder is a link out of it is refused as a whole
    root2 = tmp_path / "store2"
    root2.mkdir()
    (root2 / "blobs").symlink_to(tmp_path)
    with pytest.raises(RegistryError, match="symbolic link"):
        Registry(root2)


def test_a_modified_blob_is_detected(reg):
    model_id = reg.add(blob_of())
    path = reg.blob_path(model_id)
    data = bytearray(path.read_bytes())
    data[-20] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="content hash"):
        reg.load(model_id)


def test_default_root_follows_pymicro_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PYMICRO_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / "models"
    assert Registry().root == (tmp_path / "home" / "models").resolve()
    monkeypatch.delenv("PYMICRO_HOME")
    assert default_root() == pymicro.store.registry.Path.home() / ".pymicro" / "models"


WRITER = textwrap.dedent("""
    import sys, time, pymicro
    from pymicro.store.registry import Registry
    reg = Registry(sys.argv[1])
    k = int(sys.argv[2])
    blobs = [pymicro.freeze(pymicro.preset("momentum").init(seed=100 * k + i + 1)) for i in range(20)]
    print("ready", flush=True)
    sys.stdin.readline()  # both processes start adding at once
    ids = []
    for i, blob in enumerate(blobs):
        ids.append(reg.add(blob, f"proc{k}", metrics={"i": i}))
        reg.list()
        time.sleep(0.01)  # let the other process in between adds
    ids.append(reg.add(pymicro.freeze(pymicro.preset("momentum").init(seed=0)), "shared"))
    print(" ".join(ids))
""")


def test_two_processes_add_concurrently(reg):
    procs = [subprocess.Popen([sys.executable, "-P", "-c", WRITER, str(reg.root), str(k)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in (1, 2)]
    assert [p.stdout.readline() for p in procs] == ["ready\n", "ready\n"]
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    ids = [out.split() for out, _ in outs]
    assert ids[0][-1] == ids[1][-1]  # the same blob under the same name: one record
    expected = set(ids[0]) | set(ids[1])
    assert len(expected) == 41
    records = reg.list()
    assert {r.id for r in records} == expected and len(records) == 41
    for record in records:
        assert len(reg.read_blob(record.id)) == record.blob_size
    assert sorted(p.name for p in (reg.root / "blobs").iterdir()) == sorted(f"{i}.pmb" for i in expected)
    assert json.loads(json.dumps(records[0].to_dict()))["id"] == records[0].id


def test_threads_share_one_registry(reg):
    from concurrent.futures import ThreadPoolExecutor

    blobs = [pymicro.freeze(pymicro.preset("momentum").init(seed=i + 1)) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda b: reg.add(b, "threaded"), blobs))
        loaded = list(pool.map(lambda i: reg.load(i).info.content_hash, ids))
    assert len(set(ids)) == 16 and {r.id for r in reg.list()} == set(ids)
    assert loaded == [reg.get(i).content_hash for i in ids]


def test_models_command(tmp_path, capsys):
    from pymicro.cli import main

    path = tmp_path / "m.pmb"
    path.write_bytes(blob_of())
    store = str(tmp_path / "store")
    assert main(["models", "--store", store, "add", str(path), "--name", "cli", "--metrics", '{"a": 1}']) == 0
    model_id = capsys.readouterr().out.strip()
    assert model_id.startswith("cli-")
    assert main(["models", "--store", store, "list"]) == 0 and model_id in capsys.readouterr().out
    assert main(["models", "--store", store, "status", model_id, "validated"]) == 0
    assert main(["models", "--store", store, "show", model_id]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["status"] == "validated"
    assert main(["models", "--store", store, "rm", "../x"]) == 2
    assert "malformed" in capsys.readouterr().err
    assert main(["models", "--store", store, "rm", model_id]) == 0


# ------------------------------------------------------------------ crashes (kill -9 at every step)

CRASHER = textwrap.dedent("""
    import os, signal, sys
    import pymicro
    import pymicro.runtime.blob
    from pymicro.store.registry import Registry
    root, op, step = sys.argv[1], sys.argv[2], sys.argv[3]
    reg = Registry(root)
    if step == "add:blob-tmp":  # inside the atomic write: the temp file is complete, not yet renamed
        def die(src, dst):
            if str(dst).endswith(".pmb"):
                os.kill(os.getpid(), signal.SIGKILL)
            return os.rename(src, dst)
        pymicro.runtime.blob.os.replace = die
    else:
        os.environ["PYMICRO_REGISTRY_CRASH_AT"] = step
    if op == "add":
        reg.add(pymicro.freeze(pymicro.preset("reversal").init(seed=7)), "fresh", report={"epochs": 3})
    elif op == "readd":  # the same bytes again with a report of another kind: the old one is replaced
        reg.add(pymicro.freeze(pymicro.preset("momentum").init(seed=0)), "kept", report="# text now")
    else:
        reg.remove(op)
    print("survived")
""")


def assert_consistent(root) -> Registry:
    """Reopen the store: every listed model's blob and report load, and no file is left
    that no row names (blobs, reports, temp files)."""
    again = Registry(root)
    records = again.list()
    for r in records:
        assert again.load(r.id).info.content_hash == r.content_hash
        if r.report_file:
            assert again.read_report(r.id) is not None
    assert sorted(p.name for p in (again.root / "blobs").iterdir()) == sorted(r.blob_file for r in records)
    assert sorted(p.name for p in (again.root / "reports").iterdir()) == sorted(
        r.report_file for r in records if r.report_file)
    return again


@pytest.mark.parametrize("op, step", [
    *[("add", s) for s in ("add:blob-tmp", "add:report-written", "add:blob-written", "add:row-inserted",
                           "add:committed")],
    *[("readd", s) for s in ("add:report-written", "add:committed")],
    *[("remove", s) for s in ("remove:row-deleted", "remove:committed", "remove:blob-unlinked", "remove:done")],
])
def test_a_kill_at_any_step_leaves_a_consistent_store(tmp_path, op, step):
    from pymicro.store.registry import CRASH_STEPS

    assert step in CRASH_STEPS or step == "add:blob-tmp"
    reg = Registry(tmp_path / "store")
    kept = reg.add(blob_of(), "kept", report={"epochs": 2})
    doomed = reg.add(blob_of(seed=2), "doomed", report="# notes")
    arg = doomed if op == "remove" else op
    out = subprocess.run([sys.executable, "-P", "-c", CRASHER, str(reg.root), arg, step], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == -9 and "survived" not in out.stdout, (out.returncode, out.stderr[-2000:])
    again = assert_consistent(reg.root)
    ids = {r.id for r in again.list()}
    assert kept in ids
    if op == "remove":  # the deletion commits at the commit, not before
        assert (doomed in ids) == (step == "remove:row-deleted")
    else:
        assert doomed in ids
    if op == "add":
        assert any(i.startswith("fresh-") for i in ids) == (step == "add:committed")
    if op == "readd":  # the old report, or the new one, never none
        assert again.read_report(kept) in ({"epochs": 2}, "# text now")


def test_open_sweeps_orphans_and_temp_files_only(reg):
    model_id = reg.add(blob_of(), "kept", report={"a": 1})
    orphans = [reg.root / "blobs" / "gone-0123abcd.pmb", reg.root / "blobs" / ".kept-x.pmb.k2j3.tmp",
               reg.root / "reports" / "gone-0123abcd.md", reg.root / "reports" / ".kept-x.json.abc.tmp"]
    for p in orphans:
        p.write_bytes(b"left by a crash")
    (reg.root / "blobs" / "README.txt").write_text("not ours: kept")
    again = Registry(reg.root)
    assert sorted(again.swept) == sorted(f"{p.parent.name}/{p.name}" for p in orphans)
    assert not any(p.exists() for p in orphans)
    assert (reg.root / "blobs" / "README.txt").exists()
    assert again.read_blob(model_id) == blob_of() and again.read_report(model_id) == {"a": 1}
    assert Registry(reg.root).swept == []


def test_replacing_a_report_removes_the_old_file(reg):
    model_id = reg.add(blob_of(), "r", report={"a": 1})
    assert reg.add(blob_of(), "r", report="# now text") == model_id
    assert reg.read_report(model_id) == "# now text"
    assert sorted(p.name for p in (reg.root / "reports").iterdir()) == [f"{model_id}.md"]


READER = textwrap.dedent("""
    import sys
    from pymicro.errors import RegistryError
    from pymicro.store.registry import Registry
    reg = Registry(sys.argv[1])
    print("ready", flush=True)
    seen = bad = 0
    while sys.stdin.readline().strip() == "go":
        for r in reg.list():
            try:
                reg.read_blob(r.id)
                seen += 1
            except RegistryError:
                if r.id in reg:  # still listed, yet its blob is gone
                    bad += 1
        print("done", flush=True)
    print(seen, bad)
""")


def test_readers_never_see_a_listed_model_without_its_blob(reg):
    """A reader lists and loads while this process adds and removes: a listed model whose
    blob is gone must be gone from the index too by the time the reader looks again."""
    blobs = [blob_of(seed=i + 1) for i in range(6)]
    reader = subprocess.Popen([sys.executable, "-P", "-c", READER, str(reg.root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "ready\n"
    for _ in range(15):
        ids = [reg.add(b, "churn") for b in blobs]
        reader.stdin.write("go\n")
        reader.stdin.flush()
        for i in ids:
            reg.remove(i)
        assert reader.stdout.readline() == "done\n"
    out, err = reader.communicate("stop\n", timeout=120)
    seen, bad = map(int, out.split())
    assert reader.returncode == 0, err
    assert bad == 0 and seen > 0
