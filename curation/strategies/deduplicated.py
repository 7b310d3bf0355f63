"""Near-duplicate removal: one label per look-alike group is enough."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Guard, Strategy, standardised


class NearDuplicateFilter(Guard):
    """Wraps a strategy and drops any pick within `radius` of a better-ranked pick.

    Logs repeat themselves (retries, bots, the same customer twice) and an
    uncertainty strategy ranks copies side by side. Distances are Euclidean on
    standardised features (embeddings when the pool has them), so `radius` is
    in standard deviations: 0 drops exact copies only. The guard asks `inner`
    for ``oversample * budget`` ranked picks and walks them in order; when they
    run out, the batch is smaller than the budget rather than full of copies.

    >>> import numpy as np
    >>> from driftloop.curation.strategies.least_confidence import LeastConfidence
    >>> features = np.array([[0.0], [0.0], [1.0], [2.0]])  # a and b are copies
    >>> p = np.array([0.5, 0.5, 0.6, 0.7])
    >>> pool = Pool(ids=np.array(list("abcd"), dtype=object), features=features,
    ...             probabilities=np.column_stack([p, 1 - p]), classes=("x", "y"))
    >>> NearDuplicateFilter(LeastConfidence()).select(pool, 2).ids
    ('a', 'c')
    """

    suffix = "deduplicated"

    def __init__(self, inner: Strategy, radius: float = 0.05, oversample: float = 3.0) -> None:
        if not radius >= 0.0:
            raise ValueError(f"'radius' must be >= 0, got {radius!r}")
        super().__init__(inner, oversample)
        self.radius = radius

    def _select(self, pool: Pool, budget: int) -> Selection:
        ranked = self.ranked(pool, budget)
        row_of = {event_id: row for row, event_id in enumerate(pool.ids.tolist())}
        rows = np.array([row_of[event_id] for event_id in ranked.ids])
        points = pool.embeddings[rows] if pool.embeddings is not None else standardised(pool.features[rows], like=pool.features)
        kept: list[int] = []
        for rank, point in enumerate(points):
            if kept and np.sqrt(((points[kept] - point) ** 2).sum(axis=1)).min() <= self.radius:
                continue
            kept.append(rank)
            if len(kept) == budget:
                break
        return Selection(
            self.name,
            tuple(ranked.ids[r] for r in kept),
            tuple(ranked.scores[r] for r in kept),
            tuple(ranked.reasons[r] for r in kept),
        )
