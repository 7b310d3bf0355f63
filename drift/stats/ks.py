"""Two-sample Kolmogorov–Smirnov test against the stored sorted reference.

The statistic D = sup |F_ref - F_cur| is found with `np.searchsorted` of the
window's values in the reference, so a window costs O(m log n); the p-value is
scipy's (`ks_2samp`, method "auto": exact up to 10,000 rows on the larger side,
Smirnov's asymptotic distribution beyond), through its public API only. Drift when p <= threshold, as in
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

import warnings

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
    """The two-sided p-value of `ks_2samp` for statistic `d` and sample sizes n1, n2.

    scipy's exact two-sample distribution (used by `ks_2samp` when neither
    sample exceeds 10,000 values) is public only through `ks_2samp`, and that
    p-value depends on the data only through (d, n1, n2). So the exact case
    hands `ks_2samp` two samples of two values each with exactly this d: the
    same p-value to the last digit, for O(n1 + n2) work on tiny arrays. Beyond
    10,000, Smirnov's asymptotic distribution (`kstwo`), as `ks_2samp` does.
    """
    from scipy.stats import distributions, ks_2samp  # scipy.stats costs ~50 MB and 0.5 s: only when K-S runs

    if max(n1, n2) <= MAX_EXACT_N:
        witness = _counts_at(d, n1, n2)
        if witness is not None:
            a, b = witness
            first = np.repeat([0.0, 1.0], [a, n1 - a])
            second = np.repeat([0.0, 1.0], [b, n2 - b])
            with warnings.catch_warnings():  # where the exact sum fails, ks_2samp warns and goes asymptotic: so do we
                warnings.simplefilter("ignore", RuntimeWarning)
                return float(ks_2samp(first, second).pvalue)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    return float(np.clip(distributions.kstwo.sf(d, np.round(m * n / (m + n))), 0, 1))


def _counts_at(d: float, n1: int, n2: int) -> tuple[int, int] | None:
    """Counts (a, b) with |a / n1 - b / n2| == d in floating point, as the statistic was computed; None if none."""
    a = np.arange(n1 + 1)
    for sign in (1.0, -1.0):  # F_1 above F_2 by d, or below
        b = np.rint((a / n1 - sign * d) * n2)
        hits = np.flatnonzero((b >= 0) & (b <= n2) & (sign * (a / n1 - b / n2) == d))
        if len(hits):
            return int(a[hits[0]]), int(b[hits[0]])
    return None
