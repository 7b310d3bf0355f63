"""Null distributions, so that every statistic has a p-value whose false-alarm rate is alpha at any two sizes.

Two tools serve every statistic of `drift.stats`:

* `permutation_p_value` for statistics of a table of counts (chi-square, Z,
  Jensen–Shannon, PSI, and K-S or Wasserstein on a column of few distinct
  values): the exact permutation test. Under "no drift" every split of the
  pooled rows into a reference of n and a window of m is equally likely, so
  the window's counts are multivariate hypergeometric given the pooled counts.
  It is Monte-Carlo with sequential stopping (Besag & Clifford 1991): it stops
  at the 10th simulated table at least as extreme as the observed one, so a
  window without drift costs tens of draws and a drifted one at most 1,000.
  Its cost is bounded by the number of categories, whatever n and m.
* `WassersteinNull` for the normed Wasserstein distance on a continuous
  column: the reference's own resampling, precomputed once when the profile
  is built. For window sizes 1, 3, 10, 30 and 100 it holds 4,000 distances
  between the reference and a window drawn from it, scaled by sqrt(size), and
  as many of their large-window limit (the integral of a Brownian bridge
  through the reference's quantiles); between 100 and the limit the p-value is
  interpolated in 1/sqrt(size), in which the scaled distance converges
  linearly. The draws are seeded by the reference's values: the same
  reference always gets the same null, two references independent ones. Both samples vary in a real comparison; the
  reference's share of the noise is taken into account by looking the distance
  up at the effective size nm / (n + m), the size at which a window against a
  fixed reference varies as much as two samples of n and m do (their empirical
  CDFs differ by a Brownian bridge scaled by sqrt(1/n + 1/m)). Scoring a window
  then costs a binary search.

References: J. Besag and P. Clifford, "Sequential Monte Carlo p-values",
Biometrika 78 (1991); E. del Barrio, E. Giné and C. Matrán, "Central limit
theorems for the Wasserstein distance between the empirical and the true
distributions", Annals of Probability 27 (1999).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DRAWS = 1_000  # most Monte-Carlo draws of a permutation p-value
ENOUGH = 10  # exceedances at which a sequential Monte-Carlo p-value stops
NULL_DRAWS = 4_000  # null distances per window size: the 95th percentile within ~1 %, a false-alarm rate within ~0.004
NULL_SIZES = np.array([1.0, 3.0, 10.0, 30.0, 100.0])  # window sizes drawn; beyond 100, toward the limit
SKETCH_POINTS = 2_048  # reference quantiles the windows are drawn from
BRIDGE_POINTS = 512  # reference quantiles the Brownian bridge is integrated over
SEED = 0  # the same data always get the same permutation p-value

CountStatistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def permutation_p_value(statistic: CountStatistic, reference: np.ndarray, current: np.ndarray) -> float:
    """P(T >= observed) when the pooled rows are split at random into a reference of n and a window of m.

    `reference` and `current` are counts per category (or bin), one vector
    each; `statistic(ref, cur)` takes (draws, categories) arrays of counts and
    returns one value per draw, larger meaning more different. Counts are
    rounded to integers (a sketched profile's counts are estimates).
    """
    reference = np.rint(reference).astype(np.int64)
    current = np.rint(current).astype(np.int64)
    keep = (reference + current) > 0
    reference, current = reference[keep], current[keep]
    if len(reference) < 2 or reference.sum() == 0 or current.sum() == 0:
        return 1.0
    observed = float(statistic(reference[None, :], current[None, :])[0])
    if np.isnan(observed):
        return 1.0
    # Ties within rounding count as exceedances (R's chisq.test does the same): never anti-conservative.
    bar = observed - 1e-9 * abs(observed) if np.isfinite(observed) else observed
    pooled = reference + current
    m = int(current.sum())
    rng = np.random.default_rng(SEED)
    exceeded = drawn = 0
    batch = 4 * ENOUGH
    while drawn < DRAWS:
        size = min(batch, DRAWS - drawn)
        drawn_current = hypergeometric_counts(pooled, m, size, rng)
        hits = np.cumsum(statistic(pooled - drawn_current, drawn_current) >= bar)
        if exceeded + hits[-1] >= ENOUGH:
            at = drawn + int(np.searchsorted(hits, ENOUGH - exceeded)) + 1
            return ENOUGH / at
        exceeded += int(hits[-1])
        drawn += size
        batch *= 2
    return (exceeded + 1) / (DRAWS + 1)


def hypergeometric_counts(pooled: np.ndarray, m: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """`draws` windows of m rows taken without replacement from `pooled` (counts per category): (draws, k).

    The smaller side of the split is drawn (a reference of n is the rest of a window of m, and the
    other way round), by whichever exact method costs least: distinct positions among the pooled
    rows when the side is small, a shuffle of all pooled rows when they are few, else category by
    category from the marginal hypergeometric distributions (numpy's "marginals" method,
    vectorised over the draws), whose cost grows with the categories but not with the rows.
    """
    total = int(pooled.sum())
    side = min(m, total - m)
    # Rough costs in array elements; a numpy call costs about a thousand. Positions: only while a
    # draw repeats a position rarely (side^2 / 2 total <= 1/8), else the redraws add up.
    costs = {"marginals": len(pooled) * (1_000 + 5 * draws), "shuffle": draws * total}
    if 4 * side * side <= total:
        costs["positions"] = 3 * draws * side
    method = min(costs, key=costs.get)
    if method == "positions":
        counts = _positions_counts(pooled, side, draws, rng)
    elif method == "shuffle":
        rows = rng.permuted(np.broadcast_to(np.repeat(np.arange(len(pooled)), pooled), (draws, total)), axis=1)
        counts = _counted(rows[:, :side], len(pooled))
    else:
        counts = _marginal_counts(pooled, side, draws, rng)
    return counts if side == m else pooled - counts


def _positions_counts(pooled: np.ndarray, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Draw `size` distinct positions among the pooled rows per draw (redrawing the rare draws with a repeat)."""
    total = int(pooled.sum())
    positions = np.sort(rng.integers(0, total, (draws, size)), axis=1)
    while True:
        repeated = np.flatnonzero((np.diff(positions, axis=1) == 0).any(axis=1))
        if not len(repeated):
            break
        positions[repeated] = np.sort(rng.integers(0, total, (len(repeated), size)), axis=1)
    return _counted(np.searchsorted(np.cumsum(pooled), positions, side="right"), len(pooled))


def _counted(categories: np.ndarray, k: int) -> np.ndarray:
    """Counts per category of each row of category indices: (draws, k)."""
    draws = len(categories)
    offsets = (np.arange(draws) * k)[:, None]
    return np.bincount((categories + offsets).ravel(), minlength=draws * k).reshape(draws, k)


def _marginal_counts(pooled: np.ndarray, size: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    counts = np.empty((draws, len(pooled)), dtype=np.int64)
    left = np.full(draws, size, dtype=np.int64)
    rest = int(pooled.sum())
    for k in range(len(pooled) - 1):
        rest -= int(pooled[k])
        counts[:, k] = rng.hypergeometric(int(pooled[k]), rest, left) if rest > 0 else left
        left -= counts[:, k]
    counts[:, -1] = left
    return counts


@dataclass(frozen=True, eq=False)
class WassersteinNull:
    """The precomputed null of sqrt(size) x the normed Wasserstein distance, per window size.

    `sizes` are the window sizes drawn (the last is infinite: the limit),
    `table[j]` the sorted scaled distances at `sizes[j]`.
    """

    sizes: np.ndarray
    table: np.ndarray  # float32: half the size, and the p-value needs no more digits

    @classmethod
    def of(cls, values: np.ndarray, norm: float) -> WassersteinNull:
        """From the sorted reference `values` (or a sketch of them) and the norm of the distance."""
        points = _points(values, SKETCH_POINTS)
        rng = np.random.default_rng(zlib.crc32(points.tobytes()))
        rows = [np.sqrt(size) * _bootstrap_distances(points / norm, int(size), rng) for size in NULL_SIZES]
        rows.append(_bridge_integrals(_points(values, BRIDGE_POINTS) / norm, rng))
        return cls(np.append(NULL_SIZES, np.inf), np.sort(np.vstack(rows), axis=1).astype(np.float32))

    def p_value(self, distance: float, n: int, m: int) -> float:
        """P(distance >= observed) between a reference of n and a window of m from one distribution."""
        effective = n * m / (n + m)
        scaled = np.sqrt(effective) * distance
        draws = self.table.shape[1]
        row_p = (1 + draws - np.array([np.searchsorted(row, scaled, side="left") for row in self.table])) / (draws + 1)
        # Interpolate in 1 / sqrt(size): linear in it near the limit, where the scaled distance converges.
        u = 1.0 / np.sqrt(self.sizes)
        return float(np.interp(1.0 / np.sqrt(max(effective, 1.0)), u[::-1], row_p[::-1]))


def _points(values: np.ndarray, most: int) -> np.ndarray:
    """At most `most` evenly spaced order statistics of the sorted values."""
    n = len(values)
    if n <= most:
        return values
    return values[((np.arange(most) + 0.5) * n / most).astype(np.int64)]


def _bootstrap_distances(points: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """NULL_DRAWS Wasserstein distances between the equally weighted sorted `points` and `size` rows drawn from them.

    Between consecutive drawn rows the window's CDF is a constant c = l / size
    while the reference's climbs by 1/k per point, so each stretch integrates
    |F - c| in closed form from prefix sums: O(size) per draw, not O(k).
    """
    k = len(points)
    if k < 2:
        return np.zeros(NULL_DRAWS)
    gaps = np.diff(points)
    below = np.concatenate(([0.0], np.cumsum(gaps)))  # sum of the gaps before each point
    weighted = np.concatenate(([0.0], np.cumsum(np.arange(1, k) / k * gaps)))  # sum of F x gap before each point
    drawn = np.sort(rng.integers(0, k, (NULL_DRAWS, size), dtype=np.int32), axis=1)
    low = np.concatenate((np.zeros((NULL_DRAWS, 1), dtype=np.int32), drawn), axis=1)  # the stretch where G = l / size
    high = np.concatenate((drawn, np.full((NULL_DRAWS, 1), k - 1, dtype=np.int32)), axis=1)
    level = np.arange(size + 1) / size
    cross = np.clip(np.ceil(level * k).astype(np.int32) - 1, low, high)  # first gap where F >= level
    return (
        level * (below[cross] - below[low]) - (weighted[cross] - weighted[low])
        + (weighted[high] - weighted[cross]) - level * (below[high] - below[cross])
    ).sum(axis=1)


def _bridge_integrals(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """NULL_DRAWS draws of the integral of |B(F(x))| dx, B a Brownian bridge: the limit of sqrt(m) W1."""
    k = len(points)
    if k < 2:
        return np.zeros(NULL_DRAWS)
    levels = np.arange(1, k) / k
    walk = rng.standard_normal((NULL_DRAWS, k), dtype=np.float32).cumsum(axis=1) / np.float32(np.sqrt(k))
    bridge = walk[:, :-1] - levels.astype(np.float32) * walk[:, -1:]
    return (np.abs(bridge) @ np.diff(points).astype(np.float32)).astype(np.float64)
