"""Sequential drift detectors: one value at a time, River's ``update(x)`` / ``drift_detected`` API.

Feed them the stream of error bits (1 = the model was wrong) from labelled
feedback, or a numeric score stream. ``DETECTORS`` is the registry the drift
monitor builds detectors from; :func:`make_detector` builds one by name.
"""

from __future__ import annotations

from .adwin import ADWIN
from .base import DriftDetector
from .cusum import CUSUM
from .ddm import DDM
from .page_hinkley import PageHinkley

DETECTORS: dict[str, type[DriftDetector]] = {
    "adwin": ADWIN,
    "page_hinkley": PageHinkley,
    "ddm": DDM,
    "cusum": CUSUM,
}


def make_detector(name: str, **params) -> DriftDetector:
    """Build the detector registered as ``name`` with ``params``.

    >>> make_detector("cusum", false_alarms_per_10k=10.0).arl0_
    1000.0
    >>> make_detector("kswin")
    Traceback (most recent call last):
    ...
    ValueError: Unknown sequential detector 'kswin'. Valid values are: ['adwin', 'page_hinkley', 'ddm', 'cusum']
    """
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"Unknown sequential detector {name!r}. Valid values are: {list(DETECTORS)}") from None
    return cls(**params)


__all__ = ["ADWIN", "CUSUM", "DDM", "DETECTORS", "DriftDetector", "PageHinkley", "make_detector"]
