"""Drift events owed to Kafka, sent on a thread of their own so that a broker outage never stops a run.

The monitor hands each event to an `EventOutbox` and goes on. The outbox keeps what it owes in
a file (written whole or not at all), sends the oldest first, and on a failure waits and tries
again, with a backoff up to `max_backoff_s`, for as long as it takes: it logs one line when
sending starts to fail and one when it works again, and counts both. A restarted monitor sends
what the last one still owed. An event that timed out may have been written all the same, so a
consumer can see it twice: each event carries an `event_id` to deduplicate on.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["EventOutbox", "KafkaTopicWriter", "write_json_atomically"]


class EventOutbox:
    """Events waiting to be sent with `send(key, value)`, which blocks until acknowledged or raises."""

    def __init__(
        self,
        send: Callable[[bytes, bytes], None],
        path: Path | None = None,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.send = send
        self.path = Path(path) if path is not None else None
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.published = 0
        self.failures = 0
        self._owed: deque[tuple[bytes, bytes]] = deque(self._load())
        self._wake = threading.Condition()
        self._stopping = False
        self._failing_since: float | None = None
        self._thread: threading.Thread | None = None

    @property
    def owed(self) -> int:
        with self._wake:
            return len(self._owed)

    def put(self, key: bytes, value: bytes) -> None:
        """Owe one more event; it is sent in the background. Never blocks on Kafka."""
        with self._wake:
            self._owed.append((key, value))
            self._save()
            self._wake.notify()
        self.start()

    def start(self) -> None:
        """Start sending (also what a previous process still owed)."""
        with self._wake:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._send_loop, name="drift-events", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until nothing is owed; False if something still is after `timeout_s`."""
        self.start()
        deadline = time.monotonic() + timeout_s
        with self._wake:
            while self._owed and time.monotonic() < deadline:
                self._wake.wait(min(0.1, max(0.0, deadline - time.monotonic())))
            return not self._owed

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop sending after the send in progress; what is still owed stays in the file for the next start."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    def _send_loop(self) -> None:
        backoff = self.backoff_s
        while True:
            with self._wake:
                while not self._owed and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    return
                key, value = self._owed[0]
            try:
                self.send(key, value)
            except Exception as error:  # any failure: Kafka away, a timeout, a refused record
                self.failures += 1
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                    log.warning("drift events cannot be sent (%s: %s); %d owed, retrying until Kafka answers",
                                type(error).__name__, error, self.owed)
                with self._wake:
                    self._wake.wait_for(lambda: self._stopping, backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            with self._wake:
                if self._owed and self._owed[0] == (key, value):
                    self._owed.popleft()
                self._save()
                self._wake.notify_all()
            self.published += 1
            backoff = self.backoff_s
            if self._failing_since is not None:
                log.info("drift events are sent again after %.0f s; %d still owed",
                         time.monotonic() - self._failing_since, self.owed)
                self._failing_since = None

    def _load(self) -> list[tuple[bytes, bytes]]:
        if self.path is None or not self.path.exists():
            return []
        try:
            document = json.loads(self.path.read_text())
            return [(key.encode(), value.encode()) for key, value in document["owed"]]
        except (ValueError, KeyError, TypeError) as error:
            log.error("ignoring unreadable outbox %s (%s)", self.path, error)
            return []

    def _save(self) -> None:
        if self.path is not None:
            owed = [[key.decode(), value.decode()] for key, value in self._owed]
            write_json_atomically(self.path, {"format": 1, "owed": owed})


class KafkaTopicWriter:
    """`send(key, value)` to one topic, waiting for the acknowledgement; the producer is made on first use
    and made anew after a failure, so a broker that was away (or was never there) is found again."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 10.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer = None

    def send(self, key: bytes, value: bytes) -> None:
        from driftloop.collector.durable import durable_producer

        timeout_ms = int(self.timeout_s * 1000)
        try:
            if self._producer is None:
                self._producer = durable_producer(
                    self.bootstrap_servers, bootstrap_timeout_ms=timeout_ms, max_block_ms=timeout_ms,
                    request_timeout_ms=timeout_ms,
                    delivery_timeout_ms=timeout_ms + 1000,
                )
            self._producer.send(self.topic, key=key, value=value).get(timeout=self.timeout_s + 2)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception:  # closing a producer whose broker is gone may fail; it is dropped either way
                pass


def write_json_atomically(path: Path, document: dict) -> None:
    """Write `document` as JSON so that `path` holds either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as handle:
        json.dump(document, handle, separators=(",", ":"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
