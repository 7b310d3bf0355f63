"""ADWIN: adaptive windowing (Bifet & Gavaldà 2007), River's implementation behind driftloop's API."""

from __future__ import annotations

import base64

from .base import DriftDetector, check_in_range


class ADWIN(DriftDetector):
    r"""Adaptive windowing (ADWIN2) over a stream of bounded values; River's ``river.drift.ADWIN`` inside.

    ADWIN keeps the longest recent window in which the mean looks constant. Every
    ``clock`` samples it tries every split of the window into an older part
    :math:`W_0` and a newer part :math:`W_1` and cuts the older part away when

    .. math:: |\hat\mu_{W_0} - \hat\mu_{W_1}| > \sqrt{\tfrac{2}{m}\,\sigma^2_W \ln\tfrac{2}{\delta'}}
              + \tfrac{2}{3m}\ln\tfrac{2}{\delta'},\qquad \delta' = \delta / \ln |W|,

    with :math:`m` the harmonic mean of the two lengths (less ``min_window_length``).
    The window is stored as an exponential histogram (at most ``max_buckets``
    buckets of each size 1, 2, 4, ...), so memory and time per check are
    :math:`O(\log |W|)`. After an alarm the window is emptied, so one change
    raises one alarm.

    The work is River's (0.26, in Rust): on the same stream of 100,000 error
    bits it ran 5-20 times faster than the pure-Python ADWIN driftloop had,
    which raised the same alarms (``benchmarks/detector_speed.py``). This class
    only validates the parameters and gives River's detector driftloop's
    interface (``update`` returns the detector, ``update_many``, ``reset``).

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

    Examples
    --------
    >>> import numpy as np
    >>> from driftloop.drift.sequential import ADWIN
    >>> rng = np.random.default_rng(7)
    >>> errors = np.r_[rng.random(1000) < 0.1, rng.random(1000) < 0.4].astype(int)
    >>> ADWIN().update_many(errors)
    [1055]

    The alarm comes 55 samples after the change.

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
        self._restart()

    def _restart(self) -> None:
        from river.drift import ADWIN as RiverADWIN  # river is heavy: imported when a detector is made

        self._river = RiverADWIN(
            delta=self.delta, clock=self.clock, max_buckets=self.max_buckets,
            min_window_length=self.min_window_length, grace_period=self.grace_period,
        )

    @property
    def width(self) -> int:
        """Number of samples in the current window."""
        return int(self._river.width)

    @property
    def estimation(self) -> float:
        """Mean of the current window (0 when empty)."""
        return float(self._river.estimation)

    def update(self, x: float) -> ADWIN:
        """Add ``x`` to the window, test for a cut every ``clock`` samples; return ``self``."""
        river = self._river
        river.update(x)  # River empties its window itself at the update after an alarm
        self._drift_detected = river.drift_detected
        return self

    def state_dict(self) -> dict:
        """The window as JSON: River's own serialisation of its Rust window, tagged with River's version.

        River restores it only into the same River version; another version raises
        ``ValueError`` in ``load_state_dict``, and the monitor replays the stream instead.
        """
        import river

        return {
            "river": river.__version__,
            "window": base64.b64encode(self._river._helper.__getstate__()).decode(),
            "drift_detected": bool(self._river.drift_detected),
        }

    def load_state_dict(self, state: dict) -> ADWIN:
        """Resume from a ``state_dict()`` taken under the same River version; return ``self``."""
        import river

        missing = {"river", "window", "drift_detected"} - set(state)
        if missing:
            raise ValueError(f"state of another ADWIN layout: it lacks {sorted(missing)}")
        if state["river"] != river.__version__:
            raise ValueError(f"ADWIN state of River {state.get('river')!r}, this is River {river.__version__}")
        self._restart()
        try:
            self._river._helper.__setstate__(base64.b64decode(state["window"]))
        except BaseException as error:  # River's Rust panics on bytes it did not write: a BaseException
            if isinstance(error, (KeyboardInterrupt, SystemExit)):
                raise
            self._restart()
            raise ValueError(f"ADWIN state not readable: {error}") from error
        self._river._drift_detected = self._drift_detected = bool(state["drift_detected"])
        return self

    def update_many(self, xs) -> list[int]:
        alarms = []
        river = self._river
        for i, x in enumerate(xs):
            river.update(x)
            if river.drift_detected:
                alarms.append(i)
        self._drift_detected = river.drift_detected
        return alarms
