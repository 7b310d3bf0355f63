"""Stop and restart the real broker while a model server logs events: nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time

from events import wait_until
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from driftloop.collector import EventLogger, decode


def test_events_logged_across_a_broker_restart_all_arrive(local_stack, kafka, kafka_settings):
    registry = CollectorRegistry()
    topics = kafka_settings.topics()
    logger = EventLogger(kafka, topics, registry, buffer_events=50_000, overflow="block", block_timeout_s=30)
    logged: list[str] = []
    sending = threading.Event()
    sending.set()

    def model_server() -> None:
        i = 0
        while sending.is_set():
            logged.append(logger.log_prediction(
                request_id=f"r{i}", model_name="churn", model_version="1",
                features={"x": float(i)}, output={"label": i % 2},
            ))
            i += 1
            time.sleep(0.0005)

    def acknowledged() -> float:
        return registry.get_sample_value("driftloop_producer_events_sent_total", {"topic": topics.predictions}) or 0

    thread = threading.Thread(target=model_server)
    thread.start()
    assert wait_until(lambda: acknowledged() >= 1000, 30), "events flow before the broker goes"
    assert local_stack.kafka.process.stop(), "the broker was running and is stopped (SIGTERM)"
    before_restart, acknowledged_before = len(logged), acknowledged()
    assert wait_until(lambda: len(logged) >= before_restart + 2000, 30), "the model server logs on while it is away"
    local_stack.up()  # brings back only what is down: the broker
    assert wait_until(lambda: acknowledged() > acknowledged_before + 2000, 60), "acknowledgements resume"
    sending.clear()
    thread.join()
    logger.flush(timeout_s=60)
    logger.close()

    assert len(logged) > before_restart > 0, "the model server kept logging while the broker was away"
    assert registry.get_sample_value("driftloop_producer_events_failed_total", {"topic": topics.predictions}) in (None, 0)
    assert registry.get_sample_value("driftloop_producer_events_dropped_total") == 0
    consumer = KafkaConsumer(
        topics.predictions, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=5000,
        group_id="restart-check",
    )
    arrived = [record.value for record in consumer]
    consumer.close()
    arrived_ids = {decode("prediction", value).event_id for value in arrived}
    assert arrived_ids == set(logged), f"{len(set(logged) - arrived_ids)} acknowledged events are missing"
    assert len(arrived) == len(logged), "the idempotent producer wrote no duplicate"
