"""The ingestion API's Label Studio webhook without a Label Studio: its secret, its 400s, and nothing sent for them."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest
from events import event_ids_in
from prometheus_client import CollectorRegistry
from test_api import serving

from driftloop.collector import create_app
from driftloop.collector.label_studio import SECRET_HEADER, WEBHOOK_PATH
from driftloop.settings import KafkaSettings
from driftloop.stack import create_topics

SECRET = "webhook-secret-0123456789"
ANNOTATION = {"id": 41, "result": [{"from_name": "label", "to_name": "input", "type": "choices",
                                    "value": {"choices": ["1"]}}],
              "was_cancelled": False, "created_at": "2026-11-23T09:30:00.000000Z", "updated_at": "2026-11-23T09:31:00Z"}
CREATED = {"action": "ANNOTATION_CREATED", "annotation": ANNOTATION,
           "task": {"id": 7, "data": {"request_id": "r-1", "event_id": "e-1", "features": {"f": 1.0}}},
           "project": {"id": 3}}


@pytest.fixture(scope="module")
def webhook(kafka):
    settings = KafkaSettings(bootstrap_servers=kafka, topic_prefix=f"test-hook-{uuid.uuid4().hex[:8]}.")
    create_topics(kafka, settings)
    app = create_app(bootstrap_servers=kafka, topics=settings.topics(), registry=CollectorRegistry(),
                     api_key="an-api-key-for-the-other-routes", label_studio_secret=SECRET,
                     annotated_requests=lambda keys: {key: "r-1" for key in keys if key == "label-studio:41"})
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client, settings


def call(client: httpx.Client, body, secret: str | None = SECRET) -> httpx.Response:
    headers = {"Content-Type": "application/json", **({SECRET_HEADER: secret} if secret is not None else {})}
    return client.post(WEBHOOK_PATH, content=body if isinstance(body, bytes) else orjson.dumps(body), headers=headers)


@pytest.mark.parametrize("secret", [None, "", "wrong-secret-0123456789"], ids=["missing", "empty", "wrong"])
def test_a_missing_or_wrong_secret_gets_401_and_nothing_is_sent(webhook, secret):
    client, settings = webhook
    answer = call(client, CREATED, secret)
    assert answer.status_code == 401 and SECRET_HEADER in answer.json()["detail"]
    assert not event_ids_in(client_bootstrap(settings), settings.topic("feedback"), "feedback")


@pytest.mark.parametrize(("body", "field"), [
    ({"hello": "world"}, "action"),
    ({"action": "PROJECT_CREATED", "project": {}}, "action"),
    ({"action": "ANNOTATION_CREATED", "annotation": ANNOTATION}, "task.data"),
    ({**CREATED, "task": {"id": 7, "data": {"text": "not ours"}}}, "task.data.request_id"),
    ({**CREATED, "annotation": {**ANNOTATION, "result": "1"}}, "annotation.result"),
    ({**CREATED, "annotation": {**ANNOTATION, "updated_at": "yesterday", "created_at": None}}, "annotation.updated_at"),
    ({"action": "ANNOTATIONS_DELETED", "annotations": [{"pk": 1}]}, "annotations.0.id"),
    ([1, 2], ""),
    (b"{not json", ""),
], ids=["no-action", "other-action", "no-task", "not-our-task", "bad-result", "bad-time", "bad-deletion", "a-list",
        "not-json"])
def test_a_body_that_is_not_label_studios_gets_400_naming_the_field_and_nothing_is_sent(webhook, body, field):
    client, settings = webhook
    answer = call(client, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["field"] == field
    assert not event_ids_in(client_bootstrap(settings), settings.topic("feedback"), "feedback")


def test_an_annotation_is_a_feedback_event_and_a_deletion_withdraws_it(webhook):
    client, settings = webhook
    created = call(client, CREATED)
    assert created.status_code == 202, created.text
    again = call(client, CREATED)  # Label Studio calling twice: the same event id, stored once
    assert again.json()["event_ids"] == created.json()["event_ids"]
    deleted = call(client, {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 41}], "project": {"id": 3}})
    assert deleted.status_code == 202 and deleted.json()["accepted"] == 1
    ids = event_ids_in(client_bootstrap(settings), settings.topic("feedback"), "feedback")
    assert set(ids) == {*created.json()["event_ids"], *deleted.json()["event_ids"]}
    skipped = call(client, {**CREATED, "annotation": {**ANNOTATION, "id": 42, "was_cancelled": True}})
    assert skipped.status_code == 202 and skipped.json()["accepted"] == 0


def client_bootstrap(settings: KafkaSettings) -> str:
    return settings.bootstrap_servers
