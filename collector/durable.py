"""The one way driftloop writes to Kafka: acks=all and an idempotent producer.

An acknowledged write is on every in-sync replica, and a retried send is never
written twice. Every writer of ours (the model servers' client, the ingestion
API, dead letters, drift events, imported labels) builds its producer here and
adds only its own batching and timeouts.
"""

from __future__ import annotations

from kafka import KafkaProducer

__all__ = ["durable_producer"]


def durable_producer(bootstrap_servers: str, **options) -> KafkaProducer:
    """A KafkaProducer with acks=all and idempotence; `options` are any other KafkaProducer settings."""
    return KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=True, **options)
