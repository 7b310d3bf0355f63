"""The model server: predictions from the registry's champion, logged to a real Kafka, swapped when the alias moves."""

from __future__ import annotations

import os
import time

import orjson
import pytest
from events import run_cli, wait_until
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from world import FEATURES, register, world

from driftloop.collector import EventLogger
from driftloop.retrain import ModelRegistry
from driftloop.retrain.serving import create_server
from driftloop.stack import free_port

ROW = {name: 0.5 for name in FEATURES}


@pytest.fixture
def registry(tmp_path):
    registry = ModelRegistry.open(tmp_path / "registry")
    features, labels = world(300, "a", seed=0)
    register(registry, tmp_path, features, labels, alias="champion", reason="first champion")
    return registry


def logged_predictions(bootstrap: str, topic: str, expected: int, timeout_s: float = 30) -> list[dict]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found, deadline = [], time.monotonic() + timeout_s
        while len(found) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                found.extend(orjson.loads(record.value) for record in records)
        return found
    finally:
        consumer.close()


def metric(client: TestClient, name: str, **labels) -> float:
    """The value of one sample on /metrics (0 when it is not there), its labels in any order."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_one_request_and_a_batch_are_answered_named_and_logged(registry, kafka_settings, kafka):
    topics = kafka_settings.topics()
    metrics = CollectorRegistry()
    logger = EventLogger(kafka, topics, metrics, overflow="drop")
    app = create_server(registry=registry, model="churn", logger=logger, metrics_registry=metrics)
    with TestClient(app) as client:
        one = client.post("/v1/predict", json={"request_id": "r-1", "features": ROW})
        assert one.status_code == 200, one.text
        body = one.json()
        assert (body["request_id"], body["model"], body["version"]) == ("r-1", "churn", 1)
        assert body["label"] in ("0", "1") and sum(body["probabilities"].values()) == pytest.approx(1)
        batch = client.post("/v1/predict", json={"instances": [{"features": ROW}, {"request_id": "r-3", "features": {
            **ROW, "f0": -2.0}}]}).json()
        assert batch["version"] == 1 and len(batch["predictions"]) == 2
        assert batch["predictions"][1]["request_id"] == "r-3" and batch["predictions"][0]["request_id"]
        assert client.get("/v1/model").json()["features"] == FEATURES
        assert client.get("/healthz").json() == {"status": "ok", "model": "churn", "version": 1}
        assert metric(client, "driftloop_serve_request_seconds_count", model="churn", version="1") == 2
        assert metric(client, "driftloop_serve_predictions_total", model="churn", version="1") == 3
        logger.flush()
    events = logged_predictions(kafka, topics.predictions, 3)
    by_id = {event["request_id"]: event for event in events}
    assert set(by_id) == {"r-1", "r-3", batch["predictions"][0]["request_id"]}
    assert {event["model_version"] for event in events} == {"1"}
    assert by_id["r-3"]["features"]["f0"] == -2.0
    assert by_id["r-3"]["output"]["label"] == batch["predictions"][1]["label"]


@pytest.mark.parametrize(("body", "field", "says"), [
    ({"features": {k: v for k, v in ROW.items() if k != "f2"}}, "features.f2", "is missing"),
    ({"features": {**ROW, "colour": "red"}}, "features.colour", "is not a feature of this model"),
    ({"features": {**ROW, "f1": "high"}}, "features.f1", "must be a number"),
    ({"instances": [{"features": ROW}, {"features": {**ROW, "f3": "x"}}]}, "instances.1.features.f3", "must be a number"),
    ({"features": ROW, "instances": [{"features": ROW}]}, "", "either 'features'"),
    ({"instances": []}, "instances", "at least 1"),
], ids=["missing", "unknown", "wrong-type", "batch-row", "both", "empty-batch"])
def test_a_bad_request_is_a_422_that_names_the_field(registry, body, field, says):
    app = create_server(registry=registry, model="churn", logger=None, metrics_registry=CollectorRegistry())
    with TestClient(app) as client:
        answer = client.post("/v1/predict", json=body)
        assert answer.status_code == 422
        [error] = answer.json()["errors"]
        assert error["field"] == field and says in error["message"], error
        assert client.post("/v1/predict", content=b'{"features": {"f0": NaN}}',
                           headers={"content-type": "application/json"}).status_code == 422
        assert metric(client, "driftloop_serve_responses_total", model="churn", code="422") == 2


def test_the_champion_is_swapped_when_the_alias_moves_and_a_broken_version_is_never_served(registry, tmp_path):
    features, labels = world(300, "b", seed=1)
    second = register(registry, tmp_path, features, labels)
    third = register(registry, tmp_path, features, labels, seed=3)
    metrics = CollectorRegistry()
    app = create_server(registry=registry, model="churn", logger=None, metrics_registry=metrics,
                        reload_interval_s=0.05)
    with TestClient(app) as client:
        assert client.post("/v1/predict", json={"features": ROW}).json()["version"] == 1
        registry.set_champion("churn", second.version, expected=1, reason="test: by hand")
        seen = []

        def answered_by_second():
            answer = client.post("/v1/predict", json={"features": ROW})
            seen.append(answer.status_code)
            return answer.json()["version"] == second.version

        assert wait_until(answered_by_second, timeout_s=30, interval_s=0.05)
        assert set(seen) == {200}
        weights = registry.artifacts.path(third.artifact_sha256) / "weights.pt"
        weights.write_bytes(weights.read_bytes()[:-10])  # truncated: its sha256 no longer matches
        registry.set_champion("churn", third.version, expected=second.version, reason="test: a broken one")
        assert wait_until(lambda: metric(client, "driftloop_serve_reloads_total", model="churn",
                                         outcome="failed") == 1, timeout_s=30)
        assert client.post("/v1/predict", json={"features": ROW}).json()["version"] == second.version
        assert metric(client, "driftloop_serve_model_version", model="churn") == second.version


def test_a_kafka_outage_never_fails_a_prediction_and_counts_the_logs_it_drops(registry, kafka_settings):
    metrics = CollectorRegistry()
    nobody = f"127.0.0.1:{free_port()}"  # no broker there: Kafka is down for this server
    logger = EventLogger(nobody, kafka_settings.topics(), metrics, buffer_events=5, overflow="drop",
                         connect_timeout_s=1)
    app = create_server(registry=registry, model="churn", logger=logger, metrics_registry=metrics,
                        close_timeout_s=1)
    with TestClient(app) as client:
        answers = [client.post("/v1/predict", json={"features": ROW}) for _ in range(20)]
        assert {answer.status_code for answer in answers} == {200}
        assert metric(client, "driftloop_serve_log_dropped_total", model="churn", reason="buffer_full") == 15
        assert metric(client, "driftloop_producer_buffer_events") == 5


def test_serve_without_a_champion_says_so_in_one_line(tmp_path):
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(tmp_path / "data")}
    done = run_cli("serve", "--model", "nobody", env=env)
    assert done.returncode == 1
    assert "has no champion" in done.stderr and "Traceback" not in done.stderr
