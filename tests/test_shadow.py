"""The shadow scorer on a real Kafka, writing the store's `shadow` view: every prediction scored once, restarts included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from events import group_caught_up, produce, wait_until
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from world import FEATURES, prediction_event, register, world

from driftloop.collector import Store, StoreWriter, StoreWriterConfig
from driftloop.retrain import ModelRegistry
from driftloop.retrain.decisions import GateLedger
from driftloop.retrain.shadow import ShadowConfig, ShadowScorer, shadow_event_id


@pytest.fixture
def registry(data_dir, tmp_path):
    registry = ModelRegistry.open(data_dir / "registry")
    features, labels = world(300, "a", seed=0)
    register(registry, tmp_path, features, labels, alias="champion", reason="first champion")
    return registry


def traffic(count: int, seed: int, model: str = "churn") -> list[dict]:
    features, _ = world(count, "b", seed)
    return [prediction_event(f"{model}-{seed}-{i}", {name: float(features[name][i]) for name in FEATURES}, "1", 1,
                             model=model) for i in range(count)]


def scorer_for(kafka, kafka_settings, registry, metrics=None, **options) -> ShadowScorer:
    config = ShadowConfig(kafka, kafka_settings.topics(), "churn", start_from="earliest", refresh_s=0.2, **options)
    return ShadowScorer(config, registry, GateLedger(registry.database), metrics or CollectorRegistry())


def end_offsets(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


class Writing:
    """The real store writer on a thread, for the length of a `with` block."""

    def __init__(self, kafka, kafka_settings, data_dir) -> None:
        config = StoreWriterConfig(kafka, kafka_settings.topics(), data_dir / "store", group_id=f"w-{time.time_ns()}",
                                   batch_seconds=0.2)
        self.writer = StoreWriter(config, CollectorRegistry())
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.writer.run, args=(self.stop,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join(60)


def test_the_challenger_answers_every_logged_prediction_of_its_model_once(kafka, kafka_settings, registry, data_dir,
                                                                            tmp_path):
    features, labels = world(300, "b", seed=2)
    challenger = register(registry, tmp_path, features, labels, alias="challenger", reason="episode: after the drift")
    logged = traffic(400, seed=3)
    produce(kafka, kafka_settings.topic("predictions"), logged + traffic(50, seed=4, model="other"))
    metrics = CollectorRegistry()
    scorer = scorer_for(kafka, kafka_settings, registry, metrics)
    try:
        assert wait_until(lambda: scorer.step() >= 0 and metrics.get_sample_value(
            "driftloop_shadow_scored_total", {"model": "churn", "version": str(challenger.version)}) == 400,
            timeout_s=120, interval_s=0)
        assert metrics.get_sample_value("driftloop_shadow_lag", {"model": "churn"}) == 0
    finally:
        scorer.close()
    store = Store(data_dir / "store")
    with Writing(kafka, kafka_settings, data_dir):
        assert wait_until(lambda: store.shadow("churn").num_rows == 400, timeout_s=120)
    shadow = store.shadow("churn", version=str(challenger.version))
    by_request = {row["request_id"]: row for row in shadow.to_pylist()}
    assert set(by_request) == {event["request_id"] for event in logged}, "the same request ids, none of `other`"
    expected = registry.load("churn", challenger.version).predictor.predict(
        [event["features"] for event in logged])
    assert [by_request[event["request_id"]]["label"] for event in logged] == expected.tolist()
    first = logged[0]
    row = by_request[first["request_id"]]
    assert row["event_id"] == shadow_event_id(first["event_id"], challenger.version)
    assert row["timestamp"] == datetime.fromisoformat(first["timestamp"]).astimezone(UTC)
    assert store.predictions("churn").num_rows == 400, "the champion's own predictions are untouched"


def test_without_a_challenger_the_scorer_waits_and_says_so(kafka, kafka_settings, registry, tmp_path):
    produce(kafka, kafka_settings.topic("predictions"), traffic(100, seed=5))
    metrics = CollectorRegistry()
    scorer = scorer_for(kafka, kafka_settings, registry, metrics)
    ledger = GateLedger(registry.database)
    try:
        for _ in range(5):
            assert scorer.step() == 0
        status = ledger.shadow_status("churn")
        assert status.state == "waiting" and "no challenger" in status.reason
        assert metrics.get_sample_value("driftloop_shadow_state", {"model": "churn", "state": "waiting"}) == 1
        assert end_offsets(kafka, kafka_settings.topic("shadow")) == 0
        features, labels = world(300, "b", seed=2)
        challenger = register(registry, tmp_path, features, labels, alias="challenger", reason="registered")
        assert wait_until(lambda: scorer.step() >= 0 and metrics.get_sample_value(
            "driftloop_shadow_scored_total", {"model": "churn", "version": str(challenger.version)}) == 100,
            timeout_s=120, interval_s=0), "nothing logged while it waited was skipped"
        assert ledger.shadow_status("churn").state == "scoring"
    finally:
        scorer.close()


def test_a_challenger_whose_features_differ_from_the_traffic_is_refused_and_scores_nothing(
        kafka, kafka_settings, registry, tmp_path):
    features, labels = world(300, "b", seed=2)
    features["tenure"] = np.arange(300.0)  # a feature the traffic (the champion's inputs) does not carry
    stranger = register(registry, tmp_path, features, labels, alias="challenger", reason="registered")
    produce(kafka, kafka_settings.topic("predictions"), traffic(100, seed=6))
    metrics = CollectorRegistry()
    scorer = scorer_for(kafka, kafka_settings, registry, metrics)
    ledger = GateLedger(registry.database)
    try:
        for _ in range(5):
            assert scorer.step() == 0
    finally:
        scorer.close()
    reason = ledger.refusal("churn", stranger.version)
    assert reason is not None and "['tenure']" in reason and "does not carry" in reason
    assert ledger.shadow_status("churn").state == "refused"
    assert metrics.get_sample_value("driftloop_shadow_refused_total", {"model": "churn",
                                                                       "version": str(stranger.version)}) == 1
    assert end_offsets(kafka, kafka_settings.topic("shadow")) == 0


def test_killed_with_sigkill_and_restarted_every_prediction_is_scored_exactly_once(
        kafka, kafka_settings, registry, data_dir, tmp_path):
    features, labels = world(300, "b", seed=2)
    challenger = register(registry, tmp_path, features, labels, alias="challenger", reason="registered")
    logged = traffic(4000, seed=7)
    produce(kafka, kafka_settings.topic("predictions"), logged)
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(data_dir), "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka,
           "DRIFTLOOP_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix, "DRIFTLOOP_STACK__STATE_DIR": str(tmp_path),
           "DRIFTLOOP_SHADOW__START_FROM": "earliest", "DRIFTLOOP_SHADOW__POLL_RECORDS": "100"}
    command = [sys.executable, "-m", "driftloop.cli", "shadow", "run", "--model", "churn"]
    shadow_topic = kafka_settings.topic("shadow")
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: end_offsets(kafka, shadow_topic) >= 500 or first.poll() is not None,
                          timeout_s=120, interval_s=0.05)
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert end_offsets(kafka, shadow_topic) < 4000, "killed mid-way"
    second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: group_caught_up(kafka, "driftloop-shadow-churn", kafka_settings.topic("predictions")),
                          timeout_s=180), "the restarted scorer caught up"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    store = Store(data_dir / "store")
    with Writing(kafka, kafka_settings, data_dir):
        assert wait_until(lambda: end_offsets(kafka, shadow_topic) >= 4000
                          and store.shadow("churn").num_rows == 4000, timeout_s=120)
    shadow = store.shadow("churn", version=str(challenger.version))
    assert shadow.num_rows == 4000 and len(set(shadow["request_id"].to_pylist())) == 4000
    assert set(shadow["request_id"].to_pylist()) == {event["request_id"] for event in logged}
