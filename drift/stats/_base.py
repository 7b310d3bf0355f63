"""The base of every window statistic: validation, bad-input outcomes, the verdict, and the tables they share.

A statistic compares one column of a window with that column's stored
reference profile (`drift.profile.NumericFeature` or `CategoricalFeature`),
so nothing about the reference is recomputed per window. Subclasses set the
class attributes, implement `_compute(reference, current) -> float` (the
score, as Evidently computes it) and `_p(reference, current, score) -> float`
(its p-value under "no drift" at these two sizes), where `current` is already
cleaned (NaN, null and inf dropped; see `prepare`).

Two verdicts, chosen in the constructor:

* calibrated (the default, `alpha=0.05`): drift when the p-value is at most
  alpha, so a window without drift alarms with probability alpha whatever the
  sizes of the reference and the window;
* a fixed threshold on the score (`threshold=...`, Evidently's rule, e.g.
  Wasserstein >= 0.1): what Evidently reports, whatever the false-alarm rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import pandas as pd

from driftloop.drift.calibration import permutation_p_value
from driftloop.drift.profile import CategoricalFeature, FeatureProfile, NumericFeature, _as_float, category_counts
from driftloop.drift.results import DriftResult

DEFAULT_ALPHA = 0.05
PEARSON_MIN_EXPECTED = 5.0  # Cochran's rule: the chi-square approximation of a Pearson statistic holds above it
DIVERGENCE_MIN_EXPECTED = 20.0  # distances (PSI, Jensen–Shannon) need more: at 5 expected, their chi-square p alarmed 6-7%
MAX_LEVELS = 1_000  # a permutation test on more levels pools the rarest ones (the test stays exact on the pooled table)


class Statistic:
    """One drift statistic. Parameters (alpha, or a fixed threshold) in the constructor, data in `score`."""

    name: ClassVar[str]
    p_value: ClassVar[bool]  # True: the score is a p-value, small means drift
    kinds: ClassVar[tuple[str, ...]]  # reference kinds it accepts
    default_threshold: ClassVar[float]  # Evidently's threshold on the score
    inclusive: ClassVar[bool] = True  # fixed threshold on a p-value: drift when p <= t (True) or p < t, as Evidently

    def __init__(self, threshold: float | None = None, alpha: float | None = None) -> None:
        if threshold is not None and alpha is not None:
            raise ValueError(
                f"Give {self.name} either 'alpha' (a calibrated test) or 'threshold' (a fixed threshold on the "
                f"score, Evidently's rule), not both. Got alpha={alpha!r}, threshold={threshold!r}."
            )
        if threshold is not None:
            if not _is_number(threshold) or threshold <= 0 or (self.p_value and threshold >= 1):
                valid = "a float in (0, 1)" if self.p_value else "a float > 0"
                raise ValueError(f"The 'threshold' of {self.name} must be {valid}. Got {threshold!r} instead.")
        elif alpha is not None and (not _is_number(alpha) or not 0 < alpha < 1):
            raise ValueError(f"The 'alpha' of {self.name} must be a float in (0, 1). Got {alpha!r} instead.")
        self.alpha = None if threshold is not None else (DEFAULT_ALPHA if alpha is None else alpha)
        self.threshold = threshold

    @classmethod
    def evidently(cls) -> Statistic:
        """This statistic with Evidently's fixed threshold, for Evidently's verdicts."""
        return cls(threshold=cls.default_threshold)

    @property
    def calibrated(self) -> bool:
        return self.alpha is not None

    def __repr__(self) -> str:
        setting = f"alpha={self.alpha!r}" if self.calibrated else f"threshold={self.threshold!r}"
        return f"{type(self).__name__}({setting})"

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
        if self.calibrated:
            value, p = self._score_and_p(reference, cleaned)
            drifted = not math.isnan(p) and p <= self.alpha
            return DriftResult(reference.name, self.name, value, float(self.alpha), drifted, self.p_value, p=p)
        value = float(self._compute(reference, cleaned))
        p = value if self.p_value else math.nan
        return DriftResult(reference.name, self.name, value, float(self.threshold), self.drifted(value), self.p_value, p=p)

    def drifted(self, value: float) -> bool:
        """The fixed-threshold verdict on a score (Evidently's rule)."""
        threshold = self.default_threshold if self.threshold is None else self.threshold
        if math.isnan(value):
            return False
        if self.p_value:
            return bool(value <= threshold) if self.inclusive else bool(value < threshold)
        return bool(value >= threshold)

    def prepare(self, reference: FeatureProfile, current):
        """Numeric: the finite float values; categorical: (categories, counts)."""
        if isinstance(reference, NumericFeature):
            values = _as_float(current, reference.name)
            return values[np.isfinite(values)]
        categories, counts, _ = category_counts(current)
        return categories, counts

    def _compute(self, reference: FeatureProfile, current) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score_and_p(self, reference: FeatureProfile, current) -> tuple[float, float]:
        """The score and its calibrated p-value (a statistic may get both cheaper together)."""
        value = float(self._compute(reference, current))
        return value, float(self._p(reference, current, value))

    def _p(self, reference: FeatureProfile, current, score: float) -> float:  # pragma: no cover - abstract
        """The p-value of `score` under "no drift", for a reference of `reference.count` and this window."""
        raise NotImplementedError

    def _nothing(self, reference: FeatureProfile, note: str) -> DriftResult:
        threshold = self.alpha if self.calibrated else self.threshold
        return DriftResult(reference.name, self.name, math.nan, float(threshold), False, self.p_value, note)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


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


def ordered_counts(reference: NumericFeature, cleaned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct values of both numeric columns and both count vectors (for K-S and Wasserstein on counts)."""
    keys, ref, cur = aligned_counts(reference, cleaned)
    values = np.array(keys, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    return values[order], ref[order], cur[order]


def binned_counts(reference: FeatureProfile, cleaned) -> tuple[np.ndarray, np.ndarray]:
    """Evidently 0.7's `get_binned_data`, from the profile: the counts of both columns per bin.

    Numeric columns with more than 20 distinct reference values: Sturges bins
    over the combined range (`np.histogram_bin_edges(..., "sturges")` of both
    columns, computed from the stored count/min/max without concatenating);
    otherwise one bin per value. A sketched reference's counts are estimates.
    """
    if isinstance(reference, NumericFeature) and reference.unique > 20:
        edges = sturges_edges(reference, cleaned)
        positions = np.searchsorted(reference.values, edges, side="left")
        positions[-1] = np.searchsorted(reference.values, edges[-1], side="right")  # the last bin is closed
        ref_counts = np.diff(positions) * (reference.count / len(reference.values))
        return ref_counts, np.histogram(cleaned, edges)[0].astype(np.float64)
    _, ref_counts, cur_counts = aligned_counts(reference, cleaned)
    return ref_counts, cur_counts


def binned_shares(reference: FeatureProfile, cleaned, fill_zeroes: bool) -> tuple[np.ndarray, np.ndarray]:
    """The shares of both columns per Evidently bin; `fill_zeroes` replaces empty bins by a small share (its PSI)."""
    ref_counts, cur_counts = binned_counts(reference, cleaned)
    ref_shares, cur_shares = ref_counts / reference.count, cur_counts / cur_counts.sum()
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


# Calibration on tables of counts: an asymptotic chi-square p-value where every expected count is large
# enough, the exact permutation test (Monte-Carlo) where some are not.


def smallest_expected(reference: np.ndarray, current: np.ndarray) -> float:
    """The smallest expected count of the 2 x k table under "no drift" (pooled shares times each side's size)."""
    pooled = reference + current
    present = pooled > 0
    if present.sum() < 2:
        return math.inf
    shares = pooled[present] / pooled.sum()
    return float(shares.min() * min(reference.sum(), current.sum()))


def table_p_value(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    reference: np.ndarray,
    current: np.ndarray,
    asymptotic: Callable[[], float] | None = None,
    min_expected: float = PEARSON_MIN_EXPECTED,
) -> float:
    """`asymptotic()` when every expected count reaches `min_expected`, else the permutation p-value of `statistic`."""
    if asymptotic is not None and smallest_expected(reference, current) >= min_expected:
        return asymptotic()
    return permutation_p_value(statistic, *_pooled_rare(reference, current))


def _pooled_rare(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_LEVELS levels: the rarest (by pooled count, which a permutation does not change) merged into one."""
    if len(reference) <= MAX_LEVELS:
        return reference, current
    order = np.argsort(-(reference + current), kind="stable")
    kept, rest = order[: MAX_LEVELS - 1], order[MAX_LEVELS - 1:]
    return (np.append(reference[kept], reference[rest].sum()), np.append(current[kept], current[rest].sum()))


def effective_size(reference: np.ndarray, current: np.ndarray) -> float:
    """nm / (n + m): the size at which one sample against a known distribution varies as two samples do."""
    n, m = float(reference.sum()), float(current.sum())
    return n * m / (n + m)


def degrees_of_freedom(reference: np.ndarray, current: np.ndarray) -> int:
    return int(((reference + current) > 0).sum()) - 1


def shares(counts: np.ndarray) -> np.ndarray:
    """Rows of counts (draws, k) as rows of shares."""
    return counts / counts.sum(axis=1, keepdims=True)
