"""``pymicro syndicate DB ACTION``: the paper syndicate ledger (SQLite) from the command line."""

from __future__ import annotations

from pymicro.errors import InputError
from pymicro.tables import table


def _entries(entries) -> str:
    return table(["seq", "kind", "member", "amount", "ref", "note"],
                 [[e.seq, e.kind, e.member_id or "-", f"{e.amount:.2f}", e.ref or "-", e.note or ""] for e in entries],
                 right={0, 3})


def _balances(lg, syndicate: str) -> str:
    return table(["member", "name", "role", "contributed", "withdrawn", "profit", "capital", "share"],
                 [[b.member_id, b.name, b.role, f"{b.contributed:.2f}", f"{b.withdrawn:.2f}", f"{b.profit:.2f}",
                   f"{b.capital:.2f}", f"{b.share:.2%}"] for b in lg.balances(syndicate)], right={3, 4, 5, 6, 7})


def _opportunity(text: str) -> dict:
    parts = text.split(":")
    if len(parts) not in (4, 5):
        raise InputError(f"--opportunity {text!r}: expected ID:P_UP:P_DOWN:MOVE[:COST], e.g. es:0.45:0.30:0.002")
    try:
        values = [float(x) for x in parts[1:]]
    except ValueError:
        raise InputError(f"--opportunity {text!r}: P_UP, P_DOWN, MOVE and COST must be numbers") from None
    if not (0 <= values[0] <= 1 and 0 <= values[1] <= 1 and values[0] + values[1] <= 1 and values[2] > 0
            and (len(values) == 3 or values[3] >= 0)):
        raise InputError(f"--opportunity {text!r}: probabilities in [0, 1] summing to <= 1, MOVE > 0, COST >= 0")
    out = {"id": parts[0], "p_up": values[0], "p_down": values[1], "move": values[2]}
    if len(values) == 4:
        out["cost"] = values[3]
    return out


def cmd_syndicate(args) -> int:
    from pymicro.live.syndicate import Ledger

    lg = Ledger(args.db)
    try:
        a = args.action
        wrote = []
        if a == "create":
            lg.create_syndicate(args.syndicate, args.name or args.syndicate)
            print(f"created syndicate {args.syndicate!r} in {args.db}")
        elif a == "add":
            member = lg.add_member(args.syndicate, args.name, args.email, args.role, args.contribution)
            print(f"added {args.name} as {member}")
            wrote = [e for e in lg.entries(args.syndicate, limit=5) if e.member_id == member]
        elif a == "contribute":
            wrote = [lg.entry(lg.contribute(args.syndicate, args.member, args.amount))]
        elif a == "withdraw":
            wrote = [lg.entry(lg.withdraw(args.syndicate, args.member, args.amount))]
        elif a == "allocate":
            wrote = lg.allocate(args.syndicate, [_opportunity(o) for o in args.opportunity], strategy=args.strategy,
                                fraction=args.fraction, max_position=args.max_position, max_total=args.max_total)
            if not wrote:
                print("no opportunity has an edge after costs: nothing allocated")
        elif a == "settle":
            wrote = lg.settle(args.syndicate, args.allocation, args.pnl, note=args.note)
        elif a == "entries":
            print(_entries(lg.entries(args.syndicate, limit=args.limit)))
        if wrote:
            print(_entries(wrote))
        if a in ("add", "contribute", "withdraw", "allocate", "settle", "balances"):
            print(_balances(lg, args.syndicate))
            if a == "allocate" or a == "settle":
                print("open allocations: " + (", ".join(f"{e.seq} ({e.ref} {e.amount:.2f})"
                                                        for e in lg.open_allocations(args.syndicate)) or "none"))
        if a != "entries":
            print(f"ledger verified: {lg.verify()} entries (hash chain, whole operations, settlements)")
    finally:
        lg.close()
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("syndicate", help="the paper syndicate ledger: members, allocations, settlements",
                       description="A syndicate ledger in SQLite (pymicro.live.syndicate): append-only, hash-chained "
                                   "entries, one transaction per operation, safe under kill -9. Paper only: an "
                                   "allocation records capital assigned to an opportunity, a settlement its P&L, "
                                   "shared among the members by their capital before the allocation.")
    p.add_argument("db", help="the ledger file (created if missing)")
    acts = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = acts.add_parser("create", help="a new syndicate")
    c.add_argument("syndicate")
    c.add_argument("--name", help="display name (default: the id)")
    m = acts.add_parser("add", help="a member, with a first contribution")
    m.add_argument("syndicate")
    m.add_argument("name")
    m.add_argument("email")
    m.add_argument("--role", default="member", choices=["trader", "member", "analyst", "manager"])
    m.add_argument("--contribution", type=float, default=0.0, help="first contribution (default 0)")
    for name, text in (("contribute", "add capital for a member"), ("withdraw", "take capital out for a member")):
        w = acts.add_parser(name, help=text)
        w.add_argument("syndicate")
        w.add_argument("member", help="member id (m1, m2, ...)")
        w.add_argument("amount", type=float)
    al = acts.add_parser("allocate", help="assign capital to opportunities (fractional Kelly or equal)")
    al.add_argument("syndicate")
    al.add_argument("--opportunity", action="append", required=True, metavar="ID:P_UP:P_DOWN:MOVE[:COST]",
                    help="an opportunity (repeatable), e.g. es:0.45:0.30:0.002")
    al.add_argument("--strategy", default="kelly_criterion", choices=["kelly_criterion", "equal"])
    al.add_argument("--fraction", type=float, default=0.25, help="of full Kelly (default 0.25)")
    al.add_argument("--max-position", type=float, default=0.2, help="cap per opportunity, of capital (default 0.2)")
    al.add_argument("--max-total", type=float, default=1.0, help="cap on all together, of capital (default 1)")
    s = acts.add_parser("settle", help="close an allocation with its P&L, shared into the members' capital")
    s.add_argument("syndicate")
    s.add_argument("allocation", type=int, help="the allocation's entry number (seq)")
    s.add_argument("--pnl", type=float, required=True, help="profit (> 0) or loss (< 0) of the allocation")
    s.add_argument("--note", help="a note kept with the settlement entry")
    b = acts.add_parser("balances", help="members' capital and shares")
    b.add_argument("syndicate")
    e = acts.add_parser("entries", help="the ledger entries of a syndicate")
    e.add_argument("syndicate")
    e.add_argument("--limit", type=int, default=100)
    acts.add_parser("verify", help="check the hash chain, whole operations and every settlement's split")
    p.set_defaults(func=cmd_syndicate)
