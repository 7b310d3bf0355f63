"""The drift monitor: every interval, the latest window of the store against a reference profile.

Each run scores the window (per-feature statistics and the dataset verdict), optionally runs the
multivariate domain-classifier test, computes the accuracy of the window's labelled predictions,
and feeds the error bit of every label that reached the store since the last run to the
sequential detectors. A run costs the window and what arrived, not the history.

A run never stops the monitor: a window too small to judge is reported as such; a run whose
store read or computation fails is counted as failed (and leaves the drift gauges at the last
judged window); drift events go through an outbox that keeps them, on disk, until Kafka has
acknowledged them. With a `state_dir` the detectors' state and the feedback position are saved
after each run (atomically), so a restarted monitor resumes where it stopped instead of
re-reading a week of labels; a first start reads the labels of the last horizon once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from driftloop.collector.store import Store
from driftloop.drift.checks import WindowChecks, WindowChecksResult
from driftloop.drift.events import EventOutbox, write_json_atomically
from driftloop.drift.labels import LabelStream
from driftloop.drift.multivariate import DomainClassifierTest, MultivariateResult
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.tracked import TrackedDetector
from driftloop.drift.window import WindowDrift, WindowResult

log = logging.getLogger(__name__)

STATE_FORMAT = 1  # of `state.json`; another format is ignored (with a warning) and the monitor starts afresh
STATE_FILE = "state.json"
OUTBOX_FILE = "outbox.json"


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
    """One run's outcome: what was scored, what drifted, what the detectors said.

    `labels`: labels fed to the detectors in this run; `alarms`: detector -> alarmed in this run.
    `failed`: the run could not read or compute (the `note` says why).
    """

    model: str
    finished_at: datetime
    window_start: datetime
    window_end: datetime
    rows: int = 0
    window: WindowResult | None = None
    multivariate: MultivariateResult | None = None
    accuracy: float | None = None
    label_delay_s: float | None = None  # median time from a labelled prediction of the window to its label
    labels: int = 0
    alarms: Mapping[str, bool] = field(default_factory=dict)
    note: str = ""
    failed: bool = False
    checks: WindowChecksResult | None = None  # performance estimation and data quality (drift.checks)

    @property
    def drifted(self) -> bool:
        return bool(self.window and self.window.drifted)

    def event(self) -> dict:
        """The drift event published when the dataset-drift state changes or a detector alarms."""
        return {
            "event_id": hashlib.sha256(f"{self.model}\n{self.finished_at.isoformat()}".encode()).hexdigest()[:32],
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


@dataclass
class MonitorCounts:
    """What the monitor has done since it started (Prometheus counters)."""

    runs: int = 0
    failures: int = 0
    labels: int = 0
    alarms: dict[str, int] = field(default_factory=dict)


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
        state_dir: Path | None = None,
        checks: WindowChecks | None = None,
    ) -> None:
        """`reference_sample`: reference rows for the multivariate test (a profile keeps columns apart).
        `detectors`: name -> factory of a sequential detector fed error bits (1 = wrong prediction).
        `publish(key, value)`: sends one drift event and returns once it is acknowledged (raises if
        not); it is called from the outbox's own thread, never from a run.
        `state_dir`: where the detectors' state, the feedback position and the owed events are kept.
        `checks`: the label-free checks of every window (performance estimation, data quality)."""
        if multivariate is not None and reference_sample is None:
            raise ValueError("the multivariate test needs reference_sample: rows of the reference data")
        self.config = config
        self.reference_sample = reference_sample
        self.store = store
        self.profile = profile
        self.scorer = scorer or WindowDrift()
        self.multivariate = multivariate
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.events = EventOutbox(publish, self._file(OUTBOX_FILE)) if publish is not None else None
        self.latest: MonitorRun | None = None  # the last run, failed or not
        self.last_success: MonitorRun | None = None
        self.last_judged: MonitorRun | None = None  # the last run that scored a window: what the drift gauges show
        self.counts = MonitorCounts(alarms={name: 0 for name in detectors or {}})
        self._published_drift: bool | None = None
        self._failing = 0
        self.checks = checks
        self._lock = threading.Lock()
        saved = self._load_state()
        self.labels = LabelStream(store, config.model, config.label_horizon, saved.get("feedback_position"))
        self.detectors = {}
        for name, make in (detectors or {}).items():
            record = saved.get("detectors", {}).get(name)
            self.detectors[name] = TrackedDetector.restore(name, make(), record) if record else TrackedDetector(name, make())
        self._published_drift = saved.get("published_drift")
        if self.events is not None and self.events.owed:
            log.info("%s: %d drift events still owed from before; sending them", config.model, self.events.owed)
            self.events.start()

    def run_once(self, now: datetime | None = None) -> MonitorRun:
        now = now or datetime.now(UTC)
        start = now - self.config.window
        run = MonitorRun(self.config.model, now, start, now)
        try:
            window = self.store.predictions(self.config.model, start, now)
            run = replace(run, rows=window.num_rows)
            if self.checks is not None:  # they have their own rules for small and empty windows
                run = replace(run, checks=self.checks.run(window))
            if window.num_rows < self.config.min_rows:
                run = replace(run, note=f"window has {window.num_rows} rows, fewer than min_rows={self.config.min_rows}")
            else:
                run = replace(run, window=self.scorer.score(self.profile, window))
                if self.multivariate is not None:
                    run = replace(run, multivariate=self._multivariate(window))
            run = self._feedback(run, now)
        except Exception as error:  # a bad window or an unreadable store must not stop the monitor
            self._failing += 1
            if self._failing == 1:
                log.exception("drift run for %s failed; the monitor keeps its schedule", self.config.model)
            else:
                log.warning("drift run for %s failed again (%d in a row): %s", self.config.model, self._failing, error)
            run = replace(run, note=f"failed: {type(error).__name__}: {error}", failed=True)
        else:
            if self._failing:
                log.info("drift runs for %s work again after %d failed", self.config.model, self._failing)
            self._failing = 0
        self._remember(run)
        return run

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                began = time.monotonic()
                run = self.run_once()
                log.info("%s: %d rows, dataset drift %s, %d new labels%s", run.model, run.rows, run.drifted, run.labels,
                         f" ({run.note})" if run.note else "")
                stop.wait(max(0.0, self.config.interval_s - (time.monotonic() - began)))
        finally:
            self.close()

    def close(self) -> None:
        """Stop sending events; what is still owed stays in the outbox file for the next start."""
        if self.events is not None:
            self.events.close()

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
        """Accuracy of the window's labelled predictions; the bits of newly arrived labels to the detectors."""
        labelled = self.store.labelled(self.config.model, run.window_start, now, self.config.label_horizon)
        judged = labelled.filter(pc.is_valid(labelled["label"])) if labelled.num_rows else labelled
        accuracy = delay = None
        if judged.num_rows:
            accuracy = pc.mean(pc.cast(pc.equal(judged["label"], judged["true_label"]), pa.float64())).as_py()
            waited = pc.cast(pc.subtract(judged["feedback_timestamp"], judged["timestamp"]), pa.int64())  # us
            delay = max(0.0, pc.approximate_median(waited).as_py() / 1e6)  # a clock skew may label a bit early
        bits = self.labels.read(now).tolist() if self.detectors else []
        alarms = {name: False for name in self.detectors}
        for bit in bits:
            for name, tracked in self.detectors.items():
                alarms[name] |= tracked.update(bit)
        return replace(run, accuracy=accuracy, label_delay_s=delay, labels=len(bits), alarms=alarms)

    def _remember(self, run: MonitorRun) -> None:
        with self._lock:
            self.latest = run
            self.counts.runs += 1
            if run.failed:
                self.counts.failures += 1
            else:
                self.last_success = run
                self.counts.labels += run.labels
                for name, fired in run.alarms.items():
                    self.counts.alarms[name] = self.counts.alarms.get(name, 0) + int(fired)
            if run.window is not None:
                self.last_judged = run
        due = any(run.alarms.values())
        if run.window is not None and run.drifted != self._published_drift:
            due = True
            self._published_drift = run.drifted
        if due and self.events is not None:
            self.events.put(self.config.model.encode(), orjson.dumps(run.event()))
        if not run.failed:
            self._save_state()

    def _file(self, name: str) -> Path | None:
        return self.state_dir / name if self.state_dir is not None else None

    def _save_state(self) -> None:
        path = self._file(STATE_FILE)
        if path is None:
            return
        document = {
            "format": STATE_FORMAT,
            "model": self.config.model,
            "saved_at": datetime.now(UTC).isoformat(),
            "published_drift": self._published_drift,
            "feedback_position": self.labels.position,
            "detectors": {name: tracked.record() for name, tracked in self.detectors.items()},
        }
        try:
            write_json_atomically(path, document)
        except OSError as error:  # a full disk must not stop the monitor; the next run tries again
            log.error("cannot save the monitor's state to %s: %s", path, error)

    def _load_state(self) -> dict:
        path = self._file(STATE_FILE)
        if path is None or not path.exists():
            return {}
        try:
            document = json.loads(path.read_text())  # the json module: a detector's state may hold inf or nan
        except ValueError as error:
            log.error("ignoring unreadable monitor state %s (%s); starting afresh", path, error)
            return {}
        if document.get("format") != STATE_FORMAT or document.get("model") != self.config.model:
            log.warning("ignoring monitor state %s: format %s of model %r, expected format %d of %r", path,
                        document.get("format"), document.get("model"), STATE_FORMAT, self.config.model)
            return {}
        return document


