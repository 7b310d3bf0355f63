"""The logging contract: prediction and feedback events, versioned, validated, encoded as JSON.

Everything downstream (store, drift, curation, retraining) reads these. A new
version is a new model class plus one line in `SCHEMAS`; `decode` dispatches
on the `schema_version` field and raises `InvalidEvent` naming the field for
anything it cannot accept, so a consumer can dead-letter it and move on.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

# The rules, stated once. The columnar fast path (collector.columnar) flags every row that might
# break one of them and lets these models decide; the API validates with these models too.
# - numbers are JSON numbers: never a bool or a string, never NaN or infinity;
# - an integer feature fits in 64 bits (the store's integers are int64);
# - a time is an ISO 8601 string with a time zone, from 1970 up to (not including) 9999 in UTC;
# - strings have the lengths below; a label is a non-empty string or an integer;
# - at most MAX_FEATURES features (a deployment may allow fewer: EventPolicy.max_features).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)  # exclusive
MAX_FEATURES = 10_000
MAX_NAME = 256

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Number = Annotated[float, Strict()]  # strict: an int is a number, a bool or "1.5" is not
FeatureValue = Number | Annotated[int, Strict()] | StrictBool | str | None
Label = Annotated[str, StringConstraints(min_length=1, max_length=256)] | StrictInt


class InvalidEvent(ValueError):
    """An event that can never be accepted: it goes to `dlq` and is not retried.

    `field` is the dotted path of the first bad field ("" for the whole event),
    `reason` a sentence saying what is wrong, `code` one of `CODES` (a metric label).
    """

    retriable = False
    CODES = ("invalid_json", "not_an_object", "unknown_schema_version", "invalid_field", "too_large", "unwritable")

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
    timestamp: AwareDatetime = Field(
        default_factory=_now,
        description="When it happened: ISO 8601 with a time zone, from 1970 up to (not including) 9999 in UTC.",
    )

    @field_validator("timestamp", mode="before")
    @classmethod
    def _a_time_not_a_number(cls, value: Any) -> Any:
        if not isinstance(value, str | datetime):
            raise ValueError("a time is an ISO 8601 string with a time zone (not a number)")
        return value

    @field_validator("timestamp")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        if not EARLIEST <= value < LATEST:
            raise ValueError("a time must lie from 1970-01-01 up to (not including) 9999-01-01, UTC")
        return value


class PredictionOutput(BaseModel):
    """What the model said: a label, class probabilities, a score, or several of them."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False,
        json_schema_extra={"anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                                     for name in ("label", "probabilities", "score")]},
    )

    label: Label | None = None
    probabilities: dict[Annotated[str, StringConstraints(max_length=256)], Annotated[Number, Field(ge=0, le=1)]] | None = Field(
        default=None, description="Class probabilities; they must sum to 1 (within 1e-3)."
    )
    score: Number | None = None

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
    features: dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)], FeatureValue] = Field(
        description="Named input values; null for a missing value. Integers fit in 64 bits.",
        min_length=1, max_length=MAX_FEATURES,
    )
    embedding: list[Number] | None = Field(default=None, max_length=65536, description="An embedding or flattened image.")
    output: PredictionOutput
    latency_ms: Annotated[Number, Field(ge=0)] | None = None

    @field_validator("features", mode="before")
    @classmethod
    def _integers_fit_in_64_bits(cls, features: Any) -> Any:
        if isinstance(features, dict):
            for name, value in features.items():
                if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
                    raise ValueError(f"feature {name!r}: an integer feature must fit in 64 bits, got {value}")
        return features


