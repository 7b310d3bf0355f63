"""Cluster-margin: uncertain rows, spread over the input space (a hybrid of uncertainty and diversity)."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Strategy, standardised, top_k
from driftloop.curation.strategies.margin import margins


class ClusterMargin(Strategy):
    """The smallest-margin rows, at most a few from any one region (after Citovsky et al., 2021).

    Uncertainty alone fills a batch with near-copies from the one region where
    the model is unsure; diversity alone spends labels where it is sure. This
    takes the ``candidates_per_pick * budget`` smallest-margin rows, clusters
    them (k-means on standardised features, or embeddings when the pool has
    them) into `budget` clusters, and visits the clusters smallest first, round
    robin, taking each cluster's smallest-margin row not yet taken. Picks are
    ranked by margin. Citovsky et al. cluster with hierarchical average linkage;
    k-means on the candidates costs far less on a large pool and serves the same
    purpose.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    >>> p = np.full(100, 0.5); p[50:] += 0.01  # the left blob is slightly more uncertain than the right one
    >>> pool = Pool(ids=np.arange(100).astype(str).astype(object), features=features,
    ...             probabilities=np.column_stack([p, 1 - p]), classes=("a", "b"))
    >>> from driftloop.curation.strategies.margin import MarginSampling
    >>> [int(i) // 50 for i in MarginSampling().select(pool, 2).ids]  # margin alone: both from the left
    [0, 0]
    >>> sorted(int(i) // 50 for i in ClusterMargin(candidates_per_pick=50, seed=0).select(pool, 2).ids)
    [0, 1]
    """

    name = "cluster_margin"

    def __init__(self, candidates_per_pick: float = 10.0, seed: int | None = None) -> None:
        if not candidates_per_pick >= 1.0:
            raise ValueError(f"'candidates_per_pick' must be at least 1, got {candidates_per_pick!r}")
        self.candidates_per_pick = candidates_per_pick
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _select(self, pool: Pool, budget: int) -> Selection:
        margin = margins(pool.require_probabilities(self.name))
        candidates = top_k(-margin, min(len(pool), int(np.ceil(self.candidates_per_pick * budget))))
        if pool.embeddings is not None:
            points = pool.embeddings[candidates]
        else:
            points = standardised(pool.features[candidates], like=pool.features)
        from sklearn.cluster import MiniBatchKMeans  # heavy: imported when a batch is chosen
        clusters = MiniBatchKMeans(
            n_clusters=budget, n_init=1, batch_size=4096, random_state=int(self._rng.integers(2**31 - 1))
        ).fit_predict(points.astype(np.float32))
        picks = _round_robin(candidates, clusters, budget)  # candidates are sorted by margin: first is smallest
        picks = picks[np.lexsort((picks, margin[picks]))]
        sizes = np.bincount(clusters, minlength=budget)
        cluster_of = dict(zip(candidates.tolist(), clusters.tolist(), strict=True))
        reasons = [
            f"margin {margin[row]:.3f}; 1 of {sizes[cluster_of[row]]} uncertain rows in its region" for row in picks
        ]
        return Selection.of(self.name, pool.ids, picks, 1.0 - margin[picks], reasons)


def _round_robin(candidates: np.ndarray, clusters: np.ndarray, budget: int) -> np.ndarray:
    """Visit clusters smallest first, taking each one's next candidate (in candidate order) until `budget`."""
    members = [candidates[clusters == c] for c in range(clusters.max() + 1)]
    members = [m for m in sorted(members, key=len) if len(m)]
    picks: list[int] = []
    depth = 0
    while len(picks) < budget:
        for rows in members:
            if depth < len(rows):
                picks.append(int(rows[depth]))
                if len(picks) == budget:
                    break
        depth += 1
    return np.array(picks)
