"""Incremental features and the tick-to-signal pipeline: thin faces over ``pymicro._core``.

:class:`FeatureStream` keeps the state of the momentum and reversal features
(``cpp/pymicro/stream.hpp``) and updates it in O(1) per bar. After each bar its row equals
what ``pymicro.market.technical.momentum_features`` / ``reversal_features(bars,
dropna=False)`` compute for the same history (NaN during the 60-bar warm-up;
``tests/test_stream.py`` checks every row of the embedded histories and of the E-mini tick
bars to 1e-6 relative). ``peek`` gives the row a forming bar would have, committing nothing.

:class:`Pipeline` runs ticks (or finished bars) through bars -> features -> the blob's
normalisation -> the network -> a position, in one native call per event. The features it
computes are the ones the blob names, in the blob's order; a blob naming a feature the
stream cannot compute is refused with :class:`~pymicro.errors.DataError`; the sentiment
preset's, which need index bars, macro series or news that no tick carries, with
:class:`NonTickInputsError` naming those inputs.

Positions follow :func:`pymicro.evaluation.backtest.positions_from_probabilities`: the
class with the unique largest probability, if that probability is at least
``threshold``, maps to its position (down -1, flat 0, up +1 by default); otherwise 0.
During warm-up (any feature NaN) the probabilities are NaN and the position is 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from pymicro import _core
from pymicro.errors import DataError, InputError, NonTickInputsError
from pymicro.runtime.model import Model, load

STREAM_FEATURES: tuple[str, ...] = tuple(_core.STREAM_FEATURES)
"""The feature names the incremental stream computes: the momentum set in its model order,
then the reversal set's other 26 (``REVERSAL_FEATURES`` shares six with momentum)."""

STREAM_LOOKBACK: int = int(_core.STREAM_LOOKBACK)
"""Bars before ``t`` the stream reads: rows 0..59 are warm-up, as in the batch pipeline."""

BAR_KINDS = ("time", "tick", "volume")


def _non_tick_inputs() -> dict[str, str]:
    """feature name -> the input it needs beyond the symbol's own ticks (the sentiment preset)."""
    from pymicro.market.news import NEWS_FEATURES
    from pymicro.market.reasoning_features import REASONING_FEATURES, SENTIMENT_CONTEXT_FEATURES

    index, macro = "index bars (S&P 500, NASDAQ)", "macro series (ECB exchange rates, T-bill rate, core CPI)"
    need = {name: "news headlines (pymicro.market.news)" for name in NEWS_FEATURES}
    need.update({name: f"{index} and {macro}" for name in REASONING_FEATURES})
    for name in SENTIMENT_CONTEXT_FEATURES:
        if name.startswith(("mkt_", "beta_", "corr_", "rel_strength", "tech_vs")):
            need[name] = index
        elif name not in STREAM_FEATURES:
            need[name] = macro
    return need


def check_streamable(names, whose: str = "the request") -> None:
    """Raise :class:`NonTickInputsError` if ``names`` hold features computed from inputs other
    than the symbol's ticks (the sentiment preset's); unknown names are left to the core's
    :class:`~pymicro.errors.DataError`."""
    need = _non_tick_inputs()
    bad = tuple(n for n in names if n in need and n not in STREAM_FEATURES)
    if bad:
        inputs = tuple(dict.fromkeys(need[n] for n in bad))
        raise NonTickInputsError(
            f"{whose} names {len(bad)} feature(s) that need inputs a tick stream does not carry: "
            f"{'; '.join(inputs)} (features: {', '.join(bad[:8])}{', ...' if len(bad) > 8 else ''}). "
            "The stream computes the momentum and reversal features from ticks alone; a sentiment model "
            "runs offline (pymicro.market.features.compute_features with news= and macro=)", inputs, bad)


def _model(source) -> Model:
    if isinstance(source, Model):
        return source
    if isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        return load(source)
    raise InputError(f"expected a pymicro Model, a blob path or blob bytes, got {type(source).__name__}")


