"""Uncertainty for small evaluations: intervals, paired tests, and the n a difference needs.

Every figure in the report comes from a dozen games or a few dozen reference
states, so each one carries an interval, and two policies evaluated on the
same games are compared pairwise (the games' difficulty cancels out). The
intervals and tests are scipy's; this module fixes their settings and the
report's conventions:

- `wilson`: the 95% Wilson score interval for k successes in n trials
  (`scipy.stats.binomtest(...).proportion_ci(method="wilson")`). Unlike the
  normal interval it stays inside [0, 1] and is not empty at 0/n or n/n.
- `mcnemar_p`: the exact two-sided McNemar test on paired binary outcomes. Only
  the discordant pairs count: b (A won, B lost) and c (A lost, B won). Under
  H0 each discordant pair falls either way with probability 1/2, so it is the
  binomial test of b in b + c trials at 1/2 (= min(1, 2 * P[Bin(b + c, 1/2) <= min(b, c)])).
- `bootstrap_mean` / `paired_bootstrap`: percentile bootstrap (`scipy.stats.bootstrap`,
  seeded, 2000 resamples by default) of a mean, and of the mean of paired
  differences. With `clusters` (each value's game) whole games are resampled,
  not values: the reference states of one game are correlated, so resampling
  them as if independent makes the interval too narrow. The statistic is then
  the mean over all the values of the resampled games (each game weighs by its
  states, as in the point estimate). The paired p-value is two-sided: twice the
  smaller share of resampled means on either side of 0 (capped at 1).
- `holm`: Holm's step-down adjusted p-values, for a table of comparisons that
  must hold together (scipy has Benjamini-Hochberg only, which bounds another error).
- `pairs_needed_mcnemar` / `pairs_needed`: about how many paired games (or
  states) would make the observed difference significant at alpha 0.05 with
  power 0.8, by the normal approximation. For McNemar (Connor 1987), with the
  observed discordance p_d = (b + c) / n and difference d = (c - b) / n:
  n = (z_a * sqrt(p_d) + z_b * sqrt(p_d - d^2))^2 / d^2. For a mean of paired
  differences with standard deviation s: n = ((z_a + z_b) * s / d)^2.
  Both return None when the observed difference is 0 (no n suffices).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 2000


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for k successes out of n; (0, 1) for n 0."""
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    from scipy import stats as sps  # lazily: 1.5 s of every stage's start-up

    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b and c."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_p: discordant counts must be >= 0, got b={b}, c={c}")
    if b + c == 0:
        return 1.0
    from scipy import stats as sps

    return float(sps.binomtest(b, b + c, 0.5).pvalue)


def discordant(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int]:
    """(b, c) for McNemar: pairs A won and B lost, and pairs A lost and B won."""
    if len(a) != len(b):
        raise ValueError(f"discordant: paired outcomes differ in length ({len(a)} vs {len(b)})")
    return (sum(1 for x, y in zip(a, b, strict=True) if x and not y),
            sum(1 for x, y in zip(a, b, strict=True) if y and not x))


def bootstrap_mean(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0,
                   level: float = 0.95, clusters: Sequence[Hashable] | None = None
                   ) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean, resampling whole
    clusters (games) when `clusters` gives each value's."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_mean: no values")
    means = _resampled_means(x, clusters, resamples, seed)
    lo, hi = _percentiles(means, level)
    return float(x.mean()), lo, hi


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES,
                     seed: int = 0, level: float = 0.95,
                     clusters: Sequence[Hashable] | None = None) -> dict[str, float]:
    """Mean of b - a over pairs, its percentile interval and a two-sided bootstrap p;
    with `clusters` (each pair's game), whole games are resampled."""
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap: {len(a)} vs {len(b)} values; pairs must match")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size == 0:
        raise ValueError("paired_bootstrap: no pairs")
    means = _resampled_means(d, clusters, resamples, seed)
    lo, hi = _percentiles(means, level)
    if np.all(d == 0):
        p = 1.0
    else:
        p = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return {"diff": float(d.mean()), "low": lo, "high": hi, "p": p}


def cluster_sums(values: np.ndarray, clusters: Sequence[Hashable] | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(sum of the values, number of values) per cluster, clusters in first-seen order;
    None: every value its own cluster."""
    if clusters is None:
        return values, np.ones_like(values)
    if len(clusters) != values.size:
        raise ValueError(f"clusters: {len(clusters)} labels for {values.size} values; "
                         "give one cluster (game) per value")
    index: dict[Hashable, int] = {}
    ids = np.array([index.setdefault(c, len(index)) for c in clusters])
    return (np.bincount(ids, weights=values, minlength=len(index)),
            np.bincount(ids, minlength=len(index)).astype(float))


def _resampled_means(x: np.ndarray, clusters: Sequence[Hashable] | None, resamples: int,
                     seed: int) -> np.ndarray:
    """The pooled mean of each bootstrap resample of the clusters (scipy's paired
    bootstrap on the per-cluster sums and counts draws the same clusters for both).
    One cluster: nothing to resample, every resample is the sample itself."""
    sums, counts = cluster_sums(x, clusters)
    if sums.size < 2:
        return np.full(resamples, float(x.mean()))
    from scipy import stats as sps

    res = sps.bootstrap((sums, counts), _pooled_mean, paired=True, vectorized=True,
                        n_resamples=resamples, method="percentile", rng=seed)
    return np.asarray(res.bootstrap_distribution)


def _pooled_mean(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def _percentiles(means: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's adjusted p-values, in the order given: the i-th smallest of m p-values is
    multiplied by m - i + 1, then made non-decreasing in that order and capped at 1. A
    comparison survives the correction at level alpha when its adjusted p < alpha."""
    p = [float(x) for x in pvalues]
    if any(not 0 <= x <= 1 for x in p):
        raise ValueError(f"holm: p-values must lie in [0, 1], got {p}")
    m, out, running = len(p), [0.0] * len(p), 0.0
    for rank, i in enumerate(sorted(range(m), key=p.__getitem__)):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def pairs_needed_mcnemar(b: int, c: int, n: int, alpha: float = ALPHA,
                         power: float = POWER) -> int | None:
    """Paired games for McNemar to detect the observed (c - b) / n (Connor 1987)."""
    if n <= 0 or b + c > n:
        raise ValueError(f"pairs_needed_mcnemar: need b + c <= n and n > 0, got {b}, {c}, {n}")
    d = (c - b) / n
    if d == 0:
        return None
    pd = (b + c) / n
    za, zb = _z(1 - alpha / 2), _z(power)
    return math.ceil((za * math.sqrt(pd) + zb * math.sqrt(max(pd - d * d, 0.0))) ** 2 / d**2)


def pairs_needed(diffs: Sequence[float], alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Pairs for a test of the mean paired difference to detect the observed mean."""
    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        raise ValueError(f"pairs_needed: need two or more paired differences, got {d.size}")
    mean = float(d.mean())
    if mean == 0:
        return None
    sd = float(d.std(ddof=1))
    return max(2, math.ceil(((_z(1 - alpha / 2) + _z(power)) * sd / mean) ** 2))
