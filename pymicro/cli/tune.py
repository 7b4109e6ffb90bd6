"""``pymicro tune``: search hyper-parameters with Optuna on Dask and freeze the best model."""

from __future__ import annotations

from pymicro.errors import require


def cmd_tune(args) -> int:
    from pymicro.training.tune import tune

    tqdm = require("tqdm", "train", purpose="progress bars").tqdm
    bar = tqdm(total=args.trials, desc=f"tuning {args.preset}", unit="trial", leave=True)

    def update(done: int, total: int, info: dict) -> None:
        bar.total = total
        bar.update(done - bar.n)
        bar.set_postfix(trial=info["trial"], state=info["state"],
                        value="-" if info.get("value") is None else f"{info['value']:.4f}")

    with bar:
        result = tune(args.preset, n_trials=args.trials, objective=args.objective, storage=args.storage,
                      study_name=args.study, seed=args.seed, scheduler=args.scheduler, n_workers=args.workers,
                      parallel=args.parallel, epochs=args.epochs, patience=args.patience, n_folds=args.folds,
                      symbols=args.symbols or None, prune=not args.no_prune, out_dir=args.out,
                      plots=not args.no_plot, feature_lookback=args.lookback_days, progress=update)
    print(result.summary())
    print(f"\nblob: {result.blob_path}  study: {result.storage}"
          + "".join(f"  {k}: {v}" for k, v in result.plots.items()))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="search hyper-parameters (Optuna on Dask) and freeze the best model",
                       description="Optuna TPE search with median pruning over learning rate, hidden sizes, "
                                   "dropout, attention width, batch size and label threshold, scored on "
                                   "walk-forward validation folds (never the test split); trials run as Dask "
                                   "tasks on a local cluster or --scheduler. The study is a journal file: run "
                                   "the same command again to resume it. The best trial is retrained, frozen "
                                   "and compared with the default model out-of-sample.")
    p.add_argument("--preset", default="momentum", choices=["momentum", "reversal", "sentiment"])
    p.add_argument("--trials", type=int, default=20, help="finished trials the study should hold (default: %(default)s)")
    p.add_argument("--objective", default="balanced_accuracy", choices=["balanced_accuracy", "sharpe"])
    p.add_argument("--symbols", nargs="*", help="embedded symbols (default: all)")
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs per fold (default: %(default)s)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience (default: %(default)s)")
    p.add_argument("--folds", type=int, default=3, help="walk-forward validation folds (default: %(default)s)")
    p.add_argument("--lookback-days", type=int, help="feature look-back window in trading days (default: all features)")
    p.add_argument("--parallel", type=int, default=4, help="trials per round (default: %(default)s)")
    p.add_argument("--workers", type=int, help="local Dask worker processes (default: one per core)")
    p.add_argument("--scheduler", help="Dask scheduler tcp://host:port (default: $PYMICRO_DASK_SCHEDULER, "
                                       "else a local cluster)")
    p.add_argument("--study", help="study name (default: PRESET-OBJECTIVE)")
    p.add_argument("--storage", help="journal file of the study (default: OUT/STUDY.journal)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-prune", action="store_true", help="run every trial to the end")
    p.add_argument("--no-plot", action="store_true", help="skip the PNGs of the study")
    p.add_argument("--out", default="pymicro-tune", help="output folder (default: %(default)s)")
    p.set_defaults(func=cmd_tune)