class FeatureStream:
    """The features ``names`` updated bar by bar (``FeatureStream.for_model(m)``: a blob's names).

    ``update(open, high, low, close, volume)`` commits a bar and returns its row (float64,
    one value per name); ``peek(...)`` returns the row a bar would have without committing
    it; ``update_many(bars)`` commits an (n, 5) array and returns the (n, k) rows. A name
    the stream cannot compute raises :class:`~pymicro.errors.DataError` listing those it can.
    """

    def __init__(self, names):
        if isinstance(names, str):
            raise InputError("names must be a sequence of feature names, not one string")
        names = list(names)
        check_streamable(names)
        self._impl = _core.FeatureStream(names)
        self.names: tuple[str, ...] = tuple(self._impl.names)
        self.update = self._impl.update
        self.peek = self._impl.peek
        self.update_many = self._impl.update_many

    @classmethod
    def for_model(cls, model) -> "FeatureStream":
        """The stream of the features a model (Model, blob path or bytes) was trained on."""
        return cls(_model(model).info.feature_names)

    @property
    def bars(self) -> int:
        """Bars committed so far."""
        return self._impl.bars

    @property
    def ready(self) -> bool:
        """Whether the last committed row is past the warm-up (every feature defined)."""
        return self._impl.bars > STREAM_LOOKBACK

    def reset(self) -> None:
        self._impl.reset()


class WasmFeatureStream:
    """The same incremental features run inside ``pymicro.wasm`` (wasmtime, ``pymicro[wasm]``).

    The module compiles ``cpp/pymicro/stream.hpp`` too; its ``pm_stream_*`` exports select the
    loaded blob's feature names and take one bar at a time. ``update`` / ``peek`` /
    ``update_many`` as in :class:`FeatureStream` (rows in the blob's feature order);
    ``probabilities()`` runs the blob on the last row inside the same module.
    """

    def __init__(self, model):
        from pymicro.errors import BackendError
        from pymicro.runtime.wasm import STREAM_ABI, Guest, _engine_and_module, _type_names, _wasmtime

        m = _model(model)
        self.names: tuple[str, ...] = m.info.feature_names
        check_streamable(self.names, "the model's blob")
        engine, module = _engine_and_module()
        types = {e.name: e.type for e in module.exports}
        for name, want in STREAM_ABI.items():
            ty = types.get(name)
            if ty is None or (_type_names(ty.params), _type_names(ty.results)) != want:
                raise BackendError(f"this pymicro.wasm lacks {name} {want[0]} -> {want[1]} (an older build)")
        self._store = _wasmtime().Store(engine)
        self._guest = Guest(self._store, module, fast=False)
        self._guest.load(m.blob)
        exports = self._guest.instance.exports(self._store)
        init, self._bar, row, self._bars = (exports[n] for n in STREAM_ABI)
        code = init(self._store)
        if code > 0:
            raise DataError(f"the model's blob names {self.names[code - 1]!r}, which the incremental stream "
                            f"cannot compute; it computes: {', '.join(STREAM_FEATURES)}")
        if code < 0:
            raise DataError("the model's blob names no features (freeze a Spec with feature_names=...)")
        self._guest.reserve(1)
        self._out = self._guest.call("pm_out")
        self._row = row(self._store)

    def _push(self, bar, commit: int) -> np.ndarray:
        if self._bar(self._store, *(float(v) for v in bar), commit) < 0:
            raise InputError(f"a bar needs finite prices > 0 and a finite volume >= 0, got {tuple(bar)}")
        return self._guest.view(self._row, len(self.names), np.float64).copy()

    def update(self, open, high, low, close, volume) -> np.ndarray:  # noqa: A002
        return self._push((open, high, low, close, volume), 1)

    def peek(self, open, high, low, close, volume) -> np.ndarray:  # noqa: A002
        return self._push((open, high, low, close, volume), 0)

    def update_many(self, bars) -> np.ndarray:
        bars = np.asarray(bars, dtype=np.float64)
        if bars.ndim != 2 or bars.shape[1] != 5:
            raise InputError("bars must be an (n, 5) array of open, high, low, close, volume")
        return np.array([self._push(b, 1) for b in bars]).reshape(len(bars), len(self.names))

    def probabilities(self) -> np.ndarray:
        """The blob's class probabilities for the last row (NaN in warm-up), run inside the module."""
        self._guest.call("pm_run", 1, 0)
        return self._guest.view(self._out, self._guest.n_classes, np.float32).copy()

    @property
    def bars(self) -> int:
        return int(self._bars(self._store))


