"""The demo's end checks: the collector has stored everything sent, and every accepted event is there once."""

from __future__ import annotations

import time
from collections import Counter

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from driftloop.collector.store import Store
from driftloop.settings import Settings


def caught_up(settings: Settings) -> bool:
    """The collector's group has committed every partition of `predictions`, `feedback` and `shadow` to its end."""
    bootstrap, group = settings.kafka_bootstrap(), settings.collector.group_id
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        committed = admin.list_group_offsets({group: None})[group]
        for name in ("predictions", "feedback", "shadow"):
            topic = settings.kafka.topic(name)
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            end = consumer.end_offsets(partitions)
            if any(end[tp] and (tp not in committed or committed[tp].offset < end[tp]) for tp in partitions):
                return False
        return True
    finally:
        consumer.close()
        admin.close()


def wait_stored(settings: Settings, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if caught_up(settings):
                return True
        except Exception:  # noqa: BLE001 - the broker is busy: ask again
            pass
        time.sleep(1.0)
    return False


def stored_exactly_once(settings: Settings, model: str, answers, feedback_event_ids: list[str]) -> dict:
    """Each answered request once in the predictions view, each accepted label once in the feedback view,
    and no Kafka record stored twice."""
    store = Store(settings.store_dir)
    answered = [a.request_id for a in answers if a.status == 200]
    predictions = Counter(store.predictions(model)["request_id"].to_pylist())
    feedback = Counter(store.feedback()["event_id"].to_pylist())
    records = {view: store.sql(f"SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM {view}_records").to_pylist()[0]
               for view in ("predictions", "feedback")}
    missing_predictions = sum(1 for r in answered if predictions[r] == 0)
    doubled_predictions = sum(1 for r in answered if predictions[r] > 1)
    missing_labels = sum(1 for e in feedback_event_ids if feedback[e] == 0)
    doubled_records = sum(r["n"] - r["d"] for r in records.values())
    return {
        "stored_exactly_once": not (missing_predictions or doubled_predictions or missing_labels or doubled_records),
        "predictions_answered": len(answered), "predictions_missing": missing_predictions,
        "predictions_doubled": doubled_predictions, "user_labels_missing": missing_labels,
        "records_stored_twice": doubled_records,
    }
