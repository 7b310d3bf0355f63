"""Test helpers: many valid events fast, producing them, waiting on the store."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from driftloop.collector.columnar import parse_batch
from driftloop.collector.schemas import decode
from driftloop.collector.store import Store
from driftloop.collector.store_writer import STORE_DIRS, _by_store_folder, write_durably

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def prediction_documents(
    count: int, model: str = "churn", seed: int = 0, start: datetime = START, shift: float = 0.0, shifted: int = 0
) -> list[dict]:
    """Valid prediction events with 20 numeric features, one every 10 ms of event time.

    `shift` (in standard deviations) is added to the first `shifted` features.
    """
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 20))
    features[:, :shifted] += shift
    features = features.round(5)
    run = uuid.uuid4().hex[:8]
    documents = []
    for i in range(count):
        p = float(1 / (1 + np.exp(-features[i, 0])))
        documents.append({
            "schema_version": 1,
            "event_id": f"{run}-p{i}",
            "request_id": f"{run}-r{i}",
            "timestamp": (start + timedelta(milliseconds=10 * i)).isoformat(),
            "model_name": model,
            "model_version": "1",
            "features": {f"f{j:02d}": float(v) for j, v in enumerate(features[i])},
            "output": {"label": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}},
            "latency_ms": 3.0,
        })
    return documents


def feedback_for(predictions: list[dict], delay: timedelta = timedelta(minutes=5)) -> list[dict]:
    return [
        {
            "schema_version": 1,
            "event_id": f"fb-{p['event_id']}",
            "request_id": p["request_id"],
            "timestamp": (datetime.fromisoformat(p["timestamp"]) + delay).isoformat(),
            "label": p["output"]["label"],
            "source": "user",
        }
        for p in predictions
    ]


def produce(bootstrap: str, topic: str, documents: list[dict]) -> None:
    """Send documents keyed by request id and wait until the broker acknowledged all of them."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024, compression_type="lz4"
    )
    for document in documents:
        producer.send(topic, key=document["request_id"].encode(), value=orjson.dumps(document))
    producer.flush()
    producer.close()


def produce_raw(bootstrap: str, topic: str, values: list[bytes], key: bytes = b"k") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for value in values:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def stored_counts(store: Store, view: str = "predictions") -> tuple[int, int]:
    """(stored Kafka records, distinct event ids) of one kind in the store; (0, 0) when it is empty."""
    try:
        query = f"SELECT count(*), count(DISTINCT event_id) FROM {view}_records"
        rows, distinct = store.sql(query).to_pylist()[0].values()
    except duckdb.CatalogException:  # no file yet: the view does not exist
        return 0, 0
    return rows, distinct


def wait_until(check, timeout_s: float, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval_s)
    return check()


def event_ids_in(bootstrap: str, topic: str, kind: str) -> Counter:
    """How often each event id is in `topic` now: everything up to the end offsets at the time of the call."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        ids, deadline = Counter(), time.monotonic() + 30
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    event = decode(kind, record.value)
                    assert record.key == event.request_id.encode(), "keyed by request id"
                    ids[event.event_id] += 1
        return ids
    finally:
        consumer.close()


def run_cli(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    """`driftloop ARGS` in a subprocess, as a user runs it; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-m", "driftloop.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def group_caught_up(bootstrap: str, group_id: str, topic: str) -> bool:
    """True when `group_id` has committed every partition of `topic` up to its end: nothing is left to write."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        committed = admin.list_group_offsets({group_id: None})[group_id]
        end = consumer.end_offsets(partitions)
        return all(tp in committed and committed[tp].offset == end[tp] for tp in partitions)
    finally:
        consumer.close()
        admin.close()


def group_members_with_partitions(bootstrap: str, group_id: str) -> int:
    """How many members of `group_id` hold at least one partition (a stable group has finished its join)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        try:
            group = admin.describe_groups([group_id])[group_id]
        except KafkaError:  # the group coordinator is still loading (a fresh or restarted broker)
            return 0
        if group["group_state"] != "Stable":
            return 0
        return sum(1 for member in group["members"] if _assigned_partitions(member))
    finally:
        admin.close()


def _assigned_partitions(member: dict) -> int:
    """Partitions in one member of kafka-python's describe_groups answer (its decoded ConsumerAssignment)."""
    assignment = member.get("member_assignment") or {}
    return sum(len(topic["partitions"]) for topic in assignment.get("assigned_partitions", []))


def write_to_store(store_dir: Path, kind: str, documents: list[dict], topic: str, partition: int = 0,
                   first_offset: int = 0) -> int:
    """Write events into the store as the store writer would have, without Kafka: the store's columns,
    one file per hour folder (and model) named by topic, partition and the batch's offsets. Returns the
    next offset."""
    offsets = list(range(first_offset, first_offset + len(documents)))
    table = parse_batch(kind, [orjson.dumps(d) for d in documents], partition, offsets).table
    name = f"{topic}+{partition}+{offsets[0]:020d}+{offsets[-1]:020d}.parquet"
    for folder, rows in _by_store_folder(kind, table):
        write_durably(rows, Path(store_dir) / STORE_DIRS[kind] / folder / name)
    return first_offset + len(documents)
