"""The consumer that writes `predictions`, `feedback` and `shadow` into the Parquet store, exactly once.

Kafka delivers at least once; the store holds each event once because:
- a file is named by topic, partition and the offset range it holds, written
  under a temporary name, fsynced and renamed, and the offsets are committed
  to Kafka only after every file of the batch (and every dead letter) is durable;
- when this process first sees records of a partition (a start, a restart,
  a rebalance), files of that partition at or past the committed offset were
  written but never committed: it deletes them, and the replay writes them again.

Layout: predictions/model=<name>/date=<YYYY-MM-DD>/hour=<HH>/<topic>+<partition>+<first>+<last>.parquet
        feedback/date=<YYYY-MM-DD>/hour=<HH>/<topic>+<partition>+<first>+<last>.parquet
        shadow/model=<name>/date=<YYYY-MM-DD>/hour=<HH>/...   (challengers' answers: prediction events)

Bad events go to `dlq` with the original key and bytes and headers saying why;
they never stop the consumer. Scale out by running more processes in one group.
When a rebalance takes a partition away, its unwritten records are dropped and
in-flight writes finish first; the next owner's recovery deletes what this
process wrote but did not commit, and replays it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError
from prometheus_client import CollectorRegistry

from driftloop.collector.columnar import ParsedBatch, parse_batch
from driftloop.collector.durable import durable_producer
from driftloop.collector.metrics import StoreWriterMetrics
from driftloop.collector.topics import Topics

log = logging.getLogger(__name__)

STORE_DIRS = {"prediction": "predictions", "feedback": "feedback", "shadow": "shadow"}
# The schema each kind of stored event follows: a shadow event is a prediction (of a challenger).
SCHEMA_OF = {"prediction": "prediction", "feedback": "feedback", "shadow": "prediction"}


@dataclass(frozen=True)
class StoreWriterConfig:
    """Where to read, where to write, and when a partition's buffer becomes a file."""

    bootstrap_servers: str
    topics: Topics
    store_dir: Path
    group_id: str = "driftloop-store-writer"
    batch_events: int = 50_000
    batch_seconds: float = 1.0
    poll_records: int = 10_000

    def __post_init__(self) -> None:
        if self.batch_events < 1 or self.batch_seconds <= 0 or self.poll_records < 1:
            raise ValueError("batch_events and poll_records must be >= 1 and batch_seconds > 0")


@dataclass(frozen=True)
class _Written:
    """A batch whose files and dead letters are durable: its offsets may be committed."""

    partition: TopicPartition
    next_offset: int
    stored: int
    read: int
    seconds: float


