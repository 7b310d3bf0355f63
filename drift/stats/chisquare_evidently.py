"""Evidently's chi-square: the window's counts against the reference *shares taken as exact*.

`scipy.stats.chisquare(f_obs=current counts, f_exp=reference counts * m / n)`;
a category new in the window has f_exp = 0 and gives p = 0; a single
category on both sides gives p = 1 (Evidently: NaN, also no drift). It ignores the
reference's own sampling error, so it over-alarms (~38 % false alarms at
alpha 0.05 on two 10k samples of one 7-level distribution): kept for
compatibility with Evidently's reports, not as the default. Drift when p < threshold.

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b"), (60, 40), 0)
>>> round(ChiSquareEvidently().score(reference, ["a"] * 50 + ["b"] * 50).score, 4)
0.0412
"""

from __future__ import annotations

import warnings

import numpy as np

from driftloop.drift.stats._base import Statistic, aligned_counts


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
