"""Label Studio's annotations as feedback events: the webhook body, and the id every path gives a label.

A label reaches driftloop three ways: Label Studio's webhook (the ingestion API), `curate sync`
(the project's annotations through Label Studio's API) and `curate import` (an export file).
All three derive the event id from the request, the label, the annotation and the time it was
saved (`annotation_event_id`), so a label that comes by two ways is stored once, and an updated
annotation is a new event, later than the one it supersedes (the store's labelled view keeps
the latest label of a request).

Labels from Label Studio are feedback events of schema version 2: they name their annotation
(`annotation_key`). A deleted annotation withdraws its labels: a withdrawal is a feedback event
with `withdrawn=True`, no label, and the annotation's key; the store's labelled view drops every
label of that annotation (Label Studio never reuses the id of a deleted annotation).

The tasks driftloop pushes carry `request_id` in their data; the labelling config names its
choices `label` (FROM_NAME) over the input table `input` (TO_NAME).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from driftloop.collector.schemas import FeedbackEventV2, InvalidEvent, invalid_event

__all__ = [
    "FROM_NAME", "SECRET_HEADER", "TO_NAME", "WEBHOOK_ACTIONS", "WEBHOOK_PATH", "WebhookCall", "annotation_event",
    "annotation_event_id", "annotation_key", "annotation_label", "parse_webhook", "withdrawal",
]

FROM_NAME, TO_NAME = "label", "input"
LABEL_NAMESPACE = uuid.UUID("5b0f4c1e-8a57-4d1c-9a0e-5f3c2d7e9b61")
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")
WEBHOOK_PATH = "/v1/label-studio/webhook"  # the ingestion API's route for them
SECRET_HEADER = "X-Driftloop-Webhook-Secret"  # the shared secret every call carries


def annotation_event_id(request_id: str, label: str, annotation_id, saved_at: datetime | None = None) -> str:
    """The feedback event id of one saved state of one annotation (the same on every path it comes by)."""
    content = f"{request_id}\n{label}\n{annotation_id}"
    if saved_at is not None:
        content += f"\n{saved_at.astimezone(UTC).isoformat()}"
    return uuid.uuid5(LABEL_NAMESPACE, content).hex


def annotation_label(annotation: dict, where: str = "annotation") -> str | None:
    """The one class an annotation picks (None for a skipped or empty one); InvalidEvent naming the field otherwise."""
    if annotation.get("was_cancelled"):
        return None
    result = annotation.get("result")
    if not isinstance(result, list):
        raise InvalidEvent(f"{where}.result", "a Label Studio annotation has a 'result' list")
    choices = [r for r in result if isinstance(r, dict) and r.get("from_name") == FROM_NAME]
    if not choices:
        return None
    picked = (choices[0].get("value") or {}).get("choices") if isinstance(choices[0].get("value"), dict) else None
    if len(choices) != 1 or not isinstance(picked, list) or len(picked) != 1 or not isinstance(picked[0], str | int):
        raise InvalidEvent(f"{where}.result", f"expected one '{FROM_NAME}' result with one choice, got {result!r:.200}")
    return str(picked[0])


def saved_time(annotation: dict, where: str = "annotation") -> datetime:
    """When an annotation was last saved (`updated_at`, else `created_at`), in UTC."""
    text = annotation.get("updated_at") or annotation.get("created_at")
    if not isinstance(text, str):
        raise InvalidEvent(f"{where}.updated_at", "a Label Studio annotation has an ISO 8601 'updated_at'")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"{where}.updated_at", f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def annotation_key(annotation_id) -> str:
    """What a label's `annotation` holds: one annotation of one Label Studio (`label-studio:<id>`)."""
    return f"label-studio:{annotation_id}"


def annotation_event(request_id: str, annotation: dict, where: str = "annotation") -> FeedbackEventV2 | None:
    """The feedback event of one saved annotation of a task of `request_id` (None: skipped, or no choice made)."""
    label = annotation_label(annotation, where)
    if label is None:
        return None
    saved = saved_time(annotation, where)
    return FeedbackEventV2(event_id=annotation_event_id(request_id, label, annotation["id"], saved),
                           request_id=request_id, label=label, source="annotator", timestamp=saved,
                           annotation=annotation_key(annotation["id"]))


def withdrawal(key: str, request_id: str | None, now: datetime) -> FeedbackEventV2:
    """The event that withdraws the labels of annotation `key`; its id depends on the annotation alone, so a
    deletion that comes twice (webhook, then sync) is stored once. Without the request (the store has no label
    of that annotation yet), it is keyed by the annotation itself."""
    return FeedbackEventV2(event_id=uuid.uuid5(LABEL_NAMESPACE, f"withdrawn\n{key}").hex,
                           request_id=request_id or key, source="annotator", timestamp=now,
                           annotation=key, withdrawn=True)


@dataclass(frozen=True)
class WebhookCall:
    """What one Label Studio webhook call says: labels to store, and annotations (keys) that were deleted."""

    action: str
    labels: tuple[FeedbackEventV2, ...] = ()
    deleted: tuple[str, ...] = ()


def parse_webhook(body) -> WebhookCall:
    """One Label Studio webhook body (ANNOTATION_CREATED / _UPDATED, ANNOTATIONS_DELETED), checked.

    Anything else raises InvalidEvent naming the field. A skipped annotation, or one that picks
    no class, gives no label.
    """
    if not isinstance(body, dict):
        raise InvalidEvent("", "a Label Studio webhook body is a JSON object")
    action = body.get("action")
    if action not in WEBHOOK_ACTIONS:
        raise InvalidEvent("action", f"{action!r:.100} is not one of the Label Studio actions {list(WEBHOOK_ACTIONS)}")
    if action == "ANNOTATIONS_DELETED":
        annotations = body.get("annotations")
        if not isinstance(annotations, list) or not annotations:
            raise InvalidEvent("annotations", "ANNOTATIONS_DELETED carries a list of the deleted annotations' ids")
        keys = []
        for index, item in enumerate(annotations):
            if not isinstance(item, dict) or not isinstance(item.get("id"), int | str) or isinstance(item["id"], bool):
                raise InvalidEvent(f"annotations.{index}.id", "each deleted annotation is an object with its id")
            keys.append(annotation_key(item["id"]))
        return WebhookCall(action, deleted=tuple(keys))
    annotation, task = body.get("annotation"), body.get("task")
    if not isinstance(annotation, dict) or not isinstance(annotation.get("id"), int | str):
        raise InvalidEvent("annotation", f"{action} carries the annotation object, with its id")
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise InvalidEvent("task.data", f"{action} carries the task object, with its data")
    request_id = task["data"].get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise InvalidEvent("task.data.request_id", "missing: the task was not pushed by driftloop")
    try:
        event = annotation_event(request_id, annotation)
    except ValidationError as error:  # the request id or the label is not what a feedback event may hold
        raise invalid_event(error) from None
    return WebhookCall(action, labels=() if event is None else (event,))