class StoreWriter:
    """Consumes on one thread; validates and writes on another, so fetching and writing overlap.

    The consumer (and so every commit) stays on the thread that calls `run`/`step`;
    the writer thread takes batches in order and reports each once it is durable.
    """

    def __init__(self, config: StoreWriterConfig, registry: CollectorRegistry, in_flight: int = 2) -> None:
        self.config = config
        self.metrics = StoreWriterMetrics(registry)
        self.kinds = {config.topics.predictions: "prediction", config.topics.feedback: "feedback",
                      config.topics.shadow: "shadow"}
        self.buffers: dict[TopicPartition, list] = defaultdict(list)
        self.oldest: dict[TopicPartition, float] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.to_write: queue.Queue = queue.Queue(maxsize=in_flight)  # bounded: backpressure on the fetch loop
        self.written: queue.Queue[_Written | BaseException] = queue.Queue()
        self.consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.poll_records,
            fetch_min_bytes=65536,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            metadata_max_age_ms=5000,  # see new partitions (and topics created after us) within seconds
        )
        self.assigned: set[TopicPartition] = set()  # assigned by a rebalance, not yet rewound to their commit
        self.assigned_lock = threading.Lock()
        self.consumer.subscribe(list(self.kinds), listener=_FinishRevoked(self))
        # Know the partitions before the first join. Otherwise kafka-python 3.0.12 joins with no partitions, rejoins
        # when the metadata arrives, and, when that rejoin outlasts a poll, never applies its assignment.
        for topic in self.kinds:
            self.consumer.partitions_for_topic(topic)
        self.dead_letters = durable_producer(config.bootstrap_servers, linger_ms=5)
        self.writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self.writer.start()

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll and write until `stop` is set; then write what is buffered and close."""
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                self.step()
            self.flush_all()
        finally:
            self.close()

    def step(self, poll_timeout_ms: int = 200) -> int:
        """One poll; hand over every partition whose buffer is full or old; commit what is durable."""
        polled = self.consumer.poll(timeout_ms=poll_timeout_ms)
        with self.assigned_lock:
            assigned, self.assigned = self.assigned, set()
        if assigned:  # read them again from their commits, whatever this poll or an earlier one returned
            self._forget(assigned)
            for partition in assigned:
                self._recover(partition)
                polled.pop(partition, None)
        now = time.monotonic()
        count = 0
        for partition, records in polled.items():
            self.buffers[partition].extend(records)
            self.oldest.setdefault(partition, now)
            count += len(records)
        for partition in list(self.buffers):
            full = len(self.buffers[partition]) >= self.config.batch_events
            if full or now - self.oldest[partition] >= self.config.batch_seconds:
                self._hand_over(partition)
        self._commit_written()
        self._update_lag()
        return count

    def flush_all(self, partitions=None) -> None:
        """Write and commit everything buffered (of `partitions`, or all) before returning."""
        for partition in list(self.buffers):
            if partitions is None or partition in partitions:
                self._hand_over(partition)
        self.to_write.join()
        self._commit_written()

    def close(self) -> None:
        self.to_write.put(None)
        self.writer.join(timeout=60)
        self.dead_letters.close()
        self.consumer.close()

    def finish_revoked(self, partitions) -> None:
        """Before `partitions` go to another process: drop their unwritten records and let in-flight writes end.

        kafka-python calls this on its network thread, where a commit would deadlock,
        so nothing is committed here. Files written but not committed are deleted
        and rewritten by the next owner's recovery; no write of ours outlives this call.
        """
        with self.assigned_lock:
            self.assigned.difference_update(partitions)
        self._forget(partitions)

    def _forget(self, partitions) -> None:
        """Drop what is buffered for `partitions`, wait for in-flight writes, and never commit their results."""
        for partition in partitions:
            self.buffers.pop(partition, None)
            self.oldest.pop(partition, None)
            self.committed.pop(partition, None)
        self.to_write.join()
        kept = []
        while not self.written.empty():
            done = self.written.get_nowait()
            if isinstance(done, BaseException) or done.partition not in partitions:
                kept.append(done)
        for done in kept:
            self.written.put(done)

    def rewind_assigned(self, partitions) -> None:
        """Mark newly assigned partitions to be read again from their committed offsets.

        kafka-python keeps a partition's position when a rebalance gives it back
        to the same consumer; the records we had buffered for it were dropped at
        revocation, so reading on from there would skip them. Called on
        kafka-python's network thread: the rewind itself happens in `step`.
        """
        with self.assigned_lock:
            self.assigned.update(partitions)

    def _recover(self, partition: TopicPartition) -> None:
        """Read `partition` from its committed offset; delete files written past it (a crash before the commit)."""
        committed = self.consumer.committed(partition)
        if committed is None:
            self.consumer.seek_to_beginning(partition)
        else:
            self.consumer.seek(partition, committed)
        committed = -1 if committed is None else committed
        folder = self.config.store_dir / STORE_DIRS[self.kinds[partition.topic]]
        prefix = f"{partition.topic}+{partition.partition}+"
        for path in list(folder.rglob(f"{prefix}*.parquet")) + list(folder.rglob(f".{prefix}*.tmp")):
            first = int(path.name.lstrip(".").split("+")[2])
            if first >= committed:
                log.info("removing %s: written after the last commit, replaying it", path.name)
                path.unlink()
        self.committed[partition] = max(committed, 0)

    def _hand_over(self, partition: TopicPartition) -> None:
        records = self.buffers.pop(partition)
        self.oldest.pop(partition)
        self.to_write.put((partition, records))
        self._commit_written()

    def _commit_written(self) -> None:
        offsets = {}
        while True:
            try:
                done = self.written.get_nowait()
            except queue.Empty:
                break
            if isinstance(done, BaseException):
                raise RuntimeError("the store writer thread failed; nothing past the last commit is lost") from done
            offsets[done.partition] = OffsetAndMetadata(done.next_offset, "", -1)
            self.committed[done.partition] = done.next_offset
            self.metrics.ingested.labels(topic=done.partition.topic).inc(done.stored)
            self.metrics.batch_size.observe(done.read)
            self.metrics.write_seconds.observe(done.seconds)
        if offsets:
            try:
                self.consumer.commit(offsets)
            except CommitFailedError:
                log.warning("commit refused after a rebalance; the partitions' next owner replays them")

    def _write_loop(self) -> None:
        while True:
            item = self.to_write.get()
            try:
                if item is None:
                    return
                self.written.put(self._write(*item))
            except BaseException as error:  # reported to the consumer thread, which stops
                self.written.put(error)
            finally:
                self.to_write.task_done()

    def _write(self, partition: TopicPartition, records: list) -> _Written:
        began = time.perf_counter()
        kind = self.kinds[partition.topic]
        parsed = parse_batch(SCHEMA_OF[kind], [r.value for r in records], partition.partition,
                             [r.offset for r in records])
        first, last = records[0].offset, records[-1].offset
        if parsed.table.num_rows:
            name = f"{partition.topic}+{partition.partition}+{first:020d}+{last:020d}.parquet"
            for folder, rows in _by_store_folder(kind, parsed.table):
                write_durably(rows, self.config.store_dir / STORE_DIRS[kind] / folder / name)
        self._dead_letter(partition, records, parsed)
        return _Written(partition, last + 1, parsed.table.num_rows, len(records), time.perf_counter() - began)

    def _dead_letter(self, partition: TopicPartition, records: list, parsed: ParsedBatch) -> None:
        if not parsed.rejected:
            return
        for index, error in parsed.rejected:
            record = records[index]
            headers = [
                ("reason", error.code.encode()),
                ("field", error.field.encode()),
                ("error", str(error).encode()[:4096]),
                ("source", f"{partition.topic}/{partition.partition}/{record.offset}".encode()),
            ]
            self.dead_letters.send(self.config.topics.dlq, key=record.key, value=record.value, headers=headers)
            self.metrics.dlq.labels(topic=partition.topic, reason=error.code).inc()
        self.dead_letters.flush()  # dead letters are durable before the offsets move past them
        log.warning("%d events of %s sent to %s", len(parsed.rejected), partition.topic, self.config.topics.dlq)

    def _update_lag(self) -> None:
        for partition, committed in self.committed.items():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                self.metrics.lag.labels(topic=partition.topic, partition=str(partition.partition)).set(highwater - committed)


class _FinishRevoked(ConsumerRebalanceListener):
    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer

    def on_partitions_revoked(self, revoked) -> None:
        self.writer.finish_revoked(revoked)

    def on_partitions_assigned(self, assigned) -> None:
        self.writer.rewind_assigned(assigned)


def _by_store_folder(kind: str, table: pa.Table):
    """(relative folder, rows) per model and hour of the events' own timestamps."""
    hours = pc.floor_temporal(table["timestamp"], unit="hour")
    models = pc.unique(table["model_name"]).to_pylist() if SCHEMA_OF[kind] == "prediction" else [None]
    for hour in pc.unique(hours).to_pylist():
        in_hour = pc.equal(hours, pa.scalar(hour, hours.type))
        folder = hour.strftime("date=%Y-%m-%d/hour=%H")
        for model in models:
            if model is None:
                yield folder, table.filter(in_hour)
                continue
            rows = table.filter(pc.and_(in_hour, pc.equal(table["model_name"], model)))
            if rows.num_rows:
                yield f"model={urllib.parse.quote(model, safe='')}/{folder}", rows


def write_durably(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that it is either whole under its name or not there at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, str(temporary), compression="zstd")  # a native file: written without the GIL
    _fsync(temporary)
    os.rename(temporary, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's data to disk (on Linux, any descriptor of it will do)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
