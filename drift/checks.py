"""The label-free checks the monitor runs on every window, and their Prometheus gauges.

`WindowChecks.run(window)` estimates the model's performance from its logged
probabilities (`drift.estimation`) and checks the data's quality against the
reference profile (`drift.quality`); it never raises: a check that fails to run
is reported in the result's `note`, as a bad window is. `WindowChecksMetrics`
exports the latest result of each monitor (register it beside `DriftMetrics`):

================================================  =====================  ==============================================
gauge                                             labels                 value
================================================  =====================  ==============================================
driftloop_drift_estimated_performance             model, metric          the estimate (accuracy; roc_auc, f1 if binary)
driftloop_drift_estimated_performance_lower       model, metric          its band
driftloop_drift_estimated_performance_upper       model, metric
driftloop_drift_performance_floor                 model, metric          below it the model is worse than its reference
driftloop_drift_reference_performance             model, metric          realised on the reference
driftloop_drift_estimation_skipped                model, reason          1 when the last window was not estimated
driftloop_drift_quality_share                     model, feature, check  share of rows with the problem
driftloop_drift_quality_failed                    model, feature, check  1 when the check failed
driftloop_drift_quality_failures                  model                  failed checks in the last window
================================================  =====================  ==============================================

The realised accuracy of labelled feedback stays `driftloop_drift_accuracy` (the monitor's own).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from driftloop.drift.estimation import ConfidenceEstimator, PerformanceEstimate
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.quality import DataQuality, QualityReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowChecksResult:
    """What the label-free checks found in one window; a check not configured (or that failed) is None."""

    estimate: PerformanceEstimate | None = None
    quality: QualityReport | None = None
    note: str = ""

    def summary(self) -> dict:
        """The part of a drift event: estimated accuracy and its band, and the failed quality checks."""
        accuracy = self.estimate.accuracy if self.estimate is not None else None
        return {
            "estimated_accuracy": None if accuracy is None else {
                "value": accuracy.value, "lower": accuracy.lower, "upper": accuracy.upper,
                "floor": None if math.isnan(accuracy.floor) else accuracy.floor},
            "estimation_skipped": None if self.estimate is None else self.estimate.reason,
            "quality_failures": [] if self.quality is None else [
                {"feature": r.feature, "check": r.check, "share": None if math.isnan(r.share) else r.share}
                for r in self.quality.failures],
        }


class WindowChecks:
    """Runs the configured checks on windows of one model. Parameters here, the window in `run`.

    estimator: a fitted ConfidenceEstimator (None: no estimation, e.g. the reference had no labels).
    quality: the DataQuality settings (None: no quality checks).
    """

    def __init__(self, profile: ReferenceProfile, estimator: ConfidenceEstimator | None = None,
                 quality: DataQuality | None = None) -> None:
        self.profile = profile
        self.estimator = estimator
        self.quality = quality

    def run(self, window: pa.Table | pd.DataFrame) -> WindowChecksResult:
        estimate = quality = None
        notes = []
        if self.estimator is not None:
            try:
                estimate = self.estimator.estimate(window)
            except Exception as error:  # a window must not stop the monitor; the note and the log say why
                log.exception("performance estimation failed")
                notes.append(f"estimation failed: {error}")
        if self.quality is not None:
            try:
                quality = self.quality.check(self.profile, window)
            except Exception as error:
                log.exception("data-quality checks failed")
                notes.append(f"quality checks failed: {error}")
        return WindowChecksResult(estimate, quality, "; ".join(notes))


class WindowChecksMetrics(Collector):
    """Prometheus gauges from the latest window checks of each monitor (anything with `.latest.model` and
    `.latest.checks`: the drift monitor); register on an injected registry."""

    def __init__(self, monitors: Iterable) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_metric = ["model", "metric"]
        estimated = GaugeMetricFamily("driftloop_drift_estimated_performance",
                                      "Performance estimated from the model's calibrated probabilities (CBPE).",
                                      labels=by_metric)
        lower = GaugeMetricFamily("driftloop_drift_estimated_performance_lower", "Lower end of the estimate's band.",
                                  labels=by_metric)
        upper = GaugeMetricFamily("driftloop_drift_estimated_performance_upper", "Upper end of the estimate's band.",
                                  labels=by_metric)
        floor = GaugeMetricFamily("driftloop_drift_performance_floor",
                                  "Below it the model is worse than at reference.", labels=by_metric)
        reference = GaugeMetricFamily("driftloop_drift_reference_performance", "Performance realised on the reference.",
                                      labels=by_metric)
        skipped = GaugeMetricFamily("driftloop_drift_estimation_skipped",
                                    "1 when the last window was not estimated, with the reason.",
                                    labels=["model", "reason"])
        share = GaugeMetricFamily("driftloop_drift_quality_share", "Share of the window's rows with the problem.",
                                  labels=["model", "feature", "check"])
        failed = GaugeMetricFamily("driftloop_drift_quality_failed", "1 when the data-quality check failed.",
                                   labels=["model", "feature", "check"])
        failures = GaugeMetricFamily("driftloop_drift_quality_failures", "Failed data-quality checks in the last window.",
                                     labels=["model"])
        for monitor in self.monitors:
            run = monitor.latest
            checks = getattr(run, "checks", None)
            if checks is None:
                continue
            model = run.model
            if checks.estimate is not None:
                if checks.estimate.reason is not None:
                    skipped.add_metric([model, checks.estimate.reason], 1.0)
                for metric in checks.estimate.metrics:
                    labels = [model, metric.metric]
                    estimated.add_metric(labels, metric.value)
                    lower.add_metric(labels, metric.lower)
                    upper.add_metric(labels, metric.upper)
                    floor.add_metric(labels, metric.floor)
                    reference.add_metric(labels, metric.reference)
            if checks.quality is not None:
                for result in checks.quality.results:
                    labels = [model, result.feature, result.check]
                    if not math.isnan(result.share):
                        share.add_metric(labels, result.share)
                    failed.add_metric(labels, float(result.failed))
                failures.add_metric([model], float(len(checks.quality.failures)))
        yield from (estimated, lower, upper, floor, reference, skipped, share, failed, failures)


__all__ = ["WindowChecks", "WindowChecksMetrics", "WindowChecksResult"]
