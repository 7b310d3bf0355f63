"""The interface every query strategy implements, and the ranking helper the scoring ones share."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection


class Strategy(ABC):
    """Chooses up to `budget` rows of a pool to label: ``select(pool, budget) -> Selection``.

    A selection has ``min(budget, len(pool))`` picks, best first, each id once (fewer only where a
    guard says so: the near-duplicate filter would rather send fewer rows than copies).
    """

    name: str

    def select(self, pool: Pool, budget: int) -> Selection:
        if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
            raise ValueError(f"budget must be a non-negative integer, got {budget!r}")
        if budget == 0 or len(pool) == 0:
            return Selection(self.name, (), (), ())
        return self._select(pool, min(int(budget), len(pool)))

    @abstractmethod
    def _select(self, pool: Pool, budget: int) -> Selection:
        """Pick exactly `budget` rows (1 <= budget <= len(pool))."""


class ScoringStrategy(Strategy):
    """A strategy that scores every row on its own and takes the highest scores.

    Ties are broken by pool order, so a selection is reproducible. Scores
    closer than 1e-9 tie: a saturated model (every p near 1) differs from row
    to row by rounding noise alone, and ranking on that noise is no better
    than pool order, only less predictable.
    """

    def _select(self, pool: Pool, budget: int) -> Selection:
        scores = self.scores(pool)
        top = top_k(np.round(scores, 9), budget)
        return Selection.of(self.name, pool.ids, top, scores[top], self.reasons(pool, top))

    @abstractmethod
    def scores(self, pool: Pool) -> np.ndarray:
        """One score per row; higher is more worth labelling."""

    @abstractmethod
    def reasons(self, pool: Pool, rows: np.ndarray) -> list[str]:
        """One short sentence per picked row."""


class Guard(Strategy):
    """A strategy around another: it asks `inner` for ``oversample * budget`` ranked picks and keeps some."""

    suffix: str

    def __init__(self, inner: Strategy, oversample: float) -> None:
        if not oversample >= 1.0:
            raise ValueError(f"'oversample' must be at least 1, got {oversample!r}")
        self.inner = inner
        self.oversample = oversample
        self.name = f"{inner.name}+{self.suffix}"

    def ranked(self, pool: Pool, budget: int) -> Selection:
        return self.inner.select(pool, min(len(pool), int(np.ceil(self.oversample * budget))))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, highest first, ties by index: O(n) partition, then a sort of k."""
    if k >= len(scores):
        return np.lexsort((np.arange(len(scores)), -scores))
    candidates = np.argpartition(-scores, k - 1)[:k]
    # argpartition splits ties at the k-th score arbitrarily: take every tie of the cut, then the first by index
    cut = scores[candidates].min()
    candidates = np.union1d(candidates[scores[candidates] > cut], np.flatnonzero(scores == cut)[: k])
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


def standardised(matrix: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """Columns scaled to mean 0 and standard deviation 1 (by `like`'s statistics), NaN as the mean (0).

    Distances in raw units would let the widest feature decide alone.
    """
    basis = matrix if like is None else like
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(basis, axis=0) if len(basis) else np.zeros(matrix.shape[1])
        std = np.nanstd(basis, axis=0) if len(basis) else np.ones(matrix.shape[1])
    mean = np.nan_to_num(mean)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    scaled = (matrix - mean) / std
    return np.nan_to_num(scaled, nan=0.0)
