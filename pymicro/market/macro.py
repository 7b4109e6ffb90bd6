"""Market and macro inputs of the reasoning features, and the date on which each value is known.

Every input is real data that ships with pymicro (``pymicro/datasets``, sources and
licences in ``NOTICE.txt`` and ``docs/data.md``) or that the caller supplies:

=============  ================================================  ==========================
input          default (shipped)                                 usable by a bar dated ``t``
=============  ================================================  ==========================
market         S&P 500 daily bars, 1999-01-04 .. 2018-12-31      bars dated ``<= t``
tech           NASDAQ Composite daily bars, same span            bars dated ``<= t``
fx             ECB reference rates (USD JPY GBP CAD SEK CHF      fixings dated ``< t``
               per EUR), 1999-01-04 .. 2026-10-30                (strictly before)
short_rate     one-month T-bill (Fama-French RF x 12, % a        month ``m`` from the first
               year), monthly, 1926-07 .. 2018-11                day of month ``m + 2``
core_cpi       U.S. CPI less food and energy (FRED CPILFESL),    month ``m`` from the first
               monthly, 1957-01 .. 2018-11                       day of month ``m + 2``
=============  ================================================  ==========================

A bar uses the **latest value it may use** (an as-of join that only looks back: a
forward fill from the past, never a backward fill) as long as that value is not
stale: at most :data:`DAILY_MAX_STALE_DAYS` calendar days old for the daily series
(counted from the day it became usable) and :data:`MONTHLY_MAX_STALE_DAYS` for the
monthly ones. Past that, or before a series starts, the input is NaN, every feature
built on it is NaN, and :func:`pymicro.market.dataset.make_dataset` drops the row. Nothing
is interpolated, and no value is ever taken from a later date.

    from pymicro.market.macro import MacroInputs
    macro = MacroInputs.embedded()
    cols = macro.aligned(dates)       # dict of float64 arrays, one value per date
    macro.coverage()                  # first / last usable dates of each input
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pymicro.errors import DataError
from pymicro.market.bars import bars_of_one_symbol, lag, log_returns, rolling, safe_ratio, window_mean, window_std
from pymicro.market.data import _embedded_bytes
from pymicro.market.data import load_embedded

DAILY_MAX_STALE_DAYS = 7
"""A daily input older than this many calendar days (since it became usable) is missing."""

MONTHLY_MAX_STALE_DAYS = 45
"""A monthly input older than this many calendar days (since it became usable) is missing."""

FX_CURRENCIES = ("USD", "JPY", "GBP", "CAD", "SEK", "CHF")
"""ECB reference-rate columns the dollar index needs (units of the currency per 1 EUR)."""

# ICE U.S. Dollar Index formula: constant and exponents of the six USD rates
_USDX_CONSTANT = 50.14348112
_USDX_WEIGHTS = {"EUR": 0.576, "JPY": 0.136, "GBP": 0.119, "CAD": 0.091, "SEK": 0.042, "CHF": 0.036}

_DAY = np.timedelta64(1, "D")


# --------------------------------------------------------------------------- as-of alignment


def asof_index(available: np.ndarray, dates: np.ndarray, max_stale_days: int) -> np.ndarray:
    """For each date, the index of the latest value usable on or before it; -1 if none or stale.

    ``available`` (strictly increasing datetime64) is the first date on which each
    value may be used. A value is stale on a date more than ``max_stale_days``
    calendar days after its ``available`` date.
    """
    available = np.asarray(available, "datetime64[ns]")
    dates = np.asarray(dates, "datetime64[ns]")
    idx = np.searchsorted(available, dates, side="right") - 1
    ok = idx >= 0
    age = np.full(dates.shape, np.timedelta64(0, "ns"))
    age[ok] = dates[ok] - available[idx[ok]]
    idx[~ok | (age > np.timedelta64(int(max_stale_days), "D"))] = -1
    return idx


def take(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values[idx]`` with NaN where ``idx == -1``."""
    out = np.full(idx.shape, np.nan)
    ok = idx >= 0
    out[ok] = np.asarray(values, np.float64)[idx[ok]]
    return out


