"""Hybrid: random rows until a few labels per class, then cluster-margin with a random share: robust at a cold start."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Strategy
from driftloop.curation.strategies.cluster_margin import ClusterMargin


class Hybrid(Strategy):
    """Uniform random rows until ``warm_up_per_class`` labels per class, then cluster-margin with a random share.

    Until the pool's labelled rows number ``warm_up_per_class`` x the model's
    classes (at least two), picks are uniformly random; after that
    ``1 - explore`` of every batch is cluster-margin and the rest random (an
    epsilon-greedy mix).

    Uncertainty sampling trusts the model it asks. Right after a drift that
    model is stale, and its least certain rows can all be of one true class: a
    new class that moved to where the old ones meet. Margin and cluster-margin
    then take every label from that class, the model cannot even be refit, and
    they stay blind to the rest for as long as that region lasts (5-6 times
    random's labels in `benchmarks/label_efficiency.py`, blobs dataset). The
    random share samples every class in proportion to its size whatever the
    model believes, so the first batches hold several classes and the refit
    model's uncertainty becomes worth following; after that the cluster-margin
    part does most of the work, and the random share keeps a model that is
    wrong with confidence from hiding a region for good. This is the "explore"
    arm of epsilon-greedy active learning (Bouneffouf et al. 2014; Osugi, Kim
    & Scott 2005 choose the share adaptively). The warm-up counts labelled
    rows, not their labels, and the share is fixed: no memory between batches
    is needed, so it works the same when every batch is chosen by a new
    process. It was measured against BADGE (Ash et al. 2020), which also
    resists the trap (`docs/BENCHMARKS.md`).

    Picks are ranked cluster-margin first (by margin), the random ones after;
    each reason says which part chose it.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> p = np.r_[np.full(50, 0.5), np.full(50, 0.99)]  # the model is unsure only of the first 50 rows
    >>> pool = Pool(ids=np.arange(100).astype(str).astype(object), features=rng.normal(size=(100, 2)),
    ...             probabilities=np.column_stack([p, 1 - p]), classes=("a", "b"))
    >>> warm = Pool(ids=pool.ids, features=pool.features, probabilities=pool.probabilities, classes=pool.classes,
    ...             labelled=np.zeros((6, 2)))  # 3 labels per class: past the warm-up
    >>> picks = [int(i) for i in Hybrid(explore=0.3, seed=0).select(warm, 10).ids]
    >>> sum(i < 50 for i in picks[:7]), len(picks)  # 7 of the uncertain rows, then 3 random ones
    (7, 10)
    >>> [r.split(":")[0] for r in Hybrid(seed=0).select(pool, 10).reasons]  # nothing labelled: 6 + 30 % of 4 random
    ['cluster-margin', 'cluster-margin', 'cluster-margin', 'random exploration', 'random exploration', 'random exploration', 'random exploration', 'random exploration', 'random exploration', 'random exploration']
    """

    name = "hybrid"

    def __init__(
        self, explore: float = 0.3, warm_up_per_class: int = 3, candidates_per_pick: float = 10.0, seed: int | None = None
    ) -> None:
        if isinstance(explore, bool) or not isinstance(explore, (int, float)) or not 0.0 <= explore <= 1.0:
            raise ValueError(f"'explore' must be a share in [0, 1], got {explore!r}")
        if isinstance(warm_up_per_class, bool) or not isinstance(warm_up_per_class, int) or warm_up_per_class < 0:
            raise ValueError(f"'warm_up_per_class' must be a non-negative integer, got {warm_up_per_class!r}")
        self.explore = explore
        self.warm_up_per_class = warm_up_per_class
        self.candidates_per_pick = candidates_per_pick
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._exploit = ClusterMargin(candidates_per_pick=candidates_per_pick, seed=None if seed is None else seed + 1)

    def _select(self, pool: Pool, budget: int) -> Selection:
        labelled = 0 if pool.labelled is None else len(pool.labelled)
        warm_up = max(0, self.warm_up_per_class * max(len(pool.classes), 2) - labelled)  # random until then
        random_picks = min(budget, warm_up + int(round(self.explore * max(budget - warm_up, 0))))
        exploited = self._exploit.select(pool, budget - random_picks) if budget > random_picks else None
        taken = set() if exploited is None else set(exploited.ids)
        free = np.flatnonzero([str(i) not in taken for i in pool.ids.tolist()]) if taken else np.arange(len(pool))
        rows = self._rng.choice(free, size=min(random_picks, len(free)), replace=False)
        ids = (() if exploited is None else exploited.ids) + tuple(str(i) for i in pool.ids[rows])
        scores = (() if exploited is None else exploited.scores) + (0.0,) * len(rows)
        reasons = (() if exploited is None else tuple(f"cluster-margin: {r}" for r in exploited.reasons)) \
            + ("random exploration: labels every class, whatever the model believes",) * len(rows)
        return Selection(self.name, ids, scores, reasons)
