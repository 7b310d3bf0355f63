"""Page–Hinkley test for a change in the mean (Page 1954; Hinkley 1970)."""

from __future__ import annotations

from .base import DriftDetector, check_choice, check_in_range


class PageHinkley(DriftDetector):
    r"""Page–Hinkley test: cumulative deviations from the running mean.

    With :math:`\bar x_t` the mean since the last restart, the upward statistic is
    :math:`m_t = \alpha\, m_{t-1} + (x_t - \bar x_t - \delta)` and an alarm is raised when
    :math:`m_t - \min_{s \le t} m_s > \lambda` (``threshold``); the downward one mirrors it.
    ``threshold`` and ``delta`` are in the units of ``x``: scale them with the
    stream's standard deviation (for a calibrated false-alarm rate use :class:`CUSUM`).
    The detector restarts after each alarm.

    Input: any real values (error bits or scores).

    Parameters
    ----------
    min_instances
        No alarm before this many samples since the last restart.
    delta
        Magnitude of change tolerated (allowance), >= 0.
    threshold
        Alarm threshold :math:`\lambda`, > 0.
    alpha
        Forgetting factor of the cumulative sums, in (0, 1].
    mode
        ``"up"`` (increases only), ``"down"`` or ``"both"``.

    Examples
    --------
    >>> import numpy as np
    >>> from driftloop.drift.sequential import PageHinkley
    >>> rng = np.random.default_rng(7)
    >>> scores = np.r_[rng.normal(0, 1, 1000), rng.normal(1, 1, 1000)]
    >>> PageHinkley(threshold=50.0, delta=0.5).update_many(scores)
    [1103]

    References
    ----------
    E. S. Page. Continuous inspection schemes. Biometrika 41(1/2):100-115, 1954.
    D. V. Hinkley. Inference about the change-point in a sequence of random variables.
    Biometrika 57(1):1-17, 1970.
    """

    _VALID_MODES = ("up", "down", "both")

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "both",
    ) -> None:
        super().__init__()
        if not isinstance(min_instances, int) or isinstance(min_instances, bool) or min_instances < 1:
            raise ValueError(f"Invalid 'min_instances': {min_instances!r}. Valid values are integers >= 1.")
        check_in_range("delta", delta, 0.0, float("inf"), high_open=True)
        check_in_range("threshold", threshold, 0.0, float("inf"), low_open=True, high_open=True)
        check_in_range("alpha", alpha, 0.0, 1.0, low_open=True)
        check_choice("mode", mode, self._VALID_MODES)
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.alpha = alpha
        self.mode = mode
        self._up = mode != "down"
        self._down = mode != "up"
        self._restart()

    def _restart(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._sum_up = 0.0
        self._min_up = 0.0
        self._sum_down = 0.0
        self._max_down = 0.0

    def update(self, x: float) -> PageHinkley:
        """Read ``x``; return ``self``."""
        if self._drift_detected:
            self._restart()
        self._n += 1
        self._mean += (x - self._mean) / self._n
        dev = x - self._mean
        self._sum_up = s_up = self.alpha * self._sum_up + dev - self.delta
        self._sum_down = s_down = self.alpha * self._sum_down + dev + self.delta
        if s_up < self._min_up:
            self._min_up = s_up
        if s_down > self._max_down:
            self._max_down = s_down
        self._drift_detected = self._n >= self.min_instances and (
            (self._up and s_up - self._min_up > self.threshold)
            or (self._down and self._max_down - s_down > self.threshold)
        )
        return self
