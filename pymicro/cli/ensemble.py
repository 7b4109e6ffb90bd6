"""``pymicro ensemble``: inspect and run ensemble containers (PMBC).

``info CONTAINER`` lists the members (columns, class maps, weights), the combiner and the
labels; ``predict CONTAINER INPUT.npy`` runs the whole ensemble in one core call and, with
``--explain``, prints who dominated each row (docs/ensembles.md); ``train`` trains the
three specialists and the combiner (out-of-fold) and prints the out-of-sample comparison.
"""

from __future__ import annotations

import numpy as np

from pymicro.errors import PymicroError
from pymicro.cli._common import add_store_argument, load_rows, probability_rows
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
    x = load_rows(args.input)
    probs = model.predict(x)
    if args.out:
        np.save(args.out, probs)
        print(f"wrote {probs.shape} probabilities to {args.out}")
        return 0
    head, body = probability_rows(model.labels, probs)
    if args.explain:
        e = model.explain(np.atleast_2d(x))
        head += ["dominant", "share", "its confidence"]
        for i, row in enumerate(body):
            d = int(e.dominant[i])
            row += [e.members[d], f"{e.share[i, d]:.2f}", f"{e.confidence[i, d]:.2f}"]
    print(table(head, body))
    return 0


def comparison_table(comparison: dict) -> str:
    """The ensemble beside its members and the baselines (out-of-sample), as text."""
    cls = comparison["classification"]
    trade = comparison.get("trading") or {}
    rows = []
    for name, c in cls.items():
        lo, hi = c["accuracy_ci"]
        t = trade.get(name, {})
        rows.append([name, f"{c['accuracy']:.1%}", f"{lo:.1%} - {hi:.1%}", f"{c['balanced_accuracy']:.1%}",
                     f"{t['sharpe']:.2f}" if t else "", f"{t['total_return']:+.1%}" if t else ""])
    if "buy and hold" in trade:
        t = trade["buy and hold"]
        rows.append(["buy and hold", "", "", "", f"{t['sharpe']:.2f}", f"{t['total_return']:+.1%}"])
    text = table(["out-of-sample", "accuracy", "95% CI", "balanced acc.", "Sharpe (net)", "return (net)"], rows)
    text += f"\n{comparison['rows']} test rows"
    if trade:
        text += f"; trading: {trade['note']}"
    return text


def cmd_train(args) -> int:
    from pymicro.cli._common import _progress_bar
    from pymicro.evaluation.ensemble import compare_run
    from pymicro.training.ensemble import train_specialists

    bars: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            bars[stage] = _progress_bar(total, stage)[0]
            bars[stage].unit = "fit"
            bars[stage].refresh()
        bars[stage].update(done - bars[stage].n)

    run = train_specialists(symbols=args.symbols, combiner=args.combiner, folds=args.folds,
                            epochs=args.epochs, seed=args.seed, path=args.out, progress=progress)
    comparison = compare_run(run, cost_bps=args.cost_bps, slippage_bps=args.slippage_bps)
    for bar in bars.values():
        bar.close()
    print(f"wrote {args.out}: {run.combiner} of {', '.join(run.members)}; combiner fitted on "
          f"{run.oof_rows} out-of-fold rows; test period from {run.test_start}")
    print(comparison_table(comparison))
    if args.register:
        from pymicro.store.registry import Registry

        model_id = Registry(args.store).add(
            run.blob, args.register, metrics={"out_of_sample": comparison["classification"]["ensemble"],
                                              "test_rows": comparison["rows"], "test_start": run.test_start},
            report={"command": "pymicro ensemble train", "settings": run.settings, "oof_rows": run.oof_rows,
                    "comparison": comparison})
        print(f"registered {model_id} (kind ensemble)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("ensemble", help="ensemble containers: train, info, predict",
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
    t = s.add_parser("train", help="train momentum, reversal and sentiment and a combiner; compare out of sample",
                     description="Train the three specialists on their own feature sets (embedded data), "
                                 "the combiner on their out-of-fold predictions only, write the container, "
                                 "and print it beside its members and the baselines on the held-out test "
                                 "period, net of costs.")
    t.add_argument("--out", default="specialists.pmb", help="where to write the container")
    t.add_argument("--combiner", default="stacked", choices=["stacked", "soft_vote", "majority_vote"])
    t.add_argument("--symbols", nargs="+", help="embedded symbols (default: all)")
    t.add_argument("--folds", type=int, default=3, help="chronological folds for the out-of-fold predictions")
    t.add_argument("--epochs", type=int, default=20, help="maximum epochs per member fit")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--cost-bps", type=float, default=5.0)
    t.add_argument("--slippage-bps", type=float, default=2.0)
    t.add_argument("--register", metavar="NAME", help="also add the container to the model store under NAME "
                                                      "(`pymicro models list` shows it as an ensemble)")
    add_store_argument(t, " for --register")
    t.set_defaults(func=cmd_train)
