"""EventLogger: the model server's client, logging predictions and feedback to Kafka off the request path.

The caller only validates and enqueues; one background thread hands events to
kafka-python, which batches, compresses (lz4) and sends them with acks=all and
idempotence. The buffer is bounded by events not yet acknowledged, so a slow
or absent Kafka costs the model server at most `buffer_events` events of
memory and then, as the caller chose, a short wait (`overflow="block"`) or a
counted drop (`overflow="drop"`). Every event ends acknowledged, dropped, or
counted and logged as failed: none is lost silently.

    logger = EventLogger("127.0.0.1:19092", Topics(), registry)
    logger.log_prediction(request_id="r1", model_name="churn", model_version="3",
                          features={"tenure": 12}, output={"label": 1})
    logger.log_feedback(request_id="r1", label=0)
    logger.close()
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from driftloop.collector.durable import durable_producer
from driftloop.collector.metrics import ProducerMetrics
from driftloop.collector.schemas import FeedbackEvent, PredictionEvent, encode, invalid_event
from driftloop.collector.topics import Topics

log = logging.getLogger(__name__)

OVERFLOW_POLICIES = ("block", "drop")
_STOP = object()
_LOG_EVERY_S = 10.0  # drops and failures come in floods when Kafka is down: one log line per 10 s


class BufferFull(RuntimeError):
    """The buffer stayed full for `block_timeout_s`: Kafka is slower than the callers, or down.

    Retriable: the event was not taken; log it again later or shed load.
    """

    retriable = True


class EventLogger:
    """Logs prediction and feedback events to Kafka without blocking the caller's request path.

    `buffer_events` bounds the events accepted but not yet acknowledged by Kafka;
    `overflow` says what a full buffer does: "block" waits up to `block_timeout_s`
    and then raises BufferFull, "drop" drops the event and counts it.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        registry: CollectorRegistry,
        *,
        buffer_events: int = 100_000,
        overflow: str = "block",
        block_timeout_s: float = 1.0,
        linger_ms: int = 10,
        batch_bytes: int = 256 * 1024,
        delivery_timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        client_id: str = "driftloop-event-logger",
    ) -> None:
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"Invalid 'overflow' {overflow!r}. Valid values are: {list(OVERFLOW_POLICIES)}")
        if buffer_events < 1:
            raise ValueError(f"'buffer_events' must be at least 1, got {buffer_events}")
        if block_timeout_s < 0:
            raise ValueError(f"'block_timeout_s' must be >= 0, got {block_timeout_s}")
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics
        self.buffer_events = buffer_events
        self.overflow = overflow
        self.block_timeout_s = block_timeout_s
        self.linger_ms = linger_ms
        self.batch_bytes = batch_bytes
        self.delivery_timeout_s = delivery_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.client_id = client_id

        self._metrics = ProducerMetrics(registry)
        self._metrics.buffer_capacity.set(buffer_events)
        self._metrics.buffered.set_function(lambda: self._pending)
        for topic in (topics.predictions, topics.feedback):  # at 0 from the start, so a rate shows 0, not nothing
            self._metrics.sent.labels(topic)
            self._metrics.failed.labels(topic)
        self._pending = 0  # accepted, not yet acknowledged or failed
        self._pending_by_topic = {topics.predictions: 0, topics.feedback: 0}
        self._gave_up = False
        self._room = threading.Condition()
        self._closed = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._producer: KafkaProducer | None = None
        self._last_warning = {"drop": 0.0, "failure": 0.0}
        self._on_ack = {t: functools.partial(self._acked, t) for t in (topics.predictions, topics.feedback)}
        self._on_error = {t: functools.partial(self._failed, t) for t in (topics.predictions, topics.feedback)}
        self._thread = threading.Thread(target=self._run, name="driftloop-event-logger", daemon=True)
        self._thread.start()

    def log_prediction(self, event: PredictionEvent | None = None, /, **fields) -> str | None:
        """Buffer one prediction (an event, or its fields); its event id, or None if overflow="drop" dropped it.

        Raises InvalidEvent naming the bad field, or BufferFull (overflow="block").
        """
        return self._log(self.topics.predictions, _event(PredictionEvent, event, fields))

    def log_feedback(self, event: FeedbackEvent | None = None, /, **fields) -> str | None:
        """Buffer one feedback event (an event, or its fields); as `log_prediction`."""
        return self._log(self.topics.feedback, _event(FeedbackEvent, event, fields))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until Kafka acknowledged (or definitively failed) every event buffered so far."""
        with self._room:
            if not self._room.wait_for(lambda: self._pending == 0, timeout_s):
                raise TimeoutError(f"{self._pending} events not acknowledged by Kafka after {timeout_s} s")

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush, then stop. Events still unacknowledged at the deadline are counted as failed and logged."""
        deadline = time.monotonic() + timeout_s
        with self._room:
            self._closed = True
            self._room.notify_all()  # a caller waiting for room (overflow="block") learns it is closed
            self._room.wait_for(lambda: self._pending == 0, timeout_s)
        self._stopping.set()
        self._queue.put(_STOP)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._producer is not None:
            try:
                self._producer.close(timeout=max(0.0, deadline - time.monotonic()))
            except KafkaError as error:  # kafka-python's close gives up on a flush that does not finish
                log.warning("Kafka producer did not close cleanly: %s", error)
        with self._room:
            self._gave_up = True  # a late acknowledgement would be counted twice: it is ignored
            lost = {topic: count for topic, count in self._pending_by_topic.items() if count}
            self._pending, self._pending_by_topic = 0, dict.fromkeys(self._pending_by_topic, 0)
        for topic, count in lost.items():
            self._metrics.failed.labels(topic).inc(count)
        if lost:
            log.error("EventLogger closed before Kafka acknowledged %s events; counted as failed", lost)

    def __enter__(self) -> EventLogger:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def _log(self, topic: str, event: PredictionEvent | FeedbackEvent) -> str | None:
        with self._room:
            if self._pending >= self.buffer_events and not self._closed:
                if self.overflow == "drop":
                    self._metrics.dropped.inc()
                    self._warn("drop", "EventLogger buffer full (%d events): dropping events", self.buffer_events)
                    return None
                if not self._room.wait_for(self._closed_or_room, self.block_timeout_s):
                    raise BufferFull(
                        f"EventLogger buffer of {self.buffer_events} events still full after {self.block_timeout_s} s; "
                        f"Kafka at {self.bootstrap_servers} is slow or unreachable"
                    )
            if self._closed:
                raise RuntimeError("EventLogger is closed")
            self._pending += 1
            self._pending_by_topic[topic] += 1
        self._queue.put((topic, event))
        return event.event_id

    def _closed_or_room(self) -> bool:
        return self._closed or self._pending < self.buffer_events

    def _run(self) -> None:
        producer = self._connect()
        if producer is None:
            return
        self._producer = producer
        while (item := self._queue.get()) is not _STOP:
            self._send(producer, *item)

    def _connect(self) -> KafkaProducer | None:
        while not self._stopping.is_set():
            try:
                return durable_producer(
                    self.bootstrap_servers,
                    client_id=self.client_id,
                    compression_type="lz4",
                    linger_ms=self.linger_ms,
                    batch_size=self.batch_bytes,
                    delivery_timeout_ms=int(self.delivery_timeout_s * 1000),
                    bootstrap_timeout_ms=int(self.connect_timeout_s * 1000),
                    max_block_ms=int(self.connect_timeout_s * 1000),
                    allow_auto_create_topics=False,  # creating topics, with their partition counts, is the stack's job
                )
            except KafkaError as error:
                log.warning("Kafka at %s not reachable (%s); events wait in the buffer", self.bootstrap_servers, error)
                self._stopping.wait(1.0)
        return None

    def _send(self, producer: KafkaProducer, topic: str, event: PredictionEvent | FeedbackEvent) -> None:
        key, value = event.request_id.encode(), encode(event)
        while True:
            try:
                future = producer.send(topic, key=key, value=value)
            except KafkaTimeoutError as error:  # no metadata yet: Kafka is down; keep the event unless stopping
                if self._stopping.is_set():
                    self._failed(topic, error)
                    return
                log.warning("Kafka at %s has no metadata for %s (down, or no such topic: %s); retrying",
                            self.bootstrap_servers, topic, error)
                continue
            except KafkaError as error:
                self._failed(topic, error)
                return
            future.add_callback(self._on_ack[topic]).add_errback(self._on_error[topic])
            return

    def _acked(self, topic: str, _metadata) -> None:
        if self._settled(topic):
            self._metrics.sent.labels(topic).inc()

    def _failed(self, topic: str, error: Exception) -> None:
        if self._settled(topic):
            self._metrics.failed.labels(topic).inc()
            self._warn("failure", "event to %s not delivered after kafka-python's retries: %s", topic, error)

    def _settled(self, topic: str) -> bool:
        with self._room:
            if self._gave_up:
                return False
            self._pending -= 1
            self._pending_by_topic[topic] -= 1
            self._room.notify_all()
            return True

    def _warn(self, kind: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_warning[kind] >= _LOG_EVERY_S:
            self._last_warning[kind] = now
            log.warning(message + " (more are counted in metrics, logged at most every %.0f s)", *args, _LOG_EVERY_S)


def _event(schema: type, event, fields: dict):
    """The validated event: the one given, or one built from keyword fields (InvalidEvent names the bad field)."""
    if event is not None:
        if fields:
            raise TypeError("pass an event or keyword fields, not both")
        if not isinstance(event, schema):
            raise TypeError(f"expected a {schema.__name__}, got {type(event).__name__}")
        return event
    try:
        return schema(**fields)
    except ValidationError as error:
        raise invalid_event(error) from None
