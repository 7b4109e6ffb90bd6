"""Real daily OHLCV history shipped inside pymicro (no network at run time).

The files here are byte-for-byte copies of data files from two permissively
licensed packages; ``NOTICE.txt`` beside them names each source, its licence and
its checksum, and reproduces the licence texts. Read them through
:func:`pymicro.data.load_embedded`, which validates and adjusts them.
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
}


def path(filename: str):
    """A traversable (``importlib.resources``) for a shipped file; ``.open("rb")`` reads it."""
    if filename not in FILES and filename != "NOTICE.txt":
        raise KeyError(filename)
    return resources.files(__name__).joinpath(filename)


__all__ = ["FILES", "EmbeddedFile", "path"]
