"""Two-sample Kolmogorov–Smirnov test against the stored sorted reference.

The statistic D = sup |F_ref - F_cur| is found with `np.searchsorted` of the
window's values in the reference, so a window costs O(m log n). Two p-values:

* with a fixed threshold (Evidently's rule, drift when p <= 0.05): scipy's
  (`ks_2samp`, method "auto": exact up to 10,000 rows on the larger side,
  Smirnov's asymptotic distribution beyond), through its public API only;
* calibrated (the default): the same exact distribution where the two sizes
  are within a factor 4 of each other and neither exceeds 10,000 (there D
  lives on a coarse lattice and Smirnov's limit alarmed 7.3 % at 1,000 vs
  1,000), Smirnov's limit at the effective size nm/(n+m) elsewhere (within
  0.045-0.057 at alpha 0.05 from 30 to 1,000 rows against 1k-100k), which is
  fast. A column with at most 20 distinct reference values has ties that make
  both conservative: it gets the exact permutation test of D instead
  (`drift.calibration`). The score is then that p-value.

Reference: Hodges, "The significance probability of the Smirnov two-sample
test", Arkiv för Matematik 3 (1958).

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

import functools
import warnings

import numpy as np

from driftloop.drift.calibration import permutation_p_value
from driftloop.drift.stats._base import MAX_LEVELS, Statistic, ordered_counts

MAX_EXACT_N = 10_000  # scipy's MAX_AUTO_N
EXACT_RATIO = 0.25  # calibrated: the exact distribution when the smaller sample is at least this share of the larger


class KS(Statistic):
    name = "ks"
    p_value = True
    kinds = ("numeric",)
    default_threshold = 0.05

    def _compute(self, reference, current: np.ndarray) -> float:
        d = ks_statistic(reference.values, np.sort(current))
        return ks_p_value(d, reference.count, len(current))

    def _score_and_p(self, reference, current: np.ndarray) -> tuple[float, float]:
        if reference.distinct:
            values, ref, cur = ordered_counts(reference, current)
            if len(values) <= MAX_LEVELS:
                p = permutation_p_value(statistics_of_counts, ref, cur)
                return p, p
        n, m = reference.count, len(current)
        d = ks_statistic(reference.values, np.sort(current))
        if max(n, m) <= MAX_EXACT_N and min(n, m) >= EXACT_RATIO * max(n, m):
            p = ks_p_value(d, n, m)
        else:
            from scipy.stats import kstwo

            p = float(np.clip(kstwo.sf(d, np.round(n * m / (n + m))), 0, 1))
        return p, p


def statistics_of_counts(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """D of each pair of rows of counts over the same sorted values."""
    f_ref = np.cumsum(reference, axis=1) / reference.sum(axis=1, keepdims=True)
    f_cur = np.cumsum(current, axis=1) / current.sum(axis=1, keepdims=True)
    return np.abs(f_ref - f_cur).max(axis=1)


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


@functools.lru_cache(maxsize=4096)  # the exact sum costs up to 0.2 s, and D lives on a lattice: values recur
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
