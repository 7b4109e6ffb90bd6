"""A syndicate ledger in SQLite: members, contributions, allocations, profit shares, withdrawals.

    from pymicro.live.syndicate import Ledger
    ledger = Ledger("syndicates.db")
    ledger.create_syndicate("micro_traders", "Micro Model Syndicate")
    alice = ledger.add_member("micro_traders", "Alice", "a@example.org", "trader", 10_000)
    allocs = ledger.allocate("micro_traders", [{"id": "es", "p_up": .45, "p_down": .3, "move": .001}])
    ledger.settle("micro_traders", allocs[0].seq, pnl=12.34)   # paper P&L, shared pro rata
    ledger.balances("micro_traders"); ledger.verify()

Money is kept in integer cents, so shares add up exactly. **Settlement** closes an
allocation with its P&L (``settle``; the MCP tool ``settle_syndicate_allocation``; ``pymicro
syndicate DB settle``): the P&L is split among the members pro rata to their capital **just
before the allocation** (the capital it put at risk: a member who joined or added money
later takes no share of it), the cents left by rounding going to the largest remainders
(ties: the first member id in sort order), and each share is credited to that member's capital. An
allocation is settled once: the check and the writes are one transaction, and a unique
index on the settlement entry refuses a second one even from another process.

Auditable and safe under ``kill -9``:

* ``entries`` is append-only: triggers refuse ``UPDATE`` and ``DELETE``. Each entry carries
  the SHA-256 of the previous entry's hash and its own fields, so an edit made behind the
  triggers' back breaks the chain, and :meth:`Ledger.verify` says where.
* Each operation (a contribution, a settlement with its shares, ...) is one ``BEGIN
  IMMEDIATE`` transaction with its ``ops`` row (kind, number of entries) written in the same
  transaction: after a crash an operation is there whole or not at all (WAL,
  ``synchronous=FULL``). :meth:`Ledger.verify` checks every op is complete, every
  settlement's shares sum to its P&L and equal the split recomputed from the ledger (the
  capital before its allocation), and each settles an allocation of its own syndicate.

Allocations are paper: they record how much of the syndicate's capital a strategy assigns
to an opportunity (``strategy="kelly_criterion"``: :func:`pymicro.live.sizing.kelly_fraction`
times ``fraction``, each capped at ``max_position`` of capital, all together at
``max_total``); no order leaves the machine.
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from pymicro.errors import InputError
from pymicro.live.sizing import kelly_fraction

GENESIS = "0" * 64
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
STRATEGIES = ("kelly_criterion", "equal")
KINDS = ("contribution", "withdrawal", "allocation", "pnl", "profit_share")

SCHEMA = """
CREATE TABLE IF NOT EXISTS syndicates (id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS members (
  syndicate_id TEXT NOT NULL REFERENCES syndicates(id), member_id TEXT NOT NULL, name TEXT NOT NULL,
  email TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL, PRIMARY KEY (syndicate_id, member_id));
CREATE TABLE IF NOT EXISTS ops (op INTEGER PRIMARY KEY AUTOINCREMENT, syndicate_id TEXT NOT NULL,
  kind TEXT NOT NULL, n_entries INTEGER NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, op INTEGER NOT NULL, syndicate_id TEXT NOT NULL, ts REAL NOT NULL,
  kind TEXT NOT NULL, member_id TEXT, cents INTEGER NOT NULL, ref TEXT, note TEXT,
  prev_hash TEXT NOT NULL, hash TEXT NOT NULL UNIQUE);
CREATE UNIQUE INDEX IF NOT EXISTS entries_one_settlement ON entries (syndicate_id, ref) WHERE kind = 'pnl';
CREATE TRIGGER IF NOT EXISTS entries_append_only_u BEFORE UPDATE ON entries
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_d BEFORE DELETE ON entries
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ops_append_only_u BEFORE UPDATE ON ops
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS ops_append_only_d BEFORE DELETE ON ops
  BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
"""


@dataclass(frozen=True)
class Entry:
    seq: int
    op: int
    syndicate_id: str
    ts: float
    kind: str
    member_id: str | None
    amount: float
    ref: str | None
    note: str | None


@dataclass(frozen=True)
class Balance:
    member_id: str
    name: str
    role: str
    contributed: float
    withdrawn: float
    profit: float
    capital: float
    share: float


def _hash(prev: str, seq: int, op: int, syndicate: str, ts: float, kind: str, member, cents: int, ref, note) -> str:
    text = "|".join([prev, str(seq), str(op), syndicate, repr(ts), kind, member or "", str(cents), ref or "",
                     note or ""])
    return hashlib.sha256(text.encode()).hexdigest()


def _cents(amount: float, what: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise InputError(f"{what} must be a finite number, got {amount!r}")
    return int(round(amount * 100))


def _check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise InputError(f"{what} must match {ID_PATTERN.pattern}, got {value!r}")
    return value


def split_cents(total: int, weights: list[int]) -> list[int]:
    """``total`` cents split pro rata to ``weights`` (>= 0), exactly: largest remainders, ties to the first."""
    s = sum(weights)
    if s <= 0:
        raise InputError("nothing to share a P&L over: no member has capital")
    sign = -1 if total < 0 else 1
    t = abs(total)
    base = [t * w // s for w in weights]
    rest = t - sum(base)
    order = sorted(range(len(weights)), key=lambda i: (-(t * weights[i] % s), i))
    for i in order[:rest]:
        base[i] += 1
    return [sign * b for b in base]


class Ledger:
    """The ledger in one SQLite file (see the module doc). One connection per instance."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- writing: one operation, one transaction ----------------------------------------------

    def _op(self, syndicate: str, kind: str, rows) -> list[int]:
        """Append ``rows`` (kind, member, cents, ref, note) as one operation; returns their seqs.
        ``rows`` may be a function of the connection, called inside the transaction (so what it
        reads cannot change before the rows are written)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if callable(rows):
                rows = rows(db)
            now = time.time()
            op = db.execute("INSERT INTO ops (syndicate_id, kind, n_entries, ts) VALUES (?, ?, ?, ?)",
                            (syndicate, kind, len(rows), now)).lastrowid
            seqs = []
            for k, member, cents, ref, note in rows:
                prev, seq = db.execute("SELECT hash, seq FROM entries ORDER BY seq DESC LIMIT 1").fetchone() or (
                    GENESIS, 0)
                seq += 1
                db.execute("INSERT INTO entries (seq, op, syndicate_id, ts, kind, member_id, cents, ref, note, "
                           "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (seq, op, syndicate, now, k, member, cents, ref, note, prev,
                            _hash(prev, seq, op, syndicate, now, k, member, cents, ref, note)))
                seqs.append(seq)
            db.execute("COMMIT")
            return seqs
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _syndicate(self, syndicate: str) -> str:
        _check_id(syndicate, "syndicate_id")
        if self._db.execute("SELECT 1 FROM syndicates WHERE id = ?", (syndicate,)).fetchone() is None:
            raise InputError(f"no syndicate {syndicate!r}")
        return syndicate

    def create_syndicate(self, syndicate: str, name: str) -> None:
        _check_id(syndicate, "syndicate_id")
        if not isinstance(name, str) or not 0 < len(name) <= 200:
            raise InputError("name must be 1..200 characters")
        try:
            self._db.execute("INSERT INTO syndicates (id, name, created) VALUES (?, ?, ?)", (syndicate, name, time.time()))
        except sqlite3.IntegrityError:
            raise InputError(f"syndicate {syndicate!r} exists") from None

    def add_member(self, syndicate: str, name: str, email: str, role: str = "member",
                   initial_contribution: float = 0.0) -> str:
        """Add a member (and their first contribution, in the same transaction); returns the member id."""
        self._syndicate(syndicate)
        cents = _cents(initial_contribution, "initial_contribution")
        if cents < 0:
            raise InputError("initial_contribution must be >= 0")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            n = db.execute("SELECT COUNT(*) FROM members WHERE syndicate_id = ?", (syndicate,)).fetchone()[0]
            member = f"m{n + 1}"
            db.execute("INSERT INTO members VALUES (?, ?, ?, ?, ?, ?)", (syndicate, member, name, email, role, time.time()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if cents:
            self._op(syndicate, "contribution", [("contribution", member, cents, None, None)])
        return member

    def _member(self, syndicate: str, member: str) -> None:
        if self._db.execute("SELECT 1 FROM members WHERE syndicate_id = ? AND member_id = ?",
                            (syndicate, member)).fetchone() is None:
            raise InputError(f"syndicate {syndicate!r} has no member {member!r}")

    def contribute(self, syndicate: str, member: str, amount: float) -> int:
        self._syndicate(syndicate)
        self._member(syndicate, member)
        cents = _cents(amount)
        if cents <= 0:
            raise InputError("a contribution must be > 0")
        return self._op(syndicate, "contribution", [("contribution", member, cents, None, None)])[0]

    def withdraw(self, syndicate: str, member: str, amount: float) -> int:
        self._syndicate(syndicate)
        self._member(syndicate, member)
        cents = _cents(amount)
        if cents <= 0:
            raise InputError("a withdrawal must be > 0")
        have = self._capital_cents(syndicate).get(member, 0)
        if cents > have:
            raise InputError(f"member {member} has {have / 100:.2f} of capital; cannot withdraw {cents / 100:.2f}")
        return self._op(syndicate, "withdrawal", [("withdrawal", member, -cents, None, None)])[0]

    def allocate(self, syndicate: str, opportunities: list[dict], *, strategy: str = "kelly_criterion",
                 fraction: float = 0.25, max_position: float = 0.2, max_total: float = 1.0) -> list[Entry]:
        """Assign capital to ``opportunities`` (dicts with ``id``, ``p_up``, ``p_down``, ``move``, optional
        ``cost``); one allocation entry each with a non-zero amount (signed: < 0 is a short)."""
        self._syndicate(syndicate)
        if strategy not in STRATEGIES:
            raise InputError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if not (0 < fraction <= 1 and 0 < max_position <= 1 and 0 < max_total <= 1):
            raise InputError("fraction, max_position and max_total must be in (0, 1]")
        capital = sum(self._capital_cents(syndicate).values()) - self._open_cents(syndicate)
        weights = []
        for o in opportunities:
            _check_id(o.get("id"), "opportunity id")
            if strategy == "equal":
                w = 1.0 / len(opportunities)
            else:
                w = fraction * kelly_fraction(float(o["p_up"]), float(o["p_down"]), float(o["move"]),
                                              float(o.get("cost", 0.0)))
            weights.append(max(-max_position, min(max_position, w)))
        gross = sum(abs(w) for w in weights)
        if gross > max_total:
            weights = [w * max_total / gross for w in weights]
        rows = []
        for o, w in zip(opportunities, weights):
            cents = int(w * max(capital, 0))
            if cents:
                rows.append(("allocation", None, cents, o["id"], f"{strategy} weight {w:.6f}"))
        if not rows:
            return []
        seqs = self._op(syndicate, "allocation", rows)
        return [self.entry(s) for s in seqs]

    def settle(self, syndicate: str, allocation_seq: int, pnl: float, note: str | None = None) -> list[Entry]:
        """Close an allocation with its (paper) P&L: one ``pnl`` entry and one ``profit_share``
        per member with capital just before the allocation, pro rata to it, in one transaction.
        Returns the entries written (the P&L first)."""
        self._syndicate(syndicate)
        if isinstance(allocation_seq, bool) or not isinstance(allocation_seq, int) or allocation_seq < 1:
            raise InputError(f"allocation_seq must be a ledger entry number >= 1, got {allocation_seq!r}")
        cents = _cents(pnl, "pnl")
        if abs(cents) > 10**15:
            raise InputError(f"pnl {pnl!r} is out of range")
        if note is not None and (not isinstance(note, str) or len(note) > 500):
            raise InputError("note must be a string of at most 500 characters")

        def rows(db):
            a = db.execute("SELECT kind, syndicate_id FROM entries WHERE seq = ?", (allocation_seq,)).fetchone()
            if a is None or tuple(a) != ("allocation", syndicate):
                raise InputError(f"entry {allocation_seq} is not an allocation of {syndicate!r}")
            if db.execute("SELECT 1 FROM entries WHERE syndicate_id = ? AND kind = 'pnl' AND ref = ?",
                          (syndicate, str(allocation_seq))).fetchone():
                raise InputError(f"allocation {allocation_seq} is already settled")
            members, shares = self._shares(db, syndicate, allocation_seq, cents)
            out = [("pnl", None, cents, str(allocation_seq), note)]
            return out + [("profit_share", m, s, str(allocation_seq), None) for m, s in zip(members, shares)]

        try:
            seqs = self._op(syndicate, "pnl", rows)
        except sqlite3.IntegrityError:  # another process settled it between our check and write
            raise InputError(f"allocation {allocation_seq} is already settled") from None
        return [self.entry(s) for s in seqs]

    @staticmethod
    def _shares(db, syndicate: str, allocation_seq: int, cents: int) -> tuple[list[str], list[int]]:
        """The members with capital just before entry ``allocation_seq`` and their split of ``cents``."""
        capital = {m: int(c) for m, c in db.execute(
            "SELECT member_id, SUM(cents) FROM entries WHERE syndicate_id = ? AND seq < ? AND kind IN "
            "('contribution', 'withdrawal', 'profit_share') GROUP BY member_id", (syndicate, allocation_seq))}
        members = sorted(m for m, c in capital.items() if c > 0)
        return members, split_cents(cents, [capital[m] for m in members])

    def open_allocations(self, syndicate: str) -> list[Entry]:
        """The allocations of ``syndicate`` not settled yet, oldest first."""
        self._syndicate(syndicate)
        rows = self._db.execute("SELECT seq FROM entries a WHERE syndicate_id = ? AND kind = 'allocation' AND NOT "
                                "EXISTS (SELECT 1 FROM entries p WHERE p.syndicate_id = a.syndicate_id AND "
                                "p.kind = 'pnl' AND p.ref = CAST(a.seq AS TEXT)) ORDER BY seq", (syndicate,))
        return [self.entry(s) for (s,) in rows.fetchall()]

    # -- reading -------------------------------------------------------------------------------

    def _capital_cents(self, syndicate: str) -> dict[str, int]:
        rows = self._db.execute("SELECT member_id, SUM(cents) FROM entries WHERE syndicate_id = ? AND kind IN "
                                "('contribution', 'withdrawal', 'profit_share') GROUP BY member_id", (syndicate,))
        return {m: int(c) for m, c in rows}

    def _open_cents(self, syndicate: str) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(ABS(cents)), 0) FROM entries a WHERE syndicate_id = ? AND "
                               "kind = 'allocation' AND NOT EXISTS (SELECT 1 FROM entries p WHERE p.kind = 'pnl' "
                               "AND p.ref = CAST(a.seq AS TEXT))", (syndicate,)).fetchone()
        return int(row[0])

    def entry(self, seq: int) -> Entry:
        r = self._db.execute("SELECT seq, op, syndicate_id, ts, kind, member_id, cents, ref, note FROM entries "
                             "WHERE seq = ?", (seq,)).fetchone()
        if r is None:
            raise InputError(f"no ledger entry {seq}")
        return Entry(r[0], r[1], r[2], r[3], r[4], r[5], r[6] / 100, r[7], r[8])

    def entries(self, syndicate: str, limit: int = 1000) -> list[Entry]:
        self._syndicate(syndicate)
        rows = self._db.execute("SELECT seq FROM entries WHERE syndicate_id = ? ORDER BY seq DESC LIMIT ?",
                                (syndicate, int(limit))).fetchall()
        return [self.entry(s) for (s,) in reversed(rows)]

    def balances(self, syndicate: str) -> list[Balance]:
        self._syndicate(syndicate)
        sums = {}
        for m, kind, c in self._db.execute("SELECT member_id, kind, SUM(cents) FROM entries WHERE syndicate_id = ? "
                                           "AND member_id IS NOT NULL GROUP BY member_id, kind", (syndicate,)):
            sums.setdefault(m, {})[kind] = int(c)
        out = []
        members = self._db.execute("SELECT member_id, name, role FROM members WHERE syndicate_id = ? ORDER BY "
                                   "created, member_id", (syndicate,)).fetchall()
        caps = {m: sum(sums.get(m, {}).values()) for m, _, _ in members}
        total = sum(c for c in caps.values() if c > 0)
        for m, name, role in members:
            s = sums.get(m, {})
            out.append(Balance(m, name, role, s.get("contribution", 0) / 100, -s.get("withdrawal", 0) / 100,
                               s.get("profit_share", 0) / 100, caps[m] / 100,
                               caps[m] / total if total > 0 and caps[m] > 0 else 0.0))
        return out

    def capital(self, syndicate: str) -> float:
        self._syndicate(syndicate)
        return sum(self._capital_cents(syndicate).values()) / 100

    def verify(self) -> int:
        """Check the whole ledger; returns the entries checked or raises InputError naming the first fault."""
        prev, n = GENESIS, 0
        for row in self._db.execute("SELECT seq, op, syndicate_id, ts, kind, member_id, cents, ref, note, "
                                    "prev_hash, hash FROM entries ORDER BY seq"):
            seq, op, syn, ts, kind, member, cents, ref, note, p, h = row
            if p != prev or h != _hash(prev, seq, op, syn, ts, kind, member, cents, ref, note):
                raise InputError(f"ledger entry {seq} does not match the hash chain")
            if kind not in KINDS:
                raise InputError(f"ledger entry {seq} has an unknown kind {kind!r}")
            prev, n = h, n + 1
        bad = self._db.execute("SELECT o.op FROM ops o LEFT JOIN entries e ON e.op = o.op GROUP BY o.op "
                               "HAVING COUNT(e.seq) != o.n_entries LIMIT 1").fetchone()
        if bad:
            raise InputError(f"operation {bad[0]} is incomplete")
        bad = self._db.execute("SELECT p.seq FROM entries p WHERE p.kind = 'pnl' AND p.cents != (SELECT "
                               "COALESCE(SUM(s.cents), 0) FROM entries s WHERE s.kind = 'profit_share' AND "
                               "s.op = p.op) LIMIT 1").fetchone()
        if bad:
            raise InputError(f"the profit shares of entry {bad[0]} do not add up to its P&L")
        for seq, op, syn, ref, cents in self._db.execute(
                "SELECT seq, op, syndicate_id, ref, cents FROM entries WHERE kind = 'pnl' ORDER BY seq").fetchall():
            alloc = self._db.execute("SELECT kind, syndicate_id FROM entries WHERE seq = ?",
                                     (int(ref) if str(ref).isdigit() else -1,)).fetchone()
            if alloc is None or tuple(alloc) != ("allocation", syn) or int(ref) >= seq:
                raise InputError(f"ledger entry {seq} settles {ref!r}, which is not an earlier allocation of {syn!r}")
            members, shares = self._shares(self._db, syn, int(ref), cents)
            have = self._db.execute("SELECT member_id, cents FROM entries WHERE op = ? AND kind = 'profit_share' "
                                    "ORDER BY seq", (op,)).fetchall()
            if [tuple(h) for h in have] != list(zip(members, shares)):
                raise InputError(f"the profit shares of entry {seq} are not its P&L split pro rata to the capital "
                                 f"before allocation {ref}")
        return n


__all__ = ["Balance", "Entry", "Ledger", "split_cents"]
