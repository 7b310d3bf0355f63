"""Drift detection: reference profiles, window statistics, sequential detectors, performance estimation,
data-quality checks, the monitor."""

from driftloop.drift.checks import WindowChecks, WindowChecksMetrics, WindowChecksResult
from driftloop.drift.estimation import ConfidenceEstimator, MetricEstimate, PerformanceEstimate
from driftloop.drift.monitor import DriftMetrics, DriftMonitor, MonitorConfig, MonitorRun
from driftloop.drift.multivariate import DomainClassifierTest, MultivariateResult
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.quality import DataQuality, QualityReport, QualityResult
from driftloop.drift.results import DriftResult
from driftloop.drift.sequential import DETECTORS, make_detector
from driftloop.drift.stats import STATISTICS, get_statistic
from driftloop.drift.window import WindowDrift, WindowResult

__all__ = [
    "DETECTORS",
    "STATISTICS",
    "ConfidenceEstimator",
    "DataQuality",
    "DomainClassifierTest",
    "DriftMetrics",
    "DriftMonitor",
    "DriftResult",
    "MonitorConfig",
    "MetricEstimate",
    "MonitorRun",
    "MultivariateResult",
    "PerformanceEstimate",
    "QualityReport",
    "QualityResult",
    "ReferenceProfile",
    "WindowChecks",
    "WindowChecksMetrics",
    "WindowChecksResult",
    "WindowDrift",
    "WindowResult",
    "get_statistic",
    "make_detector",
]
