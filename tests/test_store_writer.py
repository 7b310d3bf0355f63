"""The consumer writes each event into the store exactly once, even when killed, and dead-letters bad ones."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pytest
from events import (
    START,
    feedback_for,
    group_caught_up,
    group_members_with_partitions,
    prediction_documents,
    produce,
    produce_raw,
    stored_counts,
    wait_until,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from driftloop.collector.files import PendingIndex, file_position, write_durably
from driftloop.collector.schemas import InvalidEvent
from driftloop.collector.store import Store
from driftloop.collector.store_writer import StoreWriter, StoreWriterConfig
from driftloop.settings import KafkaSettings
from driftloop.stack import create_topics, free_port


@pytest.fixture
def writer_config(kafka, kafka_settings, data_dir) -> StoreWriterConfig:
    return StoreWriterConfig(
        bootstrap_servers=kafka, topics=kafka_settings.topics(), store_dir=data_dir / "store",
        group_id=f"{kafka_settings.topic_prefix}writer", batch_seconds=0.3,
    )


@pytest.fixture
def running_writer(writer_config):
    """A store writer in a thread of this process, stopped (and flushed) at the end of the test."""
    registry = CollectorRegistry()
    writer = StoreWriter(writer_config, registry)
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    yield writer, registry
    stop.set()
    thread.join(timeout=30)


def test_events_land_once_and_feedback_joins_its_prediction(running_writer, writer_config, kafka):
    topics = writer_config.topics
    predictions = prediction_documents(3000)
    early = feedback_for(predictions[:500])  # feedback that arrives before its prediction
    produce(kafka, topics.feedback, early)
    produce(kafka, topics.predictions, predictions)
    produce(kafka, topics.feedback, feedback_for(predictions[500:2000]))

    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store) == (3000, 3000) and stored_counts(store, "feedback") == (2000, 2000), 30)
    assert set(store.predictions("churn").column("event_id").to_pylist()) == {p["event_id"] for p in predictions}

    labelled = store.labelled("churn")
    assert labelled.num_rows == 2000
    assert labelled.column("true_label").to_pylist() == [str(p["output"]["label"]) for p in predictions[:2000]]
    assert store.unlabelled("churn").column("request_id").to_pylist() == [p["request_id"] for p in predictions[2000:]]
    # a horizon shorter than the feedback's 5 minute delay labels nothing
    assert store.labelled("churn", horizon=timedelta(minutes=1)).num_rows == 0


def test_store_is_partitioned_by_model_and_hour_and_files_name_their_offsets(running_writer, writer_config, kafka):
    documents = prediction_documents(720, model="fraud/v2", start=START) + prediction_documents(100, model="churn")
    produce(kafka, writer_config.topics.predictions, documents)  # 720 events 10 ms apart span 7.2 s of 09:00
    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store)[0] == 820, 30)
    assert store.models() == ["churn", "fraud/v2"]
    files = list((writer_config.store_dir / "predictions").rglob("*.parquet"))
    assert {f.parent.relative_to(writer_config.store_dir).as_posix() for f in files} == {
        "predictions/model=fraud%2Fv2/date=2026-11-23/hour=09", "predictions/model=churn/date=2026-11-23/hour=09"
    }
    for path in files:
        topic, partition, first, last = path.stem.split("+")
        offsets = store.sql(f"SELECT min(kafka_offset), max(kafka_offset) FROM read_parquet('{path}')").to_pylist()[0]
        assert topic == writer_config.topics.predictions
        assert int(first) <= offsets["min(kafka_offset)"] <= offsets["max(kafka_offset)"] <= int(last)
    window = store.predictions("fraud/v2", START + timedelta(seconds=1), START + timedelta(seconds=2))
    assert window.num_rows == 100


def test_bad_events_go_to_the_dlq_with_their_reason_and_the_writer_keeps_going(running_writer, writer_config, kafka):
    writer, registry = running_writer
    topics = writer_config.topics
    good = prediction_documents(50)
    bad = {
        b"\x00\xffgarbage": "invalid_json",
        b"[1, 2, 3]": "not_an_object",
        orjson.dumps({**good[0], "event_id": "v9", "schema_version": 9}): "unknown_schema_version",
        orjson.dumps({**good[0], "event_id": "neg", "latency_ms": -5}): "invalid_field",
        b'{"event_id": "nan", "latency_ms": NaN}': "invalid_json",
    }
    produce_raw(kafka, topics.predictions, list(bad))
    produce(kafka, topics.predictions, good)

    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store) == (50, 50), 30)
    consumer = KafkaConsumer(topics.dlq, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    letters = {record.value: dict(record.headers) for record in consumer}
    consumer.close()
    assert set(letters) == set(bad), "every bad event is in the DLQ with its original bytes"
    for value, reason in bad.items():
        assert letters[value]["reason"].decode() == reason
        assert letters[value]["source"].decode().startswith(f"{topics.predictions}/")
    assert letters[list(bad)[3]]["field"] == b"latency_ms"
    assert registry.get_sample_value(
        "driftloop_collector_dlq_total", {"topic": topics.predictions, "reason": "invalid_json"}
    ) == 2
    assert registry.get_sample_value("driftloop_collector_events_ingested_total", {"topic": topics.predictions}) == 50


def collector_process(kafka: str, prefix: str, data_dir: Path, log: Path, metrics_port: int = 0) -> subprocess.Popen:
    env = {
        **os.environ,
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "DRIFTLOOP_KAFKA__TOPIC_PREFIX": prefix,
        "DRIFTLOOP_DATA_DIR": str(data_dir),
        "DRIFTLOOP_STACK__START_PROMETHEUS": "false",
        "DRIFTLOOP_COLLECTOR__GROUP_ID": f"{prefix}writer",
        "DRIFTLOOP_COLLECTOR__BATCH_EVENTS": "20000",
        "DRIFTLOOP_COLLECTOR__BATCH_SECONDS": "0.5",
        "DRIFTLOOP_COLLECTOR__METRICS_PORT": str(metrics_port),
    }
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "driftloop.cli", "--debug", "collector", "run"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM and wait; a process that does not exit in time is killed, so no test leaves one behind."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_kill_9_mid_stream_then_restart_stores_every_event_once(kafka, kafka_settings, data_dir, tmp_path):
    documents = prediction_documents(200_000)
    produce(kafka, kafka_settings.topic("predictions"), documents)
    store = Store(data_dir / "store")
    log = tmp_path / "collector.log"

    first = collector_process(kafka, kafka_settings.topic_prefix, data_dir, log)
    partway = wait_until(lambda: stored_counts(store)[0] >= 40_000, 90, interval_s=0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    rows_at_kill = stored_counts(store)[0]
    assert partway and rows_at_kill < 200_000, f"the kill should land mid-stream (stored {rows_at_kill})"

    second = collector_process(kafka, kafka_settings.topic_prefix, data_dir, log)
    try:
        group, topic = f"{kafka_settings.topic_prefix}writer", kafka_settings.topic("predictions")
        assert wait_until(lambda: group_caught_up(kafka, group, topic), 120), log.read_text()[-3000:]
        assert stored_counts(store) == (200_000, 200_000), "no loss and no duplicate"
        stored_ids = set(store.sql("SELECT event_id FROM predictions").column(0).to_pylist())
        assert stored_ids == {d["event_id"] for d in documents}
    finally:
        stop(second)
    assert second.returncode == 0, "SIGTERM finishes the batch and exits cleanly"
    assert not list(data_dir.rglob("*.tmp")), "no half-written file is left behind"


def ingested_by(metrics_port: int) -> float:
    """Events one collector process says it wrote, from its own /metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
        if line.startswith("driftloop_collector_events_ingested_total{")
    )


