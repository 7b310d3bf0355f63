"""Query strategies: one small class per file behind ``select(pool, budget) -> Selection``, an explicit registry.

`STRATEGIES` maps names to classes; `make_strategy` builds one by name and
wraps it in the guards asked for (class balance, near-duplicate removal).

>>> sorted(STRATEGIES)
['badge', 'cluster_margin', 'drift_targeted', 'entropy', 'hybrid', 'k_center', 'least_confidence', 'margin', 'random']
>>> make_strategy("margin", balanced=True, deduplicated=True).name
'margin+balanced+deduplicated'
>>> make_strategy("most_uncertain")
Traceback (most recent call last):
...
ValueError: Unknown strategy 'most_uncertain'. Valid values are: ['random', 'least_confidence', 'margin', 'entropy', 'k_center', 'cluster_margin', 'drift_targeted', 'badge', 'hybrid']
"""

from __future__ import annotations

from driftloop.curation.strategies.badge import BADGE
from driftloop.curation.strategies.balanced import ClassBalanced
from driftloop.curation.strategies.base import ScoringStrategy, Strategy
from driftloop.curation.strategies.cluster_margin import ClusterMargin
from driftloop.curation.strategies.deduplicated import NearDuplicateFilter
from driftloop.curation.strategies.drift_targeted import DomainScorer, DriftTargeted
from driftloop.curation.strategies.entropy import EntropySampling
from driftloop.curation.strategies.hybrid import Hybrid
from driftloop.curation.strategies.kcenter import KCenterGreedy
from driftloop.curation.strategies.least_confidence import LeastConfidence
from driftloop.curation.strategies.margin import MarginSampling
from driftloop.curation.strategies.random import RandomSampling

STRATEGIES: dict[str, type[Strategy]] = {
    "random": RandomSampling,
    "least_confidence": LeastConfidence,
    "margin": MarginSampling,
    "entropy": EntropySampling,
    "k_center": KCenterGreedy,
    "cluster_margin": ClusterMargin,
    "drift_targeted": DriftTargeted,
    "badge": BADGE,
    "hybrid": Hybrid,
}


def make_strategy(name: str, *, balanced: bool = False, deduplicated: bool = False, **params) -> Strategy:
    """The strategy registered as `name`, built with `params`, inside the guards asked for.

    The balance guard goes inside the duplicate filter, so a dropped copy's
    place goes to the next pick of its class.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}. Valid values are: {list(STRATEGIES)}")
    strategy = STRATEGIES[name](**params)
    if balanced:
        strategy = ClassBalanced(strategy)
    if deduplicated:
        strategy = NearDuplicateFilter(strategy)
    return strategy


__all__ = [
    "BADGE",
    "STRATEGIES",
    "ClassBalanced",
    "ClusterMargin",
    "DomainScorer",
    "DriftTargeted",
    "EntropySampling",
    "Hybrid",
    "KCenterGreedy",
    "LeastConfidence",
    "MarginSampling",
    "NearDuplicateFilter",
    "RandomSampling",
    "ScoringStrategy",
    "Strategy",
    "make_strategy",
]
