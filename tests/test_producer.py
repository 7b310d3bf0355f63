"""EventLogger against the session's real broker, and against an address where nothing listens."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from events import event_ids_in
from prometheus_client import CollectorRegistry

from driftloop.collector import (
    OVERFLOW_POLICIES,
    BufferFull,
    EventLogger,
    FeedbackEvent,
    InvalidEvent,
    PredictionEvent,
    Topics,
)
from driftloop.stack import free_port


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def prediction(i: int) -> dict:
    return {
        "request_id": f"req-{i}", "model_name": "churn", "model_version": "3",
        "features": {"tenure": i, "plan": "pro"}, "output": {"label": 1, "probabilities": {"0": 0.25, "1": 0.75}},
    }


def unreachable() -> str:
    return f"127.0.0.1:{free_port()}"


def test_logged_events_reach_kafka_exactly_once_after_flush_and_close(kafka, kafka_settings):
    registry, topics = CollectorRegistry(), kafka_settings.topics()
    logger = EventLogger(kafka, topics, registry)
    sent = {"prediction": [], "feedback": []}
    for i in range(200):
        if i % 2:  # an event object, or its fields
            sent["prediction"].append(logger.log_prediction(PredictionEvent(**prediction(i))))
        else:
            sent["prediction"].append(logger.log_prediction(**prediction(i)))
        sent["feedback"].append(logger.log_feedback(request_id=f"req-{i}", label=i % 2, source="annotator"))
    sent["feedback"].append(logger.log_feedback(FeedbackEvent(request_id="never-predicted", rating=2.0)))

    logger.flush(timeout_s=30)
    logger.close()

    assert event_ids_in(kafka, topics.predictions, "prediction") == Counter(sent["prediction"])
    assert event_ids_in(kafka, topics.feedback, "feedback") == Counter(sent["feedback"])
    assert sample(registry, "driftloop_producer_events_sent_total", topic=topics.predictions) == 200
    assert sample(registry, "driftloop_producer_events_sent_total", topic=topics.feedback) == 201
    assert sample(registry, "driftloop_producer_buffer_events") == 0
    assert sample(registry, "driftloop_producer_events_failed_total", topic=topics.feedback) == 0
    assert registry.get_sample_value("driftloop_producer_events_failed_total", {"topic": topics.predictions}) == 0, \
        "exported at 0 from the start, so a dashboard's rate shows 0 rather than nothing"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({k: v for k, v in prediction(1).items() if k != "features"}, "features"),
        ({**prediction(1), "features": {"x": float("nan")}}, "features.x.float"),
        ({**prediction(1), "output": {"probabilities": {"a": 0.9, "b": 0.9}}}, "output"),
        ({**prediction(1), "timestamp": "2026-01-01T00:00:00"}, "timestamp"),
    ],
    ids=["missing-features", "nan-feature", "probabilities-not-summing-to-1", "naive-timestamp"],
)
def test_a_bad_event_raises_invalid_event_naming_the_field_and_is_not_buffered(fields, field):
    registry = CollectorRegistry()
    logger = EventLogger(unreachable(), Topics("t."), registry, connect_timeout_s=1)
    try:
        with pytest.raises(InvalidEvent) as raised:
            logger.log_prediction(**fields)
        assert raised.value.field == field
        assert sample(registry, "driftloop_producer_buffer_events") == 0
    finally:
        logger.close(timeout_s=0)


def test_the_wrong_kind_of_event_is_a_type_error():
    logger = EventLogger(unreachable(), Topics("t."), CollectorRegistry(), connect_timeout_s=1)
    try:
        with pytest.raises(TypeError, match="PredictionEventV1"):
            logger.log_prediction(FeedbackEvent(request_id="r", label=1))
        with pytest.raises(TypeError, match="not both"):
            logger.log_feedback(FeedbackEvent(request_id="r", label=1), label=2)
    finally:
        logger.close(timeout_s=0)


def test_drop_never_blocks_the_caller_and_counts_what_it_dropped():
    registry = CollectorRegistry()
    logger = EventLogger(unreachable(), Topics("t."), registry, buffer_events=10, overflow="drop", connect_timeout_s=1)
    durations, results = [], []
    for i in range(500):
        started = time.perf_counter()
        results.append(logger.log_feedback(request_id=f"r-{i}", label=1))
        durations.append(time.perf_counter() - started)

    # Kafka would take the 1 s connect timeout; a call takes microseconds (50 ms: room for a busy test machine).
    assert max(durations) < 0.05 and sum(durations) < 0.5, f"slowest call {max(durations) * 1000:.1f} ms"
    assert sum(r is not None for r in results) == 10 and results[10:] == [None] * 490
    assert sample(registry, "driftloop_producer_events_dropped_total") == 490
    assert sample(registry, "driftloop_producer_buffer_events") == 10
    assert sample(registry, "driftloop_producer_buffer_capacity") == 10

    started = time.monotonic()
    logger.close(timeout_s=0.5)
    assert time.monotonic() - started < 3
    assert sample(registry, "driftloop_producer_events_failed_total", topic="t.feedback") == 10, "never lost silently"


def test_block_waits_its_timeout_then_raises_buffer_full():
    logger = EventLogger(
        unreachable(), Topics("t."), CollectorRegistry(), buffer_events=2, overflow="block", block_timeout_s=0.3,
        connect_timeout_s=1,
    )
    try:
        logger.log_feedback(request_id="r-1", label=1)
        logger.log_feedback(request_id="r-2", label=1)
        started = time.monotonic()
        with pytest.raises(BufferFull, match="2 events") as raised:
            logger.log_feedback(request_id="r-3", label=1)
        waited = time.monotonic() - started
    finally:
        logger.close(timeout_s=0)

    assert 0.3 <= waited < 2
    assert raised.value.retriable


def test_an_unknown_overflow_policy_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"Invalid 'overflow' 'wait'\. Valid values are: \['block', 'drop'\]"):
        EventLogger("127.0.0.1:1", Topics(), CollectorRegistry(), overflow="wait")
    assert OVERFLOW_POLICIES == ("block", "drop")


def test_a_closed_logger_refuses_new_events(kafka, kafka_settings):
    logger = EventLogger(kafka, kafka_settings.topics(), CollectorRegistry())
    logger.close()
    with pytest.raises(RuntimeError, match="closed"):
        logger.log_feedback(request_id="r", label=1)
