"""From market data to a registered, frozen, checked model: the seed's training workflow.

    trainer = MicroNeuralTrainer()
    model = await trainer.train_reasoning_enhanced_model(
        model_name="my_micro_trader",
        training_config={"symbols": ["AAPL", "GOOGL"], "hidden_sizes": [32, 16, 8],
                         "epochs": 100, "batch_size": 32, "learning_rate": 0.001,
                         "use_attention": True, "distributed": False})
    print(f"Accuracy: {model['performance']['accuracy']:.1%}")

Every figure in ``performance`` is out-of-sample: measured on the chronologically last
part of the data (after an embargo), which neither training nor early stopping saw,
predicted by the native runtime from the frozen blob, beside the majority-class baseline.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import numpy as np

from pymicro.errors import DataError, TrainingError
from pymicro.runtime.spec import Attention, Dense, Network, Spec, preset
from pymicro.errors import ReasoningError
from pymicro.market.data import embedded_symbols, load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.market.features import REASONING_FEATURES
from pymicro.market.reasoning_client import ReasoningClient, server_config
from pymicro.market.reasoning_features import reasoning_features
from pymicro.metrics import classification_summary
from pymicro.metrics import majority_class
from pymicro.plots import plot_history
from pymicro.runtime.blob import freeze
from pymicro.runtime.model import load
from pymicro.store.registry import Registry
from pymicro.store.registry import check_name
from pymicro.training.lookback import history_span, within_lookback
from pymicro.training.train import tinygrad_predict, train

# Pre-2014 GOOG, the embedded series, is the class A share that trades as GOOGL since 2014.
SYMBOL_ALIASES = {"GOOGL": "GOOG"}

CONFIG_KEYS = {
    "symbols": "embedded symbols to train on (default: all)",
    "lookback_days": "feature look-back window in trading days: only the preset's features that read at most this "
                     "many bars before t are inputs (momentum: 20 keeps 20 of 24; default: all, 60 bars)",
    "start": "first date of history to use (YYYY-MM-DD; default: the beginning of the data)",
    "end": "last date of history to use (YYYY-MM-DD; default: the end of the data)",
    "history_days": "most recent trading days of history per symbol to use (default: all)",
    "hidden_sizes": "widths of the hidden layers (default: the preset's)",
    "epochs": "maximum epochs (early stopping may end sooner)",
    "batch_size": "mini-batch size",
    "learning_rate": "Adam learning rate",
    "use_attention": "first hidden layer is feature attention of that width",
    "distributed": "train on Dask: the fit runs as a task on the cluster of 'scheduler' (default: "
                   "$PYMICRO_DASK_SCHEDULER, else a local Dask cluster), the data scattered to it",
    "scheduler": "Dask scheduler address tcp://host:port for distributed=True",
    "reasoning_features": "consult the reasoning server (MCP psycho_symbolic_reason) for each symbol, record its "
                          "findings in result['reasoning'], and train on the sentiment preset's 48 features "
                          "(the 12 reasoning features among them)",
    "validate": "validate the registered model through the reasoning server's validate_model tool, into "
                "result['validation'] (default: reasoning_features)",
    "reasoning_server": "the reasoning server (pymicro.market.reasoning_client.server_config: a dict, URL, JSON or "
                        "file path; default $PYMICRO_REASONING_SERVER, else pymicro's own over stdio)",
    "horizon": "label horizon in bars (default 5)",
    "threshold": "label threshold in volatility units (default 0.5)",
    "patience": "early-stopping patience in epochs (default 10)",
    "seed": "random seed (default 0)",
    "preset": "feature set and default architecture (default 'momentum')",
    "data": "your own daily OHLCV history instead of the embedded one: a long DataFrame (date, symbol, open, "
            "high, low, close, volume) or a CSV/Parquet path; a file without a symbol column takes the one "
            "name in 'symbols'",
}


def spec_for(preset_name: str, hidden_sizes=None, use_attention=None, feature_names=None,
             name: str | None = None) -> Spec:
    """The preset's spec, or one with the given hidden sizes (attention first if asked)."""
    base = preset(preset_name)
    if hidden_sizes is None and use_attention is None:
        layers = base.layers
    else:
        sizes = list(hidden_sizes if hidden_sizes is not None else
                     [getattr(layer, "out", getattr(layer, "k", None)) for layer in base.layers
                      if not type(layer).__name__ == "Dropout"])
        if not sizes or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise TrainingError(f"hidden_sizes must be a non-empty list of positive ints, got {hidden_sizes!r}")
        attention = bool(use_attention) if use_attention is not None else isinstance(base.layers[0], Attention)
        layers = tuple([Attention(sizes[0])] + [Dense(s) for s in sizes[1:]] if attention
                       else [Dense(s) for s in sizes])
    input_size = base.input_size if feature_names is None else len(feature_names)
    return Spec(input_size, layers, base.n_classes, name=name or base.name, labels=base.labels,
                feature_names=tuple(feature_names) if feature_names is not None else None)


