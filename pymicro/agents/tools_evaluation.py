"""The evaluation tools: ``neural_evaluate``, ``neural_backtest`` and ``validate_model``, on the
embedded data or on given rows."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import anyio.to_thread
import numpy as np
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from pymicro.agents.reasoning import model_settings, validate_on_embedded
from pymicro.agents.server import (
    MAX_CELLS, MAX_REQUEST_BYTES, MAX_ROWS, SYMBOLS, Bps, Date, ModelId, Probability, Progress, PymicroServer, Rows, Symbol,
    TrainPreset, canonical_symbols, float32_rows, parse_date, server_of, tool,
)
from pymicro.evaluation.backtest import LabelledSeries, run_backtest, walk_forward
from pymicro.market.data import embedded_symbols, load_embedded
from pymicro.market.dataset import make_dataset
from pymicro.metrics import classification_summary, majority_class
from pymicro.runtime.model import spec_of
from pymicro.training.trainer import SYMBOL_ALIASES

MAX_WF_BLOCKS = 40  # retrains in one walk-forward neural_backtest
MAX_WF_EPOCHS = 50  # epochs per retrain

class _TestData(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    input: Rows
    labels: Annotated[list[Annotated[int, Field(ge=0, le=15)]], Field(min_length=1, max_length=MAX_ROWS)]


class EvaluationOutcome(BaseModel):
    model_id: str
    source: str = Field(description="'embedded' (a symbol and dates of the embedded data) or 'rows' (given).")
    symbol: str | None
    period: list[str] | None = Field(description="First and last date of the rows evaluated (embedded only).")
    n: int
    labels: list[str]
    classification: dict[str, Any] = Field(description="accuracy with its confidence interval, balanced "
                                                       "accuracy, per-class recall, confusion matrix, the "
                                                       "majority-class baseline on the same rows and the "
                                                       "one-sided binomial p-value of beating it.")
    out_of_sample: dict[str, Any] = Field(description="status ('out_of_sample', 'overlaps_training', 'unknown'), "
                                                      "the blob's train_end/test_start, rows before and from "
                                                      "test_start, and the classification of the rows from "
                                                      "test_start alone when there is an overlap.")
    trading: dict[str, Any] | None = Field(description="Embedded only: the model's positions backtested net of "
                                                       "costs, beside buy-and-hold, majority-class and momentum.")
    notes: list[str]
    accuracy: float = Field(description="classification.accuracy, at the top level as the seed guide reads it.")
    majority_accuracy: float = Field(description="The majority-class baseline's accuracy on the same rows.")
    sharpe: float | str | None = Field(description="The strategy's annualised Sharpe ratio net of costs "
                                                   "(trading.metrics.strategy; embedded data only, else null).")
    buy_and_hold_sharpe: float | str | None = Field(description="Buy-and-hold's Sharpe on the same dates.")

    @classmethod
    def make(cls, **fields) -> "EvaluationOutcome":
        """The outcome with its top-level figures read from ``classification`` and ``trading``."""
        c, t = fields["classification"], fields["trading"]
        legs = (t or {}).get("metrics", {})
        return cls(**fields, accuracy=c["accuracy"], majority_accuracy=c["majority_accuracy"],
                   sharpe=legs.get("strategy", {}).get("sharpe"),
                   buy_and_hold_sharpe=legs.get("buy_and_hold", {}).get("sharpe"))


class BacktestOutcome(BaseModel):
    mode: str = Field(description="'frozen' (one registered model on every bar) or 'walk_forward' (retrained "
                                  "before every test block on earlier data only).")
    model: str
    symbol: str
    start: str
    end: str
    periods: int
    metrics: dict[str, Any] = Field(description="Metrics of the strategy and of each baseline on the same dates "
                                                "and costs: total/annualised return, Sharpe, Sortino, max "
                                                "drawdown, Calmar, profit factor, win rate, turnover, exposure.")
    classification: dict[str, Any] | None
    windows: list[dict[str, Any]] = Field(description="Walk-forward blocks: training and test dates, rows.")
    settings: dict[str, Any]
    notes: list[str]


class ValidationOutcome(BaseModel):
    model_id: str
    symbols: list[str]
    answer: str
    confidence: float
    flagged: bool
    leak_suspected: bool
    risks: list[dict[str, Any]]
    metrics: dict[str, Any]
    checks: dict[str, Any]
    settings: dict[str, Any]
    seconds: float


def day(value) -> str:
    return str(np.datetime64(value, "D"))


def _range_mask(dates: np.ndarray, start, end) -> np.ndarray:
    start, end = parse_date(start, "start"), parse_date(end, "end")
    if start is not None and end is not None and start > end:
        raise ToolError(f"start {start} is after end {end}")
    d = dates.astype("datetime64[D]")
    mask = np.ones(d.shape, bool)
    if start is not None:
        mask &= d >= start
    if end is not None:
        mask &= d <= end
    return mask


def _embedded_rows(model, symbol: str | None, start: str | None, end: str | None):
    """(settings, symbol, bars, dataset of the rows in [start, end], rows mask) for ``model``'s
    preset on one embedded symbol; features are computed on the whole history (causal) first."""

    if "members" in model.described:  # an ensemble container: its shared row is several feature sets
        raise ToolError("this is an ensemble: its input row joins its members' feature sets, which the embedded-data "
                        "mode does not build; pass input rows (neural_model_status gives each member's columns) "
                        "and labels, or see `pymicro report` for its out-of-sample comparison")
    s = model_settings(model)
    if s["preset"] is None:
        raise ToolError(f"cannot tell which feature set this model reads ({model.input_size} inputs, no 'preset' "
                        "metadata): pass input rows and labels instead")
    sym = SYMBOL_ALIASES.get(symbol, symbol) if symbol else next(
        (x for x in s["symbols"] if x in embedded_symbols()), "SP500")
    bars = load_embedded([sym])
    ds = make_dataset(bars, s["preset"], horizon=s["horizon"], threshold=s["threshold"])
    if ds.X.shape[1] != model.input_size:
        raise ToolError(f"the {s['preset']} features are {ds.X.shape[1]} wide; the model takes {model.input_size}")
    mask = _range_mask(ds.dates, start, end)
    if not mask.any():
        raise ToolError(f"no labelled rows of {sym} between {start or 'the start'} and {end or 'the end'} "
                        f"(labelled rows run {day(ds.dates[0])}..{day(ds.dates[-1])})")
    return s, sym, bars, ds, mask


def _oos(settings: dict, dates: np.ndarray | None, symbol: str | None) -> tuple[dict, np.ndarray | None, list[str]]:
    """Whether the rows are out of sample for the model, from its train_end/test_start metadata."""
    notes = []
    info = {"train_end": settings["train_end"], "test_start": settings["test_start"],
            "trained_on": settings["symbols"]}
    if dates is None:
        info.update(status="unknown", caveat="rows carry no dates: whether the model saw them in training "
                                             "cannot be checked")
        return info, None, notes
    if settings["test_start"] is None:
        info.update(status="unknown", caveat="the blob records no training dates (train_end/test_start "
                                             "metadata): these rows may have been seen in training")
        return info, None, notes
    later = dates.astype("datetime64[D]") >= np.datetime64(settings["test_start"], "D")
    info.update(rows_before_test_start=int((~later).sum()), rows_from_test_start=int(later.sum()))
    if later.all():
        info.update(status="out_of_sample", caveat=f"every row is dated on or after the model's test_start "
                                                   f"({settings['test_start']}): not seen in training")
    else:
        info.update(status="overlaps_training",
                    caveat=f"{int((~later).sum())} of {later.size} rows are dated before the model's test_start "
                           f"({settings['test_start']}): training or early stopping saw that period, so figures "
                           "over them are in-sample and flattering")
    if symbol and settings["symbols"] and symbol not in settings["symbols"]:
        notes.append(f"the model was trained on {', '.join(settings['symbols'])}, not {symbol}; its training "
                     "period still overlaps these dates for those symbols")
    return info, later, notes


def _majority(ds, first_date) -> tuple[int | None, str]:
    """The most frequent label among the rows whose label was known before ``first_date``."""

    known = ds.label_end < first_date
    if known.sum() >= 20:
        return majority_class(ds.y[known], len(ds.label_names)), "labels of the symbol known before the period"
    return None, "the evaluated labels themselves (hindsight: a conservative baseline)"


def _class_positions(n_classes: int):
    return None if n_classes == 3 else np.linspace(-1.0, 1.0, n_classes).tolist()


def _position_rule(settings: dict, model, ds, bars, threshold, cost_bps, slippage_bps, long_only, cp):
    """The one position rule of every pymicro command: ``threshold`` if given, else chosen by
    :func:`pymicro.evaluation.positions.choose_rule` on the model's validation period (its
    train_end .. test_start metadata) of this symbol, never on the rows being evaluated."""
    from pymicro.evaluation.positions import PositionRule, choose_rule, fixed_rule

    if threshold is not None:
        return fixed_rule(threshold, long_only, cp)
    if not (settings.get("train_end") and settings.get("test_start")):
        return PositionRule(0.0, long_only, None if cp is None else tuple(cp),
                            "the blob records no validation period (train_end/test_start): threshold 0")
    d = ds.dates.astype("datetime64[D]")
    val = (d >= np.datetime64(settings["train_end"], "D")) & (ds.label_end < np.datetime64(settings["test_start"]))
    close = bars.set_index("date")["close"]
    nxt = (close.shift(-1) / close - 1.0).reindex(ds.dates[val]).to_numpy(np.float64)
    return choose_rule(model.predict(ds.X[val]), nxt, cost_bps=cost_bps, slippage_bps=slippage_bps,
                       long_only=long_only, class_positions=cp, chosen_on="the model's validation period")


def _evaluate(model_id: str, model, symbol, start, end, rows, labels, confidence, cost_bps, slippage_bps,
              threshold) -> EvaluationOutcome:

    n_classes = model.n_classes
    names = list(model.labels)
    if rows is not None:
        if labels is None or len(labels) != len(rows):
            raise ToolError(f"labels must give one class per input row ({len(rows)})")
        if max(labels) >= n_classes:
            raise ToolError(f"labels go up to {max(labels)}; model {model_id} has {n_classes} classes (0..{n_classes - 1})")
        for i, row in enumerate(rows):
            if len(row) != model.input_size:
                raise ToolError(f"input[{i}] has {len(row)} features; model {model_id} takes {model.input_size}")
        x = float32_rows(rows)
        y = np.asarray(labels, np.int64)
        pred = model.predict(x).argmax(axis=1)
        settings = model_settings(model)
        oos, _, notes = _oos(settings, None, None)
        majority = int(np.bincount(y, minlength=n_classes).argmax())
        notes.append("majority-class baseline: the given labels themselves (hindsight: a conservative baseline)")
        summary = classification_summary(y, pred, n_classes=n_classes, majority=majority, confidence=confidence,
                                         block=max(1, settings["horizon"]))
        return EvaluationOutcome.make(model_id=model_id, source="rows", symbol=None, period=None, n=len(y), labels=names,
                                 classification=summary, out_of_sample=oos, trading=None, notes=notes)
    if labels is not None:
        raise ToolError("labels go with input rows; with a symbol and dates the labels come from the data")
    settings, sym, bars, ds, mask = _embedded_rows(model, symbol, start, end)
    part = ds.take(mask)
    probs = model.predict(part.X)
    pred = probs.argmax(axis=1)
    majority, source = _majority(ds, part.dates[0])
    notes = [f"majority-class baseline: {source}"]
    summary = classification_summary(part.y, pred, n_classes=n_classes,
                                     majority=majority if majority is not None else
                                     int(np.bincount(part.y, minlength=n_classes).argmax()),
                                     confidence=confidence, block=ds.horizon)
    oos, later, more = _oos(settings, part.dates, sym)
    notes += more
    if oos["status"] == "overlaps_training" and later.sum() >= 30:
        oos["classification_from_test_start"] = classification_summary(
            part.y[later], pred[later], n_classes=n_classes, majority=summary["majority_class"],
            confidence=confidence, block=ds.horizon)
    trading = None
    if len(part) >= 2:
        close = bars.set_index("date")["close"].reindex(part.dates).to_numpy(np.float64)
        cp = _class_positions(n_classes)
        rule = _position_rule(settings, model, ds, bars, threshold, cost_bps, slippage_bps, False, cp)
        result = run_backtest(close, rule.apply(probs), cost_bps, slippage_bps, dates=part.dates,
                              majority_class=majority, class_positions=cp)
        result.settings.update(threshold=rule.threshold, position_rule=rule.chosen_on)
        trading = result.to_dict()
    return EvaluationOutcome.make(model_id=model_id, source="embedded", symbol=sym,
                             period=[day(part.dates[0]), day(part.dates[-1])], n=len(part), labels=names,
                             classification=summary, out_of_sample=oos, trading=trading, notes=notes)


@dataclass
class _BacktestPlan:
    """What neural_backtest runs, prepared (and refused if too large) before any training."""

    name: str
    symbol: str
    walk: bool
    part: Any  # the Dataset rows of the period
    close: Any  # pandas Series of closes on part.dates
    full: Any  # the symbol's whole Dataset (for the causal majority class)
    model: Any = None
    spec: Any = None
    settings: dict | None = None
    blocks: int = 0
    bars: Any = None  # the symbol's bars (next-bar returns for choosing the position rule)


def _backtest_plan(server: PymicroServer, model_id, preset, symbol, start, end, walk, train_window, step,
                   horizon) -> _BacktestPlan:

    model = spec = settings = None
    if model_id is not None:
        _, model = server.models.get(model_id)
        settings, sym, bars, ds, mask = _embedded_rows(model, symbol, start, end)

        spec, name = spec_of(model.described), model_id
    else:
        sym = SYMBOL_ALIASES.get(symbol, symbol) if symbol else "SP500"
        bars = load_embedded([sym])
        ds = make_dataset(bars, preset, horizon=horizon)
        mask = _range_mask(ds.dates, start, end)
        spec, name = preset, preset
    part = ds.take(mask)
    if len(part) < 3:
        raise ToolError(f"{len(part)} labelled rows of {sym} in the period: too few to backtest")
    plan = _BacktestPlan(str(name), sym, walk, part, bars.set_index("date")["close"].reindex(part.dates), ds,
                         model, spec, settings, bars=bars)
    if walk:
        s0 = train_window + part.horizon
        plan.blocks = -(-(len(part) - s0) // step) if s0 < len(part) - 1 else 0
        if plan.blocks < 1:
            raise ToolError(f"{len(part)} labelled rows in the period are too few for train_window {train_window} "
                            f"+ horizon {part.horizon} and a test block: widen the dates or shorten train_window")
        if plan.blocks > MAX_WF_BLOCKS:
            raise ToolError(f"this walk-forward would retrain {plan.blocks} times; at most {MAX_WF_BLOCKS}: raise "
                            f"step (now {step}) or shorten the dates")
    return plan


def _backtest(report: Callable, server: PymicroServer, plan: _BacktestPlan, cost_bps, slippage_bps, threshold,
              long_only, train_window, step, epochs, patience, batch_size, seed) -> BacktestOutcome:

    part, notes = plan.part, []
    n_classes = len(part.label_names)
    cp = _class_positions(n_classes)
    if not plan.walk:
        probs = plan.model.predict(part.X)
        majority, source = _majority(plan.full, part.dates[0])
        rule = _position_rule(plan.settings, plan.model, plan.full, plan.bars, threshold, cost_bps, slippage_bps,
                              long_only, cp)
        result = run_backtest(plan.close.to_numpy(np.float64), rule.apply(probs), cost_bps,
                              slippage_bps, dates=part.dates, majority_class=majority, class_positions=cp,
                              long_only=long_only)
        result.settings.update(threshold=rule.threshold, position_rule=rule.chosen_on)
        result.classification = classification_summary(
            part.y, probs.argmax(axis=1), n_classes=n_classes, block=part.horizon,
            majority=majority if majority is not None else int(np.bincount(part.y, minlength=n_classes).argmax()))
        oos, _, more = _oos(plan.settings, part.dates, plan.symbol)
        notes += [f"out of sample: {oos['status']}: {oos['caveat']}", *more, f"majority class: {source}"]
        report(1, "backtested")
    else:
        def progress(k, total, info):
            report(k, f"block {k}/{total}: trained on {day(info['train_start'])}..{day(info['train_end'])} "
                      f"({info['train_rows']} rows), tested {day(info['test_start'])}..{day(info['test_end'])}")

        report(0, f"walking forward: {plan.blocks} blocks of {step} bars")
        result = walk_forward(LabelledSeries.from_dataset(part, plan.close), plan.spec, train_window=train_window,
                              step=step, threshold=threshold, cost_bps=cost_bps, slippage_bps=slippage_bps,
                              long_only=long_only, progress=progress,
                              train_kwargs={"epochs": epochs, "patience": patience, "batch_size": batch_size,
                                            "seed": seed})
        if plan.model is not None:
            notes.append(f"walk-forward retrains the architecture of {plan.name} from scratch before each block; "
                         "the registered weights themselves are not used")
        report(plan.blocks + 1, "backtested")
    out = result.to_dict()
    return BacktestOutcome(mode="walk_forward" if plan.walk else "frozen", model=plan.name, symbol=plan.symbol,
                           start=out["start"], end=out["end"], periods=out["periods"], metrics=out["metrics"],
                           classification=out["classification"], windows=out["windows"], settings=out["settings"],
                           notes=notes + out["notes"])


_TEST_DATA = TypeAdapter(_TestData)


def _parse_test_data(text: str) -> _TestData:
    """neural_evaluate's test_data: the JSON of {"input": rows, "labels": class indices}."""
    try:
        return _TEST_DATA.validate_json(text)
    except ValidationError as e:
        first = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ToolError(f"test_data must be the JSON of an object {{\"input\": [[features, ...], ...], "
                        f"\"labels\": [class index, ...]}}; at {where}: {first['msg']}") from None


