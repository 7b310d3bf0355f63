"""`driftloop stack up | down | status`: idempotent, stops only its own, says what is missing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from driftloop.settings import load_settings
from driftloop.stack import LocalStack, MissingTool, PortTaken, Prometheus, ServiceExited, free_port


@pytest.fixture
def monitoring_only(tmp_path):
    """A second stack of Prometheus and Alertmanager alone (they start in well under a second)."""
    settings = load_settings(
        stack={
            "state_dir": tmp_path / "state",
            "start_kafka": False,
            "start_label_studio": False,
            "prometheus_port": free_port(),
            "alertmanager_port": free_port(),
        },
    )
    stack = LocalStack(settings)
    yield stack
    stack.down()


def test_up_is_idempotent_and_down_stops_what_up_started(monitoring_only):
    first = {row.name: row.pid for row in monitoring_only.up()}
    second = {row.name: row.pid for row in monitoring_only.up()}
    assert first == second and all(first.values())
    assert all(row.answers for row in monitoring_only.status())

    assert sorted(monitoring_only.down()) == ["alertmanager", "prometheus"]
    assert not any(row.answers or row.pid for row in monitoring_only.status())
    assert monitoring_only.down() == []


def test_down_leaves_a_foreign_process_alone(monitoring_only):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = monitoring_only.prometheus.process.pid_file
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(f"{stranger.pid}\n{monitoring_only.prometheus.home / 'prometheus.yml'}\n")
        assert monitoring_only.down() == []
        assert stranger.poll() is None, "down must not kill a process the stack did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_port_held_by_another_program_is_reported(monitoring_only):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", monitoring_only.settings.stack.alertmanager_port))
        holder.listen()
        with pytest.raises(PortTaken, match="DRIFTLOOP_STACK__ALERTMANAGER_PORT"):
            monitoring_only.up()


def test_a_service_that_dies_while_starting_ends_the_wait_at_once_with_its_log(monitoring_only):
    settings = monitoring_only.settings
    prometheus = Prometheus(settings.stack, settings.prometheus)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.stack.prometheus_port))  # Prometheus cannot bind it, and exits
        prometheus.start()
        began = time.monotonic()
        with pytest.raises(ServiceExited, match="(?s)prometheus exited during start.*address already in use"):
            prometheus.wait_ready(timeout_s=60)
    assert time.monotonic() - began < 20, "not the whole 60 s timeout"


def test_a_missing_binary_says_what_to_install(monitoring_only, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingTool, match="apt-get install prometheus"):
        monitoring_only.up()


def test_broker_restart_keeps_acknowledged_events(local_stack, kafka, kafka_settings):
    topic = kafka_settings.topic("dlq")
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for i in range(100):
        producer.send(topic, key=b"k", value=str(i).encode())
    producer.flush()
    producer.close()

    assert local_stack.kafka.process.stop()
    restarted = {row.name: row for row in local_stack.up()}
    assert restarted["kafka"].started_now and restarted["kafka"].answers
    assert not restarted["prometheus"].started_now

    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_beginning(partition)
    values = []
    for _ in range(20):
        for batch in consumer.poll(timeout_ms=500).values():
            values.extend(int(record.value) for record in batch)
        if len(values) >= 100:
            break
    consumer.close()
    assert values == list(range(100))