@dataclass
class TrainingRun:
    """Everything one training produced; ``summary()`` is what the seed's API returns."""

    name: str
    spec: Spec
    network: Network
    blob: bytes
    blob_path: Path
    report_path: Path
    plot_path: Path | None
    performance: dict
    parity: dict
    training_seconds: float
    seconds_per_epoch: float
    history: dict
    best_epoch: int
    data: dict
    model_id: str | None = None
    settings: dict = field(default_factory=dict)
    dataset: Any = field(default=None, repr=False)  # the Dataset it was split from (for after-training checks)
    prices: Any = field(default=None, repr=False)  # the OHLCV frame the dataset was built from
    split_fractions: tuple[float, float] = (0.7, 0.15)  # train, validation (the rest is the test split)

    def summary(self) -> dict:
        return {
            "model_id": self.model_id, "model_name": self.name, "blob_path": str(self.blob_path),
            "parameters": self.spec.params, "architecture": self.spec.describe(),
            "training_time": self.training_seconds, "seconds_per_epoch": self.seconds_per_epoch,
            "best_epoch": self.best_epoch, "performance": self.performance, "parity": self.parity,
            "data": self.data, "report_path": str(self.report_path),
            "plot_path": str(self.plot_path) if self.plot_path else None,
        }


def _evaluate(model, split_part, majority: int, n_classes: int) -> dict:

    # blocks of horizon x symbols rows: the labels overlap, so the interval and the p-value are
    # block-bootstrap ones, the numbers `pymicro validate` gives for the same model and rows
    pred = model.predict(split_part.X).argmax(axis=1)
    block = int(split_part.horizon) * max(1, len(set(map(str, split_part.symbols))))
    out = classification_summary(split_part.y, pred, n_classes=n_classes, majority=majority, block=block)
    per_symbol = {}
    for sym in sorted(set(split_part.symbols)):
        mask = split_part.symbols == sym
        if mask.sum() >= 20:
            s = classification_summary(split_part.y[mask], pred[mask], n_classes=n_classes, majority=majority)
            per_symbol[str(sym)] = {k: s[k] for k in ("n", "accuracy", "balanced_accuracy", "majority_accuracy")}
    out["per_symbol"] = per_symbol
    return out