@tool("Evaluate a registered model on embedded data or on given rows and labels")
async def neural_evaluate(
        model_id: ModelId,
        symbol: Symbol | None = None,  # type: ignore[valid-type]
        start: Date | None = None,
        end: Date | None = None,
        input: Rows | None = None,
        labels: Annotated[list[Annotated[int, Field(ge=0, le=15)]],
                          Field(min_length=1, max_length=MAX_ROWS)] | None = None,
        confidence: Annotated[float, Field(ge=0.5, le=0.999)] = 0.95,
        cost_bps: Bps = 1.0, slippage_bps: Bps = 1.0,
        threshold: Annotated[Probability | None, Field(
            description="Minimum class probability to take a position (default: chosen on the model's "
                        "validation period, as every pymicro command does).")] = None,
        test_data: Annotated[_TestData | Annotated[str, Field(max_length=MAX_REQUEST_BYTES)] | None, Field(
            description="The seed guide's argument: an object {\"input\": rows, \"labels\": class indices} "
                        "(or its JSON), the same as giving input and labels.")] = None,
        metrics: Annotated[list[Literal["accuracy", "sharpe", "max_drawdown"]] | None, Field(
            max_length=3, description="Accepted for the seed guide; every figure is always returned.")] = None,
        use_gpu: Annotated[bool | None, Field(description="Accepted for the seed guide: evaluation runs on "
                                                          "pymicro's C++ core on the CPU; no GPU is used.")]
        = None, *,
        ctx: Context) -> EvaluationOutcome:
    """Accuracy (with a confidence interval), balanced accuracy, per-class recall and the
    majority-class baseline with a one-sided binomial p-value, for a registered model on either
    (a) an embedded symbol between start and end (default: the model's first training symbol, all
    dates), with the features and labels of the model's preset, horizon and threshold, plus its
    positions backtested net of costs beside buy-and-hold, majority-class and momentum; or (b)
    `input` rows with their `labels` (class indices). `out_of_sample` says whether the rows come
    after the model's training dates (the blob's train_end/test_start metadata); if some do not,
    the figures for the rows from test_start alone are given too. `accuracy` and `sharpe` are
    repeated at the top level beside `majority_accuracy` and `buy_and_hold_sharpe`."""
    if test_data is not None:
        if input is not None or labels is not None:
            raise ToolError("give either test_data or input with labels, not both")
        data = _parse_test_data(test_data) if isinstance(test_data, str) else test_data
        input, labels = data.input, data.labels
    if input is not None and (symbol or start or end):
        raise ToolError("give either input rows with labels, or a symbol and dates, not both")
    if input is not None and len(input) * len(input[0]) > MAX_CELLS:
        raise ToolError(f"{len(input)} rows x {len(input[0])} features; at most {MAX_CELLS} numbers a call")
    _, model = server_of(ctx).models.get(model_id)
    out = await anyio.to_thread.run_sync(functools.partial(
        _evaluate, model_id, model, symbol, start, end, input, labels, confidence, cost_bps, slippage_bps,
        threshold))
    if use_gpu:
        out.notes.append("use_gpu: evaluation runs on pymicro's C++ core on the CPU; no GPU was used")
    return out

