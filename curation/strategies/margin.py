"""Margin sampling: label the rows the model can barely tell between its two likeliest classes."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.strategies.base import ScoringStrategy


class MarginSampling(ScoringStrategy):
    """Score ``1 - (p(c1 | x) - p(c2 | x))`` for the two most probable classes (Scheffer et al., 2001).

    The smallest margins are picked first.

    >>> import numpy as np
    >>> pool = Pool(ids=np.array(["a", "b", "c"], dtype=object), features=np.zeros((3, 1)),
    ...             probabilities=np.array([[0.5, 0.3, 0.2], [0.4, 0.38, 0.22], [0.9, 0.05, 0.05]]),
    ...             classes=("x", "y", "z"))
    >>> MarginSampling().select(pool, 2).ids
    ('b', 'a')
    """

    name = "margin"

    def scores(self, pool: Pool) -> np.ndarray:
        return 1.0 - margins(pool.require_probabilities(self.name))

    def reasons(self, pool: Pool, rows: np.ndarray) -> list[str]:
        probabilities = pool.probabilities[rows]
        two = np.argsort(-probabilities, axis=1)[:, :2]
        return [
            f"margin {p[a] - p[b]:.3f} between {pool.classes[a]!s} and {pool.classes[b]!s}"
            for (a, b), p in zip(two, probabilities, strict=True)
        ]


def margins(probabilities: np.ndarray) -> np.ndarray:
    """Best minus second-best class probability of each row (1.0 with a single class)."""
    if probabilities.shape[1] < 2:
        return np.ones(len(probabilities))
    top_two = np.partition(probabilities, -2, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]
