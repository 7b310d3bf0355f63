"""The drift monitor end to end: store windows in, Prometheus gauges and drift events out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from events import feedback_for, prediction_documents, produce, run_cli, stored_counts, wait_until
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry, start_http_server

from driftloop.collector.store import Store
from driftloop.collector.store_writer import StoreWriter, StoreWriterConfig
from driftloop.drift.monitor import DriftMetrics, DriftMonitor, MonitorConfig
from driftloop.drift.multivariate import DomainClassifierTest
from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.sequential import make_detector
from driftloop.stack import free_port, register_scrape_target, unregister_scrape_target

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def store_with_traffic(kafka, kafka_settings, data_dir):
    """Reference traffic three hours ago; in the last hour, traffic with 3σ shifts in 12 of 20 features,
    labelled with a model that is now wrong half of the time."""
    topics = kafka_settings.topics()
    writer = StoreWriter(
        StoreWriterConfig(kafka, topics, data_dir / "store", group_id=f"{kafka_settings.topic_prefix}w", batch_seconds=0.3),
        CollectorRegistry(),
    )
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    reference = prediction_documents(2000, seed=1, start=NOW - timedelta(hours=3))
    current = prediction_documents(1000, seed=2, start=NOW - timedelta(minutes=30), shift=3.0, shifted=12)
    feedback = feedback_for(current, delay=timedelta(seconds=1))
    for i, document in enumerate(feedback):
        document["label"] = document["label"] if i % 2 else 1 - document["label"]  # half of them wrong
    produce(kafka, topics.predictions, reference + current)
    produce(kafka, topics.feedback, feedback)
    store = Store(data_dir / "store")
    assert wait_until(lambda: stored_counts(store) == (3000, 3000) and stored_counts(store, "feedback")[0] == 1000, 30)
    yield store
    stop.set()
    thread.join(timeout=30)


def query(prometheus_url: str, promql: str) -> list[dict]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def test_monitor_exports_drift_to_prometheus_and_publishes_a_drift_event(
    store_with_traffic, kafka, kafka_settings, prometheus
):
    store = store_with_traffic
    reference = store.predictions("churn", NOW - timedelta(hours=4), NOW - timedelta(hours=2))
    profile = ReferenceProfile.build(reference)
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    topic = kafka_settings.topic("drift-events")
    monitor = DriftMonitor(
        MonitorConfig(model="churn", window=timedelta(hours=1)),
        store, profile,
        multivariate=DomainClassifierTest(seed=0), reference_sample=reference,
        detectors={"adwin": lambda: make_detector("adwin")},
        publish=lambda key, value: producer.send(topic, key=key, value=value).get(timeout=10),
    )
    run = monitor.run_once(NOW)
    assert monitor.events.flush(30), "the drift event was acknowledged"
    monitor.close()
    producer.close()

    assert run.rows == 1000 and run.note == ""
    drifted = {r.feature for r in run.window.results if r.drifted}
    assert {f"feature.f{i:02d}" for i in range(12)} <= drifted
    assert run.drifted and run.window.share >= 0.5
    assert run.multivariate.drifted and run.multivariate.auc > 0.9
    assert run.accuracy == pytest.approx(0.5, abs=0.05)
    assert run.label_delay_s == pytest.approx(1.0, abs=0.01), "every label came 1 s after its prediction"

    registry = CollectorRegistry()
    registry.register(DriftMetrics([monitor]))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    address = f"127.0.0.1:{server.server_port}"
    try:
        register_scrape_target(prometheus.targets_dir, "drift-test", address)
        result = wait_until(lambda: query(prometheus.url, 'driftloop_drift_dataset_drift{model="churn"}'), 30)
        assert result and float(result[0]["value"][1]) == 1.0
        scores = query(prometheus.url, 'driftloop_drift_feature_drifted{model="churn"} == 1')
        assert {s["metric"]["feature"] for s in scores} == drifted
        assert float(query(prometheus.url, 'driftloop_drift_share{model="churn"}')[0]["value"][1]) == run.window.share
        delay = query(prometheus.url, 'driftloop_drift_label_delay_seconds{model="churn"}')
        assert float(delay[0]["value"][1]) == pytest.approx(1.0, abs=0.01)
        # p-values and distances are separate families; the reference has 2000 rows, so these are distances
        distances = query(prometheus.url, 'driftloop_drift_feature_distance{model="churn"}')
        assert {d["metric"]["feature"] for d in distances} == {r.feature for r in run.window.results if not r.p_value}
        assert all("method" not in d["metric"] for d in distances)
    finally:
        server.shutdown()
        thread.join()
        unregister_scrape_target(prometheus.targets_dir, "drift-test", address)

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    events = [orjson.loads(record.value) for record in consumer]
    consumer.close()
    assert len(events) == 1 and events[0]["model"] == "churn" and events[0]["dataset_drift"] is True
    assert set(events[0]["drifted_features"]) == drifted


def test_a_window_too_small_is_reported_not_scored(store_with_traffic):
    store = store_with_traffic
    profile = ReferenceProfile.build(store.predictions("churn", NOW - timedelta(hours=4), NOW - timedelta(hours=2)))
    monitor = DriftMonitor(MonitorConfig(model="churn", window=timedelta(hours=1), min_rows=5000), store, profile)
    run = monitor.run_once(NOW)
    assert run.window is None and not run.drifted
    assert "fewer than min_rows" in run.note
    empty = DriftMonitor(MonitorConfig(model="nobody"), store, profile).run_once(NOW)
    assert empty.rows == 0 and empty.window is None


def test_drift_commands_profile_report_and_monitor(store_with_traffic, kafka, kafka_settings, data_dir):
    port = free_port()
    env = {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(data_dir),
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "DRIFTLOOP_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "DRIFTLOOP_STACK__START_PROMETHEUS": "false",
        "DRIFTLOOP_DRIFT__METRICS_PORT": str(port),
        "DRIFTLOOP_DRIFT__INTERVAL_S": "2",
    }
    reference_end = (NOW - timedelta(hours=2)).isoformat()
    profiled = run_cli("drift", "profile", "--model", "churn", "--window", "2h", "--end", reference_end, env=env)
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    assert "profiled 2000 rows" in profiled.stdout

    reported = run_cli("drift", "report", "--model", "churn", "--window", "1h", "--end", NOW.isoformat(), env=env)
    assert reported.returncode == 0, reported.stdout + reported.stderr
    html = next((data_dir / "reports" / "churn").glob("*.html"))
    assert html.stat().st_size > 10_000 and html.with_suffix(".json").is_file()
    listed = json.loads(run_cli("drift", "reports", "--model", "churn", "--json", env=env).stdout)
    assert [report["name"] for report in listed] == [html.stem]

    missing = run_cli("drift", "run", "--model", "nobody", env=env)
    assert missing.returncode == 1 and "driftloop drift profile --model nobody" in missing.stderr

    monitor = subprocess.Popen([sys.executable, "-m", "driftloop.cli", "drift", "run", "--model", "churn"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def dataset_drift() -> float | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    text = response.read().decode()
            except OSError:
                return None
            values = [line.rsplit(" ", 1)[1] for line in text.splitlines()
                      if line.startswith('driftloop_drift_dataset_drift{model="churn"}')]
            return float(values[0]) if values else None

        assert wait_until(dataset_drift, 60) == 1.0
    finally:
        monitor.send_signal(signal.SIGTERM)
        output = monitor.communicate(timeout=60)[0].decode()
    assert monitor.returncode == 0, output


def test_a_shifted_window_gives_exactly_one_retrain_trigger_through_prometheus_and_alertmanager(
    store_with_traffic, tmp_path
):
    """The whole alert path as it runs: the monitor's gauge, the shipped rule, the shipped routing (repeat
    interval of days), the retrain service's webhook; the alert keeps firing and nothing is sent twice."""
    from test_retrain_service import alerting_pair, episodes_of, retrain_service, triggers_of

    store = store_with_traffic
    profile = ReferenceProfile.build(store.predictions("churn", NOW - timedelta(hours=4), NOW - timedelta(hours=2)))
    monitor = DriftMonitor(MonitorConfig(model="churn", window=timedelta(hours=1), interval_s=1), store, profile)
    registry = CollectorRegistry()
    registry.register(DriftMetrics([monitor]))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()
    monitoring = threading.Thread(target=monitor.run, args=(stop,), daemon=True)
    port = free_port()
    data = tmp_path / "data"
    waiting = {"DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "1000000", "DRIFTLOOP_RETRAIN__LABEL_DEADLINE_S": "3600"}
    try:
        with retrain_service(tmp_path, port, waiting) as (_, base), \
                alerting_pair(tmp_path, f"{base}/v1/alerts", [f"127.0.0.1:{server.server_port}", f"127.0.0.1:{port}"],
                              repeat_interval_s=None) as (prometheus, alertmanager):
            monitoring.start()
            assert wait_until(lambda: triggers_of(data, "churn"), 120), "the drift alert reached the retrain service"
            first = datetime.now(UTC)

            def alert_refreshed_since_the_trigger() -> bool:
                with urllib.request.urlopen(f"{alertmanager}/api/v2/alerts", timeout=5) as response:
                    alerts = [a for a in json.load(response) if a["labels"].get("model") == "churn"]
                return any(datetime.fromisoformat(a["updatedAt"]) > first + timedelta(seconds=10) for a in alerts)

            # Prometheus re-sends the firing alert every second; Alertmanager must not notify again.
            assert wait_until(alert_refreshed_since_the_trigger, 60), "the alert kept firing"
            assert float(query(prometheus, 'driftloop_drift_dataset_drift{model="churn"}')[0]["value"][1]) == 1.0
            (trigger,) = triggers_of(data, "churn")
            assert trigger.decision == "started" and trigger.source == "alertmanager"
            (episode,) = episodes_of(data, "churn")
            assert episode.id == trigger.episode_id and episode.step == "labelling"
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
                scraped = response.read().decode()
            # every prediction of the window is labelled already: the episode's batch has nothing to send
            assert 'driftloop_retrain_labelling_batches_total{model="churn",result="empty"} 1.0' in scraped
            assert 'driftloop_retrain_episode_step{model="churn",step="labelling"} 1.0' in scraped
    finally:
        stop.set()
        if monitoring.is_alive():
            monitoring.join(timeout=30)
        server.shutdown()
        thread.join()
