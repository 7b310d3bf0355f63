"""DDM: the drift detection method of Gama et al. (2004) on error bits."""

from __future__ import annotations

import math

from .base import DriftDetector, check_in_range


class DDM(DriftDetector):
    r"""Drift detection method on a stream of error bits.

    With :math:`p_i` the error rate since the last restart and
    :math:`s_i = \sqrt{p_i(1-p_i)/i}`, DDM records :math:`p_{min}, s_{min}` where
    :math:`p_i + s_i` was lowest and signals a warning when
    :math:`p_i + s_i \ge p_{min} + w\,s_{min}` and a drift when
    :math:`p_i + s_i \ge p_{min} + d\,s_{min}`; it restarts after a drift.
    Unlike the paper's pseudo-code, the minimum is only recorded once an error
    has been seen (:math:`s_i > 0`), so a clean start cannot set :math:`s_{min}=0`
    and turn the first error into an alarm. River's DDM records it there and
    alarms on the first error after an error-free warm start; on streams with
    early errors both raise the same alarms.

    Input: error bits, ``1`` = the model was wrong, ``0`` = right (River's DDM
    convention; River's FHDDM expects the opposite). Anything else raises ``ValueError``.

    Parameters
    ----------
    warm_start
        No warning or drift before this many samples since the last restart.
    warning_threshold
        :math:`w`, in standard deviations (2 ~ 95 % confidence).
    drift_threshold
        :math:`d`, in standard deviations (3 ~ 99 %); must exceed ``warning_threshold``.

    Examples
    --------
    >>> import numpy as np
    >>> from driftloop.drift.sequential import DDM
    >>> rng = np.random.default_rng(7)
    >>> errors = np.r_[rng.random(1000) < 0.1, rng.random(1000) < 0.4].astype(int)
    >>> DDM().update_many(errors)
    [1029]

    References
    ----------
    João Gama, Pedro Medas, Gladys Castillo and Pedro Rodrigues. Learning with drift
    detection. In Advances in Artificial Intelligence - SBIA 2004, LNCS 3171, pages 286-295.
    """

    binary_input = True

    def __init__(self, warm_start: int = 30, warning_threshold: float = 2.0, drift_threshold: float = 3.0) -> None:
        super().__init__()
        if not isinstance(warm_start, int) or isinstance(warm_start, bool) or warm_start < 1:
            raise ValueError(f"Invalid 'warm_start': {warm_start!r}. Valid values are integers >= 1.")
        check_in_range("warning_threshold", warning_threshold, 0.0, float("inf"), low_open=True, high_open=True)
        check_in_range("drift_threshold", drift_threshold, warning_threshold, float("inf"), low_open=True, high_open=True)
        self.warm_start = warm_start
        self.warning_threshold = warning_threshold
        self.drift_threshold = drift_threshold
        self._warning_detected = False
        self._restart()

    def _restart(self) -> None:
        self._n = 0
        self._errors = 0
        self._p_min = math.inf
        self._s_min = math.inf
        self._ps_min = math.inf
        self._warning_detected = False

    @property
    def warning_detected(self) -> bool:
        """Whether the last update left the detector in the warning zone."""
        return self._warning_detected

    def update(self, x: int) -> DDM:
        """Read one error bit (1 = error, 0 = correct); return ``self``."""
        if x != 0 and x != 1:
            raise ValueError(f"Invalid input {x!r} for DDM. Valid values are: [0, 1] (1 = error).")
        if self._drift_detected:
            self._restart()
        self._n += 1
        self._errors += x
        n = self._n
        p = self._errors / n
        s = math.sqrt(p * (1.0 - p) / n)
        self._drift_detected = False
        if n > self.warm_start and s > 0.0:
            ps = p + s
            if ps <= self._ps_min:
                self._p_min, self._s_min, self._ps_min = p, s, ps
            self._drift_detected = ps >= self._p_min + self.drift_threshold * self._s_min
            self._warning_detected = not self._drift_detected and ps >= self._p_min + self.warning_threshold * self._s_min
        return self