class DriftMetrics(Collector):
    """Prometheus metrics from the monitors (register on an injected registry).

    Drift gauges show the last judged window (a window too small or a failed run leaves them as
    they were); counters count runs, failures, labels read, alarms and drift events since start.
    A p-value (small = drift) and a distance (large = drift) are separate families, each without
    a label that could change between runs.
    """

    def __init__(self, monitors: list[DriftMonitor]) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        def gauge(name: str, text: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"driftloop_drift_{name}", text, labels=["model", *labels])

        def counter(name: str, text: str, *labels: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"driftloop_drift_{name}", text, labels=["model", *labels])

        p_value = gauge("feature_p_value", "P-value of the column's test (small: drift); p-value methods only.", "feature")
        distance = gauge("feature_distance", "Distance of the column from the reference (large: drift); distance methods only.", "feature")
        flag = gauge("feature_drifted", "1 when the column drifted.", "feature")
        share = gauge("share", "Share of drifted columns.")
        dataset = gauge("dataset_drift", "1 when the window drifted as a whole.")
        auc = gauge("multivariate_auc", "Domain classifier AUC (0.5: no difference).")
        accuracy = gauge("accuracy", "Accuracy on labelled feedback in the window.")
        delay = gauge("label_delay_seconds", "Median time from a labelled prediction of the window to its label.")
        rows = gauge("window_rows", "Predictions in the last window read.")
        last = gauge("last_run_timestamp_seconds", "When the last run finished, failed or not.")
        success = gauge("last_success_timestamp_seconds", "When the last run that did not fail finished.")
        owed = gauge("events_owed", "Drift events not yet acknowledged by Kafka.")
        runs = counter("runs", "Monitor runs.")
        failures = counter("run_failures", "Monitor runs that failed (store unreadable, computation failed).")
        labels = counter("labels", "Labels fed to the sequential detectors.")
        alarms = counter("sequential_alarms", "Alarms of a sequential detector on labelled feedback.", "detector")
        published = counter("events_published", "Drift events acknowledged by Kafka.")
        publish_failures = counter("event_publish_failures", "Failed attempts to send a drift event.")
        for monitor in self.monitors:
            model = monitor.config.model
            with monitor._lock:
                counts = replace(monitor.counts, alarms=dict(monitor.counts.alarms))
                latest, ok, judged = monitor.latest, monitor.last_success, monitor.last_judged
            runs.add_metric([model], counts.runs)
            failures.add_metric([model], counts.failures)
            labels.add_metric([model], counts.labels)
            for name, count in counts.alarms.items():
                alarms.add_metric([model, name], count)
            if monitor.events is not None:
                owed.add_metric([model], monitor.events.owed)
                published.add_metric([model], monitor.events.published)
                publish_failures.add_metric([model], monitor.events.failures)
            if latest is not None:
                last.add_metric([model], latest.finished_at.timestamp())
            if ok is not None:
                success.add_metric([model], ok.finished_at.timestamp())
                rows.add_metric([model], ok.rows)
                if ok.accuracy is not None:
                    accuracy.add_metric([model], ok.accuracy)
                if ok.label_delay_s is not None:
                    delay.add_metric([model], ok.label_delay_s)
            if judged is not None:
                for result in judged.window.results:
                    if not math.isnan(result.score):
                        (p_value if result.p_value else distance).add_metric([model, result.feature], result.score)
                    flag.add_metric([model, result.feature], float(result.drifted))
                share.add_metric([model], judged.window.share)
                dataset.add_metric([model], float(judged.window.drifted))
                if judged.multivariate is not None:
                    auc.add_metric([model], judged.multivariate.auc)
        yield from (p_value, distance, flag, share, dataset, auc, accuracy, delay, rows, last, success, owed,
                    runs, failures, labels, alarms, published, publish_failures)