def run_training(preset_name: str = "momentum", *, data=None, symbols=None, lookback_days=None,
                 history_days=None, feature_lookback=None, start=None, end=None, distributed: bool = False,
                 scheduler=None, hidden_sizes=None, use_attention=None, epochs: int = 100, batch_size: int = 32,
                 learning_rate: float = 1e-3, patience: int | None = 10, seed: int = 0, horizon: int = 5,
                 threshold: float = 0.5, name: str | None = None, out_dir="pymicro-models",
                 progress=None, plot: bool = True, feature_options: dict | None = None,
                 validation_split: float | None = None, device: str | None = None) -> TrainingRun:
    """Load data, build features and labels, split by date, train in tinygrad, freeze,
    check parity, and measure out-of-sample accuracy beside the majority-class baseline.

    ``data``: a long OHLCV frame (see :mod:`pymicro.market.data`); default: the embedded history.
    ``feature_options``: passed to the preset's feature set (e.g. ``{"news": daily}`` from
    :func:`pymicro.market.news.analyze_news` for the sentiment preset).
    ``validation_split``: the fraction of rows (by date) for validation, 0.05-0.5; the test split
    keeps its 15 % and training has the rest (default: 0.15, training 0.7). ``device``: a tinygrad
    device (default: $DEV, else the first GPU found, else CPU).
    ``feature_lookback``: the feature look-back window in bars (:mod:`pymicro.training.lookback`;
    the seed's ``lookback_days`` key). ``start``/``end``/``history_days``: the history span.
    ``lookback_days`` here is the old name of ``history_days`` (kept for callers that pass it).
    ``distributed``: the fit runs as a Dask task (:func:`pymicro.training.cluster.train_remote`).
    """

    if symbols is not None:
        symbols = [SYMBOL_ALIASES.get(s, s) for s in ([symbols] if isinstance(symbols, str) else symbols)]
    frame = load_embedded(symbols) if data is None else data
    if lookback_days is not None:
        if history_days is not None:
            raise TrainingError("lookback_days (run_training's old name of history_days) and history_days both given")
        history_days = lookback_days
    frame = history_span(frame, start, end, history_days)
    try:
        ds = make_dataset(frame, preset_name, horizon=horizon, threshold=threshold,
                          feature_options=feature_options)
    except DataError as e:
        if history_days is None and start is None and end is None:
            raise
        raise TrainingError(f"the history span (start={start}, end={end}, history_days={history_days}) leaves "
                            f"too little history: {e}") from None
    if feature_lookback is not None:
        ds = within_lookback(ds, preset_name, feature_lookback)
    if len(ds) < 300:
        raise TrainingError(
            f"only {len(ds)} labelled rows (history_days={history_days}); the features need "
            f"{ds.meta['lookback']} bars of warm-up and the labels {horizon} bars ahead per symbol, "
            "and a three-way chronological split needs a few hundred rows: use more history")
    fractions = (0.7, 0.15)
    if validation_split is not None:
        if not 0.05 <= validation_split <= 0.5:
            raise TrainingError(f"validation_split must be in 0.05..0.5 (a fraction of the rows), got {validation_split!r}")
        fractions = (0.85 - validation_split, validation_split)
    split = ds.split(train=fractions[0], validation=fractions[1])
    name = name or preset_name
    spec = spec_for(preset_name, hidden_sizes, use_attention, ds.feature_names, name)

    started = time.perf_counter()
    fit = train
    if distributed:
        from pymicro.training.cluster import train_remote

        fit = functools.partial(train_remote, scheduler=scheduler)
    result = fit(spec, split.train.X, split.train.y, split.validation.X, split.validation.y,
                 epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed,
                 patience=patience, progress=progress, device=device)
    training_seconds = time.perf_counter() - started

    out_dir = Path(out_dir)
    blob_path = out_dir / f"{name}.pmb"
    metadata = {"preset": preset_name, "horizon": horizon, "threshold": threshold,
                "train_end": str(split.validation_start), "test_start": str(split.test_start),
                "symbols": ",".join(sorted(set(ds.symbols))), "seed": seed}
    blob = freeze(result.network, blob_path, **metadata)
    model = load(blob)

    native_val = model.predict(split.validation.X)
    tiny_val = tinygrad_predict(result, split.validation.X)
    parity = {"rows": int(len(split.validation)),
              "max_abs_diff": float(np.abs(native_val - tiny_val).max()),
              "classes_agree": bool((native_val.argmax(1) == tiny_val.argmax(1)).all())}


    majority = majority_class(split.train.y, spec.n_classes)
    performance = _evaluate(model, split.test, majority, spec.n_classes)
    performance["labels"] = list(spec.labels)
    performance["split"] = "test: dates from {} on, after a {}-bar embargo; never seen in training".format(
        np.datetime64(split.test_start, "D"), split.embargo)

    data_info = {"symbols": sorted(set(map(str, ds.symbols))),
                 "first_date": str(np.datetime64(ds.dates.min(), "D")),
                 "last_date": str(np.datetime64(ds.dates.max(), "D")),
                 "rows": {"train": len(split.train), "validation": len(split.validation),
                          "test": len(split.test)},
                 "validation_start": str(np.datetime64(split.validation_start, "D")),
                 "test_start": str(np.datetime64(split.test_start, "D")),
                 "features": list(ds.feature_names), "horizon": horizon, "threshold": threshold}
    settings = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                "validation_split": fractions[1],
                "patience": patience, "seed": seed, "device": result.device,
                "compiler": result.compiler, "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early, "distributed": bool(distributed),
                "feature_lookback": feature_lookback}
    plot_path = None
    if plot:

        plot_path = plot_history(result.history, out_dir / f"{name}.training.png",
                                 title=f"{name}: {spec.describe()}", best_epoch=result.best_epoch)
    report_path = out_dir / f"{name}.training.json"
    run = TrainingRun(name, spec, result.network, blob, blob_path, report_path, plot_path, performance,
                      parity, training_seconds, result.seconds_per_epoch, result.history,
                      result.best_epoch, data_info, settings=settings, dataset=ds, prices=frame,
                      split_fractions=fractions)
    report = {**run.summary(), "history": result.history, "settings": settings,
              "content_hash": model.info.content_hash}
    report_path.write_text(json.dumps(report, indent=2, default=str))
    return run


