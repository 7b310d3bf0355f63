"""Two-sample Kolmogorov–Smirnov test against the stored sorted reference.

The statistic D = sup |F_ref - F_cur| is found with `np.searchsorted` of the
window's values in the reference, so a window costs O(m log n); the p-value is
scipy's (`ks_2samp`, method "auto": exact up to 10,000 rows on the larger side,
Smirnov's asymptotic distribution beyond). Drift when p <= threshold, as in
Evidently. Reference: Hodges, "The significance probability of the Smirnov
two-sample test", Arkiv för Matematik 3 (1958).

>>> import numpy as np
>>> from driftloop.drift.profile import NumericFeature
>>> rng = np.random.default_rng(0)
>>> reference = NumericFeature.from_values("x", rng.normal(size=500))
>>> KS().score(reference, rng.normal(size=300)).drifted
False
>>> result = KS().score(reference, rng.normal(1.0, size=300))
>>> result.drifted, result.score < 1e-20
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from driftloop.drift.stats._base import Statistic

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N


class KS(Statistic):
    name = "ks"
    p_value = True
    kinds = ("numeric",)
    default_threshold = 0.05

    def _compute(self, reference, current: np.ndarray) -> float:
        d = ks_statistic(reference.values, np.sort(current))
        return ks_p_value(d, reference.count, len(current))


def ks_statistic(reference: np.ndarray, current: np.ndarray) -> float:
    """sup |F_ref - F_cur| of two sorted samples, evaluated only at the current sample's points."""
    n, m = len(reference), len(current)
    ref_right = np.searchsorted(reference, current, side="right") / n
    ref_left = np.searchsorted(reference, current, side="left") / n
    cur_right = np.searchsorted(current, current, side="right") / m
    cur_left = np.searchsorted(current, current, side="left") / m
    # F_ref - F_cur peaks just before a current point, F_cur - F_ref at one (both step functions).
    above = max(float(np.max(ref_left - cur_left)), float(np.max(ref_right - cur_right)))
    below = float(np.clip(-np.min(ref_right - cur_right), 0, 1))
    return below if below > above else above


def ks_p_value(d: float, n1: int, n2: int) -> float:
    """The two-sided p-value of `ks_2samp` for statistic `d` and sample sizes n1, n2."""
    from scipy.stats import distributions  # scipy.stats costs ~50 MB and 0.5 s: only when K-S runs

    try:  # scipy's own exact two-sample p-value, so scores agree with ks_2samp to the last digit
        from scipy.stats._stats_py import _attempt_exact_2kssamp
    except ImportError:  # pragma: no cover - a future scipy moved it: asymptotic only
        _attempt_exact_2kssamp = None
    if max(n1, n2) <= MAX_EXACT_N and _attempt_exact_2kssamp is not None:
        success, _, prob = _attempt_exact_2kssamp(n1, n2, math.gcd(n1, n2), d, "two-sided")
        if success:
            return float(np.clip(prob, 0, 1))
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))
