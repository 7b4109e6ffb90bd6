"""Paper trading only: orders fill at the next tick, with costs and slippage. No broker API.

    from pymicro.live.paper import PaperBroker
    broker = PaperBroker(cash=100_000, cost_bps=0.5, slippage_bps=1.0)
    broker.on_tick(price, ts)          # fills what was ordered before this tick, marks equity
    broker.order(target_fraction)      # the position wanted, as a signed fraction of equity

An order placed after tick ``t`` fills at tick ``t + 1``'s price moved against the trader by
``slippage_bps`` (buys higher, sells lower), and pays ``cost_bps`` of the traded notional.
The fill price never sees the tick the decision was made on, so a signal cannot trade on the
price it was computed from. Quantities are fractional units of the instrument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pymicro.errors import InputError


@dataclass(frozen=True)
class Fill:
    ts: float
    quantity: float   # signed units bought (+) or sold (-)
    price: float      # after slippage
    cost: float       # commission paid


class PaperBroker:
    def __init__(self, cash: float = 100_000.0, *, cost_bps: float = 0.5, slippage_bps: float = 1.0):
        if not (math.isfinite(cash) and cash > 0):
            raise InputError(f"cash must be > 0, got {cash}")
        if cost_bps < 0 or slippage_bps < 0:
            raise InputError("cost_bps and slippage_bps must be >= 0")
        self.cash, self.units = float(cash), 0.0
        self.cost_bps, self.slippage_bps = float(cost_bps), float(slippage_bps)
        self.price = math.nan
        self.fills: list[Fill] = []
        self.costs = 0.0
        self._target: float | None = None

    @property
    def equity(self) -> float:
        return self.cash + (self.units * self.price if self.units else 0.0)

    @property
    def exposure(self) -> float:
        """The position as a signed fraction of equity (0 before the first tick)."""
        e = self.equity
        return self.units * self.price / e if self.units and e > 0 else 0.0

    def order(self, target_fraction: float) -> None:
        """Ask for a position of ``target_fraction`` of equity, filled at the next tick."""
        if not math.isfinite(target_fraction):
            raise InputError(f"target_fraction must be finite, got {target_fraction}")
        self._target = float(target_fraction)

    def on_tick(self, price: float, ts: float = math.nan) -> Fill | None:
        if not (math.isfinite(price) and price > 0):
            raise InputError(f"price must be finite and > 0, got {price}")
        fill = None
        if self._target is not None:
            equity = self.cash + self.units * price
            want = self._target * equity / price
            qty = want - self.units
            if qty:
                px = price * (1 + math.copysign(self.slippage_bps, qty) * 1e-4)
                cost = abs(qty) * px * self.cost_bps * 1e-4
                self.cash -= qty * px + cost
                self.units += qty
                self.costs += cost
                fill = Fill(float(ts), qty, px, cost)
                self.fills.append(fill)
            self._target = None
        self.price = float(price)
        return fill


@dataclass(frozen=True)
class PaperRun:
    """What :func:`paper_trade` did: per committed bar, the equity and the target it ordered."""

    equity: np.ndarray        # broker equity after each tick
    targets: list[float]      # the target ordered at each committed bar
    decided_at: list[int]     # the tick index of each of those decisions (fills come at the next tick)
    fills: list[Fill]
    costs: float
    halted: str | None


def paper_trade(pipe, price, size, ts, sizer, broker: PaperBroker, *, vol_window: int = 20,
                log=None, model_id: str | None = None) -> PaperRun:
    """Ticks through ``pipe``; at each committed bar the ``sizer`` turns its probabilities into a
    target (``move``: the mean |return| of the last ``vol_window`` bar closes), ordered from
    ``broker`` and filled at the next tick. ``day`` for the sizer's daily cap is ``ts // 86400``.
    With ``log`` (a :class:`~pymicro.live.predictions.PredictionLog`) each decision is logged
    under ``model_id``."""
    price, size, ts = (np.asarray(a, dtype=np.float64) for a in (price, size, ts))
    if vol_window < 2:
        raise InputError(f"vol_window must be >= 2, got {vol_window}")
    closes: list[float] = []
    equity = np.empty(len(price))
    targets: list[float] = []
    decided: list[int] = []
    rows = []
    closes_on_previous_tick = pipe.bar == "time"  # a time bar is committed by the next interval's first tick
    bars = pipe.bars
    for i in range(len(price)):
        broker.on_tick(price[i], ts[i])
        equity[i] = broker.equity
        pipe.on_tick(price[i], size[i], ts[i])
        if pipe.bars == bars:
            continue
        bars = pipe.bars
        closes.append(price[i - 1] if closes_on_previous_tick and i else price[i])
        recent = np.asarray(closes[-(vol_window + 1):])
        move = float(np.mean(np.abs(np.diff(recent) / recent[:-1]))) if len(recent) > 2 else math.nan
        target = sizer.target(pipe.probabilities, move, equity=broker.equity, day=int(ts[i] // 86_400))
        broker.order(target)
        targets.append(target)
        decided.append(i)
        if log is not None:
            rows.append((ts[i], price[i], target, pipe.probabilities.copy()))
    if log is not None and rows:
        t, p, q, pr = zip(*rows)
        log.append_many(model_id, t, p, q, np.array(pr))
    return PaperRun(equity, targets, decided, list(broker.fills), broker.costs, sizer.halted)


__all__ = ["Fill", "PaperBroker", "PaperRun", "paper_trade"]
