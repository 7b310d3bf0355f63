"""The one way driftloop writes to Kafka: acks=all, retries until a deadline, and back within a second of the broker.

An acknowledged write is on every in-sync replica. Every writer of ours (the
model servers' client, the ingestion API, dead letters, drift events, imported
labels) builds its producer here and adds only its own batching and timeouts.

Why not kafka-python's idempotent producer. With kafka-python 3.0.12, a broker
that dies (kill -9, a crash, a lost machine) while produce requests are in
flight makes the producer expire those batches and reset its producer id; the
`InitProducerId` request it then sends goes out on the dead connection and is
never answered or retried, and the sender waits for it for ever: no write of
that producer is acknowledged again, even after the broker is back (measured:
0 acknowledgements in 30 s after the broker was ready; the same load without
idempotence was acknowledged again 0.1 s after it). So idempotence is off, and
exactly-once is kept where it was always decided: by event ids. A retried send
may put one event into Kafka twice; every event carries its own `event_id`, and
the store's readers keep the first-written copy of each id
(`collector.store`), so a duplicate in Kafka is never a duplicate for a reader.

`reconnect_backoff_max_ms=1000` (kafka-python's default is 30 s) bounds the wait
between reconnection attempts, so a writer is back within about a second of the
broker answering again.
"""

from __future__ import annotations

from kafka import KafkaAdminClient, KafkaProducer
from kafka.errors import KafkaError

__all__ = ["RECONNECT_BACKOFF_MAX_MS", "durable_producer", "kafka_unreachable"]

RECONNECT_BACKOFF_MAX_MS = 1000


def durable_producer(bootstrap_servers: str, **options) -> KafkaProducer:
    """A KafkaProducer with acks=all that recovers by itself from a broker restart; `options` are any other settings."""
    settings = {"reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS, **options}
    return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=False, **settings)


def kafka_unreachable(bootstrap_servers: str, timeout_s: float = 2.0) -> str | None:
    """None when a broker answers a metadata request within `timeout_s`; else why not, as a sentence.

    For readiness probes: a frozen or absent broker, a wrong address, all read as not ready.
    """
    timeout_ms = max(1, int(timeout_s * 1000))
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms, bootstrap_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
        )
    except (KafkaError, OSError) as error:
        return f"Kafka at {bootstrap_servers} is unreachable: {error}"
    try:
        admin.describe_cluster()
        return None
    except (KafkaError, OSError) as error:
        return f"Kafka at {bootstrap_servers} did not answer a metadata request: {error}"
    finally:
        admin.close()
