"""CUSUM with its threshold set from a target false-alarm rate (Page 1954; Siegmund 1985)."""

from __future__ import annotations

import math
from functools import lru_cache

from .base import DriftDetector, check_choice, check_in_range


def siegmund_arl(h: float, k: float) -> float:
    r"""In-control average run length of a one-sided CUSUM on N(0, 1) increments.

    Siegmund's approximation with :math:`b = h + 1.166`:
    :math:`\mathrm{ARL}_0 \approx (e^{2kb} - 2kb - 1) / (2k^2)` (and :math:`b^2` when ``k`` is 0).
    """
    b = h + 1.166
    if k == 0.0:
        return b * b
    a = 2.0 * k * b
    return (math.exp(a) - a - 1.0) / (2.0 * k * k)


def normal_threshold(arl0: float, k: float) -> float:
    """Threshold ``h`` (in standard deviations) at which :func:`siegmund_arl` equals ``arl0``."""
    low, high = 0.0, 1.0
    while siegmund_arl(high, k) < arl0:
        high *= 2.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if siegmund_arl(mid, k) < arl0:
            low = mid
        else:
            high = mid
    return high


@lru_cache(maxsize=256)
def bernoulli_threshold(arl0: float, p: float, k: float, resolution: int = 100) -> float:
    r"""Threshold ``h`` (in standard deviations) of a one-sided upper CUSUM on Bernoulli(``p``) bits.

    The standardized sum moves by :math:`a = (1-p)/\sigma - k` on a one and by
    :math:`-b = -p/\sigma - k` on a zero. On a lattice of step :math:`\min(a, b)/`
    ``resolution`` it is a Markov chain, whose average run length solves a sparse
    linear system (Brook & Evans 1972); the smallest lattice threshold whose run
    length reaches ``arl0`` is returned (``0.0`` when the sum can never grow: ``a <= 0``).
    """
    import numpy as np
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    sigma = math.sqrt(p * (1.0 - p))
    a = (1.0 - p) / sigma - k
    b = p / sigma + k
    if a <= 0.0:
        return 0.0
    unit = min(a, b) / resolution
    up, down = round(a / unit), round(b / unit)

    def arl(top: int) -> float:  # alarm when the state exceeds `top`
        n = top + 1
        state = np.arange(n)
        to = state + up
        inside = to <= top
        rows = np.r_[state[inside], state]
        cols = np.r_[to[inside], np.maximum(state - down, 0)]
        probs = np.r_[np.full(int(inside.sum()), p), np.full(n, 1.0 - p)]
        chain = sparse.csc_matrix((probs, (rows, cols)), shape=(n, n))
        return float(spsolve(sparse.identity(n, format="csc") - chain, np.ones(n))[0])

    low, high = 0, up
    while arl(high) < arl0:
        low, high = high, 2 * high
    while high - low > 1:  # smallest `top` with arl(top) >= arl0 lies in (low, high]
        mid = (low + high) // 2
        if arl(mid) >= arl0:
            high = mid
        else:
            low = mid
    return (high + 0.5) * unit


