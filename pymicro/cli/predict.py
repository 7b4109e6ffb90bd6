"""``pymicro predict``: run a blob on rows from a .npy file."""

from __future__ import annotations


import numpy as np

from pymicro.cli._common import load_rows, probability_rows
from pymicro.tables import table

def cmd_predict(args) -> int:
    import pymicro

    model = pymicro.load(args.blob, backend=args.backend, nan_policy=args.nan_policy)
    probs = model.predict(load_rows(args.input))
    if args.out:
        np.save(args.out, probs)
        print(f"wrote {probs.shape} probabilities to {args.out}")
    else:
        print(table(*probability_rows(model.labels, probs)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="run a blob on rows from a .npy file",
                       description="Run a blob on a .npy array of shape (features,) or (rows, features).")
    p.add_argument("blob", help="path to a .pmb blob")
    p.add_argument("input", help="a .npy file of inputs")
    p.add_argument("--out", help="write probabilities to this .npy file instead of printing them")
    p.add_argument("--backend", default="native", choices=["native", "reference", "wasm"])
    p.add_argument("--nan-policy", default="raise", choices=["raise", "propagate"])
    p.set_defaults(func=cmd_predict)