@tool("Backtest a registered model or a walk-forward of a preset, net of costs, beside baselines")
async def neural_backtest(
        model_id: ModelId | None = None,
        preset: TrainPreset | None = None,
        symbol: Symbol | None = None,  # type: ignore[valid-type]
        start: Date | None = None,
        end: Date | None = None,
        walk_forward: bool | None = None,
        cost_bps: Bps = 1.0, slippage_bps: Bps = 1.0,
        threshold: Annotated[Probability | None, Field(
            description="Minimum class probability to take a position (default: chosen on validation data: "
                        "the model's validation period, or each walk-forward block's early-stopping rows).")]
        = None,
        long_only: bool = False,
        train_window: Annotated[int, Field(ge=60, le=5000, description="Walk-forward training bars.")] = 504,
        step: Annotated[int, Field(ge=5, le=5000, description="Bars per test block (between retrains).")] = 126,
        epochs: Annotated[int, Field(ge=1, le=MAX_WF_EPOCHS)] = 5,
        patience: Annotated[int, Field(ge=1, le=MAX_WF_EPOCHS)] | None = 3,
        batch_size: Annotated[int, Field(ge=8, le=4096)] = 64,
        horizon: Annotated[int, Field(ge=1, le=60, description="Label horizon (preset only; a model uses "
                                                               "its own).")] = 5,
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0, *,
        ctx: Context) -> BacktestOutcome:
    """Trade a model's class probabilities on one embedded symbol (long where P(up) is the
    largest and >= threshold, short likewise for down), net of cost_bps + slippage_bps per unit
    traded, and report the metrics beside buy-and-hold, majority-class and momentum baselines on
    the same dates. With `model_id` (default mode 'frozen'): the registered model on every bar of
    the period, with an out-of-sample caveat from its training dates. With `preset`, or
    walk_forward=true: retrain before every block of `step` bars on the earlier bars only
    (labels embargoed), at most 40 retrains of at most 50 epochs; one progress notification per
    block. One training job per server."""
    if (model_id is None) == (preset is None):
        raise ToolError("give exactly one of model_id (a registered model) or preset (walk-forward training)")
    walk = (model_id is None) if walk_forward is None else walk_forward
    if not walk and model_id is None:
        raise ToolError("walk_forward=false needs a model_id: a preset has no weights until it is trained")
    server = server_of(ctx)
    plan = await anyio.to_thread.run_sync(functools.partial(
        _backtest_plan, server, model_id, preset, symbol, start, end, walk, train_window, step, horizon))
    if walk and not server.train_lock.acquire(blocking=False):
        raise ToolError("a training job is already running on this server; try again when it has finished")
    try:
        return await Progress(ctx, total=plan.blocks + 1 if walk else 1).run(
            _backtest, server, plan, cost_bps, slippage_bps, threshold, long_only, train_window, step, epochs,
            patience, batch_size, seed)
    finally:
        if walk:
            server.train_lock.release()


