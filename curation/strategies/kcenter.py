"""K-center greedy (core-set): label the rows farthest from everything labelled or picked so far."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Strategy, standardised

SPACES = ("auto", "features", "embeddings")


class KCenterGreedy(Strategy):
    """Greedy 2-approximation of the k-center cover of the pool (Sener & Savarese, 2018).

    Each pick is the row farthest (Euclidean, after standardising each column)
    from its nearest center; the centers are the pool's already-labelled rows
    (`Pool.labelled`) and the picks so far. With nothing labelled, the first
    pick is a seeded random row. The score of a pick is that distance: the
    radius of the cover just before it was added. `space` chooses features,
    model embeddings, or embeddings when the pool has them ("auto").
    `standardise=False` keeps the features' own units, for features that share
    one scale (pixels, say) where a near-constant column should not weigh as
    much as the rest.
    Cost: one pass over the pool per pick.

    >>> import numpy as np
    >>> features = np.array([[0.0], [0.1], [0.2], [5.0], [10.0]])
    >>> pool = Pool(ids=np.array(list("abcde"), dtype=object), features=features, labelled=np.array([[0.0]]))
    >>> KCenterGreedy().select(pool, 2).ids
    ('e', 'd')
    """

    name = "k_center"

    def __init__(self, space: str = "auto", standardise: bool = True, seed: int | None = None) -> None:
        if space not in SPACES:
            raise ValueError(f"Invalid 'space' {space!r}. Valid values are: {list(SPACES)}")
        self.space = space
        self.standardise = standardise
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _select(self, pool: Pool, budget: int) -> Selection:
        points, labelled = self._points(pool)
        squared_norms = np.einsum("ij,ij->i", points, points)
        random_start = labelled is None or len(labelled) == 0
        if not random_start:
            from sklearn.metrics import pairwise_distances_argmin_min  # heavy: imported when a batch is chosen
            _, nearest = pairwise_distances_argmin_min(points, labelled)
            min_squared = nearest.astype(np.float32) ** 2
        else:
            min_squared = np.full(len(points), np.inf, dtype=np.float32)
        picks, radii = [], []
        for _ in range(budget):
            row = int(self._rng.integers(len(points))) if random_start and not picks else int(np.argmax(min_squared))
            picks.append(row)
            radii.append(float(np.sqrt(max(min_squared[row], 0.0))))
            squared = squared_norms - 2.0 * (points @ points[row]) + squared_norms[row]
            np.minimum(min_squared, squared, out=min_squared)
            min_squared[row] = -1.0  # picked: never again, even where rows coincide
        reasons = [
            "random first center" if np.isinf(r) else f"distance {r:.2f} to the nearest labelled or picked row"
            for r in radii
        ]
        scores = np.array(radii)
        return Selection.of(self.name, pool.ids, np.array(picks), scores, reasons)

    def _points(self, pool: Pool) -> tuple[np.ndarray, np.ndarray | None]:
        """The pool's rows and labelled rows in the space distances are taken in, as float32."""
        use_embeddings = self.space == "embeddings" or (self.space == "auto" and pool.embeddings is not None)
        if use_embeddings:
            if pool.embeddings is None:
                raise ValueError("space='embeddings' needs a pool with embeddings (log them with each prediction)")
            return pool.embeddings.astype(np.float32), None  # labelled rows are known by features only
        if not self.standardise:
            labelled = None if pool.labelled is None else np.nan_to_num(pool.labelled).astype(np.float32)
            return np.nan_to_num(pool.features).astype(np.float32), labelled
        points = standardised(pool.features).astype(np.float32)
        labelled = standardised(pool.labelled, like=pool.features).astype(np.float32) if pool.labelled is not None else None
        return points, labelled
