"""Collects what the model sees and says, and what users say back: schemas, Kafka I/O, the store.

`import driftloop.collector` is light: a model server that only logs predictions needs the
schemas and `EventLogger` (pydantic, kafka-python, prometheus-client). The server side (the
ingestion API, the store writer, the store reader) needs the `collector` extra (FastAPI,
pyarrow, DuckDB) and is imported when one of its names is first used.
"""

from importlib import import_module

from driftloop.collector.durable import durable_producer
from driftloop.collector.metrics import ApiMetrics, ProducerMetrics, StoreWriterMetrics
from driftloop.collector.producer import OVERFLOW_POLICIES, BufferFull, EventLogger
from driftloop.collector.schemas import (
    SCHEMAS,
    Event,
    FeedbackEvent,
    FeedbackEventV1,
    FeedbackEventV2,
    InvalidEvent,
    PredictionEvent,
    PredictionEventV1,
    PredictionOutput,
    decode,
    encode,
    from_dict,
)
from driftloop.collector.topics import TOPICS, Topics

_SERVER_SIDE = {
    "NotAcknowledged": "api",
    "create_app": "api",
    "serve": "api",
    "Store": "store",
    "StoreWriter": "store_writer",
    "StoreWriterConfig": "store_writer",
}


def __getattr__(name: str):
    if name in _SERVER_SIDE:
        return getattr(import_module(f"{__name__}.{_SERVER_SIDE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "FeedbackEventV2",
    "InvalidEvent",
    "PredictionEvent",
    "PredictionEventV1",
    "PredictionOutput",
    "decode",
    "encode",
    "from_dict",
]
