"""Collects what the model sees and says, and what users say back: schemas, Kafka I/O, the store."""

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

__all__ = [
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
