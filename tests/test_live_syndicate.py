"""The syndicate ledger: exact pro-rata shares in cents, append-only and hash-chained entries,
and whole operations only after kill -9."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pymicro.errors import InputError
from pymicro.live.syndicate import Ledger, split_cents


@pytest.fixture
def ledger(tmp_path):
    lg = Ledger(tmp_path / "s.db")
    lg.create_syndicate("micro_traders", "Micro Model Syndicate")
    yield lg
    lg.close()


def test_split_cents_is_exact_and_pro_rata():
    assert split_cents(100, [1, 1, 1]) == [34, 33, 33]
    assert split_cents(-100, [1, 1, 1]) == [-34, -33, -33]
    assert split_cents(1001, [5000, 3000, 2000]) == [501, 300, 200]
    with pytest.raises(InputError):
        split_cents(5, [0, 0])


def test_contributions_allocations_profit_shares_and_withdrawals(ledger):
    a = ledger.add_member("micro_traders", "Alice", "a@example.org", "trader", 6000)
    b = ledger.add_member("micro_traders", "Bob", "b@example.org", "member", 4000)
    assert ledger.capital("micro_traders") == 10_000
    allocs = ledger.allocate("micro_traders", [{"id": "es", "p_up": 0.45, "p_down": 0.30, "move": 0.002},
                                               {"id": "eurusd", "p_up": 0.30, "p_down": 0.45, "move": 0.002},
                                               {"id": "noise", "p_up": 0.33, "p_down": 0.33, "move": 0.002}],
                             fraction=0.25, max_position=0.2)
    assert [(e.ref, e.amount) for e in allocs] == [("es", 2000.0), ("eurusd", -2000.0)]  # capped at 20 %, no edge: none
    shares = ledger.settle("micro_traders", allocs[0].seq, pnl=100.01)
    assert [(e.kind, e.member_id, e.amount) for e in shares] == [
        ("pnl", None, 100.01), ("profit_share", a, 60.01), ("profit_share", b, 40.0)]
    with pytest.raises(InputError, match="already settled"):
        ledger.settle("micro_traders", allocs[0].seq, pnl=1)
    ledger.settle("micro_traders", allocs[1].seq, pnl=-50)
    bal = {x.member_id: x for x in ledger.balances("micro_traders")}
    assert bal[a].capital == pytest.approx(6000 + 60.01 - 30.0) and bal[b].capital == pytest.approx(4000 + 40 - 20)
    ledger.withdraw("micro_traders", b, 1000)
    with pytest.raises(InputError, match="cannot withdraw"):
        ledger.withdraw("micro_traders", b, 10_000)
    assert ledger.balances("micro_traders")[1].withdrawn == 1000
    assert ledger.verify() == len(ledger.entries("micro_traders"))
    for bad in [lambda: ledger.contribute("micro_traders", "m9", 5), lambda: ledger.contribute("nope", a, 5),
                lambda: ledger.contribute("micro_traders", a, float("nan")),
                lambda: ledger.allocate("micro_traders", [], strategy="martingale")]:
        with pytest.raises(InputError):
            bad()


def test_entries_are_append_only_and_tampering_breaks_the_chain(ledger, tmp_path):
    a = ledger.add_member("micro_traders", "Alice", "a@example.org", "trader", 100)
    ledger.contribute("micro_traders", a, 50)
    raw = sqlite3.connect(tmp_path / "s.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("UPDATE entries SET cents = 999999 WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute("DELETE FROM entries")
    raw.execute("DROP TRIGGER entries_append_only_u")  # someone goes around the triggers
    raw.execute("UPDATE entries SET cents = 999999 WHERE seq = 1")
    raw.commit()
    with pytest.raises(InputError, match="entry 1 does not match"):
        ledger.verify()


CHILD = """
import sys
from pymicro.live.syndicate import Ledger
lg = Ledger(sys.argv[1])
lg.create_syndicate("s", "S")
members = [lg.add_member("s", f"M{i}", "x@example.org", "member", 1000 + i) for i in range(20)]
print("ready", flush=True)
i = 0
while True:
    seq = lg.allocate("s", [{"id": "es", "p_up": 0.5, "p_down": 0.3, "move": 0.01}], max_position=0.01)[0].seq
    lg.settle("s", seq, pnl=(i % 7 - 3) * 1.37)
    lg.contribute("s", members[i % 20], 1.0)
    i += 1
    print(i, flush=True)