def _user_frame(data, symbols):
    """A user's history: a long DataFrame as it is, or a CSV/Parquet path read by
    :func:`pymicro.market.data.load_ohlcv` (one name in ``symbols`` names a single-symbol file)."""
    import os

    from pymicro.market.data import load_ohlcv

    if isinstance(data, (str, os.PathLike)):
        syms = [symbols] if isinstance(symbols, str) else list(symbols or [])
        return load_ohlcv(data, symbol=syms[0] if len(syms) == 1 else None)
    if hasattr(data, "columns"):
        missing = [c for c in ("date", "symbol", "close") if c not in data.columns]
        if missing:
            raise TrainingError(f"data is missing columns {missing}: a long OHLCV frame has date, symbol, open, "
                                "high, low, close, volume (pymicro.market.data.load_ohlcv reads files)")
        return data
    raise TrainingError(f"data must be a DataFrame or a CSV/Parquet path, got {type(data).__name__}")


class MicroNeuralTrainer:
    """The seed's trainer. Models go to a :class:`pymicro.store.registry.Registry` (default store)."""

    def __init__(self, registry=None, out_dir="pymicro-models"):
        self._registry = registry
        self.out_dir = out_dir

    @property
    def registry(self):
        if self._registry is None or isinstance(self._registry, (str, Path)):

            self._registry = Registry(self._registry)
        return self._registry

    async def train_reasoning_enhanced_model(self, model_name: str, training_config: dict | None = None,
                                             progress=None) -> dict:
        """Train, freeze, register; returns model_id, blob_path, parameters, training_time, performance.

        With ``reasoning_features=True`` the reasoning server (an MCP server: pymicro's own over
        stdio unless ``reasoning_server`` or ``$PYMICRO_REASONING_SERVER`` names another) is asked
        about every symbol before training, its answers go to ``result["reasoning"]``, and the
        network trains on the sentiment preset's features; with ``validate`` (default: the same
        as ``reasoning_features``) the registered model is validated through the server's
        ``validate_model`` into ``result["validation"]``. Without either, no server is used.
        """
        config = dict(training_config or {})
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise TrainingError(f"unknown training_config keys {unknown}; known: {sorted(CONFIG_KEYS)}")
        kwargs = {k: config[k] for k in ("data", "symbols", "hidden_sizes", "use_attention", "epochs", "batch_size",
                                          "learning_rate", "horizon", "threshold", "patience", "seed", "start",
                                          "end", "history_days", "scheduler") if k in config}
        if "lookback_days" in config:  # the seed's key: the feature look-back window
            kwargs["feature_lookback"] = config["lookback_days"]
        if "distributed" in config:
            if not isinstance(config["distributed"], bool):
                raise TrainingError(f"distributed must be True or False, got {config['distributed']!r}")
            kwargs["distributed"] = config["distributed"]
        if "scheduler" in config and not kwargs.get("distributed"):
            raise TrainingError("scheduler is the Dask cluster of distributed=True; set distributed=True or drop it")
        reasoning = bool(config.get("reasoning_features"))
        validate = bool(config.get("validate", reasoning))
        preset_name = config.get("preset", "sentiment" if reasoning else "momentum")
        if reasoning and preset_name != "sentiment":
            raise TrainingError(f"reasoning_features=True trains on the sentiment preset's features (the twelve "
                                f"reasoning features are among its 48 inputs); preset={preset_name!r} has none")

        if kwargs.get("data") is not None:
            kwargs["data"] = _user_frame(kwargs["data"], kwargs.get("symbols"))
            if reasoning or validate:
                raise TrainingError("reasoning_features and validate consult a server that reads the embedded "
                                    "history; with your own 'data' train without them and run "
                                    "pymicro.evaluation.validation.validate on the same frame")
        check_name(model_name)
        if not (reasoning or validate):
            return (await self._train(model_name, preset_name, progress, kwargs)).summary()


        server = server_config(config.get("reasoning_server"), store=self.registry.root)
        async with ReasoningClient(server) as client:
            found = await _consult(client, kwargs.get("symbols")) if reasoning else None
            run = await self._train(model_name, preset_name, progress, kwargs)
            result = run.summary()
            if found is not None:
                result["reasoning"] = {"server": server.describe(), "preset": preset_name, "symbols": found,
                                       "use": "reported beside the model; the network reads the same twelve "
                                              "features per bar, computed locally by pymicro's feature code"}
            if validate:

                try:
                    options = {"symbols": run.data["symbols"], "fit": "ridge"}
                    if kwargs.get("history_days") is not None:  # validate_model's lookback_days: the history span
                        options["lookback_days"] = kwargs["history_days"]
                    report = await client.validate_model(run.model_id, **options)
                except ReasoningError as e:
                    raise ReasoningError(f"model registered as {run.model_id}, but its validation failed: {e}") \
                        from None
                result["validation"] = {"server": server.describe(), **report}
        return result

    async def _train(self, model_name: str, preset_name: str, progress, kwargs: dict) -> TrainingRun:
        run = await asyncio.to_thread(run_training, preset_name, name=model_name, out_dir=self.out_dir,
                                      progress=progress, **kwargs)
        run.model_id = self.registry.add(run.blob, model_name, metrics=run.performance,
                                         report=json.loads(run.report_path.read_text()), status="registered")
        return run


