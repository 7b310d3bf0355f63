"""The drift commands, built from the settings: profile a window, monitor, report."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.collector.store import Store
from driftloop.drift.checks import WindowChecks, WindowChecksMetrics
from driftloop.drift.estimation import ConfidenceEstimator
from driftloop.drift.events import KafkaTopicWriter
from driftloop.drift.monitor import DriftMetrics, DriftMonitor, MonitorConfig
from driftloop.drift.multivariate import DomainClassifierTest
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.quality import DataQuality
from driftloop.drift.report import ReportFiles, write_report
from driftloop.drift.sequential import make_detector
from driftloop.drift.window import WindowDrift
from driftloop.layout import ESTIMATOR_FILE, SAMPLE_FILE, monitor_dir, profile_dir, registry_dir, reports_dir
from driftloop.services import new_registry, serve_metrics, stop_on_signals, withdraw_from_prometheus
from driftloop.settings import Settings

log = logging.getLogger(__name__)


def window_with_labels(store: Store, model: str, start: datetime, end: datetime, horizon: timedelta) -> pa.Table:
    """Every prediction of the window, with `true_label` where feedback came (null elsewhere)."""
    labelled = store.labelled(model, start, end, horizon)
    unlabelled = store.unlabelled(model, start, end, horizon)
    return pa.concat_tables([labelled, unlabelled], promote_options="default")


def build_profile(settings: Settings, model: str, start: datetime, end: datetime) -> tuple[Path, ReferenceProfile]:
    """Profile a window of the store and keep a sample of its rows for the multivariate test."""
    horizon = settings.label_horizon
    table = window_with_labels(Store(settings.store_dir), model, start, end, horizon)
    if table.num_rows == 0:
        raise ValueError(f"no predictions of model {model!r} between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} UTC")
    profile = ReferenceProfile.build(table)
    folder = profile.save(profile_dir(settings, model))
    rows = np.random.default_rng(0).permutation(table.num_rows)[: settings.drift.reference_sample_rows]
    pq.write_table(table.take(np.sort(rows)), folder / SAMPLE_FILE)
    fit_estimator(settings, model, table, folder)
    return folder, profile


def reference_dir(settings: Settings, model: str) -> Path:
    """The profile to compare live traffic with: the registry champion's (what the serving model learned
    from) when there is one, else the one `driftloop drift profile` built."""
    from driftloop.retrain import ModelRegistry  # light: no torch, no Ray

    if not (registry_dir(settings) / "registry.db").is_file():
        return profile_dir(settings, model)
    champion = ModelRegistry.open(registry_dir(settings)).profile_dir(model, "champion")
    return champion if champion is not None else profile_dir(settings, model)


def fit_estimator(settings: Settings, model: str, reference: pa.Table, folder: Path) -> ConfidenceEstimator | None:
    """Fit the performance estimator on the reference's labelled rows and save it beside the profile;
    without labels and probabilities there is none (and a stale one is removed)."""
    path = folder / ESTIMATOR_FILE
    if not settings.estimation.enabled:
        path.unlink(missing_ok=True)
        return None
    estimation = settings.estimation
    try:
        estimator = ConfidenceEstimator(
            calibration=estimation.calibration, sigmas=estimation.sigmas, min_rows=estimation.min_rows,
            floors=None if estimation.accuracy_floor is None else {"accuracy": estimation.accuracy_floor},
        ).fit(reference)
    except ValueError as error:
        path.unlink(missing_ok=True)
        log.warning("no performance estimator for %s: %s", model, error)
        return None
    estimator.save(path)
    return estimator


def window_checks(settings: Settings, folder: Path, profile: ReferenceProfile) -> WindowChecks | None:
    """The monitor's label-free checks: the saved estimator (its floor and minimum rows as set now) and the
    data-quality checks, as the settings ask."""
    estimator = None
    path = folder / ESTIMATOR_FILE
    if settings.estimation.enabled and path.is_file():
        estimator = ConfidenceEstimator.load(path)
        estimator.min_rows = settings.estimation.min_rows
        if settings.estimation.accuracy_floor is not None and "accuracy" in estimator.floor_:
            estimator.floor_["accuracy"] = settings.estimation.accuracy_floor
    elif settings.estimation.enabled:
        log.info("no performance estimator in %s (the reference had no labelled rows with probabilities)", folder)
    q = settings.quality
    quality = DataQuality(
        max_missing_increase=q.max_missing_increase, max_out_of_range=q.max_out_of_range,
        quantiles=q.range_quantiles, max_unseen=q.max_unseen, max_type_mismatch=q.max_type_mismatch, alpha=q.alpha,
    ) if q.enabled else None
    return WindowChecks(profile, estimator, quality) if estimator is not None or quality is not None else None


def run_monitor(settings: Settings, model: str) -> None:
    """Monitor `model` until SIGTERM/SIGINT. Needs the store and the profile; Kafka and Prometheus may come and go."""
    folder = reference_dir(settings, model)
    if not (folder / "profile.json").is_file():
        raise FileNotFoundError(f"no reference profile for {model!r} in {folder}: run `driftloop drift profile --model {model}`")
    log.info("%s: reference profile %s", model, folder)
    drift = settings.drift
    events = KafkaTopicWriter(settings.kafka_bootstrap(), settings.kafka.topic("drift-events"), drift.publish_timeout_s)
    profile = ReferenceProfile.load(folder)
    monitor = DriftMonitor(
        MonitorConfig(model, timedelta(minutes=drift.window_minutes), drift.interval_s, drift.min_rows,
                      settings.label_horizon),
        Store(settings.store_dir),
        profile,
        WindowDrift(method=drift.method, drift_share=drift.drift_share, correction=drift.correction),
        multivariate=DomainClassifierTest(seed=0) if drift.multivariate else None,
        reference_sample=pq.read_table(folder / SAMPLE_FILE) if drift.multivariate else None,
        detectors={name: (lambda name=name: make_detector(name)) for name in drift.detectors},
        publish=events.send,
        state_dir=monitor_dir(settings, model),
        checks=window_checks(settings, folder, profile),
    )
    registry = new_registry()
    registry.register(DriftMetrics([monitor]))
    registry.register(WindowChecksMetrics([monitor]))
    serve_metrics(settings, registry, f"drift-{model}", drift.metrics_port)
    try:
        monitor.run(stop_on_signals())
    finally:
        events.close()
    withdraw_from_prometheus(settings, f"drift-{model}")  # stopped on purpose; a crash stays registered, and down


def make_report(settings: Settings, model: str, window: timedelta, end: datetime | None = None) -> ReportFiles:
    end = end or datetime.now(UTC)
    folder = profile_dir(settings, model)
    if not (folder / SAMPLE_FILE).is_file():
        raise FileNotFoundError(f"no reference for {model!r} in {folder}: run `driftloop drift profile --model {model}`")
    horizon = settings.label_horizon
    current = window_with_labels(Store(settings.store_dir), model, end - window, end, horizon)
    if current.num_rows == 0:
        raise ValueError(f"no predictions of model {model!r} in the {window} before {end:%Y-%m-%d %H:%M} UTC")
    return write_report(pq.read_table(folder / SAMPLE_FILE), current, reports_dir(settings, model))
