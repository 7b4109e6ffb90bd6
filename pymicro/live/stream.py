"""Incremental features and the tick-to-signal pipeline: thin faces over ``pymicro._core``.

:class:`FeatureStream` keeps the momentum features' state (``cpp/pymicro/stream.hpp``) and
updates it in O(1) per bar. After each bar its row equals what
``pymicro.market.technical.momentum_features(bars, dropna=False)`` computes for the same
history (NaN during the 60-bar warm-up; ``tests/test_stream.py`` checks every row of
the embedded histories to 1e-6 relative). ``peek`` gives the row a forming bar would have,
committing nothing.

:class:`Pipeline` runs ticks (or finished bars) through bars -> features -> the blob's
normalisation -> the network -> a position, in one native call per event. The features it
computes are the ones the blob names, in the blob's order; a blob naming a feature the
stream cannot compute is refused with :class:`~pymicro.errors.DataError`.

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
from pymicro.errors import InputError
from pymicro.runtime.model import Model, load

STREAM_FEATURES: tuple[str, ...] = tuple(_core.STREAM_FEATURES)
"""The feature names the incremental stream computes (the momentum set, in model order)."""

STREAM_LOOKBACK: int = int(_core.STREAM_LOOKBACK)
"""Bars before ``t`` the stream reads: rows 0..59 are warm-up, as in the batch pipeline."""

BAR_KINDS = ("time", "tick", "volume")


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
        self._impl = _core.FeatureStream(list(names))
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
