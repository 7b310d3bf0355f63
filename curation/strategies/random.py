"""Random sampling: the baseline every other strategy has to beat."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Strategy


class RandomSampling(Strategy):
    """Uniformly random rows, without replacement, from a seeded generator.

    >>> import numpy as np
    >>> pool = Pool(ids=np.array(["a", "b", "c", "d"], dtype=object), features=np.zeros((4, 1)))
    >>> len(RandomSampling(seed=0).select(pool, 2))
    2
    """

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _select(self, pool: Pool, budget: int) -> Selection:
        rows = self._rng.choice(len(pool), size=budget, replace=False)
        return Selection.of(self.name, pool.ids, rows, np.zeros(budget), ["random draw"] * budget)