def _validate_model(report: Callable, server: PymicroServer, model_id, symbols, fit, **options):

    _, model = server.models.get(model_id)
    report(0, "building the features and labels")
    if fit == "tinygrad" and not server.train_lock.acquire(blocking=False):
        raise ToolError("a training job is already running on this server; use fit='ridge' or try again")
    try:
        out = validate_on_embedded(model, symbols, fit=fit, **options)
    finally:
        if fit == "tinygrad":
            server.train_lock.release()
    report(1, f"validated: confidence {out['confidence']:.2f}")
    return ValidationOutcome(model_id=model_id, **{k: out[k] for k in ValidationOutcome.model_fields
                                                   if k != "model_id"})

@tool("Validate a registered model: leaks, look-ahead and implausible figures, with an answer")
async def validate_model(
        model_id: ModelId,
        symbols: Annotated[list[Symbol], Field(min_length=1, max_length=len(SYMBOLS))] | None = None,  # type: ignore[valid-type]
        lookback_days: Annotated[int, Field(ge=100, le=100_000, description=
                                            "The last bars of each symbol only: the neural_train "
                                            "option the model was trained with.")] | None = None,
        fit: Literal["ridge", "tinygrad", "none"] = "ridge",
        shuffles: Annotated[int, Field(ge=0, le=10)] = 2,
        n_trials: Annotated[int, Field(ge=1, le=100_000, description="Configurations tried before this "
                                                                     "one (deflated Sharpe).")] = 1,
        cost_bps: Bps = 1.0, slippage_bps: Bps = 1.0,
        resamples: Annotated[int, Field(ge=50, le=2000)] = 200,
        seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0, *,
        ctx: Context) -> ValidationOutcome:
    """pymicro.evaluation.validation.validate on the embedded data of `symbols` (default: the symbols the
    model was trained on; `lookback_days` as in training): the model's preset features and labels,
    split by date as the trainer splits, then the checks: split and purge, feature and output look-ahead scans, label-shift
    and shuffled-label retraining experiments (`fit`: 'ridge' a fast linear stand-in, 'tinygrad'
    the model's own architecture, 'none' to skip), normalisation provenance, train/test gap,
    accuracy against the majority class, probabilistic and deflated Sharpe, plausibility. Returns
    a plain-language answer, the risks and a confidence (docs/validation.md)."""
    server = server_of(ctx)
    server.registry.get(model_id)
    syms = canonical_symbols(symbols)
    return await Progress(ctx, total=1).run(
        _validate_model, server, model_id, syms, fit, lookback_days=lookback_days, shuffles=shuffles,
        n_trials=n_trials,
        cost_bps=cost_bps, slippage_bps=slippage_bps, resamples=resamples, seed=seed)

