"""Jensen–Shannon distance (natural log) with Evidently's binning; drift when >= threshold (0.1).

Reference: Lin, "Divergence measures based on the Shannon entropy", IEEE
Transactions on Information Theory 37 (1991).

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b"), (50, 50), 0)
>>> round(JensenShannon().score(reference, ["a"] * 70 + ["b"] * 30).score, 4)
0.1449
"""

from __future__ import annotations

import numpy as np

from driftloop.drift.stats._base import Statistic, binned_shares


class JensenShannon(Statistic):
    name = "jensenshannon"
    p_value = False
    kinds = ("numeric", "categorical")
    default_threshold = 0.1

    def _compute(self, reference, current) -> float:
        ref, cur = binned_shares(reference, current, fill_zeroes=False)
        return jensenshannon(ref, cur)


def jensenshannon(p: np.ndarray, q: np.ndarray) -> float:
    """`scipy.spatial.distance.jensenshannon(p, q)` (natural log), without importing scipy.spatial."""
    p, q = p / np.sum(p), q / np.sum(q)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.sqrt((np.sum(left) + np.sum(right)) / 2.0))
