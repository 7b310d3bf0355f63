"""Entropy sampling: label the rows whose predicted class distribution is most spread out."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.strategies.base import ScoringStrategy


class EntropySampling(ScoringStrategy):
    """Score the Shannon entropy ``-sum_c p(c | x) log p(c | x)`` in nats (Settles, 2009, §3.1).

    >>> import numpy as np
    >>> pool = Pool(ids=np.array(["flat", "peaked"], dtype=object), features=np.zeros((2, 1)),
    ...             probabilities=np.array([[1/3, 1/3, 1/3], [0.8, 0.1, 0.1]]), classes=("x", "y", "z"))
    >>> EntropySampling().select(pool, 1).ids
    ('flat',)
    """

    name = "entropy"

    def scores(self, pool: Pool) -> np.ndarray:
        return entropy(pool.require_probabilities(self.name))

    def reasons(self, pool: Pool, rows: np.ndarray) -> list[str]:
        maximum = np.log(max(len(pool.classes), 2))
        return [f"entropy {h:.2f} of at most {maximum:.2f} nats" for h in entropy(pool.probabilities[rows])]


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy of each row, in nats (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0)
    return -terms.sum(axis=1)