def test_two_processes_in_one_group_split_the_partitions(kafka, kafka_settings, data_dir, tmp_path):
    store = Store(data_dir / "store")
    ports = [free_port(), free_port()]
    processes = [
        collector_process(kafka, kafka_settings.topic_prefix, data_dir, tmp_path / f"collector-{i}.log", port)
        for i, port in enumerate(ports)
    ]
    try:
        group = f"{kafka_settings.topic_prefix}writer"
        assert wait_until(lambda: group_members_with_partitions(kafka, group) == 2, 60), "both joined the group"
        documents = prediction_documents(40_000)
        produce(kafka, kafka_settings.topic("predictions"), documents)
        assert wait_until(lambda: group_caught_up(kafka, group, kafka_settings.topic("predictions")), 60)
        assert stored_counts(store) == (40_000, 40_000)
        shares = [ingested_by(port) for port in ports]
        assert sum(shares) == 40_000 and min(shares) > 0, f"both processes wrote a share: {shares}"
    finally:
        for process in processes:
            stop(process)
    assert all(process.returncode == 0 for process in processes)


def test_records_buffered_when_a_rebalance_took_them_are_read_again_when_they_come_back(writer_config, kafka):
    """kafka-python keeps a partition's position when a rebalance hands it back to the same consumer."""
    writer = StoreWriter(dataclasses.replace(writer_config, batch_seconds=3600.0), CollectorRegistry())  # only buffer

    def polled(check):
        writer.step()
        return check()

    def buffered() -> int:
        return sum(len(records) for records in writer.buffers.values())

    documents = prediction_documents(2000)
    produce(kafka, writer_config.topics.predictions, documents)
    assert wait_until(lambda: polled(lambda: buffered() == 2000), 30, interval_s=0)
    visitor = KafkaConsumer(writer_config.topics.predictions, bootstrap_servers=kafka, group_id=writer_config.group_id,
                            enable_auto_commit=False)
    try:  # the visitor joins: the writer's partitions are revoked and their buffers dropped
        assert wait_until(lambda: polled(lambda: visitor.poll(timeout_ms=100) is not None and visitor.assignment()), 60)
        assert buffered() < 2000
    finally:
        visitor.close()  # the visitor leaves: every partition comes back to the writer, at its old position
    assert wait_until(lambda: polled(lambda: buffered() == 2000), 60, interval_s=0), "read again from the commit"
    writer.flush_all()
    writer.close()
    store = Store(writer_config.store_dir)
    assert stored_counts(store) == (2000, 2000)
    assert sorted(store.predictions("churn")["event_id"].to_pylist()) == sorted(d["event_id"] for d in documents)


