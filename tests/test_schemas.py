"""The logging contract: events validate, round-trip, and bad ones name the field that is wrong."""

from __future__ import annotations

import orjson
import pytest

from driftloop.collector import FeedbackEvent, InvalidEvent, PredictionEvent, decode, encode, from_dict


def a_prediction(**changes) -> dict:
    event = {
        "event_id": "e-1", "timestamp": "2026-11-23T10:00:00+00:00", "request_id": "r-1", "model_name": "churn", "model_version": "3",
        "features": {"age": 41, "plan": "pro", "spend": 12.5, "missing": None},
        "output": {"label": "stay", "probabilities": {"stay": 0.8, "leave": 0.2}},
        "latency_ms": 4.2,
    }
    event.update(changes)
    return event


def test_prediction_round_trips_through_the_encoding():
    event = PredictionEvent.model_validate(a_prediction(embedding=[0.1, 0.2]))
    assert decode("prediction", encode(event)) == event
    assert orjson.loads(encode(event))["schema_version"] == 1


def test_feedback_round_trips_and_defaults_its_ids_and_time():
    event = FeedbackEvent(request_id="r-1", rating=4.5)
    assert decode("feedback", encode(event)) == event
    assert event.event_id and event.timestamp.tzinfo is not None
    assert FeedbackEvent(request_id="r-1", label=1).event_id != event.event_id


@pytest.mark.parametrize(
    ("document", "field"),
    [
        pytest.param(a_prediction(request_id=""), "request_id", id="empty-request-id"),
        pytest.param({k: v for k, v in a_prediction().items() if k != "model_name"}, "model_name", id="missing-field"),
        pytest.param(a_prediction(latency_ms="fast"), "latency_ms", id="wrong-type"),
        pytest.param(a_prediction(latency_ms=-1), "latency_ms", id="negative-latency"),
        pytest.param(a_prediction(features={}), "features", id="no-features"),
        pytest.param(a_prediction(output={}), "output", id="empty-output"),
        pytest.param(a_prediction(output={"probabilities": {"a": 0.3, "b": 0.3}}), "output", id="probabilities-not-summing"),
        pytest.param(a_prediction(timestamp="2026-01-01T00:00:00"), "timestamp", id="naive-time"),
        pytest.param(a_prediction(schema_version=2), "schema_version", id="unknown-version"),
        pytest.param(a_prediction(event_id=None), "event_id", id="no-event-id-on-the-wire"),
        pytest.param(a_prediction(extra_field=1), "extra_field", id="unknown-field"),
    ],
)
def test_invalid_prediction_names_the_field(document, field):
    with pytest.raises(InvalidEvent) as error:
        decode("prediction", orjson.dumps(document))
    assert error.value.field == field
    assert error.value.retriable is False


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff\xfe", b"[1, 2]", b"null"], ids=["empty", "truncated", "garbage", "array", "null"])
def test_undecodable_bytes_are_invalid_events(raw):
    with pytest.raises(InvalidEvent):
        decode("prediction", raw)


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize(
    ("changes", "field"),
    [({"latency_ms": None}, "latency_ms"), ({"features": {"spend": None}}, "features.spend.float")],
    ids=["latency", "feature"],
)
def test_non_finite_numbers_are_refused(value, changes, field):
    document = a_prediction(**{key: value if v is None else {k: value for k in v} for key, v in changes.items()})
    with pytest.raises(InvalidEvent) as error:
        from_dict("prediction", document)
    assert error.value.field == field


def test_feedback_needs_a_label_or_a_rating():
    with pytest.raises(InvalidEvent) as error:
        decode("feedback", b'{"event_id": "e", "timestamp": "2026-11-23T10:00:00Z", "request_id": "r-1"}')
    assert "label or a rating" in error.value.reason


def test_feedback_source_lists_the_allowed_values():
    with pytest.raises(InvalidEvent) as error:
        decode("feedback", b'{"event_id": "e", "timestamp": "2026-11-23T10:00:00Z", "request_id": "r-1", "label": 1, "source": "robot"}')
    assert error.value.field == "source"
    assert "annotator" in error.value.reason
