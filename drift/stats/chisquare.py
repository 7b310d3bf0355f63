"""Calibrated two-sample chi-square test of a category mix (the default for categorical columns).

Both the reference and the window are samples, so the test is the chi-square
test of independence on the 2 x k table of counts (`scipy.stats.chi2_contingency`,
Yates-corrected when k = 2). A category new in the window or missing from it
is a column with a zero on one side. Where an expected count falls below 5
(many levels, a small window) the chi-square approximation no longer holds
(at 50-200 levels and 30-100 rows it alarmed 9-21 % at alpha 0.05): the
p-value is then the exact permutation test of the same Pearson statistic
(Monte-Carlo, as R's `chisq.test(simulate.p.value = TRUE)`; see
`drift.calibration`). It holds its alpha: on two samples of one 7-level
distribution it alarms ~5 % of the time at 0.05, where Evidently's one-sample
formula (`chisquare_evidently`) alarms ~38 %. Drift when p <= alpha (or, with a
fixed `threshold`, p < threshold, as Evidently). References: Pearson (1900);
Agresti, "Categorical Data Analysis", 3rd ed., §3.2 and §3.5.

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b", "c"), (500, 300, 200), 0)
>>> ChiSquare().score(reference, ["a"] * 50 + ["b"] * 30 + ["c"] * 20).score
1.0
>>> ChiSquare().score(reference, ["a"] * 20 + ["b"] * 30 + ["c"] * 50).drifted
True
"""

from __future__ import annotations

import numpy as np

from driftloop.drift.stats._base import Statistic, aligned_counts, table_p_value


class ChiSquare(Statistic):
    name = "chisquare"
    p_value = True
    kinds = ("categorical", "numeric")
    default_threshold = 0.05
    inclusive = False

    def _compute(self, reference, current) -> float:
        from scipy.stats import chi2_contingency  # scipy.stats is heavy: imported when used

        _, ref, cur = aligned_counts(reference, current)
        if len(ref) < 2:
            return 1.0  # one category on both sides: nothing can differ
        return table_p_value(pearson, ref, cur, lambda: float(chi2_contingency(np.vstack([ref, cur])).pvalue))

    def _p(self, reference, current, score: float) -> float:
        return score


def pearson(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Pearson's X^2 of each 2 x k table (rows of counts, every level present in one of them at least).

    The expected counts come from the pooled shares; both rows of a table are
    off by the same amount, so X^2 = N / (n m) sum (c - m s)^2 / s.
    """
    pooled = reference[0] + current[0]  # the same in every row: a permutation only moves rows between sides
    total, n, m = pooled.sum(), reference[0].sum(), current[0].sum()
    share = pooled / total
    return (((current - m * share) ** 2) / share).sum(axis=1) * (total / (n * m))
