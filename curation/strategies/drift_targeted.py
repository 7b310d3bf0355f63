"""Drift-targeted selection: label inputs from where today's data differs from the training data."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from driftloop.curation.pool import Pool
from driftloop.curation.selection import Selection
from driftloop.curation.strategies.base import Strategy, top_k
from driftloop.curation.strategies.margin import margins


class DomainScorer(Protocol):
    """Tells the current rows from the reference rows; drift's `DomainClassifierTest` is one."""

    def current_probabilities(self, reference: np.ndarray, current: np.ndarray) -> np.ndarray:
        """For each current row, how likely it is to be current rather than reference (0.5: either)."""
        ...


class DriftTargeted(Strategy):
    """Rows a domain classifier finds most unlike the reference, weighted by the model's uncertainty.

    After a drift the model is wrong where the inputs moved; labels from there
    teach it the most. `domain_scorer` (the drift package's domain classifier,
    wired in by driftloop) gives each pool row its probability ``q`` of being
    current rather than reference; the score is ``q`` times ``(1 - margin)``
    when `uncertainty` is set and the pool has probabilities, else ``q``. The
    pool needs reference rows (`Pool.with_context(reference=...)`).
    """

    name = "drift_targeted"

    def __init__(self, domain_scorer: DomainScorer, uncertainty: bool = True) -> None:
        if not hasattr(domain_scorer, "current_probabilities"):
            raise ValueError(
                "domain_scorer must have current_probabilities(reference, current), "
                "e.g. drift.DomainClassifierTest()"
            )
        self.domain_scorer = domain_scorer
        self.uncertainty = uncertainty

    def _select(self, pool: Pool, budget: int) -> Selection:
        if pool.reference is None or len(pool.reference) == 0:
            raise ValueError("drift-targeted selection needs reference rows: Pool.with_context(reference=...)")
        current = np.asarray(self.domain_scorer.current_probabilities(pool.reference, pool.features), dtype=np.float64)
        weighted = self.uncertainty and pool.probabilities is not None
        uncertainty = 1.0 - margins(pool.probabilities) if weighted else np.ones(len(pool))
        scores = current * uncertainty
        top = top_k(scores, budget)
        reasons = [
            f"p(current)={current[row]:.2f}" + (f", margin {1.0 - uncertainty[row]:.3f}" if weighted else "")
            for row in top
        ]
        return Selection.of(self.name, pool.ids, top, scores[top], reasons)
