"""Population Stability Index with Evidently's binning (30 bins are not used: Sturges, or one per value).

PSI = Σ (r_i - c_i) ln(r_i / c_i) over the bins of `binned_shares`, empty bins
filled with a tiny share; drift when PSI >= threshold (0.1). Reference:
Yurdakul, "Statistical properties of population stability index" (2018).

>>> from driftloop.drift.profile import CategoricalFeature
>>> reference = CategoricalFeature("plan", ("a", "b"), (50, 50), 0)
>>> round(PSI().score(reference, ["a"] * 70 + ["b"] * 30).score, 4)
0.1695
"""

from __future__ import annotations

import numpy as np

from driftloop.drift.stats._base import Statistic, binned_shares


class PSI(Statistic):
    name = "psi"
    p_value = False
    kinds = ("numeric", "categorical")
    default_threshold = 0.1

    def _compute(self, reference, current) -> float:
        ref, cur = binned_shares(reference, current, fill_zeroes=True)
        return float(np.sum((ref - cur) * np.log(ref / cur)))
