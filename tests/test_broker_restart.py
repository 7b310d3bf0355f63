"""Stop and restart the real broker while a model server logs events: nothing acknowledged is lost."""

from __future__ import annotations

import threading
import time

import httpx
from events import START, group_caught_up, produce_raw, wait_until
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry
from test_api import serving

from driftloop.collector import EventLogger, FeedbackEvent, Store, StoreWriter, StoreWriterConfig, create_app, decode
from driftloop.curation.labelling import send_labels


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
    # Without idempotence (collector.durable says why) a retried send may be in Kafka twice, as the same bytes:
    # the same event id, which the store's readers keep once.
    assert len(set(arrived)) == len(logged), "a copy in Kafka is the same event, byte for byte"


def test_after_a_broker_crash_every_writer_recovers_and_nothing_acknowledged_is_lost_or_doubled(
    local_stack, kafka, kafka_settings, data_dir,
):
    """kill -9 of the broker under load through the API, EventLogger and the collector; then it comes back."""
    topics = kafka_settings.topics()
    app = create_app(bootstrap_servers=kafka, topics=topics, registry=CollectorRegistry(), ack_timeout_s=3)
    writer_registry = CollectorRegistry()
    writer = StoreWriter(StoreWriterConfig(kafka, topics, data_dir / "store", group_id=f"{topics.prefix}writer",
                                           batch_seconds=0.3), writer_registry)
    stop_writer = threading.Event()
    collector = threading.Thread(target=writer.run, args=(stop_writer,), daemon=True)
    collector.start()
    logger_registry = CollectorRegistry()
    logger = EventLogger(kafka, topics, logger_registry, buffer_events=100_000, block_timeout_s=30)
    accepted, answers, sending = [], [], threading.Event()
    sending.set()

    def client(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            i = 0
            while sending.is_set():
                batch = [{"event_id": f"api-{i}-{j}", "request_id": f"r-{i}-{j}", "label": 1} for j in range(5)]
                try:
                    answer = http.post("/v1/feedback", json={"events": batch})
                except httpx.TransportError:
                    answer = None
                answers.append((time.monotonic(), answer.status_code if answer else None))
                if answer is not None and answer.status_code == 202:
                    accepted.extend(answer.json()["event_ids"])
                i += 1
                time.sleep(0.05)

    def model_server() -> None:
        i = 0
        while sending.is_set():
            logger.log_prediction(request_id=f"m-{i}", model_name="churn", model_version="1",
                                  features={"x": float(i)}, output={"label": i % 2}, timestamp=START)
            i += 1
            time.sleep(0.002)

    def sent() -> float:
        return logger_registry.get_sample_value("driftloop_producer_events_sent_total", {"topic": topics.predictions}) or 0

    try:
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as probe:
            threads = [threading.Thread(target=client, args=(url,)), threading.Thread(target=model_server)]
            for thread in threads:
                thread.start()
            assert wait_until(lambda: len(accepted) >= 100 and sent() >= 500, 60), "traffic flows before the crash"
            assert local_stack.kafka.process.stop(hard=True), "the broker was running and is killed (SIGKILL)"
            assert wait_until(lambda: probe.get("/readyz").status_code == 503, 30), "not ready while Kafka is away"
            assert probe.get("/healthz").status_code == 200, "but alive"
            accepted_before, sent_before = len(accepted), sent()
            restarting = time.monotonic()
            local_stack.kafka.start()
            local_stack.kafka.wait_ready(timeout_s=300)  # a loaded machine may take over a minute; the topics persist
            back = time.monotonic()
            assert wait_until(lambda: len(accepted) > accepted_before, 30), "the API accepts again"
            assert wait_until(lambda: sent() > sent_before + 100, 30), "the model server's events flow again"
            first_202 = min(at for at, status in answers if status == 202 and at > restarting)
            assert first_202 - back < 10, f"the API took {first_202 - back:.1f} s after the broker was ready"
            assert wait_until(lambda: probe.get("/readyz").json() == {"status": "ready"}, 10)
            sending.clear()
            for thread in threads:
                thread.join()
            logger.flush(timeout_s=60)
        labels = (FeedbackEvent(request_id="after-restart", label=1),)
        assert send_labels(kafka, topics.feedback, labels) == 1, "label import writes after the restart"
        produce_raw(kafka, topics.predictions, [b"not json after the restart"])

        store = Store(data_dir / "store")
        logged = {f"m-{i}" for i in range(int(sent()))}
        assert wait_until(lambda: group_caught_up(kafka, f"{topics.prefix}writer", topics.predictions)
                          and group_caught_up(kafka, f"{topics.prefix}writer", topics.feedback), 90)
        assert collector.is_alive(), "the collector survived the crash"
        stored_feedback = store.feedback()["event_id"].to_pylist()
        assert set(accepted) | {labels[0].event_id} <= set(stored_feedback), "no acknowledged event is lost"
        assert len(stored_feedback) == len(set(stored_feedback)), "and readers see each once"
        requests = set(store.predictions("churn")["request_id"].to_pylist())
        assert logged <= requests, f"{len(logged - requests)} acknowledged predictions are missing"
        assert logger_registry.get_sample_value("driftloop_producer_events_failed_total",
                                                {"topic": topics.predictions}) in (None, 0)
        assert wait_until(lambda: writer_registry.get_sample_value(
            "driftloop_collector_dlq_total", {"topic": topics.predictions, "reason": "invalid_json"}) == 1, 30), \
            "the dead-letter producer writes after the restart"
    finally:
        sending.clear()
        local_stack.up()  # the session's broker runs for the tests that follow, whatever happened here
        logger.close(timeout_s=10)
        stop_writer.set()
        collector.join(timeout=60)
