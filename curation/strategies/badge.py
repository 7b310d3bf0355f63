"""BADGE: uncertain and diverse at once, by k-means++ seeding in the space of loss gradients (Ash et al., 2020)."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Strategy, standardised

MAX_CANDIDATES = 100_000  # larger pools are seeded from a uniform sample of this many rows


class BADGE(Strategy):
    """Batch Active learning by Diverse Gradient Embeddings (Ash, Zhang, Krishnamurthy, Langford & Agarwal, ICLR 2020).

    Each row is embedded as the gradient of the cross-entropy loss with respect
    to the last layer, had its label been the model's own prediction:
    ``g = (p - onehot(argmax p)) ⊗ h``, with ``h`` the row's representation
    (the pool's embeddings when it has them, else its standardised features
    and a constant: the exact last-layer gradient of a linear softmax model).
    Its length is large where the model is unsure *and* where the row is
    unusual; k-means++ seeding on these embeddings (the longest first, then
    each row with probability proportional to its squared distance from the
    nearest pick) takes rows that are uncertain, but not all alike. That is
    what makes it robust where pure uncertainty fails: after a drift, a stale
    model's least certain rows can all be of one true class (margin sampling
    then takes every label from it), while the k-means++ draw keeps reaching
    into other regions. The paper found it never clearly worse than random or
    uncertainty sampling across architectures, batch sizes and datasets.

    Distances use the embeddings' outer-product form,
    ``|g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i . a_j)(h_i . h_j)``,
    so a pick costs one pass over (classes + dimensions) numbers per row, not
    their product. Pools above `max_candidates` rows are seeded from a uniform
    sample of that many. Scores are the squared distance of each pick from the
    picks before it (the first: its squared length).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features = np.concatenate([rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (50, 2))])
    >>> p = np.full(100, 0.5); p[50:] += 0.2  # the left blob is the most uncertain
    >>> pool = Pool(ids=np.arange(100).astype(str).astype(object), features=features,
    ...             probabilities=np.column_stack([p, 1 - p]), classes=("a", "b"))
    >>> sorted(int(i) // 50 for i in BADGE(seed=0).select(pool, 2).ids)  # one from each blob
    [0, 1]
    """

    name = "badge"

    def __init__(self, max_candidates: int = MAX_CANDIDATES, seed: int | None = None) -> None:
        if isinstance(max_candidates, bool) or not isinstance(max_candidates, int | np.integer) or max_candidates < 1:
            raise ValueError(f"'max_candidates' must be a positive integer, got {max_candidates!r}")
        self.max_candidates = max_candidates
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _select(self, pool: Pool, budget: int) -> Selection:
        probabilities = pool.require_probabilities(self.name)
        rows = np.arange(len(pool))
        if len(rows) > self.max_candidates:
            rows = np.sort(self._rng.choice(len(rows), self.max_candidates, replace=False))
        a = probabilities[rows].astype(np.float64).copy()
        a[np.arange(len(rows)), a.argmax(axis=1)] -= 1.0  # p - onehot(prediction)
        if pool.embeddings is not None:
            h = pool.embeddings[rows].astype(np.float64)
        else:
            h = np.column_stack([standardised(pool.features[rows], like=pool.features), np.ones(len(rows))])
        a_norms, h_norms = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", h, h)
        lengths = a_norms * h_norms  # |g|^2
        picks, scores = [], []
        nearest = np.full(len(rows), np.inf)
        for _ in range(budget):
            if not picks:
                pick = int(np.argmax(lengths))
                score = float(lengths[pick])
            else:
                weights = np.maximum(nearest, 0.0)
                total = weights.sum()
                pick = int(self._rng.choice(len(rows), p=weights / total)) if total > 0 else _first_free(nearest)
                score = float(weights[pick])
            picks.append(pick)
            scores.append(score)
            squared = lengths + lengths[pick] - 2.0 * (a @ a[pick]) * (h @ h[pick])
            np.minimum(nearest, squared, out=nearest)
            nearest[pick] = -1.0  # never again, even where rows coincide
        picked = rows[np.array(picks)]
        predicted = probabilities[picked].argmax(axis=1)
        reasons = [
            f"gradient {np.sqrt(lengths[p]):.3f} long (predicted {pool.classes[c]!s}); "
            + ("the longest" if i == 0 else f"{np.sqrt(max(s, 0.0)):.3f} from the nearest earlier pick")
            for i, (p, c, s) in enumerate(zip(picks, predicted, scores, strict=True))
        ]
        return Selection.of(self.name, pool.ids, picked, np.array(scores), reasons)


def _first_free(nearest: np.ndarray) -> int:
    """Every row left coincides with a pick (all distances 0): the first not yet taken."""
    return int(np.flatnonzero(nearest >= 0.0)[0])