@dataclass(frozen=True)
class Signal:
    """One decision: the position and the class probabilities behind it (NaN in warm-up)."""

    position: float
    probabilities: np.ndarray
    ready: bool
    bars: int


class Pipeline:
    """Ticks or bars in, a position out: one native call per event.

    ``model``: a loaded :class:`~pymicro.Model` (its blob is used), a blob path or bytes.
    ``bar``: how ticks become bars: ``"time"`` (``bar_size`` seconds of ``ts``), ``"tick"``
    (``bar_size`` ticks) or ``"volume"`` (a bar closes once its volume reaches ``bar_size``).
    ``threshold`` and ``class_positions`` as in ``positions_from_probabilities``.

    ``on_tick(price, size, ts)`` folds a tick into the forming bar (committing the bar it
    completes or ends) and returns the position decided on the features of the committed
    history plus the forming bar (a ``peek``: a tick commits nothing by itself).
    ``on_bar(open, high, low, close, volume)`` commits a finished bar and decides on it.
    Both return the position (a float); ``probabilities`` and ``features`` are read-only
    views of the buffers the last call filled (copy them to keep them).
    """

    def __init__(self, model, *, bar: str = "time", bar_size: float = 60.0, threshold: float = 0.5,
                 class_positions=None, isa: str = "auto"):
        self.model = _model(model)
        if bar not in BAR_KINDS:
            raise InputError(f"bar must be one of {BAR_KINDS}, got {bar!r}")
        check_streamable(self.model.info.feature_names, "the model's blob")
        self.bar, self.bar_size = bar, float(bar_size)
        self._impl = _core.StreamPipeline(self.model.blob, bar, float(bar_size), float(threshold),
                                          None if class_positions is None else [float(p) for p in class_positions],
                                          isa)
        self.feature_names: tuple[str, ...] = self.model.info.feature_names
        # the native methods themselves: no Python frame between the caller and the core
        self.on_tick = self._impl.on_tick
        self.on_bar = self._impl.on_bar
        self.flush = self._impl.flush

    def replay_ticks(self, price, size, ts) -> tuple[np.ndarray, np.ndarray]:
        """``on_tick`` over arrays, the loop in C++: (positions (n,), probabilities (n, classes))."""
        return self._impl.replay_ticks(price, size, ts)

    def replay_bars(self, bars) -> tuple[np.ndarray, np.ndarray]:
        """``on_bar`` over an (n, 5) array of open, high, low, close, volume, the loop in C++."""
        return self._impl.replay_bars(bars)

    def reset(self) -> None:
        """Forget every bar and the forming one (a new session)."""
        self._impl.reset()

    @property
    def probabilities(self) -> np.ndarray:
        return self._impl.probabilities

    @property
    def features(self) -> np.ndarray:
        return self._impl.features

    @property
    def position(self) -> float:
        return self._impl.position

    @property
    def ready(self) -> bool:
        return self._impl.ready

    @property
    def bars(self) -> int:
        return self._impl.bars

    def signal(self) -> Signal:
        """The last decision as a value that does not change with the next tick."""
        return Signal(self._impl.position, self._impl.probabilities.copy(), self._impl.ready, self._impl.bars)
