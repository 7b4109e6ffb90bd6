"""Registry versions, aliases, lineage, rollback and retention; kill -9 at every new step; a
reader process that must never see a half-moved alias."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import pytest
from test_registry import assert_consistent, blob_of

from pymicro.errors import RegistryError
from pymicro.store.registry import CRASH_STEPS, Registry


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(tmp_path / "store")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_versions_aliases_lineage(reg):
    v1 = reg.add_version(blob_of(1), "trader", data_window={"start": "2010-01-04", "end": "2015-12-31"},
                         config={"epochs": 30}, aliases=["champion"])
    v2 = reg.add_version(blob_of(2), "trader", parent=1, data_window={"start": "2016-01-04", "end": "2016-06-30"},
                         config={"epochs": 5, "mode": "finetune"}, aliases=["challenger", "canary"])
    assert (v1.version, v2.version) == (1, 2)
    assert v1.aliases == ("champion",) and v2.aliases == ("canary", "challenger")
    assert v2.parent_version == 1 and v2.parent_hash == v1.content_hash == sha(blob_of(1))
    assert v2.data_window["end"] == "2016-06-30" and v2.config["mode"] == "finetune"
    assert reg.get_version("trader", "challenger").model_id == v2.model_id
    assert reg.read_blob(reg.get_version("trader", "champion").model_id) == blob_of(1)
    assert [v.version for v in reg.lineage("trader", 2)] == [2, 1]
    assert reg.aliases("trader") == {"canary": 2, "challenger": 2, "champion": 1}
    assert reg.names() == ["trader"]
    # the same bytes again are the same version; the aliases still move
    assert reg.add_version(blob_of(1), "trader", aliases=["canary"]).version == 1
    assert reg.aliases("trader")["canary"] == 1 and len(reg.versions("trader")) == 2
    with pytest.raises(RegistryError, match="no version 9"):
        reg.add_version(blob_of(3), "trader", parent=9)
    with pytest.raises(RegistryError, match="no alias"):
        reg.get_version("trader", "nope")
    for bad in ("Champion", "", "a b", "../x", 3.5):
        with pytest.raises(RegistryError, match="alias"):
            reg.set_alias("trader", bad, 1)
    with pytest.raises(RegistryError, match="version 1 of 'trader'"):
        reg.remove(v1.model_id)  # versions leave through retain()
    assert len(reg.versions("trader")) == 2


def test_promote_and_rollback_restore_the_exact_blob(reg):
    reg.add_version(blob_of(1), "m", aliases=["champion"])
    reg.add_version(blob_of(2), "m", parent=1, aliases=["challenger"])
    promoted = reg.promote("m")
    assert promoted.version == 2 and reg.aliases("m") == {"champion": 2}  # challenger cleared
    reg.add_version(blob_of(3), "m", parent=2, aliases=["challenger"])
    reg.promote("m", reason="beat the champion")
    assert reg.get_version("m", "champion").content_hash == sha(blob_of(3))

    back = reg.rollback("m")
    assert back.version == 2 and sha(reg.read_blob(back.model_id)) == sha(blob_of(2)) == back.content_hash
    back = reg.rollback("m")
    assert back.version == 1 and reg.read_blob(reg.get_version("m", "champion").model_id) == blob_of(1)
    with pytest.raises(RegistryError, match="no earlier version"):
        reg.rollback("m")
    kinds = [(e["kind"], e["version"]) for e in reg.alias_history("m", "champion")]
    assert kinds == [("move", 1), ("move", 2), ("move", 3), ("rollback", 2), ("rollback", 1)]
    with pytest.raises(RegistryError, match="no challenger"):
        reg.promote("m")


def test_retention_keeps_aliased_recent_and_rollback_targets(reg):
    for i in range(1, 9):
        reg.add_version(blob_of(i), "r", parent=i - 1 or None)
    reg.set_alias("r", "champion", 2)
    reg.set_alias("r", "champion", 3)  # rollback would return to 2
    reg.set_alias("r", "pinned", 1)
    retired = reg.retain("r", keep_last=2)
    # kept: the 2 newest (7, 8), aliased (1, 3), rollback target (2), parents of those (6, 1, 2)
    assert [v.version for v in retired] == [4, 5]
    assert [v.version for v in reg.versions("r")] == [1, 2, 3, 6, 7, 8]
    assert_consistent(reg.root)  # blobs of retired versions are gone, every kept one loads
    assert [v.version for v in reg.lineage("r", 8)] == [8, 7, 6]
    assert reg.get_version("r", 6).parent_hash == sha(blob_of(5))  # the retired parent's hash stays
    assert reg.rollback("r").version == 2
    assert reg.events("r", "retain")[-1]["payload"]["retired"] == [4, 5]
    with pytest.raises(RegistryError, match="keep_last"):
        reg.retain("r", keep_last=0)


def test_retention_runs_on_every_new_version(tmp_path, monkeypatch):
    reg = Registry(tmp_path / "store", keep_last=2)
    reg.add_version(blob_of(1), "a", aliases=["champion"])
    for i in range(2, 8):  # each fine-tuned from the one before, none promoted
        reg.add_version(blob_of(i), "a", parent=i - 1, aliases=["challenger"])
        kept = [v.version for v in reg.versions("a")]
        # champion 1; the two newest (i - 1 is also the challenger's rollback target); their parents
        assert kept == sorted({1, max(1, i - 2), i - 1, i}), (i, kept)
    assert reg.rollback("a", "challenger").version == 6  # a rollback target is never retired
    reg.add_version(blob_of(8), "a", parent=6, aliases=["challenger"])
    # newest 7, 8; champion 1; challenger 8 and its rollback target 6; the parent of 6 (5) and of 7, 8 (6)
    assert [v.version for v in reg.versions("a")] == [1, 5, 6, 7, 8]
    assert_consistent(reg.root)
    assert len(list((reg.root / "blobs").glob("*.pmb"))) == 5
    off = Registry(tmp_path / "off", keep_last=0)
    for i in range(1, 5):
        off.add_version(blob_of(i), "b")
    assert len(off.versions("b")) == 4
    monkeypatch.setenv("PYMICRO_KEEP_LAST", "1")
    assert Registry(tmp_path / "env").keep_last == 1
    monkeypatch.setenv("PYMICRO_KEEP_LAST", "many")
    with pytest.raises(RegistryError, match="PYMICRO_KEEP_LAST"):
        Registry(tmp_path / "env")
    with pytest.raises(RegistryError, match="keep_last"):
        Registry(tmp_path / "env", keep_last=-1)


def test_events_store_json_payloads(reg):
    reg.add_version(blob_of(1), "e")
    seq = reg.log_event("e", "drift", {"psi": {"ret_1": 0.31}}, version=1)
    reg.log_event("e", "decision", {"promoted": False})
    assert [e["kind"] for e in reg.events("e")] == ["drift", "decision"]
    assert reg.events("e", "drift")[0] == {**reg.events("e", "drift")[0], "seq": seq, "version": 1}
    assert reg.events("e", "drift")[0]["payload"]["psi"]["ret_1"] == 0.31
    with pytest.raises(RegistryError, match="JSON"):
        reg.log_event("e", "drift", {"x": float("nan")})


# ------------------------------------------------------------------ kill -9 at every new step

VCRASHER = textwrap.dedent("""
    import os, sys
    import pymicro
    from pymicro.store.registry import Registry
    root, op, step = sys.argv[1], sys.argv[2], sys.argv[3]
    reg = Registry(root)
    os.environ["PYMICRO_REGISTRY_CRASH_AT"] = step
    if op == "add_version":
        reg.add_version(pymicro.freeze(pymicro.preset("reversal").init(seed=7)), "v", parent=2,
                        report={"epochs": 3}, aliases=["challenger"])
    elif op == "promote":
        reg.promote("v")
    elif op == "rollback":
        reg.rollback("v")
    elif op == "retain":
        reg.retain("v", keep_last=1)
    elif op == "auto-retain":  # add_version's automatic retention
        Registry(root, keep_last=1).add_version(pymicro.freeze(pymicro.preset("reversal").init(seed=7)), "v",
                                                aliases=["champion"])
    print("survived")
