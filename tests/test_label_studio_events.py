"""Label Studio annotations as feedback events, and withdrawals in the store's labelled view (no services)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from events import prediction_documents, write_to_store

from driftloop.collector.label_studio import parse_webhook, withdrawal
from driftloop.collector.schemas import InvalidEvent, decode, encode
from driftloop.collector.store import Store
from driftloop.curation import BatchLedger, read_labels
from driftloop.settings import load_settings
from driftloop.stack import LocalStack, free_port


def annotation(annotation_id: int, label: str, saved: str) -> dict:
    return {"id": annotation_id, "was_cancelled": False, "created_at": saved, "updated_at": saved,
            "result": [{"from_name": "label", "to_name": "input", "type": "choices", "value": {"choices": [label]}}]}


def test_a_withdrawal_takes_back_every_label_of_its_annotation_and_nothing_else(tmp_path):
    predictions = prediction_documents(4)
    write_to_store(tmp_path, "prediction", predictions, "t.predictions")
    at = [datetime.fromisoformat(p["timestamp"]) + timedelta(minutes=5) for p in predictions]
    r = [p["request_id"] for p in predictions]

    def label(i: int, annotation_id: int, value: str, minutes: int = 0) -> dict:
        body = {"action": "ANNOTATION_UPDATED", "task": {"data": {"request_id": r[i]}},
                "annotation": annotation(annotation_id, value, (at[i] + timedelta(minutes=minutes)).isoformat())}
        return json.loads(encode(parse_webhook(body).labels[0]))

    feedback = [
        {"schema_version": 1, "event_id": "user-0", "request_id": r[0], "timestamp": at[0].isoformat(), "label": "0"},
        label(1, 11, "1"), label(1, 11, "0", minutes=1),  # created, then changed: the later label stands
        label(2, 12, "1"), label(2, 12, "0", minutes=1),  # created, changed, then deleted: nothing stands
        json.loads(encode(withdrawal("label-studio:12", r[2], at[2] + timedelta(minutes=2)))),
        label(3, 13, "1"),
    ]
    write_to_store(tmp_path, "feedback", feedback, "t.feedback")
    store = Store(tmp_path)
    labelled = {row["request_id"]: row["true_label"] for row in store.labelled("churn").to_pylist()}
    assert labelled == {r[0]: "0", r[1]: "0", r[3]: "1"}
    assert store.unlabelled("churn")["request_id"].to_pylist() == [r[2]]
    assert store.annotated_requests(["label-studio:11", "label-studio:12", "label-studio:99"]) == {
        "label-studio:11": r[1], "label-studio:12": r[2]}


def test_a_store_of_version_1_feedback_alone_reads_as_before(tmp_path):
    predictions = prediction_documents(2)
    write_to_store(tmp_path, "prediction", predictions, "t.predictions")
    write_to_store(tmp_path, "feedback", [{"schema_version": 1, "event_id": "f", "request_id": predictions[0][
        "request_id"], "timestamp": predictions[0]["timestamp"], "label": "1"}], "t.feedback")
    store = Store(tmp_path)
    assert store.labelled("churn")["true_label"].to_pylist() == ["1"]
    assert store.annotated_requests(["label-studio:1"]) == {}


def test_a_withdrawal_carries_no_label_and_names_its_annotation():
    with pytest.raises(InvalidEvent, match="withdrawal"):
        decode("feedback", json.dumps({"schema_version": 2, "event_id": "w", "request_id": "r", "label": "1",
                                       "timestamp": "2026-11-23T09:00:00Z", "withdrawn": True,
                                       "annotation": "label-studio:1"}))
    with pytest.raises(InvalidEvent, match="withdrawal"):
        decode("feedback", json.dumps({"schema_version": 2, "event_id": "w", "request_id": "r",
                                       "timestamp": "2026-11-23T09:00:00Z", "withdrawn": True}))


def test_an_exported_annotation_has_the_event_id_its_webhook_gave_it(tmp_path):
    """So a label that came by webhook is not stored again by `curate import` or `curate sync`."""
    saved = "2026-11-23T09:31:00.123456Z"
    hooked = parse_webhook({"action": "ANNOTATION_CREATED", "annotation": annotation(5, "1", saved),
                            "task": {"id": 1, "data": {"request_id": "r-1"}}}).labels[0]
    export = tmp_path / "export.json"
    export.write_text(json.dumps([{"id": 1, "data": {"request_id": "r-1"}, "annotations": [annotation(5, "1", saved)]}]))
    ledger = tmp_path / "batches"
    ledger.mkdir()
    imported = read_labels(export, _ledger_with(ledger, "r-1"), now=datetime.fromisoformat(saved))
    assert [event.event_id for event in imported.events] == [hooked.event_id]
    assert imported.events[0].annotation == "label-studio:5"


def _ledger_with(folder, request_id: str) -> BatchLedger:
    import pyarrow as pa

    from driftloop.curation import Selection

    ledger = BatchLedger(folder)
    rows = pa.table({"event_id": ["e-1"], "request_id": [request_id], "label": ["1"]})
    ledger.record(Selection(ids=("e-1",), scores=(1.0,), reasons=("test",), strategy="random"), rows, "churn", 1)
    return ledger


@pytest.mark.parametrize("change", [
    {"label_studio": {"enabled": False}},
    {"label_studio": {"url": "http://labelstudio.internal:8080", "token": "a-token"}},
    {"stack": {"start_label_studio": False}},
], ids=["turned-off", "a-teams-own", "not-started-by-the-stack"])
def test_the_stack_leaves_label_studio_out_when_it_is_off_or_the_teams_own(tmp_path, change):
    stack = {"state_dir": tmp_path, "kafka_port": free_port(), "prometheus_port": free_port(),
             "alertmanager_port": free_port(), "label_studio_port": free_port()}
    settings = load_settings(**{"stack": stack, **{k: ({**stack, **v} if k == "stack" else v) for k, v in change.items()}})
    assert "label-studio" not in {row.name for row in LocalStack(settings).status()}
    on = load_settings(stack=stack)
    row = next(row for row in LocalStack(on).status() if row.name == "label-studio")
    assert row.pid is None and not row.answers
    assert not (tmp_path / "label-studio" / "credentials.json").exists(), "asking whether it answers makes nothing"
    if "url" in change.get("label_studio", {}):
        assert on.label_studio_url() != load_settings(stack=stack, **change).label_studio_url()
        assert load_settings(stack=stack, **change).label_studio_url() == "http://labelstudio.internal:8080"
