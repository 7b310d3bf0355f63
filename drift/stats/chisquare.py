"""Calibrated two-sample chi-square test of a category mix (the default for categorical columns).

Both the reference and the window are samples, so the test is the chi-square
test of independence on the 2 x k table of counts (`scipy.stats.chi2_contingency`,
Yates-corrected when k = 2). A category new in the window or missing from it
is a column with a zero on one side. It holds its alpha: on two samples of one
7-level distribution it alarms ~5 % of the time at 0.05, where Evidently's
one-sample formula (`chisquare_evidently`) alarms ~38 %. Drift when p < threshold.
Reference: Pearson (1900); Agresti, "Categorical Data Analysis", 3rd ed., §3.2.

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b", "c"), (500, 300, 200), 0)
>>> ChiSquare().score(reference, ["a"] * 50 + ["b"] * 30 + ["c"] * 20).score
1.0
>>> ChiSquare().score(reference, ["a"] * 20 + ["b"] * 30 + ["c"] * 50).drifted
True
"""

from __future__ import annotations

import numpy as np

from driftloop.drift.stats._base import Statistic, aligned_counts


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
        return float(chi2_contingency(np.vstack([ref, cur])).pvalue)
