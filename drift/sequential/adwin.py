"""ADWIN: adaptive windowing (Bifet & Gavaldà 2007)."""

from __future__ import annotations

import math

from .base import DriftDetector, check_in_range


class ADWIN(DriftDetector):
    r"""Adaptive windowing (ADWIN2) over a stream of bounded values.

    ADWIN keeps the longest recent window in which the mean looks constant. Every
    ``clock`` samples it tries every split of the window into an older part
    :math:`W_0` and a newer part :math:`W_1` and cuts the older part away when

    .. math:: |\hat\mu_{W_0} - \hat\mu_{W_1}| > \sqrt{\tfrac{2}{m}\,\sigma^2_W \ln\tfrac{2}{\delta'}}
              + \tfrac{2}{3m}\ln\tfrac{2}{\delta'},\qquad \delta' = \delta / \ln |W|,

    with :math:`m` the harmonic mean of the two lengths (less ``min_window_length``).
    The window is stored as an exponential histogram (at most ``max_buckets``
    buckets of each size 1, 2, 4, ...), so memory and time per check are
    :math:`O(\log |W|)`. After an alarm the window is emptied, as River does, so
    one change raises one alarm; with ``reset_on_drift=False`` the newer part is
    kept, as in the paper, and the detector may alarm two or three times more
    while it cuts away the rest of the old level.

    Input: any real values, typically error bits (1 = error) or scores in [0, 1];
    the bound assumes bounded values.

    Parameters
    ----------
    delta
        Confidence of the cut test, in (0, 1): smaller means fewer false alarms, later detection.
    clock
        Test for a cut every ``clock`` samples (1 = every sample).
    max_buckets
        Buckets kept of each size before two are merged (the paper's M).
    min_window_length
        Shortest sub-window a split may leave on either side.
    grace_period
        No test before the window holds this many samples.
    reset_on_drift
        Empty the window after an alarm (one alarm per change); False keeps the
        newer sub-window (the paper's adaptive window, for estimating the mean).

    Examples
    --------
    >>> import numpy as np
    >>> from driftloop.drift.sequential import ADWIN
    >>> rng = np.random.default_rng(7)
    >>> errors = np.r_[rng.random(1000) < 0.1, rng.random(1000) < 0.4].astype(int)
    >>> ADWIN().update_many(errors)
    [1055]
    >>> ADWIN(reset_on_drift=False).update_many(errors)
    [1055, 1119, 1215]

    The alarm comes 55 samples after the change (River's ADWIN also alarms at
    1055); keeping the newer sub-window, the next two cuts drop what is left of
    the old error rate.

    References
    ----------
    Albert Bifet and Ricard Gavaldà. Learning from time-changing data with adaptive
    windowing. In Proceedings of the 2007 SIAM International Conference on Data Mining,
    pages 443-448, 2007.
    """

    def __init__(
        self,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
        reset_on_drift: bool = True,
    ) -> None:
        super().__init__()
        check_in_range("delta", delta, 0.0, 1.0, low_open=True, high_open=True)
        for name, value, low in (("clock", clock, 1), ("max_buckets", max_buckets, 2),
                                 ("min_window_length", min_window_length, 1), ("grace_period", grace_period, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"Invalid '{name}': {value!r}. Valid values are integers >= {low}.")
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.reset_on_drift = reset_on_drift
        self._restart()

    def _restart(self) -> None:
        # _totals[i] / _variances[i]: buckets of 2**i samples, oldest first.
        self._totals: list[list[float]] = [[]]
        self._variances: list[list[float]] = [[]]
        self._width = 0
        self._total = 0.0
        self._variance = 0.0  # sum of squared deviations from the window mean
        self._tick = 0

    @property
    def width(self) -> int:
        """Number of samples in the current window."""
        return self._width

    @property
    def estimation(self) -> float:
        """Mean of the current window (0 when empty)."""
        return self._total / self._width if self._width else 0.0

    def update(self, x: float) -> ADWIN:
        """Add ``x`` to the window, test for a cut every ``clock`` samples; return ``self``."""
        self._drift_detected = False
        self._insert(float(x))
        self._tick += 1
        if self._tick % self.clock == 0 and self._width > self.grace_period:
            self._drift_detected = self._cut()
            if self._drift_detected and self.reset_on_drift:
                self._restart()
        return self

    def _insert(self, x: float) -> None:
        self._width += 1
        if self._width > 1:
            mean = self._total / (self._width - 1)
            self._variance += (self._width - 1) * (x - mean) ** 2 / self._width
        self._total += x
        self._totals[0].append(x)
        self._variances[0].append(0.0)
        size = 1
        for i in range(len(self._totals)):  # merge the two oldest buckets of a full row
            totals = self._totals[i]
            if len(totals) <= self.max_buckets:
                break
            variances = self._variances[i]
            t0, t1 = totals.pop(0), totals.pop(0)
            v0, v1 = variances.pop(0), variances.pop(0)
            if i + 1 == len(self._totals):
                self._totals.append([])
                self._variances.append([])
            diff = t0 / size - t1 / size
            self._totals[i + 1].append(t0 + t1)
            self._variances[i + 1].append(v0 + v1 + size * diff * diff / 2)
            size *= 2

    def _drop_oldest(self) -> None:
        row = len(self._totals) - 1
        while not self._totals[row]:
            row -= 1
        n1 = 1 << row
        t1 = self._totals[row].pop(0)
        v1 = self._variances[row].pop(0)
        self._width -= n1
        self._total -= t1
        if self._width:
            mean_diff = t1 / n1 - self._total / self._width
            self._variance -= v1 + n1 * self._width * mean_diff * mean_diff / (n1 + self._width)
        else:
            self._variance = 0.0
        if not self._totals[row] and row > 0 and row == len(self._totals) - 1:
            self._totals.pop()
            self._variances.pop()

    def _cut(self) -> bool:
        detected = False
        min_len = self.min_window_length
        while True:
            width = self._width
            if width <= 2 * min_len:
                return detected
            log_term = math.log(2.0 * math.log(width) / self.delta)
            variance = max(self._variance / width, 0.0)
            n0, sum0 = 0, 0.0
            cut = False
            for row in range(len(self._totals) - 1, -1, -1):
                size = 1 << row
                for total in self._totals[row]:
                    n0 += size
                    sum0 += total
                    n1 = width - n0
                    if n1 < min_len:
                        break
                    if n0 < min_len:
                        continue
                    m_recip = 1.0 / (n0 - min_len + 1) + 1.0 / (n1 - min_len + 1)
                    epsilon = math.sqrt(2.0 * m_recip * variance * log_term) + 2.0 / 3.0 * log_term * m_recip
                    if abs(sum0 / n0 - (self._total - sum0) / n1) > epsilon:
                        cut = True
                        break
                if cut or n1 < min_len:
                    break
            if not cut:
                return detected
            detected = True
            self._drop_oldest()
