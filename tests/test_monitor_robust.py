"""The drift monitor on a bad day: Kafka stops at the moment of a drift, Kafka or Prometheus were never
there, runs fail, the monitor restarts. Each against the real broker, Prometheus and a store of Parquet files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from events import feedback_for, prediction_documents, wait_until, write_to_store
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from river import drift as river_drift

from driftloop.collector.store import Store
from driftloop.drift.monitor import DriftMetrics, DriftMonitor, MonitorConfig
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.sequential import make_detector
from driftloop.drift_service import build_profile
from driftloop.settings import load_settings
from driftloop.stack import free_port, register_scrape_target, unregister_scrape_target

NOW = datetime.now(UTC).replace(microsecond=0)
PREDICTIONS, FEEDBACK = "t.predictions", "t.feedback"


def scrape(port: int) -> dict[tuple, float]:
    """{(sample name, sorted label items): value} of a /metrics endpoint; {} while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: dict, name: str, **labels) -> float | None:
    return metrics.get((name, tuple(sorted(labels.items()))))


def stored_traffic(store_dir, model: str) -> int:
    """Reference traffic three hours ago and undrifted traffic in the last half hour; returns the next offset."""
    offset = write_to_store(store_dir, "prediction", prediction_documents(2000, model=model, seed=1,
                                                                          start=NOW - timedelta(hours=3)), PREDICTIONS)
    return write_to_store(store_dir, "prediction", prediction_documents(500, model=model, seed=2,
                                                                        start=NOW - timedelta(minutes=30)),
                          PREDICTIONS, first_offset=offset)


def drift_arrives(store_dir, model: str, offset: int) -> int:
    """3000 predictions shifted by 3 sigma in 12 of 20 features, in the last ten minutes: the window now drifts."""
    shifted = prediction_documents(3000, model=model, seed=3, start=datetime.now(UTC) - timedelta(minutes=10),
                                   shift=3.0, shifted=12)
    return write_to_store(store_dir, "prediction", shifted, PREDICTIONS, first_offset=offset)


def monitor_env(data_dir, bootstrap: str, prefix: str, state_dir, port: int) -> dict:
    return {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(data_dir),
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "DRIFTLOOP_KAFKA__TOPIC_PREFIX": prefix,
        "DRIFTLOOP_STACK__STATE_DIR": str(state_dir),
        "DRIFTLOOP_DRIFT__METRICS_PORT": str(port),
        "DRIFTLOOP_DRIFT__INTERVAL_S": "1",
        "DRIFTLOOP_DRIFT__MULTIVARIATE": "false",
        "DRIFTLOOP_DRIFT__PUBLISH_TIMEOUT_S": "3",
    }


def start_monitor(model: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "driftloop.cli", "drift", "run", "--model", model], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_monitor(process: subprocess.Popen) -> str:
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=90)[0].decode()


def drift_events(bootstrap: str, topic: str) -> list[dict]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        events = [orjson.loads(record.value) for record in consumer]
    finally:
        consumer.close()
    unique = {event["event_id"]: event for event in events}  # a retried send may have been written twice
    return sorted(unique.values(), key=lambda event: event["time"])


