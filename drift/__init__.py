"""Drift detection: reference profiles, window statistics, sequential detectors, the monitor."""

from drift.monitor import DriftMetrics, DriftMonitor, MonitorConfig, MonitorRun
from drift.multivariate import DomainClassifierTest, MultivariateResult
from drift.profile import ReferenceProfile
from drift.results import DriftResult
from drift.sequential import DETECTORS, make_detector
from drift.stats import STATISTICS, get_statistic
from drift.window import WindowDrift, WindowResult

__all__ = [
    "DETECTORS",
    "STATISTICS",
    "DomainClassifierTest",
    "DriftMetrics",
    "DriftMonitor",
    "DriftResult",
    "MonitorConfig",
    "MonitorRun",
    "MultivariateResult",
    "ReferenceProfile",
    "WindowDrift",
    "WindowResult",
    "get_statistic",
    "make_detector",
]