REASONING_QUERY = "What are the market psychology, the quantitative picture and the macro backdrop of {symbol}?"


async def _consult(client, symbols) -> dict:
    """The reasoning server's answer for each symbol, with its twelve features checked against
    pymicro's own feature code at the same date (``feature_check``)."""

    names = list(dict.fromkeys(SYMBOL_ALIASES.get(s, s) for s in ([symbols] if isinstance(symbols, str) else
                                                                   symbols or embedded_symbols())))
    out = {}
    for sym in names:
        r = await client.reason(REASONING_QUERY.format(symbol=sym), symbol=sym, depth=2,
                                domains=["market_psychology", "quantitative_trading", "macro_economics", "synthesis"])
        entry = {k: r.get(k) for k in ("status", "as_of", "answer", "confidence", "features", "findings")}
        check = {"compared": 0, "max_abs_diff": None}
        local = reasoning_features(load_embedded([sym]), dropna=False) if sym in embedded_symbols() else None
        try:
            when = np.datetime64(str(r.get("as_of")), "ns")
        except ValueError:  # None or not a date: nothing to compare
            when = None
        if local is not None and when is not None and when in local.index:
            row = local.loc[when]
            diffs = [abs(float(r["features"][k]) - float(row[k])) for k in REASONING_FEATURES
                     if isinstance(r["features"].get(k), (int, float)) and np.isfinite(row[k])]
            check = {"compared": len(diffs), "max_abs_diff": max(diffs) if diffs else None}
        entry["feature_check"] = check
        out[sym] = entry
    return out