def test_the_monitor_outlives_a_broker_outage_at_the_moment_of_a_drift(
    local_stack, kafka, kafka_settings, stack_settings, data_dir
):
    model = "outage"
    offset = stored_traffic(data_dir / "store", model)
    settings = load_settings(data_dir=data_dir)
    build_profile(settings, model, NOW - timedelta(hours=4), NOW - timedelta(hours=2))
    port = free_port()
    env = monitor_env(data_dir, kafka, kafka_settings.topic_prefix, stack_settings.stack.state_dir, port)
    target = local_stack.prometheus.targets_dir / f"drift-{model}.json"
    monitor = start_monitor(model, env)
    try:
        def first_event_sent():
            metrics = scrape(port)
            return value(metrics, "driftloop_drift_events_published_total", model=model) == 1 and metrics
        metrics = wait_until(first_event_sent, 90)
        assert metrics and value(metrics, "driftloop_drift_dataset_drift", model=model) == 0.0
        assert target.exists(), "the monitor registered itself with the local Prometheus"

        assert local_stack.kafka.process.stop(), "the broker was running and is stopped"
        drift_arrives(data_dir / "store", model, offset)

        def drift_owed():
            metrics = scrape(port)
            return (value(metrics, "driftloop_drift_dataset_drift", model=model) == 1.0
                    and value(metrics, "driftloop_drift_events_owed", model=model) == 1
                    and value(metrics, "driftloop_drift_event_publish_failures_total", model=model) >= 1 and metrics)
        metrics = wait_until(drift_owed, 90)
        assert metrics, "the drift was seen and its event is owed while Kafka is away"
        runs = value(metrics, "driftloop_drift_runs_total", model=model)
        assert wait_until(lambda: (value(scrape(port), "driftloop_drift_runs_total", model=model) or 0) >= runs + 3, 60), \
            "the monitor keeps running without Kafka"
        assert monitor.poll() is None
        assert value(scrape(port), "driftloop_drift_run_failures_total", model=model) == 0, "no run failed for Kafka"

        bring_back(local_stack)  # the broker comes back
        assert wait_until(lambda: value(scrape(port), "driftloop_drift_events_owed", model=model) == 0, 180), \
            "the owed event is sent once Kafka is back"
        events = drift_events(kafka, kafka_settings.topic("drift-events"))
        assert [event["dataset_drift"] for event in events] == [False, True]
        assert {f"feature.f{i:02d}" for i in range(12)} <= set(events[1]["drifted_features"])
    finally:
        bring_back(local_stack)  # leave the session's broker running, whatever happened
        output = stop_monitor(monitor)
    assert monitor.returncode == 0, output
    assert not target.exists(), "a monitor stopped on purpose withdraws its scrape target"
    assert wait_until(lambda: f"drift-{model}" not in scraped_services(local_stack.prometheus.url), 30), \
        "and Prometheus stops scraping it: no target left down forever"


def bring_back(local_stack) -> None:
    """Start the stopped broker again; on a loaded machine it may need longer than the stack's 60 s."""
    try:
        local_stack.up()
    except TimeoutError:
        local_stack.kafka.wait_ready(timeout_s=300)
        local_stack.up()


def scraped_services(prometheus_url: str) -> set[str]:
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/targets?state=active", timeout=5) as response:
        targets = json.load(response)["data"]["activeTargets"]
    return {target["labels"].get("service") for target in targets}


def test_the_monitor_starts_without_kafka_or_prometheus_and_sends_what_it_owes_later(
    kafka, kafka_settings, data_dir, tmp_path
):
    model = "no-kafka"
    offset = stored_traffic(data_dir / "store", model)
    drift_arrives(data_dir / "store", model, offset)
    settings = load_settings(data_dir=data_dir)
    build_profile(settings, model, NOW - timedelta(hours=4), NOW - timedelta(hours=2))
    port = free_port()
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = monitor_env(data_dir, nowhere, kafka_settings.topic_prefix, tmp_path / "no-stack", port)
    monitor = start_monitor(model, env)
    try:
        def owed():
            metrics = scrape(port)
            return (value(metrics, "driftloop_drift_dataset_drift", model=model) == 1.0
                    and value(metrics, "driftloop_drift_events_owed", model=model) == 1
                    and (value(metrics, "driftloop_drift_runs_total", model=model) or 0) >= 3 and metrics)
        assert wait_until(owed, 90), "it runs, judges the window and owes the event"
        assert monitor.poll() is None
    finally:
        output = stop_monitor(monitor)
    assert monitor.returncode == 0, output
    outbox = json.loads((data_dir / "monitor" / model / "outbox.json").read_text())
    assert len(outbox["owed"]) == 1, "the owed event is kept on disk"
    owed_id = orjson.loads(outbox["owed"][0][1])["event_id"]

    env["DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS"] = kafka  # next start: Kafka is there
    monitor = start_monitor(model, env)
    try:
        assert wait_until(lambda: value(scrape(port), "driftloop_drift_events_owed", model=model) == 0, 90)
    finally:
        output = stop_monitor(monitor)
    assert monitor.returncode == 0, output
    events = drift_events(kafka, kafka_settings.topic("drift-events"))
    assert [event["event_id"] for event in events] == [owed_id], "sent once, and the restart added no duplicate"


