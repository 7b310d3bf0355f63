"""The labels as they reach the store, read incrementally: what the sequential detectors see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
from events import feedback_for, prediction_documents, write_to_store

from driftloop.collector.store import Store
from driftloop.drift.labels import PREDICTIONS, LabelStream, PredictionIndex

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def rows(start: int, count: int, at: datetime) -> pa.Table:
    return pa.table({
        "event_id": [f"e{i}" for i in range(start, start + count)],
        "request_id": [f"r{i}" for i in range(start, start + count)],
        "timestamp": pa.array([at] * count, PREDICTIONS.field("timestamp").type),
        "label": ["1"] * count,
    }, schema=PREDICTIONS)


def test_the_index_finds_rows_before_and_after_they_are_sealed_and_forgets_old_ones():
    index = PredictionIndex(seal_rows=100)
    index.add(rows(0, 150, NOW - timedelta(days=8)))  # sealed at once
    index.add(rows(150, 30, NOW))  # in the tail
    found = index.find(pa.array(["r3", "r160", "r999"]))
    assert sorted(found["request_id"].to_pylist()) == ["r160", "r3"]
    index.drop_before(NOW - timedelta(days=7))
    assert index.find(pa.array(["r3", "r160"]))["request_id"].to_pylist() == ["r160"]
    assert index.num_rows == 30


def test_feedback_stored_before_its_prediction_is_matched_when_the_prediction_arrives(tmp_path):
    store = Store(tmp_path / "store")
    stream = LabelStream(store, "churn", timedelta(days=7))
    predictions = prediction_documents(50, start=NOW - timedelta(minutes=30))
    feedback = feedback_for(predictions, delay=timedelta(seconds=5))
    for document in feedback[:10]:
        document["label"] = 1 - document["label"]
    write_to_store(store.store_dir, "feedback", feedback, "t.feedback")
    assert len(stream.read(NOW)) == 0, "no prediction yet: the labels wait"
    write_to_store(store.store_dir, "prediction", predictions, "t.predictions")
    bits = stream.read(NOW + timedelta(minutes=1))
    assert len(bits) == 50 and int(np.sum(bits)) == 10
    assert len(stream.read(NOW + timedelta(minutes=2))) == 0, "each label once"


def test_a_label_waits_an_hour_for_its_prediction_at_most(tmp_path):
    store = Store(tmp_path / "store")
    stream = LabelStream(store, "churn", timedelta(days=7))
    predictions = prediction_documents(5, start=NOW - timedelta(minutes=30))
    write_to_store(store.store_dir, "feedback", feedback_for(predictions), "t.feedback")
    stream.read(NOW)
    stream.read(NOW + timedelta(hours=2))  # the labels have waited too long
    write_to_store(store.store_dir, "prediction", predictions, "t.predictions")
    assert len(stream.read(NOW + timedelta(hours=2, minutes=1))) == 0
