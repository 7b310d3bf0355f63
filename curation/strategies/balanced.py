"""Class-balance guard: no predicted class takes more than its share of a batch."""

from __future__ import annotations

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Guard, Strategy


class ClassBalanced(Guard):
    """Wraps a strategy so that each predicted class gets at most ``ceil(max_share * budget)`` picks.

    Uncertainty strategies love the classes the model confuses and starve the
    rest; a retrain then learns the rare class from a handful of rows. The
    guard asks `inner` for ``oversample * budget`` ranked picks and takes them
    in rank order while their class is under quota. When the ranking runs out
    before the budget is spent (a class too rare to fill its share), the rest
    is filled in rank order regardless of class, and those picks say so.
    `max_share` defaults to an equal share per class of the pool's predictions.

    >>> import numpy as np
    >>> from driftloop.curation.strategies.margin import MarginSampling
    >>> p = np.array([0.5, 0.51, 0.52, 0.53, 0.1, 0.05])  # p(a): the four most uncertain rows are all "a"
    >>> pool = Pool(ids=np.array(list("uvwxyz"), dtype=object), features=np.zeros((6, 1)),
    ...             probabilities=np.column_stack([p, 1 - p]), classes=("a", "b"))
    >>> ClassBalanced(MarginSampling()).select(pool, 4).ids
    ('u', 'v', 'y', 'z')
    """

    suffix = "balanced"

    def __init__(self, inner: Strategy, max_share: float | None = None, oversample: float = 5.0) -> None:
        if max_share is not None and not 0.0 < max_share <= 1.0:
            raise ValueError(f"'max_share' must be in (0, 1], got {max_share!r}")
        super().__init__(inner, oversample)
        self.max_share = max_share

    def _select(self, pool: Pool, budget: int) -> Selection:
        ranked = self.ranked(pool, budget)
        predicted = dict(zip(pool.ids.tolist(), pool.predicted().tolist(), strict=True))
        share = self.max_share if self.max_share is not None else 1.0 / len(pool.classes)
        quota = int(np.ceil(share * budget))
        taken: dict[str, int] = {}
        keep, overflow = [], []
        for rank, event_id in enumerate(ranked.ids):
            label = predicted[event_id]
            if taken.get(label, 0) < quota:
                taken[label] = taken.get(label, 0) + 1
                keep.append(rank)
            else:
                overflow.append(rank)
            if len(keep) == budget:
                break
        filled = overflow[: budget - len(keep)]
        reasons = [f"{ranked.reasons[r]}; predicted {predicted[ranked.ids[r]]}" for r in keep]
        reasons += [
            f"{ranked.reasons[r]}; predicted {predicted[ranked.ids[r]]} (over quota: too few of other classes)"
            for r in filled
        ]
        rows = keep + filled
        return Selection(
            self.name, tuple(ranked.ids[r] for r in rows), tuple(ranked.scores[r] for r in rows), tuple(reasons)
        )