def test_an_event_sent_twice_by_a_retrying_client_is_read_once(running_writer, writer_config, kafka):
    documents = prediction_documents(100)
    produce(kafka, writer_config.topics.predictions, documents + documents[:10])  # a client retried 10 of them
    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store)[0] == 110, 30), "the store keeps every Kafka record"
    assert store.predictions("churn").num_rows == 100, "readers see each event once"
    assert sorted(store.predictions("churn")["event_id"].to_pylist()) == sorted(d["event_id"] for d in documents)


# A hostile producer, for the property test: arbitrary bytes, arbitrary JSON, the poison records.
POISON = [
    None,  # a tombstone
    b"null",
    b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b"x" * 5_000,  # larger than the test's DLQ copy limit: dead-lettered by reference
    orjson.dumps({**prediction_documents(1)[0], "event_id": "old", "timestamp": "0001-01-01T00:30+01:00"}),
    orjson.dumps({**prediction_documents(1)[0], "event_id": "big-int", "features": {"x": 2**64 - 1}}),
]
json_documents = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6,
)


@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
@given(st.lists(st.binary(max_size=60) | json_documents.map(lambda d: orjson.dumps(d, option=orjson.OPT_SERIALIZE_NUMPY)),
                min_size=1, max_size=25))
def test_no_record_stops_the_collector_and_every_bad_one_is_dead_lettered(kafka, writer_config_factory, junk):
    writer_config, registry, writer = writer_config_factory()
    topics = writer_config.topics
    good = prediction_documents(299) + prediction_documents(1, model="m" * 256)  # the schema allows 256: stored
    bad = junk + POISON
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for index, value in enumerate(bad):  # good and bad interleaved, in one partition, so that they share batches
        for document in good[index * 10:(index + 1) * 10]:
            producer.send(topics.predictions, key=b"k", value=orjson.dumps(document), partition=0)
        producer.send(topics.predictions, key=b"k", value=value, partition=0)
    for document in good[len(bad) * 10:]:
        producer.send(topics.predictions, key=b"k", value=orjson.dumps(document), partition=0)
    producer.flush()
    producer.close()
    end = 300 + len(bad)  # a fresh topic: the offsets of partition 0 run from 0

    def written() -> bool:
        writer.step()
        return writer.committed.get(TopicPartition(topics.predictions, 0)) == end

    assert wait_until(written, 90, interval_s=0), "the collector went through every record"
    store = Store(writer_config.store_dir)
    assert stored_counts(store) == (300, 300), "every good event stored exactly once"
    consumer = KafkaConsumer(topics.dlq, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=3000)
    letters = list(consumer)
    consumer.close()
    assert len(letters) == len(bad), "every bad record is on the DLQ"
    assert all(dict(letter.headers)["reason"].decode() in InvalidEvent.CODES for letter in letters)
    big = [letter for letter in letters if dict(letter.headers).get("by_reference") == b"true"]
    references = sorted((orjson.loads(letter.value)["offset"], orjson.loads(letter.value)["bytes"]) for letter in big)
    assert references == [(11 * (len(junk) + 2) + 10, 200_007), (11 * (len(junk) + 3) + 10, 5_001)], \
        "records too large to copy are dead-lettered by reference: where they are, and why"
    writer.flush_all()
    writer.close()


@pytest.fixture
def writer_config_factory(kafka):
    """A fresh topic prefix, store and writer per hypothesis example (the test's fixtures are shared by examples)."""
    made = []

    def make():
        settings = KafkaSettings(bootstrap_servers=kafka, topic_prefix=f"test-{uuid.uuid4().hex[:10]}.")
        create_topics(kafka, settings)
        store_dir = Path(tempfile.mkdtemp(prefix="store-"))
        config = StoreWriterConfig(bootstrap_servers=kafka, topics=settings.topics(), store_dir=store_dir,
                                   group_id=f"{settings.topic_prefix}writer", batch_seconds=0.3, dlq_copy_bytes=4096)
        registry = CollectorRegistry()
        writer = StoreWriter(config, registry)
        made.append(store_dir)
        return config, registry, writer

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_model_name_of_any_length_is_stored_and_read_back(running_writer, writer_config, kafka):
    names = ["m" * 256, "é/" * 128, "churn"]
    documents = [d for name in names for d in prediction_documents(5, model=name)]
    produce(kafka, writer_config.topics.predictions, documents)
    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store)[0] == 15, 30)
    assert store.models() == sorted(names)
    assert all(store.predictions(name).num_rows == 5 for name in names)


