"""Block-bootstrap statistics of time-ordered rows: correlations and mean edges.

Rows close in time are not independent, so standard errors come from resampling blocks of
consecutive rows (:func:`boot_corr`, :func:`block_mean`), not single rows.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

_N = NormalDist()


def corr(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Pearson correlations between the columns of A (n, p) and B (n, q): (p, q)."""
    A = A - A.mean(axis=0)
    B = B - B.mean(axis=0)
    num = A.T @ B
    den = np.sqrt((A * A).sum(axis=0))[:, None] * np.sqrt((B * B).sum(axis=0))[None, :]
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def boot_corr(F: np.ndarray, G: np.ndarray, block: int, resamples: int, rng) -> np.ndarray:
    """Block-bootstrap replicates of ``corr(F, G)``: (resamples, p, q).

    Rows are cut into non-overlapping blocks of ``block`` rows; each replicate draws as many
    blocks with replacement, and its correlations come from the blocks' summed sufficient
    statistics (sums, sums of squares and cross-products), so no replicate touches the rows.
    """
    n, p = F.shape
    q = G.shape[1]
    F = F - F.mean(axis=0)
    G = G - G.mean(axis=0)
    b = max(1, min(int(block), n))
    nb = -(-n // b)
    pad = nb * b - n
    if pad:  # the last block is short: pad with zero rows and count only the real rows
        F = np.vstack([F, np.zeros((pad, p))])
        G = np.vstack([G, np.zeros((pad, q))])
    cnt = np.full(nb, float(b))
    cnt[-1] = b - pad
    Fb, Gb = F.reshape(nb, b, p), G.reshape(nb, b, q)
    stats = np.concatenate([Fb.sum(1), (Fb * Fb).sum(1), Gb.sum(1), (Gb * Gb).sum(1),
                            np.einsum("kip,kiq->kpq", Fb, Gb).reshape(nb, p * q), cnt[:, None]], axis=1)
    draws = rng.integers(0, nb, size=(resamples, nb))
    W = np.zeros((resamples, nb))
    np.add.at(W, (np.repeat(np.arange(resamples), nb), draws.ravel()), 1.0)
    S = W @ stats
    o = 0
    sf, sff = S[:, o:o + p], S[:, o + p:o + 2 * p]
    o += 2 * p
    sg, sgg = S[:, o:o + q], S[:, o + q:o + 2 * q]
    o += 2 * q
    sfg = S[:, o:o + p * q].reshape(resamples, p, q)
    m = S[:, -1]
    vf = sff - sf * sf / m[:, None]
    vg = sgg - sg * sg / m[:, None]
    cov = sfg - sf[:, :, None] * sg[:, None, :] / m[:, None, None]
    den = np.sqrt(np.maximum(vf, 0))[:, :, None] * np.sqrt(np.maximum(vg, 0))[:, None, :]
    return np.divide(cov, den, out=np.zeros_like(cov), where=den > 0)


def edge_test(y, pred, majority, block: int, seed: int, resamples: int = 2000) -> dict:
    """Paired edge over the majority class, with a moving-block bootstrap standard error."""
    y = np.asarray(y)
    d = (pred == y).astype(np.float64) - (majority == y).astype(np.float64)
    return block_mean(d, block, seed, resamples)


def block_mean(d: np.ndarray, block: int, seed: int, resamples: int = 2000) -> dict:
    """:func:`pymicro.metrics.block_mean`: one implementation for training, validation and backtests."""
    from pymicro.metrics import block_mean as _block_mean

    return _block_mean(d, block, seed, resamples)


def sharpe_intervals(returns, block: int, periods_per_year: float, *, reference: int = 0, seed: int = 0,
                     resamples: int = 2000, confidence: float = 0.95) -> dict:
    """Sharpe ratios of the columns of ``returns`` (periods x legs, the same dates) with moving-block
    bootstrap percentile intervals, and each column's Sharpe minus column ``reference``'s with its
    interval (paired: every replicate draws the same periods for all legs, so what the legs share
    cancels). Blocks of ``block`` consecutive periods keep their serial dependence, as the
    accuracy intervals' blocks do (:func:`pymicro.metrics.accuracy_interval`). Each replicate is
    computed from the drawn blocks' sums and sums of squares. A leg with zero variance (flat) has
    Sharpe 0 in every replicate.

    Returns ``{"sharpe": [k], "ci": [[lo, hi]] * k, "diff": [k], "diff_ci": [[lo, hi]] * k,
    "block": b, "resamples": resamples}``.
    """
    R = np.asarray(returns, np.float64)
    if R.ndim == 1:
        R = R[:, None]
    n, k = R.shape
    if n < 3 or not np.isfinite(R).all():
        raise ValueError(f"sharpe_intervals needs at least 3 finite periods, got {n}")
    b = max(1, min(int(block), n))
    per = -(-n // b)
    c1 = np.vstack([np.zeros((1, k)), np.cumsum(R, axis=0)])
    c2 = np.vstack([np.zeros((1, k)), np.cumsum(R * R, axis=0)])
    s1, s2 = c1[b:] - c1[:-b], c2[b:] - c2[:-b]  # (n - b + 1, k): each block's sums
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n - b + 1, size=(int(resamples), per))
    m = per * b
    S1, S2 = s1[draws].sum(axis=1), s2[draws].sum(axis=1)
    mean = S1 / m
    var = np.maximum(S2 - m * mean * mean, 0.0) / (m - 1)
    sd = np.sqrt(var)
    scale = math.sqrt(periods_per_year)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mean)), mean / sd * scale, 0.0)
    point_sd = R.std(axis=0, ddof=1)
    point_mean = R.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        point = np.where(point_sd > 1e-12 * np.maximum(1.0, np.abs(point_mean)), point_mean / point_sd * scale, 0.0)
    a = (1 - confidence) / 2
    q = lambda x: np.quantile(x, [a, 1 - a], axis=0).T.tolist()  # noqa: E731
    diff = boot - boot[:, [reference]]
    return {"sharpe": point.tolist(), "ci": q(boot), "diff": (point - point[reference]).tolist(), "diff_ci": q(diff),
            "block": b, "resamples": int(resamples), "method": f"moving-block bootstrap, blocks of {b} periods"}
