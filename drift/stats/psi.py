"""Population Stability Index with Evidently's binning (Sturges, or one bin per value); Evidently's rule: >= 0.1.

PSI = Σ (r_i - c_i) ln(r_i / c_i) over the bins of `binned_shares`, empty bins
filled with a tiny share. Calibrated verdict (the default): the p-value of the
PSI under "no drift": nm/(n+m) PSI follows a chi-square with (bins - 1) degrees
of freedom where every expected count is at least 20 (PSI is the symmetrised
Kullback–Leibler divergence, Pearson's X^2 / (nm/(n+m)) to second order), the
permutation test of the PSI elsewhere (`drift.calibration`). The PSI stays the
score. Reference: Yurdakul, "Statistical properties of population stability
index" (2018).

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b"), (50, 50), 0)
>>> result = PSI().score(reference, ["a"] * 70 + ["b"] * 30)
>>> round(result.score, 4), result.drifted
(0.1695, True)
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


class PSI(Statistic):
    name = "psi"
    p_value = False
    kinds = ("numeric", "categorical")
    default_threshold = 0.1

    def _compute(self, reference, current) -> float:
        ref, cur = binned_shares(reference, current, fill_zeroes=True)
        return float(np.sum((ref - cur) * np.log(ref / cur)))

    def _p(self, reference, current, score: float) -> float:
        from scipy.stats import chi2

        ref, cur = binned_counts(reference, current)
        scaled = effective_size(ref, cur) * score
        return table_p_value(
            indices, ref, cur, lambda: float(chi2.sf(scaled, degrees_of_freedom(ref, cur))), DIVERGENCE_MIN_EXPECTED
        )


def indices(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The PSI between the rows of two arrays of counts, empty bins filled per row as Evidently fills them."""
    filled = []
    for side in (shares(reference), shares(current)):
        smallest = np.where(side > 0, side, np.inf).min(axis=1, keepdims=True)
        filled.append(np.where(side == 0, np.where(smallest <= 0.0001, smallest / 10**6, 0.0001), side))
    ref, cur = filled
    return np.sum((ref - cur) * np.log(ref / cur), axis=1)
