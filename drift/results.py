"""Frozen, typed results of drift computations: what was computed, nothing more."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DriftResult:
    """One feature's (or one stream's) drift verdict.

    `score` is the statistic's value, the number Evidently reports for it: a
    p-value when `p_value` (K-S, chi-square, Z), a distance otherwise (the
    effect size). `p` is the p-value the verdict rests on: under a calibrated
    test (the default, `threshold` is then alpha) the statistic's p-value
    under "no drift" at these two sample sizes, so that `drifted` (p <= alpha)
    is a false alarm with probability alpha; under a fixed threshold
    (Evidently's rule) the score itself for a p-value statistic and NaN for a
    distance, and `drifted` compares the score with `threshold` as Evidently
    does (K-S: p <= threshold; chi-square and Z: p < threshold; distances:
    score >= threshold). `score` and `p` are NaN and `drifted` False when there
    was nothing to compare (`note` says why).
    """

    feature: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: bool
    note: str = ""
    p: float = math.nan

    def to_dict(self) -> dict:
        document = asdict(self)
        for name in ("score", "p"):
            document[name] = None if math.isnan(document[name]) else document[name]
        return document

    @classmethod
    def from_dict(cls, document: dict) -> DriftResult:
        """The inverse of `to_dict` (a document written before `p` existed reads with p = NaN)."""
        values = {**document}
        for name in ("score", "p"):
            value = values.get(name)
            values[name] = math.nan if value is None else float(value)
        return cls(**values)
