"""Collects what the model sees and says, and what users say back: schemas, Kafka I/O, the store."""

from collector.api import NotAcknowledged, create_app, serve
from collector.durable import durable_producer
from collector.metrics import ApiMetrics, ProducerMetrics, StoreWriterMetrics
from collector.producer import OVERFLOW_POLICIES, BufferFull, EventLogger
from collector.schemas import (
    SCHEMAS,
    Event,
    FeedbackEvent,
    FeedbackEventV1,
    InvalidEvent,
    PredictionEvent,
    PredictionEventV1,
    PredictionOutput,
    decode,
    encode,
    from_dict,
)
from collector.store import Store
from collector.store_writer import StoreWriter, StoreWriterConfig
from collector.topics import TOPICS, Topics

__all__ = [
    "OVERFLOW_POLICIES",
    "BufferFull",
    "EventLogger",
    "NotAcknowledged",
    "create_app",
    "durable_producer",
    "serve",
    "TOPICS",
    "ApiMetrics",
    "ProducerMetrics",
    "Store",
    "StoreWriter",
    "StoreWriterConfig",
    "StoreWriterMetrics",
    "Topics",
    "SCHEMAS",
    "Event",
    "FeedbackEvent",
    "FeedbackEventV1",
    "InvalidEvent",
    "PredictionEvent",
    "PredictionEventV1",
    "PredictionOutput",
    "decode",
    "encode",
    "from_dict",
]
