"""Uncertainty for small evaluations: intervals, paired tests, and the n a difference needs.

Every figure in the report comes from a dozen games or a few dozen reference
states, so each one carries an interval, and two policies evaluated on the
same games are compared pairwise (the games' difficulty cancels out):

- `wilson`: the 95% Wilson score interval for k successes in n trials. Unlike
  the normal interval it stays inside [0, 1] and is not empty at 0/n or n/n.
- `mcnemar_p`: the exact two-sided McNemar test on paired binary outcomes. Only
  the discordant pairs count: b (A won, B lost) and c (A lost, B won). Under
  H0 each discordant pair falls either way with probability 1/2, so
  p = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)]).
- `bootstrap_mean` / `paired_bootstrap`: percentile bootstrap (seeded, 2000
  resamples by default) of a mean, and of the mean of paired differences; the
  paired p-value is two-sided: twice the smaller share of resampled means on
  either side of 0 (capped at 1).
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
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8
RESAMPLES = 2000


def _z(q: float) -> float:
    return NormalDist().inv_cdf(q)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval for k successes out of n."""
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"wilson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(1 - (1 - level) / 2)
    p = k / n
    denom = n + z * z
    centre = (k + z * z / 2) / denom
    half = z / denom * math.sqrt(p * (1 - p) * n + z * z / 4)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts b and c."""
    if b < 0 or c < 0:
        raise ValueError(f"mcnemar_p: discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def discordant(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int]:
    """(b, c) for McNemar: pairs A won and B lost, and pairs A lost and B won."""
    if len(a) != len(b):
        raise ValueError(f"discordant: paired outcomes differ in length ({len(a)} vs {len(b)})")
    return (sum(1 for x, y in zip(a, b, strict=True) if x and not y),
            sum(1 for x, y in zip(a, b, strict=True) if y and not x))


def bootstrap_mean(values: Sequence[float], resamples: int = RESAMPLES, seed: int = 0,
                   level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_mean: no values")
    means = _resampled_means(x, resamples, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(x.mean()), float(lo), float(hi)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES,
                     seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Mean of b - a over pairs, its percentile interval and a two-sided bootstrap p."""
    if len(a) != len(b):
        raise ValueError(f"paired_bootstrap: {len(a)} vs {len(b)} values; pairs must match")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    if d.size == 0:
        raise ValueError("paired_bootstrap: no pairs")
    means = _resampled_means(d, resamples, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    if np.all(d == 0):
        p = 1.0
    else:
        p = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return {"diff": float(d.mean()), "low": float(lo), "high": float(hi), "p": p}


def _resampled_means(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    return x[idx].mean(axis=1)


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
