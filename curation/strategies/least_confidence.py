"""Least confidence: label the rows whose most probable class is least probable."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.strategies.base import ScoringStrategy


class LeastConfidence(ScoringStrategy):
    """Score ``1 - max_c p(c | x)`` (Lewis & Gale, 1994; Settles, 2009, §3.1).

    >>> import numpy as np
    >>> pool = Pool(ids=np.array(["sure", "unsure"], dtype=object), features=np.zeros((2, 1)),
    ...             probabilities=np.array([[0.9, 0.1], [0.55, 0.45]]), classes=("no", "yes"))
    >>> LeastConfidence().select(pool, 1).ids
    ('unsure',)
    """

    name = "least_confidence"

    def scores(self, pool: Pool) -> np.ndarray:
        return 1.0 - pool.require_probabilities(self.name).max(axis=1)

    def reasons(self, pool: Pool, rows: np.ndarray) -> list[str]:
        probabilities = pool.probabilities[rows]
        best = probabilities.argmax(axis=1)
        return [f"most likely {pool.classes[c]!s} at only p={p[c]:.2f}" for c, p in zip(best, probabilities, strict=True)]
