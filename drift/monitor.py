"""The drift monitor: every interval, the latest window of the store against a reference profile.

Each run scores the window (per-feature statistics and the dataset verdict),
optionally runs the multivariate domain-classifier test, feeds the error bits
of newly labelled predictions to sequential detectors, and keeps the result
for the Prometheus collector. When the model's drift state changes it
publishes a drift event (the caller decides where: the `drift-events` topic).
A window too small to judge, or a failing computation, is reported in the
result and the metrics; it never stops the monitor.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from driftloop.collector.store import Store
from driftloop.drift.checks import WindowChecks, WindowChecksResult
from driftloop.drift.multivariate import DomainClassifierTest, MultivariateResult
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.window import WindowDrift, WindowResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    """What to watch and how often. `min_rows`: a smaller window is reported as too small, not scored."""

    model: str
    window: timedelta = timedelta(hours=1)
    interval_s: float = 60.0
    min_rows: int = 50
    label_horizon: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.window <= timedelta(0) or self.interval_s <= 0 or self.min_rows < 1:
            raise ValueError("window and interval_s must be positive and min_rows >= 1")


@dataclass(frozen=True)
class MonitorRun:
    """One run's outcome: what was scored, what drifted, what the detectors said."""

    model: str
    finished_at: datetime
    window_start: datetime
    window_end: datetime
    rows: int
    window: WindowResult | None = None
    multivariate: MultivariateResult | None = None
    accuracy: float | None = None
    alarms: Mapping[str, bool] = field(default_factory=dict)
    note: str = ""
    checks: WindowChecksResult | None = None  # performance estimation and data quality (drift.checks)

    @property
    def drifted(self) -> bool:
        return bool(self.window and self.window.drifted)

    def event(self) -> dict:
        """The drift event published when the state changes."""
        return {
            "model": self.model,
            "time": self.finished_at.isoformat(),
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "rows": self.rows,
            "dataset_drift": self.drifted,
            "share": None if self.window is None or math.isnan(self.window.share) else self.window.share,
            "drifted_features": [r.feature for r in self.window.results if r.drifted] if self.window else [],
            "multivariate_auc": self.multivariate.auc if self.multivariate else None,
            "accuracy": self.accuracy,
            "alarms": dict(self.alarms),
            "note": self.note,
            **(self.checks.summary() if self.checks is not None else {}),
        }


class DriftMonitor:
    """Computes drift runs for one model; `run_once` for one, `run` to repeat until stopped."""

    def __init__(
        self,
        config: MonitorConfig,
        store: Store,
        profile: ReferenceProfile,
        scorer: WindowDrift | None = None,
        multivariate: DomainClassifierTest | None = None,
        reference_sample: pa.Table | None = None,
        detectors: Mapping[str, Callable[[], object]] | None = None,
        publish: Callable[[bytes, bytes], None] | None = None,
        checks: WindowChecks | None = None,
    ) -> None:
        """`reference_sample`: reference rows for the multivariate test (a profile keeps columns apart).
        `detectors`: name -> factory of a sequential detector fed error bits (1 = wrong prediction).
        `checks`: the label-free checks of every window (performance estimation, data quality)."""
        if multivariate is not None and reference_sample is None:
            raise ValueError("the multivariate test needs reference_sample: rows of the reference data")
        self.config = config
        self.reference_sample = reference_sample
        self.store = store
        self.profile = profile
        self.scorer = scorer or WindowDrift()
        self.multivariate = multivariate
        self.detectors = {name: make() for name, make in (detectors or {}).items()}
        self.publish = publish
        self.checks = checks
        self.latest: MonitorRun | None = None
        self._labelled_until = datetime.min.replace(tzinfo=UTC)
        self._lock = threading.Lock()

    def run_once(self, now: datetime | None = None) -> MonitorRun:
        now = now or datetime.now(UTC)
        start = now - self.config.window
        window = self.store.predictions(self.config.model, start, now)
        run = MonitorRun(self.config.model, now, start, now, window.num_rows)
        try:
            if self.checks is not None:  # they have their own rules for small and empty windows
                run = _replace(run, checks=self.checks.run(window))
            if window.num_rows < self.config.min_rows:
                run = _replace(run, note=f"window has {window.num_rows} rows, fewer than min_rows={self.config.min_rows}")
            else:
                run = _replace(run, window=self.scorer.score(self.profile, window))
                if self.multivariate is not None:
                    run = _replace(run, multivariate=self._multivariate(window))
            run = self._feedback(run, now)
        except Exception as error:  # a bad window must not stop the monitor; the metrics say it failed
            log.exception("drift run for %s failed", self.config.model)
            run = _replace(run, note=f"failed: {error}")
        self._remember(run)
        return run

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            began = time.monotonic()
            run = self.run_once()
            log.info(
                "%s: %d rows, dataset drift %s%s", run.model, run.rows, run.drifted, f" ({run.note})" if run.note else ""
            )
            stop.wait(max(0.0, self.config.interval_s - (time.monotonic() - began)))

    def _multivariate(self, window: pa.Table) -> MultivariateResult | None:
        columns = [
            name for name in self.reference_sample.column_names
            if name.startswith("feature.") and name in window.column_names
            and (pa.types.is_floating(window.schema.field(name).type) or pa.types.is_integer(window.schema.field(name).type))
        ]
        if len(columns) < 2:
            return None
        return self.multivariate.test(self.reference_sample.select(columns), window.select(columns))

    def _feedback(self, run: MonitorRun, now: datetime) -> MonitorRun:
        """Accuracy over the window's labelled predictions; new error bits go to the sequential detectors."""
        labelled = self.store.labelled(self.config.model, now - self.config.label_horizon, now, self.config.label_horizon)
        if labelled.num_rows == 0:
            return _replace(run, alarms={name: False for name in self.detectors})
        correct = pc.equal(labelled["label"], labelled["true_label"]).to_numpy(zero_copy_only=False)
        in_window = (labelled["timestamp"].to_numpy() >= np.datetime64(run.window_start.replace(tzinfo=None), "us"))
        accuracy = float(correct[in_window].mean()) if in_window.any() else None
        feedback_times = labelled["feedback_timestamp"].to_pylist()
        fresh = [i for i, t in enumerate(feedback_times) if t > self._labelled_until]
        alarms = {name: False for name in self.detectors}
        for i in sorted(fresh, key=feedback_times.__getitem__):
            for name, detector in self.detectors.items():
                detector.update(0 if correct[i] else 1)
                alarms[name] |= bool(detector.drift_detected)
        if fresh:
            self._labelled_until = max(feedback_times[i] for i in fresh)
        return _replace(run, accuracy=accuracy, alarms=alarms)

    def _remember(self, run: MonitorRun) -> None:
        with self._lock:
            previous, self.latest = self.latest, run
        changed = previous is None or previous.drifted != run.drifted or any(
            run.alarms.get(name) != previous.alarms.get(name) for name in run.alarms
        )
        if changed and self.publish is not None and (run.window is not None or run.alarms):
            self.publish(self.config.model.encode(), orjson.dumps(run.event()))


