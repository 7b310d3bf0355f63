"""Prometheus metrics of the collector's parts, each registered on a registry the caller injects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ProducerMetrics:
    """The model-server side client: what it sent, buffered, dropped, and failed to deliver."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter("driftloop_producer_events_sent", "Events acknowledged by Kafka.", ["topic"], registry=registry)
        self.failed = Counter(
            "driftloop_producer_events_failed", "Events Kafka did not acknowledge after retries.", ["topic"], registry=registry
        )
        self.dropped = Counter(
            "driftloop_producer_events_dropped", "Events dropped because the buffer was full (overflow=drop).", registry=registry
        )
        self.buffered = Gauge("driftloop_producer_buffer_events", "Events waiting in the client's buffer.", registry=registry)
        self.buffer_capacity = Gauge("driftloop_producer_buffer_capacity", "Size of the client's buffer.", registry=registry)


class ApiMetrics:
    """The ingestion HTTP API: latency and status codes per route."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram(
            "driftloop_api_request_duration_seconds", "Request latency, from the first byte of the request to the last of the answer.", ["route"], buckets=LATENCY_BUCKETS, registry=registry
        )
        self.responses = Counter("driftloop_api_responses", "Responses by status code.", ["route", "code"], registry=registry)
        self.events = Counter("driftloop_api_events_accepted", "Events acknowledged by Kafka.", ["topic"], registry=registry)


class StoreWriterMetrics:
    """The consumer that writes the store: events, dead letters, batches, write time, lag."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ingested = Counter(
            "driftloop_collector_events_ingested", "Events written durably to the store.", ["topic"], registry=registry
        )
        self.dlq = Counter(
            "driftloop_collector_dlq", "Events sent to the dead-letter topic.", ["topic", "reason"], registry=registry
        )
        self.batch_size = Histogram(
            "driftloop_collector_batch_events",
            "Events per written batch.",
            buckets=(10, 100, 1_000, 5_000, 10_000, 25_000, 50_000, 100_000),
            registry=registry,
        )
        self.write_seconds = Histogram(
            "driftloop_collector_write_seconds",
            "Time to validate, write, fsync and commit one batch.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "driftloop_collector_consumer_lag", "Events in Kafka not yet in the store.", ["topic", "partition"], registry=registry
        )
