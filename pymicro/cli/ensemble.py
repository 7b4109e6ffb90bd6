"""``pymicro ensemble``: inspect and run ensemble containers (PMBC).

``info CONTAINER`` lists the members (columns, class maps, weights), the combiner and the
labels; ``predict CONTAINER INPUT.npy`` runs the whole ensemble in one core call and, with
``--explain``, prints who dominated each row (docs/ensembles.md). ``train`` is not
implemented yet (issue 12: the specialists' training over the embedded data); it says so.
"""

from __future__ import annotations

import numpy as np

from pymicro.errors import PymicroError
from pymicro.tables import table


def _load(path, backend="native", nan_policy="raise"):
    import pymicro
    from pymicro.runtime.ensemble import Ensemble

    model = pymicro.load(path, backend=backend, nan_policy=nan_policy)
    if not isinstance(model, Ensemble):
        raise PymicroError(f"{path} is a single model, not an ensemble container: use `pymicro info`")
    return model


def cmd_info(args) -> int:
    info = _load(args.container).info
    print(f"{info.name}: {info.combiner} of {len(info.members)} members, {info.input_size} inputs -> "
          f"{', '.join(info.labels)}; {info.params:,} parameters; {info.blob_size:,} bytes; "
          f"crc32 {info.checksum:08x}")
    rows = []
    for m in info.members:
        cols = m.columns
        span = (f"{cols[0]}..{cols[-1]}" if list(cols) == list(range(cols[0], cols[0] + len(cols)))
                else ",".join(map(str, cols[:8])) + ("..." if len(cols) > 8 else ""))
        mapping = " ".join(f"{lab}->{info.labels[c]}" for lab, c in zip(m.labels, m.class_map))
        rows.append([m.name, m.params, span, mapping, f"{m.weight:g}", m.attn_width or "-"])
    print(table(["member", "params", "columns", "classes", "weight", "attention"], rows))
    if info.meta_params:
        print(f"meta-model: {info.meta_params} parameters over {len(info.members)} x {info.n_classes} probabilities")
    return 0


def cmd_predict(args) -> int:
    model = _load(args.container, args.backend, args.nan_policy)
    try:
        x = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise PymicroError(f"cannot read {args.input} as a .npy array: {e}") from None
    probs = model.predict(x)
    if args.out:
        np.save(args.out, probs)
        print(f"wrote {probs.shape} probabilities to {args.out}")
        return 0
    labels = model.labels
    rows = np.atleast_2d(probs)
    head = ["row", *labels, "class"]
    body = [[i, *(f"{p:.4f}" for p in r), labels[int(np.argmax(r))]] for i, r in enumerate(rows)]
    if args.explain:
        e = model.explain(np.atleast_2d(x))
        head += ["dominant", "share", "its confidence"]
        for i, row in enumerate(body):
            d = int(e.dominant[i])
            row += [e.members[d], f"{e.share[i, d]:.2f}", f"{e.confidence[i, d]:.2f}"]
    print(table(head, body))
    return 0


def cmd_train(args) -> int:
    raise PymicroError("`pymicro ensemble train` is not implemented yet: train the specialists "
                       "(pymicro train), fit the combiner on out-of-fold predictions with "
                       "pymicro.ensemble.out_of_fold / fit_meta, and freeze_ensemble the result")


def add_parser(sub) -> None:
    p = sub.add_parser("ensemble", help="ensemble containers: info, predict (train: not yet)",
                       description="Inspect and run ensemble containers (PMBC): several member "
                                   "blobs and a combiner, run in one core call.")
    s = p.add_subparsers(dest="ensemble_command", required=True, metavar="ACTION")
    i = s.add_parser("info", help="members, columns, class maps, weights, combiner",
                     description="Validate a container and print what it holds.")
    i.add_argument("container", help="path to an ensemble container")
    i.set_defaults(func=cmd_info)
    r = s.add_parser("predict", help="run a container on rows from a .npy file",
                     description="Run a container on a .npy array of shape (features,) or (rows, features).")
    r.add_argument("container", help="path to an ensemble container")
    r.add_argument("input", help="a .npy file of inputs (the container's shared row)")
    r.add_argument("--out", help="write probabilities to this .npy file instead of printing them")
    r.add_argument("--explain", action="store_true", help="also print each row's dominant member")
    r.add_argument("--backend", default="native", choices=["native", "reference", "wasm"])
    r.add_argument("--nan-policy", default="raise", choices=["raise", "propagate"])
    r.set_defaults(func=cmd_predict)
    t = s.add_parser("train", help="(not implemented yet) train specialists and a combiner",
                     description="Not implemented yet; see pymicro.ensemble (out_of_fold, fit_meta).")
    t.set_defaults(func=cmd_train)