def _replace(run: MonitorRun, **changes) -> MonitorRun:
    return MonitorRun(**{**run.__dict__, **changes})


class DriftMetrics(Collector):
    """Prometheus gauges from the monitors' latest runs (register on an injected registry)."""

    def __init__(self, monitors: list[DriftMonitor]) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[GaugeMetricFamily]:
        score = GaugeMetricFamily("driftloop_drift_feature_score", "Drift statistic per column.", labels=["model", "feature", "method"])
        flag = GaugeMetricFamily("driftloop_drift_feature_drifted", "1 when the column drifted.", labels=["model", "feature"])
        share = GaugeMetricFamily("driftloop_drift_share", "Share of drifted columns.", labels=["model"])
        dataset = GaugeMetricFamily("driftloop_drift_dataset_drift", "1 when the window drifted as a whole.", labels=["model"])
        auc = GaugeMetricFamily("driftloop_drift_multivariate_auc", "Domain classifier AUC (0.5: no difference).", labels=["model"])
        accuracy = GaugeMetricFamily("driftloop_drift_accuracy", "Accuracy on labelled feedback in the window.", labels=["model"])
        alarm = GaugeMetricFamily("driftloop_drift_sequential_alarm", "1 when a sequential detector alarmed in the last run.", labels=["model", "detector"])
        rows = GaugeMetricFamily("driftloop_drift_window_rows", "Predictions in the last window.", labels=["model"])
        last = GaugeMetricFamily("driftloop_drift_last_run_timestamp_seconds", "When the last run finished.", labels=["model"])
        for monitor in self.monitors:
            run = monitor.latest
            if run is None:
                continue
            model = run.model
            rows.add_metric([model], run.rows)
            last.add_metric([model], run.finished_at.timestamp())
            if run.window is not None:
                for result in run.window.results:
                    score.add_metric([model, result.feature, result.method], result.score)
                    flag.add_metric([model, result.feature], float(result.drifted))
                share.add_metric([model], run.window.share)
                dataset.add_metric([model], float(run.window.drifted))
            if run.multivariate is not None:
                auc.add_metric([model], run.multivariate.auc)
            if run.accuracy is not None:
                accuracy.add_metric([model], run.accuracy)
            for name, fired in run.alarms.items():
                alarm.add_metric([model, name], float(fired))
        yield from (score, flag, share, dataset, auc, accuracy, alarm, rows, last)
