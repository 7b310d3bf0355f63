"""Label Studio from the settings: where it is, its token and webhook secret, pushing and syncing batches.

The local stack's Label Studio keeps its admin token and the webhook secret in the stack's state
directory (made by `stack up`); a team's own gives `label_studio.url`, `.token` and
`.webhook_secret` in the settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from driftloop.collector.label_studio import SECRET_HEADER, withdrawal
from driftloop.collector.store import Store
from driftloop.curation import send_labels
from driftloop.curation.label_studio import LabelStudio, LabelStudioError, PushResult, annotation_events, push_batch
from driftloop.curation_service import ledger
from driftloop.settings import Settings
from driftloop.stack.label_studio import CREDENTIALS_FILE, local_credentials

log = logging.getLogger(__name__)


__all__ = ["LabelStudioError", "LabelStudioOff", "SyncResult", "client", "enabled", "push", "sync", "webhook_secret"]


class LabelStudioOff(RuntimeError):
    """Label Studio is turned off in the settings; the message says how to label without it."""


def enabled(settings: Settings) -> bool:
    return settings.label_studio.enabled and (bool(settings.label_studio.url) or settings.stack.start_label_studio)


def client(settings: Settings) -> LabelStudio:
    """A client of the configured Label Studio (the team's, with its token; else the local stack's)."""
    if not enabled(settings):
        raise LabelStudioOff("Label Studio is turned off (label_studio.enabled, stack.start_label_studio): export the "
                             "batch with `driftloop curate export` and import the labels with `driftloop curate import`")
    config = settings.label_studio
    if config.url:
        if config.token is None:
            raise LabelStudioOff(f"label_studio.url is {config.url} but label_studio.token is not set "
                                 "(DRIFTLOOP_LABEL_STUDIO__TOKEN): an API token of a user who may create projects")
        token = config.token.get_secret_value()
    else:
        if not (settings.stack.state_dir / "label-studio" / CREDENTIALS_FILE).is_file():
            raise LabelStudioOff(f"the local Label Studio was never started (no credentials under "
                                 f"{settings.stack.state_dir}): run `driftloop stack up`")
        token = local_credentials(settings.stack, config.username).token
    return LabelStudio(settings.label_studio_url(), token, config.timeout_s)


def webhook_secret(settings: Settings) -> str | None:
    """The secret Label Studio's webhook calls carry: the configured one, else the local stack's; None when off."""
    if not enabled(settings):
        return None
    config = settings.label_studio
    if config.webhook_secret is not None:
        return config.webhook_secret.get_secret_value()
    if config.url:
        return None  # a team's Label Studio without a configured secret: no webhook route (curate sync still works)
    return local_credentials(settings.stack, config.username).webhook_secret


@dataclass(frozen=True)
class SyncResult:
    """What `curate sync` found: labels in the project, how many were new to the store, withdrawals sent."""

    labels: int
    sent: int
    withdrawn: int


def push(settings: Settings, batch_id: str) -> PushResult:
    """Push a recorded batch to Label Studio as tasks, register the webhook, record the task ids against the batch."""
    batches = ledger(settings)
    batch = batches.load(batch_id)
    secret = webhook_secret(settings)
    webhook = (settings.label_studio_webhook_url(), {SECRET_HEADER: secret}) if secret else None
    with client(settings) as label_studio:
        result = push_batch(label_studio, batch, settings.label_studio.project_title.format(model=batch.model), webhook)
    batches.record_tasks(batch_id, {"url": settings.label_studio_url(), "project_id": result.project_id,
                                    "pushed_at": datetime.now(UTC).isoformat(), "tasks": result.tasks})
    log.info("batch %s: %d tasks imported into project %d (%d there already)", batch_id, result.imported,
             result.project_id, result.already_there)
    return result


def sync(settings: Settings, batch_id: str) -> SyncResult:
    """Bring in the annotations of a pushed batch that the store lacks, and withdraw the labels of deleted ones.

    For the webhook calls that never arrived (the API or Label Studio was down). The events have
    the ids the webhook gives them, and what the store holds is not sent again.
    """
    where = ledger(settings).tasks(batch_id)
    if where is None:
        raise ValueError(f"batch {batch_id} was never pushed to Label Studio: `driftloop curate push {batch_id}` first")
    with client(settings) as label_studio:
        events, requests = annotation_events(label_studio, int(where["project_id"]), set(where["tasks"].values()))
    stored = Store(settings.store_dir).feedback_of(sorted(requests)).to_pylist()
    known = {row["event_id"] for row in stored}
    live = {event.annotation for event in events}
    gone = {row["annotation"]: row["request_id"] for row in stored
            if row["annotation"] and row.get("withdrawn") is not True and row["annotation"] not in live}
    already_withdrawn = {row["annotation"] for row in stored if row.get("withdrawn") is True}
    now = datetime.now(UTC)
    withdrawals = [withdrawal(key, request_id, now) for key, request_id in sorted(gone.items())
                   if key not in already_withdrawn]
    new = [event for event in events if event.event_id not in known] + withdrawals
    if new:
        send_labels(settings.kafka_bootstrap(), settings.kafka.topic("feedback"), new)
    return SyncResult(labels=len(events), sent=len(new) - len(withdrawals), withdrawn=len(withdrawals))
