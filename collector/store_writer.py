"""The consumer that writes `predictions`, `feedback` and `shadow` into the Parquet store, exactly once.

Kafka delivers at least once; the store holds each record once because:
- a file is named by topic, partition and the offset range it holds, written
  under a temporary name, fsynced and renamed, and the offsets are committed
  to Kafka only after every file of the batch (and every dead letter) is durable;
- before a batch's files are written, a marker listing them goes to the pending
  index (`collector.files`); when this process first sees records of a partition
  (a start, a restart, a rebalance), the files of that partition's markers at or
  past the committed offset were written but never committed: it deletes them,
  and the replay writes them again. Recovery reads a partition's few markers,
  never the whole store.

Layout and compaction: `collector.files` (`shadow` holds challengers' answers: prediction events,
laid out as predictions are).

No record stops the consumer. Whatever a value holds (not JSON, a JSON null, a
tombstone, a huge or deeply nested document, a bad field, a time or model the
policy refuses), it is validated by the schema's rules (`collector.columnar`)
and, if refused, sent to `dlq` with the original key and bytes and headers
saying why (a record too large to copy goes by reference: topic, partition,
offset). A valid event the writer still cannot write is dead-lettered too
(`unwritable`), after the rest of its batch is written. A full disk or an I/O
error is the machine's fault, not the record's: the batch is retried, never
dead-lettered, and nothing is committed past it.

A broker that goes away and comes back stops nothing either: commits that fail
for a lost connection are retried with the next batch, dead letters are resent
until Kafka has them, and a partition whose committed offset cannot be read yet
is recovered on a later poll.

Scale out by running more processes in one group. When a rebalance takes a
partition away, its unwritten records are dropped and in-flight writes finish
first; the next owner's recovery deletes what this process wrote but did not
commit, and replays it. A process paused longer than the group's session
timeout (45 s) may still finish a write after its partition moved on (a zombie):
those rows are stored twice, and the store's readers keep the first-written copy
of each event.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from prometheus_client import CollectorRegistry

from driftloop.collector.columnar import parse_batch
from driftloop.collector.durable import durable_producer
from driftloop.collector.files import (
    STORE_DIRS,
    PendingIndex,
    compact,
    is_environment_error,
    model_folder,
    write_durably,
)
from driftloop.collector.metrics import StoreWriterMetrics
from driftloop.collector.schemas import EventPolicy, InvalidEvent
from driftloop.collector.topics import Topics

__all__ = ["STORE_DIRS", "StoreWriter", "StoreWriterConfig", "write_durably"]

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 1.0
# The schema each kind of stored event follows: a shadow event is a prediction (of a challenger).
SCHEMA_OF = {"prediction": "prediction", "feedback": "feedback", "shadow": "prediction"}


@dataclass(frozen=True)
class StoreWriterConfig:
    """Where to read, where to write, when a partition's buffer becomes a file, and what is accepted."""

    bootstrap_servers: str
    topics: Topics
    store_dir: Path
    group_id: str = "driftloop-store-writer"
    batch_events: int = 50_000
    batch_seconds: float = 1.0
    poll_records: int = 10_000
    policy: EventPolicy = field(default_factory=EventPolicy)
    compact_files: int = 32  # a folder with more files than this has its committed ones merged
    dlq_copy_bytes: int = 900_000  # a bad record larger than this goes to the DLQ by reference (Kafka takes ~1 MB)

    def __post_init__(self) -> None:
        if self.batch_events < 1 or self.batch_seconds <= 0 or self.poll_records < 1:
            raise ValueError("batch_events and poll_records must be >= 1 and batch_seconds > 0")
        if self.compact_files < 2:
            raise ValueError(f"'compact_files' must be at least 2, got {self.compact_files}")


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
        self.index = PendingIndex(config.store_dir)
        self.buffers: dict[TopicPartition, list] = defaultdict(list)
        self.oldest: dict[TopicPartition, float] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.uncommitted: dict[TopicPartition, int] = {}  # durable, but Kafka did not take the commit yet
        self.to_write: queue.Queue = queue.Queue(maxsize=in_flight)  # bounded: backpressure on the fetch loop
        self.written: queue.Queue[_Written | BaseException] = queue.Queue()
        self.closing = threading.Event()
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
            reconnect_backoff_max_ms=1000,  # back within a second of a restarted broker
        )
        self.assigned: set[TopicPartition] = set()  # assigned by a rebalance, not yet rewound to their commit
        self.assigned_lock = threading.Lock()
        self.consumer.subscribe(list(self.kinds), listener=_FinishRevoked(self))
        # Know the partitions before the first join. Otherwise kafka-python 3.0.12 joins with no partitions, rejoins
        # when the metadata arrives, and, when that rejoin outlasts a poll, never applies its assignment.
        for topic in self.kinds:
            self.consumer.partitions_for_topic(topic)
        self.dead_letters = durable_producer(
            config.bootstrap_servers, linger_ms=5, delivery_timeout_ms=30_000, request_timeout_ms=10_000,
            max_block_ms=10_000,
        )
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
                polled.pop(partition, None)
                try:
                    self._recover(partition)
                except KafkaError as error:  # the broker is away: try again on a later poll
                    log.warning("cannot read the committed offset of %s yet (%s); retrying", partition, error)
                    with self.assigned_lock:
                        self.assigned.add(partition)
        with self.assigned_lock:
            for partition in self.assigned:
                polled.pop(partition, None)  # not recovered yet: its records are read again once it is
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
        self.closing.set()
        self.to_write.put(None)
        self.writer.join(timeout=60)
        try:
            self.dead_letters.close(timeout=10)
        except KafkaError as error:
            log.warning("dead-letter producer did not close cleanly: %s", error)
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
            self.uncommitted.pop(partition, None)
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
        self.index.recover(partition.topic, partition.partition, committed)
        self.committed[partition] = max(committed, 0)

    def _hand_over(self, partition: TopicPartition) -> None:
        records = self.buffers.pop(partition)
        self.oldest.pop(partition)
        self.to_write.put((partition, records))
        self._commit_written()

    def _commit_written(self) -> None:
        while True:
            try:
                done = self.written.get_nowait()
            except queue.Empty:
                break
            if isinstance(done, BaseException):
                raise RuntimeError("the store writer thread failed; nothing past the last commit is lost") from done
            self.uncommitted[done.partition] = done.next_offset
            self.metrics.ingested.labels(topic=done.partition.topic).inc(done.stored)
            self.metrics.batch_size.observe(done.read)
            self.metrics.write_seconds.observe(done.seconds)
        if not self.uncommitted:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self.uncommitted.items()}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError:
            log.warning("commit refused after a rebalance; the partitions' next owner replays them")
            self.uncommitted.clear()
            return
        except KafkaError as error:  # the broker or the coordinator is away: the next batch's commit covers these
            log.warning("commit failed (%s); retrying with the next batch", error)
            return
        for partition, offset in self.uncommitted.items():
            self.committed[partition] = offset
            self.index.committed(partition.topic, partition.partition, offset)
        self.uncommitted.clear()

    def _write_loop(self) -> None:
        while True:
            item = self.to_write.get()
            try:
                if item is None:
                    return
                self.written.put(self._write_retrying(*item))
            except BaseException as error:  # reported to the consumer thread, which stops
                self.written.put(error)
            finally:
                self.to_write.task_done()

    def _write_retrying(self, partition: TopicPartition, records: list) -> _Written:
        """Write a batch; on a full disk or an I/O error, wait and write it again (nothing is committed meanwhile)."""
        while True:
            try:
                return self._write(partition, records)
            except Exception as error:
                if not is_environment_error(error) or self.closing.is_set():
                    raise
                log.error("cannot write %s's batch (%s); retrying in 5 s", partition, error)
                time.sleep(5)

    def _write(self, partition: TopicPartition, records: list) -> _Written:
        began = time.perf_counter()
        kind = self.kinds[partition.topic]
        parsed = parse_batch(
            SCHEMA_OF[kind], [r.value for r in records], partition.partition, [r.offset for r in records],
            [r.timestamp for r in records], self.config.policy,
        )
        rejected = list(parsed.rejected)
        if parsed.table.num_rows:
            rejected += self._store(kind, partition, records, parsed.table)
        self._dead_letter(partition, records, rejected)
        stored = parsed.table.num_rows - sum(1 for _, error in rejected if error.code == "unwritable")
        return _Written(partition, records[-1].offset + 1, stored, len(records), time.perf_counter() - began)

    def _store(self, kind: str, partition: TopicPartition, records: list, table: pa.Table) -> list:
        """Write the batch's files (marked pending first); the records no file could take, as rejections."""
        first, last = records[0].offset, records[-1].offset
        name = f"{partition.topic}+{partition.partition}+{first:020d}+{last:020d}.parquet"
        root = self.config.store_dir / STORE_DIRS[kind]
        parts = [(root / folder / name, rows) for folder, rows in _by_store_folder(kind, table)]
        self.index.add(partition.topic, partition.partition, first, last, [path for path, _ in parts])
        unwritable = []
        for path, rows in parts:
            unwritable += self._write_part(partition, path, rows)
        for folder in {path.parent for path, _ in parts}:
            compact(folder, self.index, self.config.compact_files)
        position = {record.offset: index for index, record in enumerate(records)}
        return [(position[offset], error) for offset, error in unwritable]

    def _write_part(self, partition: TopicPartition, path: Path, rows: pa.Table) -> list[tuple[int, InvalidEvent]]:
        """Write `rows` to `path`; if that fails for a reason of theirs, write each half on its own, down to one row."""
        try:
            write_durably(rows, path)
            return []
        except Exception as error:
            if is_environment_error(error):
                raise
            offsets = rows["kafka_offset"].to_pylist()
            if rows.num_rows == 1:
                log.error("event at %s/%d cannot be written (%s); dead-lettered", partition, offsets[0], error)
                return [(offsets[0], InvalidEvent("", f"the store cannot write this event: {error}", "unwritable"))]
            half = rows.num_rows // 2
            failed = []
            for part in (rows.slice(0, half), rows.slice(half)):
                low, high = part["kafka_offset"][0].as_py(), part["kafka_offset"][-1].as_py()
                sub_path = path.with_name(f"{partition.topic}+{partition.partition}+{low:020d}+{high:020d}.parquet")
                self.index.add(partition.topic, partition.partition, low, high, [sub_path])
                failed += self._write_part(partition, sub_path, part)
            return failed

    def _dead_letter(self, partition: TopicPartition, records: list, rejected: list) -> None:
        """Send every rejected record to the DLQ and wait until Kafka has them all, resending after a failure."""
        if not rejected:
            return
        letters = [self._letter(partition, records[index], error) for index, error in sorted(rejected)]
        pending = letters
        while pending:
            sent = []
            for letter in pending:
                try:
                    sent.append((letter, self.dead_letters.send(self.config.topics.dlq, **letter)))
                except KafkaError as error:
                    log.warning("dead letter not sent yet (%s); retrying", error)
                    sent.append((letter, None))
            try:
                self.dead_letters.flush(timeout=60)
            except KafkaError as error:
                log.warning("dead letters not flushed (%s); retrying", error)
            pending = [letter for letter, future in sent if future is None or not future.succeeded()]
            if pending:
                if self.closing.is_set():
                    raise RuntimeError(f"{len(pending)} dead letters not delivered before closing; nothing is committed")
                log.warning("%d dead letters not acknowledged yet; resending in %.0f s", len(pending), RETRY_PAUSE_S)
                time.sleep(RETRY_PAUSE_S)
        for _, error in rejected:
            self.metrics.dlq.labels(topic=partition.topic, reason=error.code).inc()
        log.warning("%d events of %s sent to %s", len(rejected), partition.topic, self.config.topics.dlq)

    def _letter(self, partition: TopicPartition, record, error: InvalidEvent) -> dict:
        source = f"{partition.topic}/{partition.partition}/{record.offset}"
        headers = [
            ("reason", error.code.encode()),
            ("field", error.field.encode()),
            ("error", str(error).encode()[:4096]),
            ("source", source.encode()),
        ]
        value, key = record.value, record.key
        size = len(value or b"") + len(key or b"")
        if size > self.config.dlq_copy_bytes:  # Kafka would refuse the copy: say where the original is instead
            headers.append(("by_reference", b"true"))
            value = orjson.dumps({
                "topic": partition.topic, "partition": partition.partition, "offset": record.offset, "bytes": size,
                "reason": str(error), "code": error.code,
            })
            key = key[:1024] if key else key
        return {"key": key, "value": value, "headers": headers}

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
                yield f"model={model_folder(model)}/{folder}", rows
