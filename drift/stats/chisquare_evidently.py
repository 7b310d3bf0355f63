"""Evidently's chi-square: the window's counts against the reference *shares taken as exact*.

`scipy.stats.chisquare(f_obs=current counts, f_exp=reference counts * m / n)`;
a category new in the window has f_exp = 0 and gives p = 0; a single
category on both sides gives p = 1 (Evidently: NaN, also no drift). It ignores the
reference's own sampling error, so its p-value over-alarms (~38 % false alarms
at 0.05 on two 10k samples of one 7-level distribution): kept for
compatibility with Evidently's reports, not as the default. Drift when p < threshold.

Its calibrated verdict (the default) tests the same statistic X^2 two-sample:
X^2 / (1 + m/n) follows a chi-square where every expected count is at least 5
(the reference's noise adds m/n to the window's), the permutation test of X^2
elsewhere. The score stays Evidently's p-value; `p` is the calibrated one.

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b"), (60, 40), 0)
>>> result = ChiSquareEvidently().score(reference, ["a"] * 50 + ["b"] * 50)
>>> round(result.score, 4), round(result.p, 4), result.drifted
(0.0412, 0.1489, False)
"""

from __future__ import annotations

import warnings

import numpy as np

from driftloop.drift.stats._base import Statistic, aligned_counts, degrees_of_freedom, table_p_value


class ChiSquareEvidently(Statistic):
    name = "chisquare_evidently"
    p_value = True
    kinds = ("categorical", "numeric")
    default_threshold = 0.05
    inclusive = False

    def _compute(self, reference, current) -> float:
        from scipy.stats import chisquare  # scipy.stats is heavy: imported when used

        _, ref, cur = aligned_counts(reference, current)
        if len(ref) < 2:
            return 1.0  # one category on both sides (scipy, hence Evidently, gives NaN: zero degrees of freedom)
        expected = ref * (cur.sum() / reference.count)
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return float(chisquare(cur, expected)[1])

    def _p(self, reference, current, score: float) -> float:
        from scipy.stats import chi2

        _, ref, cur = aligned_counts(reference, current)
        if len(ref) < 2:
            return 1.0

        def asymptotic() -> float:
            n, m = ref.sum(), cur.sum()
            return float(chi2.sf(one_sample(ref[None], cur[None])[0] / (1.0 + m / n), degrees_of_freedom(ref, cur)))

        return table_p_value(one_sample, ref, cur, asymptotic)


def one_sample(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Evidently's X^2 of each table: the window's counts against the reference shares (inf where it has none)."""
    m, n = current.sum(axis=1, keepdims=True), reference.sum(axis=1, keepdims=True)
    expected = reference * (m / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(expected > 0, (current - expected) ** 2 / expected, np.where(current > 0, np.inf, 0.0))
    return terms.sum(axis=1)
