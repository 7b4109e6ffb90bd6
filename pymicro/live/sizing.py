"""Position size from the model's probabilities: fractional Kelly with caps.

    from pymicro.live.sizing import kelly_fraction, Sizer
    f = kelly_fraction(p_up=0.45, p_down=0.30, move=0.0008, cost=0.0001)   # of equity, long
    sizer = Sizer(fraction=0.25, max_position=1.0, max_daily_loss=0.02, max_drawdown=0.10)
    target = sizer.target(probabilities, move, equity=..., day=...)       # signed, of equity

The derivation (docs/live.md, "Sizing"): over the next bar a long position of ``f`` times
equity gains ``a = move - cost`` per unit with probability ``p_up``, loses ``b = move + cost``
with probability ``p_down``, and (about) nothing when the bar is flat. Its expected log
growth ``g(f) = p_up log(1 + f a) + p_down log(1 - f b)`` is largest at

    f* = (p_up a - p_down b) / (a b (p_up + p_down))

(``g'(f) = 0``); with no cost, ``(p_up - p_down) / ((p_up + p_down) move)``. A short is the
same with ``p_up`` and ``p_down`` swapped. Only the side with a positive ``f*`` is taken; a
negative edge after costs gives 0. ``move`` is the expected absolute return of one bar
(``Sizer`` does not guess it: pass e.g. the mean |return| of recent bars). Kelly is only as
good as the probabilities: they are a small network's, so ``fraction`` (a quarter by
default) scales it down, and the caps bound what is left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pymicro.errors import InputError


def kelly_fraction(p_up: float, p_down: float, move: float, cost: float = 0.0) -> float:
    """The Kelly fraction of equity for the next bar: > 0 long, < 0 short, 0 no edge."""
    for name, v in (("p_up", p_up), ("p_down", p_down), ("move", move), ("cost", cost)):
        if not math.isfinite(v):
            raise InputError(f"{name} must be finite, got {v}")
    if not (0 <= p_up <= 1 and 0 <= p_down <= 1 and p_up + p_down <= 1 + 1e-9):
        raise InputError(f"p_up and p_down must be probabilities summing to at most 1, got {p_up}, {p_down}")
    if move <= 0 or cost < 0:
        raise InputError(f"move must be > 0 and cost >= 0, got move={move}, cost={cost}")
    a, b = move - cost, move + cost
    if a <= 0 or p_up + p_down == 0:
        return 0.0
    long = (p_up * a - p_down * b) / (a * b * (p_up + p_down))
    short = (p_down * a - p_up * b) / (a * b * (p_up + p_down))
    if long > 0:
        return long
    if short > 0:
        return -short
    return 0.0


@dataclass
class Sizer:
    """Fractional Kelly with caps. ``target(...)`` returns the signed position as a fraction of
    equity: ``fraction`` times Kelly, clipped to ``max_position``; 0 for the rest of a day once
    that day's loss reaches ``max_daily_loss`` (of the day's opening equity), and 0 from the
    moment the drawdown from the equity peak reaches ``max_drawdown`` until :meth:`resume`.
    ``labels`` name the probabilities' classes (``down``/``up`` are read; others count as flat).
    """

    fraction: float = 0.25
    max_position: float = 1.0
    max_daily_loss: float = 0.02
    max_drawdown: float = 0.10
    cost: float = 0.0
    labels: tuple[str, ...] = ("down", "flat", "up")
    halted: str | None = field(default=None, init=False)
    _day: object = field(default=None, init=False, repr=False)
    _day_open: float = field(default=math.nan, init=False, repr=False)
    _peak: float = field(default=-math.inf, init=False, repr=False)

    def __post_init__(self):
        if not 0 < self.fraction <= 1:
            raise InputError(f"fraction must be in (0, 1], got {self.fraction}")
        for name in ("max_position", "max_daily_loss", "max_drawdown"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        if "up" not in self.labels or "down" not in self.labels:
            raise InputError(f"labels must include 'up' and 'down', got {self.labels}")

    def resume(self) -> None:
        """Lift a drawdown stop (a person decides that); the peak restarts at the next equity."""
        self.halted, self._peak = None, -math.inf

    def target(self, probabilities, move: float, *, equity: float, day=None) -> float:
        p = np.asarray(probabilities, dtype=np.float64)
        if p.shape != (len(self.labels),):
            raise InputError(f"expected {len(self.labels)} probabilities, got shape {p.shape}")
        if not math.isfinite(equity) or equity <= 0:
            self.halted = self.halted or "equity"
            return 0.0
        if day != self._day:
            self._day, self._day_open = day, equity
            if self.halted == "daily loss":
                self.halted = None
        self._peak = max(self._peak, equity)
        if self.halted is None and equity <= self._day_open * (1 - self.max_daily_loss):
            self.halted = "daily loss"
        if self.halted in (None, "daily loss") and equity <= self._peak * (1 - self.max_drawdown):
            self.halted = "drawdown"
        if self.halted is not None or not np.isfinite(p).all() or not math.isfinite(move) or move <= 0:
            return 0.0
        k = kelly_fraction(p[self.labels.index("up")], p[self.labels.index("down")], move, self.cost)
        return float(np.clip(self.fraction * k, -self.max_position, self.max_position))


__all__ = ["Sizer", "kelly_fraction"]
