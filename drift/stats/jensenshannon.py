"""Jensen–Shannon distance (natural log) with Evidently's binning; Evidently's rule: drift when >= 0.1.

Calibrated verdict (the default): the p-value of the distance under "no
drift". Where every expected count of the binned table is at least 20,
8 nm/(n+m) JS^2 follows a chi-square with (bins - 1) degrees of freedom (JS^2
is an eighth of Pearson's X^2 / (nm/(n+m)) to second order); elsewhere the
permutation test of the distance (`drift.calibration`). The distance itself
stays the score: the effect size. References: Lin, "Divergence measures based
on the Shannon entropy", IEEE Transactions on Information Theory 37 (1991);
Read & Cressie, "Goodness-of-fit statistics for discrete multivariate data"
(1988), for the chi-square limit of divergences.

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b"), (50, 50), 0)
>>> result = JensenShannon().score(reference, ["a"] * 70 + ["b"] * 30)
>>> round(result.score, 4), result.p < 0.05, JensenShannon.evidently().score(reference, ["a"] * 70 + ["b"] * 30).drifted
(0.1449, True, True)
"""

from __future__ import annotations

import numpy as np

from driftloop.drift.stats._base import (
    DIVERGENCE_MIN_EXPECTED,
    Statistic,
    binned_counts,
    binned_shares,
    degrees_of_freedom,
    effective_size,
    shares,
    table_p_value,
)


class JensenShannon(Statistic):
    name = "jensenshannon"
    p_value = False
    kinds = ("numeric", "categorical")
    default_threshold = 0.1

    def _compute(self, reference, current) -> float:
        ref, cur = binned_shares(reference, current, fill_zeroes=False)
        return jensenshannon(ref, cur)

    def _p(self, reference, current, score: float) -> float:
        from scipy.stats import chi2

        ref, cur = binned_counts(reference, current)
        scaled = 8.0 * effective_size(ref, cur) * score**2
        return table_p_value(
            distances, ref, cur, lambda: float(chi2.sf(scaled, degrees_of_freedom(ref, cur))), DIVERGENCE_MIN_EXPECTED
        )


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """`scipy.spatial.distance.jensenshannon(p, q)` (natural log), without importing scipy.spatial."""
    return float(distances(p[None, :], q[None, :])[0])


def distances(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The Jensen–Shannon distance between the rows of two arrays of counts (or shares)."""
    p, q = shares(reference), shares(current)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return np.sqrt((np.sum(left, axis=1) + np.sum(right, axis=1)) / 2.0)