def labelled_traffic(store_dir, model: str, count: int, start: datetime, wrong_every: int, seed: int,
                     offsets: tuple[int, int]) -> tuple[int, int]:
    """`count` predictions from `start` and their labels a second later, every `wrong_every`-th one wrong."""
    predictions = prediction_documents(count, model=model, seed=seed, start=start)
    feedback = feedback_for(predictions, delay=timedelta(seconds=1))
    for i, document in enumerate(feedback):
        if wrong_every and i % wrong_every == 0:
            document["label"] = 1 - document["label"]
    return (write_to_store(store_dir, "prediction", predictions, PREDICTIONS, first_offset=offsets[0]),
            write_to_store(store_dir, "feedback", feedback, FEEDBACK, first_offset=offsets[1]))


def monitor_of(store: Store, model: str, state_dir, detectors: dict) -> DriftMonitor:
    profile = ReferenceProfile.build(store.predictions(model, NOW - timedelta(hours=5), NOW - timedelta(hours=3)))
    return DriftMonitor(MonitorConfig(model, window=timedelta(hours=1)), store, profile, detectors=detectors,
                        state_dir=state_dir)


def states(monitor: DriftMonitor) -> dict:
    return {name: tracked.detector.state_dict() for name, tracked in monitor.detectors.items()}


def test_a_restart_resumes_the_detectors_instead_of_replaying_the_labels(tmp_path):
    store = Store(tmp_path / "store")
    offsets = labelled_traffic(store.store_dir, "churn", 2000, NOW - timedelta(hours=2), 10, 1, (0, 0))
    detectors = {"adwin": lambda: make_detector("adwin"), "cusum": lambda: make_detector("cusum")}
    first = monitor_of(store, "churn", tmp_path / "state", detectors)
    assert first.run_once(NOW).labels == 2000, "a first start reads the labels of the horizon once"

    resumed = monitor_of(store, "churn", tmp_path / "state", detectors)
    assert states(resumed) == states(first), "the detectors resume exactly where they were"
    assert resumed.run_once(NOW + timedelta(minutes=1)).labels == 0, "nothing is read again"
    labelled_traffic(store.store_dir, "churn", 100, NOW - timedelta(minutes=5), 10, 2, offsets)
    assert resumed.run_once(NOW + timedelta(minutes=2)).labels == 100, "only what arrived since"

    (tmp_path / "state" / "state.json").write_text("{ half a file")  # not ours: a crash cannot make one (atomic writes)
    afresh = monitor_of(store, "churn", tmp_path / "state", detectors)
    assert afresh.run_once(NOW + timedelta(minutes=3)).labels == 2100, "an unreadable state: a first start again"


def test_a_detector_that_cannot_snapshot_is_replayed_from_its_tail(tmp_path):
    store = Store(tmp_path / "store")
    labelled_traffic(store.store_dir, "churn", 3000, NOW - timedelta(hours=2), 10, 1, (0, 0))
    detectors = {"river_adwin": river_drift.ADWIN}  # River's: no state_dict()
    first = monitor_of(store, "churn", tmp_path / "state", detectors)
    first.run_once(NOW)
    resumed = monitor_of(store, "churn", tmp_path / "state", detectors)
    before, after = first.detectors["river_adwin"].detector, resumed.detectors["river_adwin"].detector
    assert after.width == before.width > 0 and after.estimation == before.estimation