class CUSUM(DriftDetector):
    r"""Tabular CUSUM on a standardized stream, with a threshold set by a false-alarm rate.

    Each value is standardized, :math:`z_t = (x_t - \mu)/\sigma`, and the one-sided sums
    :math:`S^+_t = \max(0, S^+_{t-1} + z_t - k)` and
    :math:`S^-_t = \max(0, S^-_{t-1} - z_t - k)` alarm when they exceed their threshold.
    The threshold is not a parameter: it is solved from ``false_alarms_per_10k``
    (the in-control average run length is :math:`\mathrm{ARL}_0 = 10^4 /` rate), each side of a
    two-sided chart getting :math:`2\,\mathrm{ARL}_0` (or all of it when the other side can
    never alarm). The sums restart after each alarm, so on an in-control stream the
    alarms form a renewal process with about ``false_alarms_per_10k`` alarms per 10,000 samples.

    How the threshold is solved depends on ``distribution``:

    * ``"normal"``: Siegmund's approximation for N(0, 1) increments (Siegmund 1985);
    * ``"bernoulli"``: error bits with error rate :math:`p` (``mean``); the chart's
      exact Markov chain on a fine lattice (Brook & Evans 1972). Bits are skewed, so the
      normal formula would give several times the false alarms at small :math:`p`;
    * ``"auto"`` (default): ``"bernoulli"`` when every warm-up value is 0 or 1, else ``"normal"``.

    The rate holds for independent in-control values of that distribution with a
    known reference (``mean``, and ``std`` for normal values) or one estimated from
    the first ``warm_up`` values, and then re-estimated from the ``warm_up`` values
    after each alarm (a longer warm-up estimates better; the default keeps the
    measured rate within a factor of 2 of the setting). Autocorrelated values
    give many more alarms. ``k`` is half the shift, in standard deviations, the chart
    catches fastest (0.5 for a 1 sigma shift).

    Input: any real values (scores), or error bits (1 = error, 0 = correct).

    Parameters
    ----------
    false_alarms_per_10k
        Target false alarms per 10,000 in-control samples, in (0, 10000).
    k
        Allowance in standard deviations, >= 0.
    mean
        In-control mean (the error rate for bits); ``None`` to estimate it from a warm-up.
    std
        In-control standard deviation, > 0, for normal values; ``None`` to estimate it
        (give it with ``mean`` for ``"normal"`` and ``"auto"``; never for ``"bernoulli"``).
    warm_up
        Number of values used to estimate the reference when it is not given, at most
        half of :math:`\mathrm{ARL}_0`; ``None`` for :math:`\min(1000, \mathrm{ARL}_0/4)`.
        Alarms cannot happen while warming up, so the chart then targets a run length
        of :math:`\mathrm{ARL}_0 -` ``warm_up``: the rate counts every sample.
    mode
        ``"up"`` (increases only), ``"down"`` or ``"both"``.
    distribution
        ``"auto"``, ``"normal"`` or ``"bernoulli"``: how the threshold is calibrated.

    Attributes
    ----------
    arl0_
        The in-control average run length (warm-up included) the thresholds target.
    warm_up_
        The warm-up length in use.
    threshold_up_, threshold_down_
        Thresholds in use, in standard deviations (``nan`` while warming up; ``inf``
        for a side that ``mode`` switches off or that can never alarm).

    Examples
    --------
    >>> import numpy as np
    >>> from driftloop.drift.sequential import CUSUM
    >>> rng = np.random.default_rng(7)
    >>> scores = np.r_[rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)]
    >>> cusum = CUSUM(false_alarms_per_10k=1.0, mean=0.0, std=1.0)
    >>> round(cusum.threshold_up_, 2)
    8.05
    >>> alarms = cusum.update_many(scores)
    >>> alarms[:3]  # with a known reference it keeps alarming while the shift lasts
    [1006, 1038, 1052]

    On error bits the warm-up estimates the error rate and the chart calibrates for bits:

    >>> errors = np.r_[rng.random(1500) < 0.1, rng.random(1000) < 0.4].astype(int)
    >>> CUSUM(false_alarms_per_10k=1.0, mode="up").update_many(errors)
    [1508]

    References
    ----------
    E. S. Page. Continuous inspection schemes. Biometrika 41(1/2):100-115, 1954.
    D. Siegmund. Sequential Analysis: Tests and Confidence Intervals. Springer, 1985.
    D. Brook and D. A. Evans. An approach to the probability distribution of CUSUM run
    length. Biometrika 59(3):539-549, 1972.
    """

    _VALID_MODES = ("up", "down", "both")
    _VALID_DISTRIBUTIONS = ("auto", "normal", "bernoulli")

    def __init__(
        self,
        false_alarms_per_10k: float = 1.0,
        k: float = 0.5,
        mean: float | None = None,
        std: float | None = None,
        warm_up: int | None = None,
        mode: str = "both",
        distribution: str = "auto",
    ) -> None:
        super().__init__()
        check_in_range("false_alarms_per_10k", false_alarms_per_10k, 0.0, 10_000.0, low_open=True, high_open=True)
        check_in_range("k", k, 0.0, float("inf"), high_open=True)
        check_choice("mode", mode, self._VALID_MODES)
        check_choice("distribution", distribution, self._VALID_DISTRIBUTIONS)
        if distribution == "bernoulli":
            if std is not None:
                raise ValueError("Invalid 'std': it must be None for distribution='bernoulli' (it follows from 'mean').")
            if mean is not None:
                check_in_range("mean", mean, 0.0, 1.0, low_open=True, high_open=True)
        elif (mean is None) != (std is None):
            raise ValueError("Invalid 'mean'/'std': give both (a known reference) or neither (estimated from 'warm_up').")
        elif mean is not None:
            check_in_range("mean", mean, -math.inf, math.inf, low_open=True, high_open=True)
            check_in_range("std", std, 0.0, math.inf, low_open=True, high_open=True)
        arl0 = 10_000.0 / false_alarms_per_10k
        if warm_up is not None and (not isinstance(warm_up, int) or isinstance(warm_up, bool) or not 2 <= warm_up <= arl0 / 2):
            raise ValueError(
                f"Invalid 'warm_up': {warm_up!r}. Valid values are None or integers in [2, {int(arl0 / 2)}] "
                "(at most half of 10000 / false_alarms_per_10k)."
            )
        self.false_alarms_per_10k = false_alarms_per_10k
        self.k = k
        self.mean = mean
        self.std = std
        self.warm_up = warm_up
        self.mode = mode
        self.distribution = distribution
        self.arl0_ = arl0
        self.warm_up_ = max(2, min(1000, int(arl0 / 4))) if warm_up is None else warm_up
        # The alarms' renewal cycle is warm-up + run length when the reference is re-estimated.
        self._arl = arl0 if mean is not None else arl0 - self.warm_up_
        self._restart()

    def _restart(self) -> None:
        self._s_up = 0.0
        self._s_down = 0.0
        self.threshold_up_ = self.threshold_down_ = math.nan
        if self.mean is None:
            self._n = 0  # warming up
            self._sum = self._sum_sq = self._shift = 0.0
            self._binary = True
        else:
            self._n = -1
            if self.distribution == "bernoulli":
                self._calibrate(self.mean, math.sqrt(self.mean * (1.0 - self.mean)), True)
            else:
                self._calibrate(self.mean, self.std, False)

    def _calibrate(self, mu: float, sigma: float, binary: bool) -> None:
        self._mu = mu
        self._inv_sigma = 1.0 / sigma
        both = self.mode == "both"
        if binary:  # the lower chart on bits is the upper chart on flipped bits
            h_up = bernoulli_threshold(self._arl * 2.0, mu, self.k) if self.mode != "down" else 0.0
            h_down = bernoulli_threshold(self._arl * 2.0, 1.0 - mu, self.k) if self.mode != "up" else 0.0
            if both and (h_up == 0.0) != (h_down == 0.0):  # one side can never alarm: the other gets all of ARL0
                h_up = bernoulli_threshold(self._arl, mu, self.k) if h_up else 0.0
                h_down = bernoulli_threshold(self._arl, 1.0 - mu, self.k) if h_down else 0.0
            elif not both:
                h_up = bernoulli_threshold(self._arl, mu, self.k) if self.mode == "up" else 0.0
                h_down = bernoulli_threshold(self._arl, 1.0 - mu, self.k) if self.mode == "down" else 0.0
        else:
            h_up = h_down = normal_threshold(self._arl * (2.0 if both else 1.0), self.k)
        # A side that is off, or can never grow (threshold 0.0 from the lattice), never alarms.
        self.threshold_up_ = h_up if self.mode != "down" and h_up > 0.0 else math.inf
        self.threshold_down_ = h_down if self.mode != "up" and h_down > 0.0 else math.inf

    @property
    def reference_(self) -> tuple[float, float] | None:
        """The (mean, std) in use, or ``None`` while warming up."""
        if self._n >= 0:
            return None
        return self._mu, 1.0 / self._inv_sigma

    def update(self, x: float) -> CUSUM:
        """Read ``x``; return ``self``."""
        if self._n >= 0:  # warming up
            self._drift_detected = False
            if self._n == 0:
                self._shift = x
            if x != 0 and x != 1:
                self._binary = False
            d = x - self._shift
            self._n += 1
            self._sum += d
            self._sum_sq += d * d
            if self._n >= self.warm_up_:
                n = self._n
                mu = self._shift + self._sum / n
                binary = self.distribution == "bernoulli" or (self.distribution == "auto" and self._binary)
                if binary:  # (errors + 1/2) / (n + 1): never 0, so an error-free warm-up still ends
                    mu = (mu * n + 0.5) / (n + 1)
                    var = mu * (1.0 - mu)
                else:
                    var = (self._sum_sq - self._sum * self._sum / n) / (n - 1)
                if var > 0.0:  # else keep warming up until the values vary
                    self._n = -1
                    self._calibrate(mu, math.sqrt(var), binary)
            return self
        z = (x - self._mu) * self._inv_sigma
        s_up = self._s_up + z - self.k
        self._s_up = s_up = s_up if s_up > 0.0 else 0.0
        s_down = self._s_down - z - self.k
        self._s_down = s_down = s_down if s_down > 0.0 else 0.0
        alarm = s_up > self.threshold_up_ or s_down > self.threshold_down_
        self._drift_detected = alarm
        if alarm:
            self._restart()
        return self
