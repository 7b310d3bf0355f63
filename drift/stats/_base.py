"""The base of every window statistic: validation, bad-input outcomes, the verdict.

A statistic compares one column of a window with that column's stored
reference profile (`drift.profile.NumericFeature` or `CategoricalFeature`),
so nothing about the reference is recomputed per window. Subclasses set the
class attributes and implement `_compute(reference, current) -> float`, where
`current` is already cleaned (NaN, null and inf dropped; see `prepare`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd

from driftloop.drift.profile import CategoricalFeature, FeatureProfile, NumericFeature, _as_float, category_counts
from driftloop.drift.results import DriftResult


class Statistic:
    """One drift statistic. Parameters (the threshold) in the constructor, data in `score`."""

    name: ClassVar[str]
    p_value: ClassVar[bool]  # True: the score is a p-value, small means drift
    kinds: ClassVar[tuple[str, ...]]  # reference kinds it accepts
    default_threshold: ClassVar[float]
    inclusive: ClassVar[bool] = True  # p-value tests: drift when p <= t (True) or p < t (False), as Evidently

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = self.default_threshold if threshold is None else threshold
        if not isinstance(self.threshold, (int, float)) or math.isnan(self.threshold) or self.threshold <= 0 \
                or (self.p_value and self.threshold >= 1):
            valid = "a float in (0, 1)" if self.p_value else "a float > 0"
            raise ValueError(f"The 'threshold' of {self.name} must be {valid}. Got {threshold!r} instead.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(threshold={self.threshold!r})"

    def score(self, reference: FeatureProfile, current) -> DriftResult:
        """Compare `current` (array, pandas Series or Arrow array) with the column's stored `reference`."""
        if reference.kind not in self.kinds:
            raise ValueError(
                f"{self.name} cannot score the {reference.kind} column {reference.name!r}. "
                f"It accepts: {self.kinds}; for {reference.kind} columns use one of {_methods_for(reference.kind)}"
            )
        return self.score_prepared(reference, self.prepare(reference, current))

    def score_prepared(self, reference: FeatureProfile, cleaned) -> DriftResult:
        """`score` for a column already passed through `prepare` (one preparation serves every statistic)."""
        if reference.kind not in self.kinds:
            return self.score(reference, cleaned)  # raises the error that lists the valid methods
        if reference.count == 0:
            return self._nothing(reference, "reference has no values")
        if _size(cleaned) == 0:
            return self._nothing(reference, "current window has no values")
        value = float(self._compute(reference, cleaned))
        return DriftResult(reference.name, self.name, value, float(self.threshold), self.drifted(value), self.p_value)

    def drifted(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.p_value:
            return bool(value <= self.threshold) if self.inclusive else bool(value < self.threshold)
        return bool(value >= self.threshold)

    def prepare(self, reference: FeatureProfile, current):
        """Numeric: the finite float values; categorical: (categories, counts)."""
        if isinstance(reference, NumericFeature):
            values = _as_float(current, reference.name)
            return values[np.isfinite(values)]
        categories, counts, _ = category_counts(current)
        return categories, counts

    def _compute(self, reference: FeatureProfile, current) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _nothing(self, reference: FeatureProfile, note: str) -> DriftResult:
        return DriftResult(reference.name, self.name, math.nan, float(self.threshold), False, self.p_value, note)


def _size(cleaned) -> int:
    return len(cleaned) if isinstance(cleaned, np.ndarray) else int(sum(cleaned[1]))


def _methods_for(kind: str) -> list[str]:
    from driftloop.drift.stats import STATISTICS  # the registry imports this module

    return [name for name, cls in STATISTICS.items() if kind in cls.kinds]


def reference_counts(reference: FeatureProfile) -> dict:
    """{value: count} of the reference (numeric columns by distinct value)."""
    if isinstance(reference, CategoricalFeature):
        return dict(zip(reference.categories, reference.counts, strict=True))
    if reference.distinct:
        return dict(zip(reference.distinct, reference.distinct_counts, strict=True))
    values, counts = np.unique(reference.values, return_counts=True)
    scale = reference.count / len(reference.values)
    return dict(zip(values.tolist(), (counts * scale).tolist(), strict=True))


def current_counts(reference: FeatureProfile, cleaned) -> dict:
    """{value: count} of a prepared window column."""
    if isinstance(cleaned, np.ndarray):
        values, counts = np.unique(cleaned, return_counts=True)
        return dict(zip(values.tolist(), counts.tolist(), strict=True))
    return dict(zip(*cleaned, strict=True))


def aligned_counts(reference: FeatureProfile, cleaned) -> tuple[list, np.ndarray, np.ndarray]:
    """Keys of the union of both columns (reference order first, then new ones) and both count vectors.

    A category missing on one side counts 0 there.
    """
    ref = reference_counts(reference)
    cur = current_counts(reference, cleaned)
    keys = list(ref) + [key for key in cur if key not in ref]
    return (
        keys,
        np.array([ref.get(key, 0) for key in keys], dtype=np.float64),
        np.array([cur.get(key, 0) for key in keys], dtype=np.float64),
    )


def binned_shares(reference: FeatureProfile, cleaned, fill_zeroes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Evidently 0.7's `get_binned_data`, from the profile: the shares of both columns per bin.

    Numeric columns with more than 20 distinct reference values: Sturges bins
    over the combined range (`np.histogram_bin_edges(..., "sturges")` of both
    columns, computed from the stored count/min/max without concatenating);
    otherwise one bin per value. `fill_zeroes` replaces empty bins by a small
    share as Evidently's PSI does.
    """
    if isinstance(reference, NumericFeature) and reference.unique > 20:
        edges = sturges_edges(reference, cleaned)
        positions = np.searchsorted(reference.values, edges, side="left")
        positions[-1] = np.searchsorted(reference.values, edges[-1], side="right")  # the last bin is closed
        ref_counts = np.diff(positions) * (reference.count / len(reference.values))
        ref_shares = ref_counts / reference.count
        cur_shares = np.histogram(cleaned, edges)[0] / len(cleaned)
    else:
        _, ref_counts, cur_counts = aligned_counts(reference, cleaned)
        ref_shares = ref_counts / reference.count
        cur_shares = cur_counts / cur_counts.sum()
    if fill_zeroes:
        for shares in (ref_shares, cur_shares):
            smallest = shares[shares != 0].min()
            np.place(shares, shares == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return ref_shares, cur_shares


def sturges_edges(reference: NumericFeature, current: np.ndarray) -> np.ndarray:
    """np.histogram_bin_edges(concat(reference, current), bins="sturges"), from the profile's count/min/max."""
    first = min(reference.minimum, float(current.min()))
    last = max(reference.maximum, float(current.max()))
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (last - first) / (np.log2(reference.count + len(current)) + 1.0)
    if width:
        if reference.integer and _integral(current) and width < 1:
            width = 1
        bins = int(np.ceil((last - first) / width))
    else:
        bins = 1
    return np.linspace(first, last, bins + 1, endpoint=True, dtype=np.float64)


def _integral(values: np.ndarray) -> bool:
    return bool(np.all(values == np.round(values)))


def as_series(values) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(values)