class FeedbackEventV1(_Event):
    """What the world said back about one prediction: its true label, or a rating."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", allow_inf_nan=False,
        json_schema_extra={"anyOf": [{"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                                     for name in ("label", "rating")]},
    )

    schema_version: Literal[1] = 1
    label: Label | None = None
    rating: Number | None = None
    source: Literal["user", "annotator", "system"] = "user"

    @model_validator(mode="after")
    def _label_or_rating(self) -> FeedbackEventV1:
        if self.label is None and self.rating is None:
            raise ValueError("feedback needs a label or a rating")
        return self


class FeedbackEventV2(FeedbackEventV1):
    """Version 1 plus the annotation a label comes from, so that deleting the annotation can withdraw it.

    `annotation` names one annotation of a labelling tool (`label-studio:<id>`). A withdrawal
    (`withdrawn=True`, no label, no rating) takes back every label of its annotation (a deleted
    annotation is never saved again): the store's labelled view no longer counts them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    schema_version: Literal[2] = 2
    annotation: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    withdrawn: StrictBool = False

    @model_validator(mode="after")
    def _label_or_rating(self) -> FeedbackEventV2:
        if self.withdrawn:
            if self.annotation is None or self.label is not None or self.rating is not None:
                raise ValueError("a withdrawal names the annotation it withdraws, and carries no label or rating")
        elif self.label is None and self.rating is None:
            raise ValueError("feedback needs a label or a rating")
        return self


PredictionEvent = PredictionEventV1
FeedbackEvent = FeedbackEventV1
Event = PredictionEventV1 | FeedbackEventV1 | FeedbackEventV2

# (kind, version) -> model. A new version is one class and one line here.
SCHEMAS: dict[tuple[str, int], type[_Event]] = {
    ("prediction", 1): PredictionEventV1,
    ("feedback", 1): FeedbackEventV1,
    ("feedback", 2): FeedbackEventV2,
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


@dataclass(frozen=True)
class EventPolicy:
    """What one deployment accepts beyond the schema, so that no client can blow up the store.

    - `max_features`: features per prediction (a wide event costs what it weighs, within a bound);
    - `model_names`: the models that may log (empty: any), and/or `model_name_pattern`, a regular
      expression a name must match whole: each model is a folder of the store;
    - `max_age` / `max_ahead`: how far an event's time may lie before / after the clock it is judged
      by: the API's clock when a request comes in, the broker's time of the record in the collector
      (the record's timestamp). Each distinct hour is a folder of the store.
    The API answers 422 naming the field; the collector dead-letters the event with the same sentence.
    """

    max_features: int = 1000
    model_names: tuple[str, ...] = ()
    model_name_pattern: str | None = None
    max_age: timedelta = timedelta(days=365)
    max_ahead: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if not 1 <= self.max_features <= MAX_FEATURES:
            raise ValueError(f"'max_features' must lie in [1, {MAX_FEATURES}], got {self.max_features}")
        if self.max_age <= timedelta(0) or self.max_ahead < timedelta(0):
            raise ValueError("'max_age' must be positive and 'max_ahead' not negative")
        if self.model_name_pattern is not None:
            re.compile(self.model_name_pattern)

    def model_name_problem(self, name: str) -> str | None:
        """Why `name` may not log here, or None."""
        if self.model_names and name not in self.model_names:
            return f"model {name!r} is not one of the declared models {sorted(self.model_names)}"
        if self.model_name_pattern is not None and re.fullmatch(self.model_name_pattern, name) is None:
            return f"model name {name!r} does not match the pattern {self.model_name_pattern!r}"
        return None

    def time_problem(self, moment: datetime, clock: datetime) -> str | None:
        """Why an event of time `moment` is refused when judged at `clock`, or None."""
        if moment < clock - self.max_age:
            return f"the event's time is more than {_span(self.max_age)} before {clock:%Y-%m-%dT%H:%M:%SZ}"
        if moment > clock + self.max_ahead:
            return f"the event's time is more than {_span(self.max_ahead)} after {clock:%Y-%m-%dT%H:%M:%SZ}"
        return None

    def features_problem(self, count: int) -> str | None:
        if count > self.max_features:
            return f"{count} features; at most {self.max_features} are accepted per event"
        return None

    def check(self, event: Event, clock: datetime) -> InvalidEvent | None:
        """The first rule `event` breaks, as an InvalidEvent naming the field; None when it keeps them all."""
        problem = self.time_problem(event.timestamp, clock)
        if problem:
            return InvalidEvent("timestamp", problem)
        if isinstance(event, PredictionEventV1):
            if problem := self.model_name_problem(event.model_name):
                return InvalidEvent("model_name", problem)
            if problem := self.features_problem(len(event.features)):
                return InvalidEvent("features", problem)
        return None


def _span(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours / 24:g} days" if hours >= 48 else f"{hours:g} hours"