def _months(dates: np.ndarray) -> np.ndarray:
    """Months since year 0 of datetime64 dates (for lags counted in calendar months)."""
    m = np.asarray(dates, "datetime64[M]").astype(np.int64)
    return m


def _monthly_change(months: np.ndarray, values: np.ndarray, k: int, *, ratio: bool = False) -> np.ndarray:
    """``values[m] - values[m - k months]`` (or ``values[m] / values[m-k] - 1``); NaN if month m-k is absent."""
    pos = {int(m): i for i, m in enumerate(months)}
    out = np.full(values.shape, np.nan)
    for i, m in enumerate(months):
        j = pos.get(int(m) - k)
        if j is not None:
            out[i] = values[i] / values[j] - 1.0 if ratio else values[i] - values[j]
    return out


def _first_of_month_plus(months: np.ndarray, k: int) -> np.ndarray:
    """The first day of month ``m + k`` for datetime64 month starts."""
    return (np.asarray(months, "datetime64[M]") + np.timedelta64(k, "M")).astype("datetime64[ns]")


# --------------------------------------------------------------------------- shipped files


def _read_shipped(filename: str) -> pd.DataFrame:

    return pd.read_csv(io.BytesIO(_embedded_bytes(filename)), compression="gzip")


@functools.cache
def load_ecb_fx() -> pd.DataFrame:
    """The shipped ECB reference rates: ``date`` and units of USD, JPY, GBP, CAD, SEK, CHF per EUR."""
    raw = _read_shipped("ecb_fx.csv.gz")
    out = pd.DataFrame({"date": pd.to_datetime(raw["Date"], format="%Y-%m-%d")})
    for c in FX_CURRENCIES:
        out[c] = raw[c].astype(np.float64)
    return out


@functools.cache
def load_short_rate() -> pd.DataFrame:
    """Monthly one-month T-bill rate: ``month`` (first day) and ``rate`` in percent a year (RF x 12)."""
    raw = _read_shipped("arch_frenchdata.csv.gz")
    month = pd.to_datetime(raw["Date"].astype(str), format="%Y%m")
    return pd.DataFrame({"month": month, "rate": raw["RF"].astype(np.float64) * 12.0})


@functools.cache
def load_core_cpi() -> pd.DataFrame:
    """Monthly U.S. CPI less food and energy (FRED CPILFESL): ``month`` (first day) and ``level``."""
    raw = _read_shipped("arch_core_cpi.csv.gz")
    month = pd.to_datetime(raw["Date"], format="%m/%d/%Y")
    return pd.DataFrame({"month": month, "level": raw["CPILFESL"].astype(np.float64)})


def dollar_index(fx: pd.DataFrame) -> np.ndarray:
    """A U.S. dollar index from ECB reference rates, with the ICE U.S. Dollar Index formula.

    ``USDX = 50.14348112 * EURUSD^-0.576 * USDJPY^0.136 * GBPUSD^-0.119 * USDCAD^0.091
    * USDSEK^0.042 * USDCHF^0.036``, where ``EURUSD = USD``, ``USDJPY = JPY / USD``,
    ``GBPUSD = USD / GBP`` and so on from the per-euro quotes. The ECB sets its rates
    once a day in the early afternoon CET, not at ICE's times, so this tracks but is not
    the ICE index.
    """
    ln = {c: np.log(fx[c].to_numpy(np.float64)) for c in FX_CURRENCIES}
    usd = ln["USD"]
    out = (
        math.log(_USDX_CONSTANT)
        - _USDX_WEIGHTS["EUR"] * usd
        + _USDX_WEIGHTS["JPY"] * (ln["JPY"] - usd)
        - _USDX_WEIGHTS["GBP"] * (usd - ln["GBP"])
        + _USDX_WEIGHTS["CAD"] * (ln["CAD"] - usd)
        + _USDX_WEIGHTS["SEK"] * (ln["SEK"] - usd)
        + _USDX_WEIGHTS["CHF"] * (ln["CHF"] - usd)
    )
    return np.exp(out)