""")

VERSION_CASES = [
    *[("add_version", s) for s in ("add:report-written", "add:blob-written", "add:row-inserted",
                                   "version:row-inserted", "version:committed")],
    *[("promote", s) for s in ("alias:half-moved", "alias:committed")],
    *[("rollback", s) for s in ("alias:half-moved", "alias:committed")],
]


@pytest.mark.parametrize("op, step", VERSION_CASES)
def test_a_kill_at_any_version_step_leaves_a_consistent_store(tmp_path, op, step):
    assert step in CRASH_STEPS
    reg = Registry(tmp_path / "store")
    reg.add_version(blob_of(1), "v", aliases=["champion"])
    reg.add_version(blob_of(2), "v", parent=1, aliases=["challenger"])
    reg.add_version(blob_of(3), "v", parent=2)
    if op == "rollback":
        reg.promote("v")
    before = reg.aliases("v")
    out = subprocess.run([sys.executable, "-P", "-c", VCRASHER, str(reg.root), op, step], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == -9 and "survived" not in out.stdout, (out.returncode, out.stderr[-2000:])
    again = assert_consistent(reg.root)
    versions = {v.version: v for v in again.versions("v")}
    after = again.aliases("v")
    committed = step.endswith("committed")
    assert after == before or committed  # all of a move, or none of it
    for alias, version in after.items():  # every alias resolves to a version whose blob loads
        record = again.get_version("v", alias)
        assert record.version == version and sha(again.read_blob(record.model_id)) == record.content_hash
    if op == "add_version":
        assert (4 in versions) == committed and (after.get("challenger") == 4) == committed
    if op == "promote":
        assert after == ({"champion": 2} if committed else {"champion": 1, "challenger": 2})
    if op == "rollback":
        assert after["champion"] == (1 if committed else 2)


@pytest.mark.parametrize("step", ["retain:rows-deleted", "retain:committed", "retain:blob-unlinked"])
def test_a_kill_while_retiring_keeps_rows_and_blobs_together(tmp_path, step):
    reg = Registry(tmp_path / "store")
    for i in range(1, 5):
        reg.add_version(blob_of(i), "v", report={"i": i})
    reg.set_alias("v", "champion", 4)
    out = subprocess.run([sys.executable, "-P", "-c", VCRASHER, str(reg.root), "retain", step],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr[-2000:]
    again = assert_consistent(reg.root)
    kept = [v.version for v in again.versions("v")]
    assert kept == ([1, 2, 3, 4] if step == "retain:rows-deleted" else [4])
    assert again.read_blob(again.get_version("v", "champion").model_id) == blob_of(4)


@pytest.mark.parametrize("step", ["version:committed", "retain:rows-deleted", "retain:committed",
                                  "retain:blob-unlinked"])
def test_a_kill_during_automatic_retention_keeps_rows_and_blobs_together(tmp_path, step):
    reg = Registry(tmp_path / "store")
    for i in range(1, 4):
        reg.add_version(blob_of(i), "v", report={"i": i})
    out = subprocess.run([sys.executable, "-P", "-c", VCRASHER, str(reg.root), "auto-retain", step],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr[-2000:]
    again = assert_consistent(reg.root)
    kept = [v.version for v in again.versions("v")]
    # the new version 4 committed first; retention (keep 1, champion 4) retires 1-3 or nothing
    assert kept == ([1, 2, 3, 4] if step in ("version:committed", "retain:rows-deleted") else [4])
    assert again.get_version("v", "champion").version == 4
    Registry(reg.root, keep_last=1).add_version(blob_of(9), "v", aliases=["champion"])  # the next one retires
    assert [v.version for v in assert_consistent(reg.root).versions("v")] == [4, 5]


# ------------------------------------------------------------------ a reader never sees a half-moved alias

ALIAS_READER = textwrap.dedent("""
    import hashlib, sys
    from pymicro.store.registry import Registry
    reg = Registry(sys.argv[1])
    print("ready", flush=True)
    reads = torn = wrong = 0
    while sys.stdin.readline().strip() == "go":
        for _ in range(40):
            aliases = reg.aliases("live")
            reads += 1
            if aliases.get("challenger") is not None and aliases.get("challenger") == aliases.get("champion"):
                torn += 1  # promote() half done: both aliases on one version
            champion = reg.get_version("live", "champion")
            if hashlib.sha256(reg.read_blob(champion.model_id)).hexdigest() != champion.content_hash:
                wrong += 1
        print("done", flush=True)
    print(reads, torn, wrong)
""")


def test_a_reader_never_sees_a_half_moved_alias(reg):
    """promote() sets the champion and clears the challenger in two statements of one
    transaction: a reader between them would see both aliases on one version."""
    reg.add_version(blob_of(1), "live", aliases=["champion"])
    reader = subprocess.Popen([sys.executable, "-P", "-c", ALIAS_READER, str(reg.root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "ready\n"
    for i in range(2, 14):
        reg.add_version(blob_of(i), "live", parent=i - 1, aliases=["challenger"])
        reader.stdin.write("go\n")
        reader.stdin.flush()
        reg.promote("live")
        if i % 3 == 0:
            reg.rollback("live")
        assert reader.stdout.readline() == "done\n"
    out, err = reader.communicate("stop\n", timeout=120)
    assert reader.returncode == 0, err
    reads, torn, wrong = map(int, out.split())
    assert reads == 12 * 40 and torn == 0 and wrong == 0