def test_failed_runs_are_counted_and_leave_the_drift_gauges_as_judged(tmp_path):
    store = Store(tmp_path / "store")
    labelled_traffic(store.store_dir, "churn", 2000, NOW - timedelta(hours=5), 0, 1, (0, 0))
    labelled_traffic(store.store_dir, "churn", 600, NOW - timedelta(minutes=20), 0, 2, (2000, 2000))
    monitor = monitor_of(store, "churn", None, {})
    registry = CollectorRegistry()
    registry.register(DriftMetrics([monitor]))
    assert not monitor.run_once(NOW).failed
    judged_at = registry.get_sample_value("driftloop_drift_last_success_timestamp_seconds", {"model": "churn"})

    broken = store.store_dir / "predictions" / "model=churn" / NOW.strftime("date=%Y-%m-%d/hour=%H") / "x+0+9+9.parquet"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_bytes(b"not parquet")
    for minute in (1, 2):
        assert monitor.run_once(NOW + timedelta(minutes=minute)).failed
    assert registry.get_sample_value("driftloop_drift_runs_total", {"model": "churn"}) == 3
    assert registry.get_sample_value("driftloop_drift_run_failures_total", {"model": "churn"}) == 2
    assert registry.get_sample_value("driftloop_drift_last_success_timestamp_seconds", {"model": "churn"}) == judged_at
    assert registry.get_sample_value("driftloop_drift_last_run_timestamp_seconds", {"model": "churn"}) > judged_at
    assert registry.get_sample_value("driftloop_drift_dataset_drift", {"model": "churn"}) == 0.0, "still shown"
    broken.unlink()
    assert not monitor.run_once(NOW + timedelta(minutes=3)).failed


def alerts(prometheus_url: str, name: str, **labels) -> list[dict]:
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/alerts", timeout=5) as response:
        found = json.load(response)["data"]["alerts"]
    return [a for a in found if a["labels"]["alertname"] == name and all(a["labels"].get(k) == v for k, v in labels.items())]


def query(prometheus_url: str, promql: str) -> list[dict]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


@pytest.mark.parametrize("model", ["alarming"])
def test_the_accuracy_and_monitor_down_alerts_fire_on_the_real_prometheus(prometheus, tmp_path, model):
    store = Store(tmp_path / "store")
    offsets = labelled_traffic(store.store_dir, model, 2000, NOW - timedelta(hours=5), 0, 1, (0, 0))
    monitor = monitor_of(store, model, None, {"ddm": lambda: make_detector("ddm")})
    monitor.run_once(NOW)  # the first start reads 2000 right labels: no alarm
    registry = CollectorRegistry()
    registry.register(DriftMetrics([monitor]))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    address, name = f"127.0.0.1:{server.server_port}", f"drift-{model}"
    register_scrape_target(prometheus.targets_dir, name, address)
    try:
        assert wait_until(lambda: query(prometheus.url, f'driftloop_drift_sequential_alarms_total{{model="{model}"}} == 0'), 30)
        labelled_traffic(store.store_dir, model, 300, NOW - timedelta(minutes=30), 1, 2, offsets)  # every label wrong
        run = monitor.run_once(NOW + timedelta(minutes=1))
        assert run.alarms == {"ddm": True}
        fired = wait_until(lambda: alerts(prometheus.url, "DriftloopAccuracyDrop", model=model, detector="ddm"), 30)
        assert fired and fired[0]["state"] in ("pending", "firing")
        assert fired[0]["labels"]["action"] == "retrain" and fired[0]["labels"]["severity"] == "critical"

        server.shutdown()  # the monitor dies without withdrawing its target
        thread.join()
        down = wait_until(lambda: alerts(prometheus.url, "DriftloopMonitorDown", model=model), 30)
        assert down and down[0]["state"] in ("pending", "firing")
    finally:
        server.shutdown()
        unregister_scrape_target(prometheus.targets_dir, name, address)
