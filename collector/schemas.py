"""The logging contract: prediction and feedback events, versioned, validated, encoded as JSON.

Everything downstream (store, drift, curation, retraining) reads these. A new
version is a new model class plus one line in `SCHEMAS`; `decode` dispatches
on the `schema_version` field and raises `InvalidEvent` naming the field for
anything it cannot accept, so a consumer can dead-letter it and move on.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
FeatureValue = float | int | bool | str | None
Label = Annotated[str, StringConstraints(max_length=256)] | int


class InvalidEvent(ValueError):
    """An event that can never be accepted: it goes to `dlq` and is not retried.

    `field` is the dotted path of the first bad field ("" for the whole event),
    `reason` a sentence saying what is wrong, `code` one of `CODES` (a metric label).
    """

    retriable = False
    CODES = ("invalid_json", "not_an_object", "unknown_schema_version", "invalid_field")

    def __init__(self, field: str, reason: str, code: str = "invalid_field") -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.code = code


def _new_event_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, str_strip_whitespace=False)

    event_id: Id = Field(default_factory=_new_event_id, description="Unique per event; the store's dedup key.")
    request_id: Id = Field(description="The model request this event belongs to; the Kafka key.")
    timestamp: AwareDatetime = Field(default_factory=_now, description="When it happened, with a time zone.")


class PredictionOutput(BaseModel):
    """What the model said: a label, class probabilities, a score, or several of them."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    label: Label | None = None
    probabilities: dict[Annotated[str, StringConstraints(max_length=256)], Annotated[float, Field(ge=0, le=1)]] | None = None
    score: float | None = None

    @model_validator(mode="after")
    def _something_said(self) -> PredictionOutput:
        if self.label is None and self.probabilities is None and self.score is None:
            raise ValueError("output needs at least one of label, probabilities, score")
        if self.probabilities is not None and not math.isclose(sum(self.probabilities.values()), 1.0, abs_tol=1e-3):
            raise ValueError(f"probabilities must sum to 1 (within 1e-3); they sum to {sum(self.probabilities.values()):.6g}")
        return self


class PredictionEventV1(_Event):
    """One model call: its inputs, its output and how long it took."""

    schema_version: Literal[1] = 1
    model_name: Name
    model_version: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    features: dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], FeatureValue] = Field(
        description="Named input values; null for a missing value.",
    )
    embedding: list[float] | None = Field(default=None, max_length=65536, description="An embedding or flattened image.")
    output: PredictionOutput
    latency_ms: Annotated[float, Field(ge=0)] | None = None

    @field_validator("features")
    @classmethod
    def _not_empty(cls, features: dict[str, FeatureValue]) -> dict[str, FeatureValue]:
        if not features:
            raise ValueError("features must name at least one value")
        return features


class FeedbackEventV1(_Event):
    """What the world said back about one prediction: its true label, or a rating."""

    schema_version: Literal[1] = 1
    label: Label | None = None
    rating: float | None = None
    source: Literal["user", "annotator", "system"] = "user"

    @model_validator(mode="after")
    def _label_or_rating(self) -> FeedbackEventV1:
        if self.label is None and self.rating is None:
            raise ValueError("feedback needs a label or a rating")
        return self


PredictionEvent = PredictionEventV1
FeedbackEvent = FeedbackEventV1
Event = PredictionEventV1 | FeedbackEventV1

# (kind, version) -> model. A new version is one class and one line here.
SCHEMAS: dict[tuple[str, int], type[_Event]] = {
    ("prediction", 1): PredictionEventV1,
    ("feedback", 1): FeedbackEventV1,
}
KINDS = ("prediction", "feedback")


def encode(event: _Event) -> bytes:
    """Compact JSON bytes of an event, as it travels on Kafka."""
    return event.__pydantic_serializer__.to_json(event)


def decode(kind: str, raw: bytes | str) -> Event:
    """Parse and validate one event of `kind` ("prediction" or "feedback"); raise InvalidEvent."""
    if kind not in KINDS:
        raise ValueError(f"Invalid kind {kind!r}. Valid kinds are: {list(KINDS)}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent("", f"not valid JSON: {error}", "invalid_json") from None
    if not isinstance(document, dict):
        raise InvalidEvent("", f"an event is a JSON object, got {type(document).__name__}", "not_an_object")
    return from_dict(kind, document)


# A decoder must never invent these: a replay would give the same event another id or time.
REQUIRED_ON_THE_WIRE = ("event_id", "timestamp")


def from_dict(kind: str, document: dict) -> Event:
    """Validate an already-parsed event of `kind`; raise InvalidEvent naming the bad field."""
    for field in REQUIRED_ON_THE_WIRE:
        if document.get(field) is None:
            raise InvalidEvent(field, "Field required (an event on the wire carries its own id and time)")
    version = document.get("schema_version", 1)
    schema = SCHEMAS.get((kind, version)) if isinstance(version, int) and not isinstance(version, bool) else None
    if schema is None:
        known = sorted(v for k, v in SCHEMAS if k == kind)
        raise InvalidEvent(
            "schema_version", f"unknown {kind} schema version {version!r}; known versions are {known}", "unknown_schema_version"
        )
    try:
        return schema.model_validate(document)
    except ValidationError as error:
        raise invalid_event(error) from None


def invalid_event(error: ValidationError) -> InvalidEvent:
    """The first problem of a pydantic error as an InvalidEvent with a dotted field path."""
    problem = error.errors(include_url=False)[0]
    field = ".".join(str(part) for part in problem["loc"])
    return InvalidEvent(field, problem["msg"])