def test_of_two_copies_of_an_event_readers_keep_the_first_written_everywhere(running_writer, writer_config, kafka):
    first = prediction_documents(1)[0]
    later = {**first, "model_version": "the retry"}
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    producer.send(writer_config.topics.predictions, value=orjson.dumps(first), key=b"a", partition=3).get(10)
    producer.send(writer_config.topics.predictions, value=orjson.dumps(later), key=b"a", partition=0).get(10)
    producer.close()
    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store) == (2, 1), 30)
    assert store.predictions("churn")["model_version"].to_pylist() == ["1"], "the first written, not partition 0"
    assert store.sql("SELECT count(*) AS n, min(model_version) AS v FROM predictions").to_pylist() == [{"n": 1, "v": "1"}]


def test_store_query_is_read_only_and_sees_no_file_outside_the_store(running_writer, writer_config, kafka):
    produce(kafka, writer_config.topics.predictions, prediction_documents(3))
    store = Store(writer_config.store_dir)
    assert wait_until(lambda: stored_counts(store)[0] == 3, 30)
    with pytest.raises(duckdb.PermissionException):
        store.sql("SELECT * FROM read_text('/etc/passwd')")
    forged = writer_config.store_dir / "predictions" / "forged.parquet"
    with pytest.raises(ValueError, match="read-only"):
        store.sql(f"COPY (SELECT * FROM predictions) TO '{forged}'")
    with pytest.raises(ValueError, match="read-only"):
        store.sql("SELECT 1; SELECT 2")
    assert not forged.exists() and store.sql("SELECT count(*) AS n FROM predictions").to_pylist() == [{"n": 3}]


def test_many_small_requests_are_compacted_so_files_track_hours(writer_config, kafka):
    config = dataclasses.replace(writer_config, compact_files=4, batch_seconds=0.05)
    writer = StoreWriter(config, CollectorRegistry())
    documents = prediction_documents(60)
    for i in range(0, 60, 3):  # 20 small batches into one hour of one model
        produce(kafka, config.topics.predictions, documents[i:i + 3])
        wait_until(lambda i=i: writer.step() is not None and stored_counts(Store(config.store_dir))[0] >= i + 3, 30, 0)
    writer.flush_all()
    writer.close()
    files = list((config.store_dir / "predictions").rglob("*.parquet"))
    partitions = 4  # kafka_settings' predictions topic
    assert len(files) <= config.compact_files + partitions, f"{len(files)} files in one hour's folder"
    assert all(file_position(path.name) for path in files), "merged files keep the name of the offsets they hold"
    assert stored_counts(Store(config.store_dir)) == (60, 60)


def test_recovery_reads_the_pending_index_not_the_whole_store(writer_config, tmp_path):
    """A store of 2,000 hours: recovering a partition costs its pending batches, not the store's size."""
    index = PendingIndex(writer_config.store_dir)
    topic = writer_config.topics.predictions
    table = pa.table({"event_id": ["e"], "kafka_offset": [0]})
    for hour in range(2000):
        folder = writer_config.store_dir / "predictions" / "model=churn" / f"date=2026-01-{1 + hour // 24:02d}" / f"hour={hour % 24:02d}"
        write_durably(table, folder / f"{topic}+0+{hour:020d}+{hour:020d}.parquet")
    uncommitted = writer_config.store_dir / "predictions" / "model=churn" / "date=2026-03-01" / "hour=00"
    path = uncommitted / f"{topic}+0+{5000:020d}+{5009:020d}.parquet"
    index.add(topic, 0, 5000, 5009, [path])
    write_durably(table, path)
    started = time.perf_counter()
    removed = index.recover(topic, 0, committed=5000)
    took = time.perf_counter() - started
    assert removed == 1 and not path.exists()
    assert len(list((writer_config.store_dir / "predictions").rglob("*.parquet"))) == 2000, "committed files stay"
    started = time.perf_counter()
    list((writer_config.store_dir / "predictions").rglob(f"{topic}+0+*.parquet"))  # what recovery did before
    walked = time.perf_counter() - started
    assert took < walked, f"index {took * 1000:.2f} ms, walking the store {walked * 1000:.2f} ms"
