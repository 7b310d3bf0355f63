"""Two-proportion Z-test for a binary column, as Evidently's "z".

The first category (in sorted order) against the rest; pooled proportion,
two-sided p-value; both columns constant at the same value give p = 1. Drift
when p < threshold. With more than two categories it tests the first one
against all others, as Evidently does. Calibrated verdict (the default): this
p-value where all four expected counts of the 2 x 2 table are at least 5,
the exact permutation test of the difference in proportions elsewhere (a rare
level in a small window: the normal approximation does not hold). Reference:
Fleiss, Levin & Paik, "Statistical Methods for Rates and Proportions", 3rd
ed., §2.6.

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("churn", ("no", "yes"), (800, 200), 0)
>>> result = Z().score(reference, ["no"] * 700 + ["yes"] * 300)
>>> f"{result.score:.2e}", result.drifted
('2.42e-07', True)
"""

from __future__ import annotations

import numpy as np

from driftloop.drift.stats._base import Statistic, aligned_counts, table_p_value


class Z(Statistic):
    name = "z"
    p_value = True
    kinds = ("categorical", "numeric")
    default_threshold = 0.05
    inclusive = False

    def _compute(self, reference, current) -> float:
        from scipy.stats import norm  # scipy.stats is heavy: imported when used

        keys, ref, cur = aligned_counts(reference, current)
        present_ref, present_cur = np.flatnonzero(ref), np.flatnonzero(cur)
        if len(present_ref) == 1 and len(present_cur) == 1 and present_ref[0] == present_cur[0]:
            return 1.0
        first = min(range(len(keys)), key=lambda i: _sort_key(keys[i]))
        n1, n2 = float(ref.sum()), float(cur.sum())
        p1 = float(n1 - ref[first]) / n1
        p2 = float(n2 - cur[first]) / n2
        pooled = float(p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
        return float(2 * (1 - norm.cdf(np.abs(z))))

    def _p(self, reference, current, score: float) -> float:
        keys, ref, cur = aligned_counts(reference, current)
        first = min(range(len(keys)), key=lambda i: _sort_key(keys[i]))
        ref2 = np.array([ref[first], ref.sum() - ref[first]])
        cur2 = np.array([cur[first], cur.sum() - cur[first]])
        return table_p_value(proportion_gaps, ref2, cur2, lambda: score)


def proportion_gaps(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """|share of the first level in the window - in the reference| of each 2-level table (rows of counts)."""
    return np.abs(current[:, 0] / current.sum(axis=1) - reference[:, 0] / reference.sum(axis=1))


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else (1, 0, str(value))