"""


@pytest.mark.slow
def test_kill_9_leaves_whole_operations_only(tmp_path):
    db = tmp_path / "k.db"
    child = subprocess.Popen([sys.executable, "-P", "-c", CHILD, str(db)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    done = 0
    deadline = time.monotonic() + 60
    while done < 30 and time.monotonic() < deadline:
        done = int(child.stdout.readline())
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert done >= 30
    lg = Ledger(db)
    n = lg.verify()  # the chain, whole operations, shares adding up to each P&L
    settled = [e for e in lg.entries("s", limit=100_000) if e.kind == "pnl"]
    assert len(settled) >= done  # every round the child reported is there
    total = sum(b.capital for b in lg.balances("s"))
    assert total == pytest.approx(lg.capital("s")) and n > 20 * 2
    lg.contribute("s", "m1", 1.0)  # and the ledger carries on
    assert lg.verify() == n + 1


# --------------------------------------------------------------------------- settlement


def test_a_settlement_shares_the_pnl_by_the_capital_at_risk(ledger):
    """Shares follow the capital just before the allocation: a member who joins (or adds money)
    between the allocation and its settlement takes no part of that P&L."""
    a = ledger.add_member("micro_traders", "Alice", "a@example.org", "trader", 3000)
    b = ledger.add_member("micro_traders", "Bob", "b@example.org", "member", 1000)
    alloc = ledger.allocate("micro_traders", [{"id": "es", "p_up": 0.6, "p_down": 0.2, "move": 0.01}])[0]
    c = ledger.add_member("micro_traders", "Carol", "c@example.org", "member", 50_000)  # too late for 'es'
    ledger.contribute("micro_traders", b, 10_000)
    assert [e.seq for e in ledger.open_allocations("micro_traders")] == [alloc.seq]
    out = ledger.settle("micro_traders", alloc.seq, pnl=-10.01, note="es closed at the next bar")
    assert [(e.kind, e.member_id, e.amount) for e in out] == [
        ("pnl", None, -10.01), ("profit_share", a, -7.51), ("profit_share", b, -2.5)]
    assert out[0].note == "es closed at the next bar" and all(e.ref == str(alloc.seq) for e in out)
    bal = {x.member_id: x for x in ledger.balances("micro_traders")}
    assert (bal[a].capital, bal[b].capital, bal[c].capital) == (2992.49, 10997.5, 50_000.0)
    assert bal[a].profit == -7.51 and ledger.open_allocations("micro_traders") == []
    assert ledger.verify() == len(ledger.entries("micro_traders"))


def test_settling_twice_or_something_else_is_refused_and_writes_nothing(ledger, tmp_path):
    ledger.add_member("micro_traders", "Alice", "a@example.org", "trader", 1000)
    alloc = ledger.allocate("micro_traders", [{"id": "es", "p_up": 0.6, "p_down": 0.2, "move": 0.01}])[0]
    ledger.settle("micro_traders", alloc.seq, pnl=5)
    n = len(ledger.entries("micro_traders"))
    other = Ledger(tmp_path / "s.db")  # a second process on the same file: the unique index refuses too
    with pytest.raises(InputError, match="already settled"):
        other.settle("micro_traders", alloc.seq, pnl=5)
    raw = sqlite3.connect(tmp_path / "s.db", isolation_level=None)  # autocommit: holds no lock after the refusal
    with pytest.raises(sqlite3.IntegrityError):  # even behind the class's back
        raw.execute("INSERT INTO entries (seq, op, syndicate_id, ts, kind, member_id, cents, ref, note, prev_hash, "
                    "hash) VALUES (99, 99, 'micro_traders', 0, 'pnl', NULL, 1, ?, NULL, 'x', 'y')", (str(alloc.seq),))
    for bad, match in [((1,), "not an allocation"), ((alloc.seq + 100,), "not an allocation"),
                       ((0,), "entry number"), ((True,), "entry number")]:
        with pytest.raises(InputError, match=match):
            ledger.settle("micro_traders", *bad, pnl=1)
    with pytest.raises(InputError, match="pnl"):
        ledger.settle("micro_traders", alloc.seq, pnl=float("inf"))
    ledger.create_syndicate("other", "Other")
    with pytest.raises(InputError, match="not an allocation of 'other'"):
        ledger.settle("other", alloc.seq, pnl=1)
    assert len(ledger.entries("micro_traders")) == n and ledger.verify() == n


def test_verify_recomputes_each_settlements_split(ledger, tmp_path):
    a = ledger.add_member("micro_traders", "Alice", "a@example.org", "trader", 1000)
    ledger.add_member("micro_traders", "Bob", "b@example.org", "member", 1000)
    alloc = ledger.allocate("micro_traders", [{"id": "es", "p_up": 0.6, "p_down": 0.2, "move": 0.01}])[0]
    ledger.settle("micro_traders", alloc.seq, pnl=10)
    # a forged settlement: the shares add up, but Alice takes it all; chain and op counts made consistent
    raw = sqlite3.connect(tmp_path / "s.db")
    raw.execute("DROP TRIGGER entries_append_only_u")
    shares = raw.execute("SELECT seq FROM entries WHERE kind = 'profit_share' ORDER BY seq").fetchall()
    raw.execute("UPDATE entries SET cents = 1000 WHERE seq = ?", shares[0])
    raw.execute("UPDATE entries SET cents = 0 WHERE seq = ?", shares[1])
    from pymicro.live.syndicate import GENESIS, _hash
    prev = GENESIS
    for row in raw.execute("SELECT seq, op, syndicate_id, ts, kind, member_id, cents, ref, note FROM entries "
                           "ORDER BY seq").fetchall():
        h = _hash(prev, *row)
        raw.execute("UPDATE entries SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, row[0]))
        prev = h
    raw.commit()
    with pytest.raises(InputError, match="not its P&L split pro rata"):
        ledger.verify()
    assert a == "m1"


def test_the_syndicate_command(tmp_path, capsys):
    from pymicro.cli import main

    db = str(tmp_path / "cli.db")
    assert main(["syndicate", db, "create", "micro_traders", "--name", "Micro Model Syndicate"]) == 0
    assert main(["syndicate", db, "add", "micro_traders", "Alice", "a@example.org", "--contribution", "6000"]) == 0
    assert main(["syndicate", db, "add", "micro_traders", "Bob", "b@example.org", "--contribution", "4000"]) == 0
    assert main(["syndicate", db, "allocate", "micro_traders", "--opportunity", "es:0.45:0.30:0.002"]) == 0
    out = capsys.readouterr().out
    assert "allocation" in out and "2000.00" in out
    seq = Ledger(db).open_allocations("micro_traders")[0].seq
    assert main(["syndicate", db, "settle", "micro_traders", str(seq), "--pnl", "100.01"]) == 0
    out = capsys.readouterr().out
    assert "60.01" in out and "40.00" in out and "verified" in out
    assert main(["syndicate", db, "settle", "micro_traders", str(seq), "--pnl", "1"]) == 2
    assert "already settled" in capsys.readouterr().err
    assert main(["syndicate", db, "withdraw", "micro_traders", "m2", "500"]) == 0
    assert main(["syndicate", db, "balances", "micro_traders"]) == 0
    out = capsys.readouterr().out
    assert "6060.01" in out and "3540.00" in out
    assert main(["syndicate", db, "verify"]) == 0
    assert "7 entries" in capsys.readouterr().out
    assert main(["syndicate", db, "allocate", "micro_traders", "--opportunity", "es:0.4"]) == 2
