"""Events go through the real broker and come back valid, keyed so feedback meets its prediction."""

from __future__ import annotations

import time

from kafka import KafkaConsumer, KafkaProducer

from driftloop.collector import FeedbackEvent, PredictionEvent, PredictionOutput, decode, encode


def consume_all(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 30) -> list:
    consumer = KafkaConsumer(
        *topics, bootstrap_servers=bootstrap, group_id="roundtrip", auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records, deadline = [], time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def test_topics_exist_with_their_partition_counts(kafka, kafka_settings):
    consumer = KafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
    try:
        counts = {
            name: len(consumer.partitions_for_topic(kafka_settings.topic(name)) or ())
            for name in kafka_settings.partitions
        }
    finally:
        consumer.close()
    assert counts == kafka_settings.partitions


def test_events_round_trip_through_the_broker(kafka, kafka_settings):
    predictions, feedback = kafka_settings.topic("predictions"), kafka_settings.topic("feedback")
    sent = []
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all", compression_type="lz4")
    for i in range(500):
        prediction = PredictionEvent(
            request_id=f"req-{i}", model_name="m", model_version="1",
            features={"x": float(i), "colour": "red" if i % 2 else "blue"},
            output=PredictionOutput(label=i % 3, score=0.5),
        )
        label = FeedbackEvent(request_id=f"req-{i}", label=i % 3, source="annotator")
        for topic, event in ((predictions, prediction), (feedback, label)):
            producer.send(topic, key=event.request_id.encode(), value=encode(event)).get(timeout=10)
        sent.extend([prediction, label])
    producer.close()

    records = consume_all(kafka, [predictions, feedback], expected=len(sent))
    kinds = {predictions: "prediction", feedback: "feedback"}
    received = {e.event_id: e for e in (decode(kinds[r.topic], r.value) for r in records)}
    assert received == {e.event_id: e for e in sent}

    partition_of = {}
    for record in records:
        partition_of.setdefault(record.key, set()).add(record.partition)
    assert all(len(partitions) == 1 for partitions in partition_of.values()), "same key, same partition number"
