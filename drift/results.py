"""Frozen, typed results of drift computations: what was computed, nothing more."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DriftResult:
    """One feature's (or one stream's) drift verdict.

    `score` is the statistic's value (a p-value when `p_value`, a distance otherwise);
    `drifted` compares it with `threshold` the way the method says, as Evidently
    does (K-S: p <= threshold; chi-square and Z: p < threshold; distances:
    score >= threshold). `score` is NaN and `drifted` False when there was
    nothing to compare (`note` says why).
    """

    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: bool
    note: str = ""

    def to_dict(self) -> dict:
        document = asdict(self)
        document["score"] = None if math.isnan(self.score) else self.score
        return document

    @classmethod
    def from_dict(cls, document: dict) -> DriftResult:
        score = document["score"]
        return cls(**{**document, "score": math.nan if score is None else float(score)})
