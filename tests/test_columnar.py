"""The columnar fast path and the schema accept exactly the same events, whatever shares their batch.

Pure: no broker. Hypothesis mutates valid events (types swapped, NaN and infinity, integers past
64 bits, explicit nulls, unknown keys, odd times) and mixes in arbitrary bytes; each batch is parsed
by `parse_batch` and each value alone by the schema, and the verdicts must agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson
import pyarrow as pa
import pytest
from events import START, prediction_documents
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftloop.collector.columnar import parse_batch
from driftloop.collector.schemas import EventPolicy, InvalidEvent, decode

GOOD_PREDICTIONS = prediction_documents(8)
GOOD_FEEDBACK = [
    {"schema_version": 1, "event_id": f"f{i}", "request_id": f"r{i}", "timestamp": "2026-11-23T09:05:00+00:00",
     "label": i % 2, "source": "user"}
    for i in range(8)
]
ODD_TIMES = ["2026-11-23T09:00:00Z", "2026-11-23 09:00:00Z", "2026-11-23T09:00Z", "2026-11-23T09:00:00+01",
             "0001-01-01T00:30+01:00", "1970-01-01T00:30:00+01:00", "9998-12-31T23:30:00-01:00", "2026-02-30T00:00:00Z",
             "2026-11-23T09:00:00.1234567Z", "2026-11-23T09:00:00", "", "yesterday", 0, 1.5, True, None]

specials = st.sampled_from([float("nan"), float("inf"), 2**63, 2**64 - 1, -(2**63) - 1, 0.5, 1, -1, "", None])
scalars = st.one_of(
    specials, specials, specials,
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([float("nan"), float("inf"), 2**63, 2**64 - 1, -(2**63) - 1, 0.5, 1, -1, "", None]),
    st.none(), st.booleans(), st.text(max_size=5), st.sampled_from(ODD_TIMES),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                           max_leaves=8)
keys = st.sampled_from(["event_id", "request_id", "timestamp", "model_name", "model_version", "features", "output",
                        "latency_ms", "embedding", "schema_version", "label", "rating", "source", "extra", ""])


@st.composite
def mutated(draw, base: list[dict]) -> bytes:
    """One value: a good event, a mutated one, or arbitrary bytes."""
    document = json.loads(json.dumps(draw(st.sampled_from(base))))
    choice = draw(st.integers(0, 11))
    if choice == 0:
        return draw(st.binary(max_size=40))
    if choice == 1:
        return json.dumps(draw(json_values)).encode()
    if choice == 2:
        document.pop(draw(keys), None)
    elif choice in (3, 4):
        document[draw(keys)] = draw(json_values)
    elif choice in (5, 8, 9) and "features" in document:
        document["features"][draw(st.sampled_from(["f00", "f01", "new", ""]))] = draw(json_values)
    elif choice in (6, 10) and "output" in document:
        document["output"][draw(st.sampled_from(["label", "score", "probabilities", "other"]))] = draw(json_values)
    elif choice == 7:
        document["timestamp"] = draw(st.sampled_from(ODD_TIMES))
    elif choice == 11:
        document[draw(st.sampled_from(["latency_ms", "rating", "score"]))] = draw(scalars)
    return json.dumps(document, allow_nan=True).encode()  # NaN and Infinity as the literals some clients write


def schema_accepts(kind: str, value: bytes, policy: EventPolicy) -> bool:
    try:
        event = decode(kind, value)
    except InvalidEvent:
        return False
    return policy.check(event, event.timestamp) is None  # judged at its own time: only the feature bound counts


def check_agreement(kind: str, values: list[bytes], policy: EventPolicy | None = None) -> None:
    policy = policy or EventPolicy()
    parsed = parse_batch(kind, values, 0, list(range(100, 100 + len(values))), policy=policy)
    stored = parsed.table["kafka_offset"].to_pylist()
    rejected = {index for index, _ in parsed.rejected}
    assert sorted(stored + [100 + i for i in rejected]) == list(range(100, 100 + len(values))), "each value once"
    for index, value in enumerate(values):
        assert (index not in rejected) == schema_accepts(kind, value, policy), value
    assert all(isinstance(error, InvalidEvent) and error.reason for _, error in parsed.rejected)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def among_good(base: list[dict], bad: list[bytes], good: int, where: int) -> list[bytes]:
    """A few bad values among many good ones, so that Arrow reads the batch and the checks must find them."""
    values = [orjson.dumps(d) for d in (base * 20)[:good]]
    for value in bad:
        values.insert(where % (len(values) + 1), value)
    return values


@FAST
@given(st.lists(mutated(GOOD_PREDICTIONS), min_size=1, max_size=3), st.integers(0, 120), st.integers(0, 200))
def test_fast_path_and_schema_agree_on_predictions(bad, good, where):
    check_agreement("prediction", among_good(GOOD_PREDICTIONS, bad, good, where))


@FAST
@given(st.lists(mutated(GOOD_FEEDBACK), min_size=1, max_size=3), st.integers(0, 120), st.integers(0, 200))
def test_fast_path_and_schema_agree_on_feedback(bad, good, where):
    check_agreement("feedback", among_good(GOOD_FEEDBACK, bad, good, where))


def with_change(document: dict, path: str, value) -> bytes:
    document = json.loads(json.dumps(document))
    *parents, last = path.split(".")
    target = document
    for part in parents:
        target = target[part]
    target[last] = value
    return json.dumps(document, allow_nan=True).encode()


P, F = GOOD_PREDICTIONS[0], GOOD_FEEDBACK[0]
# The issue's cases: each must be refused, by the fast path as by the schema, whatever its neighbours.
REFUSED = {
    "nan-feature": ("prediction", with_change(P, "features.f00", float("nan"))),
    "infinite-latency": ("prediction", with_change(P, "latency_ms", float("inf"))),
    "integer-past-64-bits": ("prediction", with_change(P, "features.f00", 2**64 - 1)),
    "time-before-1970": ("prediction", with_change(P, "timestamp", "0001-01-01T00:30+01:00")),
    "rating-false": ("feedback", with_change(F, "rating", False)),
    "rating-as-text": ("feedback", with_change(F, "rating", "1.5")),
    "timestamp-zero": ("feedback", with_change(F, "timestamp", 0)),
    "empty-label": ("feedback", with_change(F, "label", "")),
    "explicit-null-source": ("feedback", with_change(F, "source", None)),
    "unknown-key-null": ("prediction", with_change(P, "extra", None)),
    "json-null": ("prediction", b"null"),
    "deeply-nested": ("prediction", b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "tombstone": ("prediction", None),
}


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_the_issues_cases_are_refused_alone_and_among_good_events(case):
    kind, value = REFUSED[case]
    good = [orjson.dumps(d) for d in (GOOD_PREDICTIONS if kind == "prediction" else GOOD_FEEDBACK) * 8]
    for values in ([value], good[:20] + [value] + good[20:]):
        parsed = parse_batch(kind, values, 0, list(range(len(values))))
        assert [index for index, _ in parsed.rejected] == [values.index(value)], case
        assert parsed.table.num_rows == len(values) - 1


def test_a_batch_whose_every_event_lacks_a_field_is_dead_lettered_whole():
    values = [orjson.dumps({k: v for k, v in d.items() if k != "model_version"}) for d in GOOD_PREDICTIONS * 10]
    parsed = parse_batch("prediction", values, 0, list(range(len(values))))
    assert parsed.table.num_rows == 0 and len(parsed.rejected) == len(values)
    assert {error.field for _, error in parsed.rejected} == {"model_version"}


def test_a_good_batch_takes_the_fast_path_and_keeps_its_types():
    values = [orjson.dumps(d) for d in prediction_documents(500)]
    clock = int(START.timestamp() * 1000)
    parsed = parse_batch("prediction", values, 3, list(range(500)), timestamps=[clock] * 500)
    table = parsed.table
    assert not parsed.rejected and table.num_rows == 500
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("feature.f00").type == pa.float64()
    assert table["kafka_partition"].to_pylist() == [3] * 500
    assert table["kafka_timestamp"][0].as_py() == START


def test_wide_events_cost_what_they_weigh_and_the_feature_bound_is_a_setting():
    wide = [{**d, "features": {f"x{j:04d}": float(j) for j in range(4000)}} for d in prediction_documents(50)]
    values = [orjson.dumps(d) for d in wide]
    started = datetime.now(UTC)
    parsed = parse_batch("prediction", values, 0, list(range(50)), policy=EventPolicy(max_features=5000))
    took = datetime.now(UTC) - started
    assert parsed.table.num_rows == 50 and not parsed.rejected
    assert took < timedelta(seconds=10), f"a batch of 50 events of 4,000 features took {took}"

    refused = parse_batch("prediction", values, 0, list(range(50)), policy=EventPolicy(max_features=1000))
    assert refused.table.num_rows == 0 and len(refused.rejected) == 50
    assert {(e.field, e.reason) for _, e in refused.rejected} == {
        ("features", "4000 features; at most 1000 are accepted per event")}


def test_times_far_from_the_records_clock_are_refused_by_the_documented_rule():
    clock = datetime(2026, 11, 23, 9, tzinfo=UTC)
    documents = prediction_documents(3, start=clock)
    documents[1]["timestamp"] = (clock - timedelta(days=400)).isoformat()
    documents[2]["timestamp"] = (clock + timedelta(days=2)).isoformat()
    parsed = parse_batch("prediction", [orjson.dumps(d) for d in documents], 0, [0, 1, 2],
                         timestamps=[int(clock.timestamp() * 1000)] * 3)
    assert parsed.table["event_id"].to_pylist() == [documents[0]["event_id"]]
    assert [(i, e.field) for i, e in parsed.rejected] == [(1, "timestamp"), (2, "timestamp")]
    assert "365 days before" in parsed.rejected[0][1].reason and "24 hours after" in parsed.rejected[1][1].reason


def test_declared_model_names_bound_the_store_folders():
    policy = EventPolicy(model_name_pattern=r"[a-z0-9-]{1,64}")
    documents = prediction_documents(2, model="churn") + prediction_documents(1, model="Bad Name!")
    parsed = parse_batch("prediction", [orjson.dumps(d) for d in documents], 0, [0, 1, 2], policy=policy)
    assert parsed.table["model_name"].to_pylist() == ["churn", "churn"]
    assert [(i, e.field) for i, e in parsed.rejected] == [(2, "model_name")]