# --------------------------------------------------------------------------- validation


def _dates_increasing(dates: np.ndarray, what: str) -> None:
    if dates.size > 1 and not np.all(dates[1:] > dates[:-1]):
        i = int(np.flatnonzero(~(dates[1:] > dates[:-1]))[0])
        raise DataError(f"{what}: dates must be strictly increasing: {dates[i + 1]} (row {i + 1}) follows {dates[i]}")


def _check_fx(fx: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(fx, pd.DataFrame):
        raise DataError(f"fx: expected a DataFrame, got {type(fx).__name__}")
    missing = [c for c in ("date", *FX_CURRENCIES) if c not in fx.columns]
    if missing:
        raise DataError(f"fx: missing column(s) {', '.join(missing)} (rates are units per 1 EUR)")
    out = pd.DataFrame({"date": pd.to_datetime(fx["date"]).to_numpy("datetime64[ns]")})
    for c in FX_CURRENCIES:
        a = pd.to_numeric(fx[c], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(a) | (a <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"fx: column {c!r} has an invalid rate {fx[c].iloc[i]!r} at row {i} (must be > 0)")
        out[c] = a
    _dates_increasing(out["date"].to_numpy(), "fx")
    return out


def _check_monthly(frame: pd.DataFrame, value: str, what: str, positive: bool) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what}: expected a DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("month", value) if c not in frame.columns]
    if missing:
        raise DataError(f"{what}: missing column(s) {', '.join(missing)}")
    month = pd.to_datetime(frame["month"]).to_numpy("datetime64[ns]")
    starts = np.asarray(month, "datetime64[M]").astype("datetime64[ns]")
    if not np.array_equal(starts, month):
        i = int(np.flatnonzero(starts != month)[0])
        raise DataError(f"{what}: month {month[i]} at row {i} is not the first day of a month")
    v = pd.to_numeric(frame[value], errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(v) | ((v <= 0) if positive else np.zeros(v.shape, bool))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{what}: invalid {value} {frame[value].iloc[i]!r} at row {i}")
    _dates_increasing(month, what)
    return pd.DataFrame({"month": month, value: v})


def _check_bars(frame: pd.DataFrame, what: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    try:
        dates, bars = bars_of_one_symbol(frame)
    except DataError as e:
        raise DataError(f"{what}: {e}") from None
    d = np.asarray(dates, "datetime64[ns]")
    return d, bars


# --------------------------------------------------------------------------- the inputs


@dataclass(frozen=True, eq=False)
class MacroInputs:
    """The market and macro series the reasoning features read, validated.

    ``market`` and ``tech``: one index's daily bars each (columns open, high, low,
    close, volume and a ``date`` column or date index; the defaults are the embedded
    SP500 and NASDAQ). ``fx``: ``date`` plus units of USD, JPY, GBP, CAD, SEK, CHF per
    EUR. ``short_rate``: ``month`` (first day of the month) and ``rate`` (percent a
    year). ``core_cpi``: ``month`` and ``level``. Replace any of them to extend the
    coverage with your own data; the availability rules stay those of the module doc.
    """

    market: pd.DataFrame
    tech: pd.DataFrame
    fx: pd.DataFrame
    short_rate: pd.DataFrame
    core_cpi: pd.DataFrame
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._cache["market"] = _check_bars(self.market, "market")
        self._cache["tech"] = _check_bars(self.tech, "tech")
        self._cache["fx"] = _check_fx(self.fx)
        self._cache["short_rate"] = _check_monthly(self.short_rate, "rate", "short_rate", positive=False)
        self._cache["core_cpi"] = _check_monthly(self.core_cpi, "level", "core_cpi", positive=True)

    @staticmethod
    @functools.cache
    def embedded() -> MacroInputs:
        """The inputs that ship with pymicro (one shared, cached instance)."""

        bars = load_embedded(["SP500", "NASDAQ"])
        return MacroInputs(
            market=bars[bars["symbol"] == "SP500"].drop(columns="symbol").reset_index(drop=True),
            tech=bars[bars["symbol"] == "NASDAQ"].drop(columns="symbol").reset_index(drop=True),
            fx=load_ecb_fx(),
            short_rate=load_short_rate(),
            core_cpi=load_core_cpi(),
        )

    # ---- per-series derived values, each on its own calendar, with availability dates

    def _market_series(self) -> dict:
        if "market_series" not in self._cache:
            d, b = self._cache["market"]
            td, tb = self._cache["tech"]
            c, h = b["close"], b["high"]
            log_c = np.log(c)
            r = log_returns(c)
            vol20 = rolling(r, 20, window_std)
            # components of the fear & greed index, each in [-1, 1]
            fg_momentum = np.tanh((log_c - np.log(rolling(c, 125, window_mean))) / 0.05)
            drawdown = log_c - np.log(rolling(h, 252, lambda w: w.max(axis=1)))  # <= 0
            fg_drawdown = 1.0 - 2.0 * np.minimum(-drawdown / 0.20, 1.0)
            with np.errstate(divide="ignore"):  # a flat month: ratio 0, log -inf, component +1
                fg_volatility = -np.tanh(2.0 * np.log(safe_ratio(vol20, rolling(vol20, 250, window_mean), 1.0)))
            tech_c = take(tb["close"], asof_index(td, d, DAILY_MAX_STALE_DAYS))
            tech_ret20 = np.log(tech_c) - lag(np.log(tech_c), 20)
            fg_appetite = np.tanh((tech_ret20 - (log_c - lag(log_c, 20))) / 0.03)
            fear_greed = (fg_momentum + fg_drawdown + fg_volatility + fg_appetite) / 4.0
            trend200 = np.tanh((log_c - np.log(rolling(c, 200, window_mean))) / 0.05)
            self._cache["market_series"] = {
                "available": d,  # a daily close is known at the close of its own date
                "fear_greed_index": fear_greed,
                "market_trend_200": trend200,
            }
        return self._cache["market_series"]

    def _fx_series(self) -> dict:
        if "fx_series" not in self._cache:
            fx = self._cache["fx"]
            usdx = dollar_index(fx)
            log_x = np.log(usdx)
            self._cache["fx_series"] = {
                # an ECB fixing dated d is used only by bars dated after d
                "available": fx["date"].to_numpy("datetime64[ns]") + _DAY,
                "usd_index": usdx,
                "dollar_strength": np.tanh((log_x - np.log(rolling(usdx, 250, window_mean))) / 0.05),
                "usd_index_ret_20": log_x - lag(log_x, 20),
                "usd_index_vol_20": rolling(log_returns(usdx), 20, window_std),
            }
        return self._cache["fx_series"]

    def _rate_series(self) -> dict:
        if "rate_series" not in self._cache:
            sr = self._cache["short_rate"]
            m = sr["month"].to_numpy("datetime64[ns]")
            rate = sr["rate"].to_numpy(np.float64)
            chg6 = _monthly_change(_months(m), rate, 6)
            self._cache["rate_series"] = {
                "available": _first_of_month_plus(m, 2),
                "short_rate": rate,
                "short_rate_chg_6m": chg6,
                "short_rate_chg_12m": _monthly_change(_months(m), rate, 12),
                "interest_rate_impact": np.tanh(-chg6 / 0.5) + 0.0,  # + 0.0: no negative zero
            }
        return self._cache["rate_series"]

    def _cpi_series(self) -> dict:
        if "cpi_series" not in self._cache:
            cp = self._cache["core_cpi"]
            m = cp["month"].to_numpy("datetime64[ns]")
            yoy = 100.0 * _monthly_change(_months(m), cp["level"].to_numpy(np.float64), 12, ratio=True)
            self._cache["cpi_series"] = {
                "available": _first_of_month_plus(m, 2),
                "core_inflation_yoy": yoy,
                "core_inflation_chg_12m": _monthly_change(_months(m), yoy, 12),
            }
        return self._cache["cpi_series"]

    # ---- aligned to a symbol's dates

    def aligned(self, dates) -> dict[str, np.ndarray]:
        """Every input and derived macro value, as known on each of ``dates`` (NaN where missing).

        Keys: ``market_close``, ``tech_close`` (index closes on or before the date),
        ``fear_greed_index``, ``market_trend_200``, ``usd_index``, ``dollar_strength``,
        ``usd_index_ret_20``, ``usd_index_vol_20``, ``short_rate``, ``short_rate_chg_6m``,
        ``short_rate_chg_12m``, ``interest_rate_impact``, ``core_inflation_yoy``,
        ``core_inflation_chg_12m``. Definitions: ``docs/features.md``.
        """
        dates = np.asarray(pd.DatetimeIndex(dates), "datetime64[ns]")
        out: dict[str, np.ndarray] = {}
        md, mb = self._cache["market"]
        td, tb = self._cache["tech"]
        out["market_close"] = take(mb["close"], asof_index(md, dates, DAILY_MAX_STALE_DAYS))
        out["tech_close"] = take(tb["close"], asof_index(td, dates, DAILY_MAX_STALE_DAYS))
        for series, stale in (
            (self._market_series(), DAILY_MAX_STALE_DAYS),
            (self._fx_series(), DAILY_MAX_STALE_DAYS),
            (self._rate_series(), MONTHLY_MAX_STALE_DAYS),
            (self._cpi_series(), MONTHLY_MAX_STALE_DAYS),
        ):
            idx = asof_index(series["available"], dates, stale)
            for name, values in series.items():
                if name != "available":
                    out[name] = take(values, idx)
        return out

    def coverage(self) -> pd.DataFrame:
        """Per input: the first and last observation, and the last date a bar may still use it."""
        rows = []
        md, _ = self._cache["market"]
        td, _ = self._cache["tech"]
        fx = self._cache["fx"]["date"].to_numpy("datetime64[ns]")
        sr = self._cache["short_rate"]["month"].to_numpy("datetime64[ns]")
        cp = self._cache["core_cpi"]["month"].to_numpy("datetime64[ns]")
        stale_d = np.timedelta64(DAILY_MAX_STALE_DAYS, "D")
        stale_m = np.timedelta64(MONTHLY_MAX_STALE_DAYS, "D")
        for name, obs, avail, stale in (
            ("market", md, md, stale_d),
            ("tech", td, td, stale_d),
            ("fx", fx, fx + _DAY, stale_d),
            ("short_rate", sr, _first_of_month_plus(sr, 2), stale_m),
            ("core_cpi", cp, _first_of_month_plus(cp, 2), stale_m),
        ):
            rows.append(
                {
                    "input": name,
                    "first_observation": pd.Timestamp(obs[0]),
                    "last_observation": pd.Timestamp(obs[-1]),
                    "first_usable": pd.Timestamp(avail[0]),
                    "last_usable": pd.Timestamp(avail[-1] + stale),
                }
            )
        return pd.DataFrame(rows).set_index("input")


__all__ = [
    "DAILY_MAX_STALE_DAYS",
    "FX_CURRENCIES",
    "MONTHLY_MAX_STALE_DAYS",
    "MacroInputs",
    "asof_index",
    "dollar_index",
    "load_core_cpi",
    "load_ecb_fx",
    "load_short_rate",
    "take",
]
