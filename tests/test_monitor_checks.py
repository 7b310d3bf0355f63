"""The monitor's label-free checks end to end: store windows in, estimation and data-quality gauges scraped by
the real Prometheus, and the shipped alert rules' expressions selecting the broken model and feature."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import yaml
from events import feedback_for, prediction_documents, produce, stored_counts, wait_until
from prometheus_client import CollectorRegistry, start_http_server

from driftloop.collector.store import Store
from driftloop.collector.store_writer import StoreWriter, StoreWriterConfig
from driftloop.dashboards import rule_files
from driftloop.drift.checks import WindowChecksMetrics
from driftloop.drift.monitor import DriftMetrics, DriftMonitor, MonitorConfig
from driftloop.drift_service import build_profile, window_checks
from driftloop.layout import ESTIMATOR_FILE, profile_dir
from driftloop.retrain_service import open_registry
from driftloop.settings import load_settings
from driftloop.stack import register_scrape_target

NOW = datetime.now(UTC).replace(microsecond=0)


def calibrated(documents: list[dict], seed: int, scale: float = 1.0) -> list[dict]:
    """The model's input f00 scaled by `scale` (a covariate shift towards its boundary when < 1); its output
    p = sigmoid(2 f00) recomputed; the true labels, drawn from p, as feedback (a calibrated model)."""
    rng = np.random.default_rng(seed)
    feedback = feedback_for(documents, delay=timedelta(seconds=1))
    for document, answer in zip(documents, feedback, strict=True):
        x = document["features"]["f00"] * scale
        p = float(1 / (1 + np.exp(-2 * x)))
        document["features"]["f00"] = x
        document["output"] = {"label": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}}
        answer["label"] = int(rng.random() < p)
    return feedback


@pytest.fixture
def broken_traffic(kafka, kafka_settings, data_dir):
    """Labelled reference traffic three hours ago; in the last 30 minutes, inputs moved towards the model's
    boundary (its accuracy falls), feature f05 null in every event and f06 sent in other units (x 1000)."""
    topics = kafka_settings.topics()
    writer = StoreWriter(
        StoreWriterConfig(kafka, topics, data_dir / "store", group_id=f"{kafka_settings.topic_prefix}w", batch_seconds=0.3),
        CollectorRegistry(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    reference = prediction_documents(2000, seed=11, start=NOW - timedelta(hours=3))
    current = prediction_documents(1000, seed=12, start=NOW - timedelta(minutes=30))
    feedback = calibrated(reference, 13) + calibrated(current, 14, scale=0.2)
    for document in current:
        document["features"]["f05"] = None
        document["features"]["f06"] *= 1000
    produce(kafka, topics.predictions, reference + current)
    produce(kafka, topics.feedback, feedback)
    store = Store(data_dir / "store")
    assert wait_until(lambda: stored_counts(store) == (3000, 3000) and stored_counts(store, "feedback")[0] == 3000, 60)
    yield store
    stop.set()
    thread.join(timeout=30)


def query(prometheus_url: str, promql: str) -> list[dict]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def alert_expressions() -> dict[str, str]:
    return {rule["alert"]: rule["expr"] for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]}


def test_estimation_and_quality_reach_prometheus_and_the_alert_rules(broken_traffic, data_dir, prometheus):
    store = broken_traffic
    settings = load_settings(data_dir=data_dir)
    folder, profile = build_profile(settings, "churn", NOW - timedelta(hours=4), NOW - timedelta(hours=2))
    assert (folder / ESTIMATOR_FILE).is_file()  # the reference had labels: the estimator was fitted
    monitor = DriftMonitor(MonitorConfig(model="churn", window=timedelta(hours=1)), store, profile,
                           checks=window_checks(settings, folder, profile))
    run = monitor.run_once(NOW)

    accuracy = run.checks.estimate.accuracy
    assert run.rows == 1000 and run.checks.note == ""
    assert accuracy.lower <= run.accuracy <= accuracy.upper  # the realised accuracy of the labelled feedback
    assert accuracy.reference - run.accuracy > 0.1 and accuracy.below_floor
    assert {(r.feature, r.check) for r in run.checks.quality.failures} == {
        ("feature.f05", "missing"), ("feature.f06", "out_of_range")}
    assert run.event()["estimated_accuracy"]["value"] == accuracy.value

    registry = CollectorRegistry()
    registry.register(DriftMetrics([monitor]))
    registry.register(WindowChecksMetrics([monitor]))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        register_scrape_target(prometheus.targets_dir, "checks-test", f"127.0.0.1:{server.server_port}")
        estimated = wait_until(
            lambda: query(prometheus.url, 'driftloop_drift_estimated_performance{model="churn",metric="accuracy"}'), 30)
        assert estimated and float(estimated[0]["value"][1]) == pytest.approx(accuracy.value)
        assert {s["metric"]["metric"] for s in query(prometheus.url, 'driftloop_drift_estimated_performance{model="churn"}')} \
            == {"accuracy", "roc_auc", "f1"}
        for gauge, value in (("lower", accuracy.lower), ("upper", accuracy.upper)):
            found = query(prometheus.url, f'driftloop_drift_estimated_performance_{gauge}{{model="churn",metric="accuracy"}}')
            assert float(found[0]["value"][1]) == pytest.approx(value)
        missing = query(prometheus.url, 'driftloop_drift_quality_share{model="churn",feature="feature.f05",check="missing"}')
        assert float(missing[0]["value"][1]) == 1.0
        failed = query(prometheus.url, 'driftloop_drift_quality_failed{model="churn"} == 1')
        assert {(s["metric"]["feature"], s["metric"]["check"]) for s in failed} == {
            ("feature.f05", "missing"), ("feature.f06", "out_of_range")}
        assert float(query(prometheus.url, 'driftloop_drift_quality_failures{model="churn"}')[0]["value"][1]) == 2
        assert float(query(prometheus.url, 'driftloop_drift_accuracy{model="churn"}')[0]["value"][1]) == \
            pytest.approx(run.accuracy)  # the realised accuracy beside the estimate

        # The shipped rules' conditions hold on the scraped series (their `for:` is minutes; promtool tests it).
        rules = alert_expressions()
        below = query(prometheus.url, rules["DriftloopEstimatedAccuracyBelowFloor"])
        assert [s["metric"]["model"] for s in below] == ["churn"]
        mostly_missing = query(prometheus.url, rules["DriftloopFeatureMostlyMissing"])
        assert [(s["metric"]["model"], s["metric"]["feature"]) for s in mostly_missing] == [("churn", "feature.f05")]
    finally:
        server.shutdown()
        thread.join()


def test_a_reference_without_labels_gives_quality_checks_only(broken_traffic, data_dir):
    """No labels in the reference window: no estimator (a stale one is removed), the quality checks still run."""
    settings = load_settings(data_dir=data_dir, label_horizon_hours=0.0001)  # feedback came 1 s late: too late
    stale = profile_dir(settings, "churn") / ESTIMATOR_FILE
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    folder, profile = build_profile(settings, "churn", NOW - timedelta(hours=4), NOW - timedelta(hours=2))
    assert not (folder / ESTIMATOR_FILE).exists()
    checks = window_checks(settings, folder, profile)
    assert checks.estimator is None and checks.quality is not None
    run = DriftMonitor(MonitorConfig(model="churn"), broken_traffic, profile, checks=checks).run_once(NOW)
    assert run.checks.estimate is None and run.checks.quality.failed
    assert run.event()["estimated_accuracy"] is None


def test_a_registered_champion_brings_an_estimator_fitted_on_the_rows_its_training_held_out(tmp_path):
    """A version registered by the retrain path (here the demo's first champion) gets a performance
    estimator beside its profile, calibrated on the validation rows only (the model never learnt from
    them), and the monitor of that champion loads it."""
    from models import labelled_rows

    from driftloop.demo.champion import train_first_champion
    from driftloop.drift.estimation import ConfidenceEstimator
    from driftloop.drift.profile import ReferenceProfile
    from driftloop.drift_service import reference_dir
    from driftloop.retrain.dataset import validation_mask

    settings = load_settings(data_dir=tmp_path / "data")
    table = labelled_rows(3000, seed=5)
    version = train_first_champion(settings, "churn", table, tmp_path / "model", steps=100)
    folder = reference_dir(settings, "churn")
    assert folder == open_registry(settings).profile_dir("churn", "champion") and version.version == 1
    estimator = ConfidenceEstimator.load(folder / ESTIMATOR_FILE)
    held_out = int(validation_mask(table["event_id"].to_pylist(), 0.2).sum())
    assert estimator.reference_rows_ == held_out < table.num_rows / 3
    assert window_checks(settings, folder, ReferenceProfile.load(folder)).estimator is not None
