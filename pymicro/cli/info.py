"""``pymicro info``: describe a blob."""

from __future__ import annotations




def cmd_info(args) -> int:
    import pymicro

    info = pymicro.load(args.blob).info
    for key, value in info.__dict__.items():
        print(f"{key:18s} {value}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a blob", description="Validate a blob and print what it holds.")
    p.add_argument("blob", help="path to a .pmb blob")
    p.set_defaults(func=cmd_info)
