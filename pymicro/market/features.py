"""Named, causal features computed from daily OHLCV bars, one feature set per preset.

A feature at bar ``t`` is a function of bars ``t - lookback .. t`` only: every
window ends at ``t`` (no centred windows, no forward or backward filling, no
normalisation over the whole series). Each window is evaluated on its own values
alone, so a feature at ``t`` is bit-for-bit the same whether the series ends at
``t`` or runs on, and whether it starts ``lookback`` bars before ``t`` or years
before. The definitions are in ``docs/features.md``.

    from pymicro.market.features import MOMENTUM_FEATURES, momentum_features
    X = momentum_features(bars_of_one_symbol)      # DataFrame, index = date, 24 columns
    X = compute_features(bars_of_one_symbol, "reversal")     # 32 columns
    X = compute_features(bars_of_one_symbol, "sentiment")    # 48 columns (market, macro, news)

The momentum (24) and reversal (32) features read the symbol's own bars only. The
sentiment features (48) add the market, macro and news inputs of
:mod:`pymicro.market.reasoning_features`, :mod:`pymicro.market.macro` and :mod:`pymicro.market.news`,
each used only from the date it is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from pymicro.errors import DataError
from pymicro.market.bars import BAR_COLUMNS, bars_of_one_symbol, rolling_volatility
from pymicro.market.news import NEWS_FEATURES
from pymicro.market.reasoning_features import (REASONING_FEATURES, SENTIMENT_CONTEXT_FEATURES, SENTIMENT_FEATURES,
                                               SENTIMENT_LOOKBACK, sentiment_features)
from pymicro.market.technical import (MOMENTUM_FEATURES, MOMENTUM_LOOKBACK, REVERSAL_FEATURES, REVERSAL_LOOKBACK,
                                      momentum_features, reversal_features)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class FeatureSet:
    """The features of one preset: names (in model-input order), warm-up and the function."""

    preset: str
    names: tuple[str, ...]
    lookback: int
    compute: Callable[..., pd.DataFrame]
    options: tuple[str, ...] = ()  # keyword arguments ``compute`` accepts besides ``dropna``

    @property
    def size(self) -> int:
        return len(self.names)


FEATURE_SETS: dict[str, FeatureSet] = {
    "momentum": FeatureSet("momentum", MOMENTUM_FEATURES, MOMENTUM_LOOKBACK, momentum_features),
    "reversal": FeatureSet("reversal", REVERSAL_FEATURES, REVERSAL_LOOKBACK, reversal_features),
    "sentiment": FeatureSet(
        "sentiment", SENTIMENT_FEATURES, SENTIMENT_LOOKBACK, sentiment_features, ("news", "macro", "symbol")
    ),
}
"""Feature sets by preset name: momentum (24), reversal (32), sentiment (48).

The sentiment set's ``compute`` also takes ``news=`` (the output of
:func:`pymicro.market.news.analyze_news`), ``macro=`` (a :class:`pymicro.market.macro.MacroInputs`)
and ``symbol=``; without ``news`` its news features are 0 with their masks at 0.
"""


def feature_set(preset: str) -> FeatureSet:
    """The :class:`FeatureSet` registered for ``preset``; :class:`DataError` if there is none."""
    try:
        return FEATURE_SETS[preset]
    except (KeyError, TypeError):
        raise DataError(f"unknown preset {preset!r}; feature sets exist for {sorted(FEATURE_SETS)}") from None


def compute_features(df: pd.DataFrame, preset: str = "momentum", *, dropna: bool = True, **options) -> pd.DataFrame:
    """The features of ``preset`` for one symbol's bars (see :func:`momentum_features`).

    ``options`` go to the preset's compute function (``news=``, ``macro=``, ``symbol=``
    for "sentiment"; the other presets take none).
    """
    fs = feature_set(preset)
    unknown = sorted(set(options) - set(fs.options))
    if unknown:
        raise DataError(
            f"preset {preset!r} takes no option(s) {unknown}; it accepts {list(fs.options) or 'none'}"
        )
    return fs.compute(df, dropna=dropna, **options)



__all__ = [
    "FEATURE_SETS",
    "MOMENTUM_FEATURES",
    "MOMENTUM_LOOKBACK",
    "NEWS_FEATURES",
    "REASONING_FEATURES",
    "REVERSAL_FEATURES",
    "REVERSAL_LOOKBACK",
    "SENTIMENT_CONTEXT_FEATURES",
    "SENTIMENT_FEATURES",
    "SENTIMENT_LOOKBACK",
    "FeatureSet",
    "compute_features",
    "feature_set",
    "momentum_features",
    "reversal_features",
    "BAR_COLUMNS",
    "bars_of_one_symbol",
    "rolling_volatility",
]
