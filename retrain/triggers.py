"""What starts a retrain: Alertmanager's webhook, a schedule, a quality floor, a person; and the policy.

`Notification` is Alertmanager's webhook body (version 4), validated: a malformed one is
refused with the field named (the webhook answers 4xx and records nothing). Alerts ask for a
retrain with the labels `model` and `action: "retrain"`; other alerts are ignored.

The policy (`decide`) is a pure function of the trigger and the model's recent episodes:

- a resolved notification starts nothing;
- at most one episode per model at a time: while one runs, new triggers join it;
- an alert instance (its fingerprint and start time) that already started or joined an
  episode starts nothing more however often Alertmanager repeats it, and within `cooldown_s`
  of the model's last episode nothing but a person starts another one;
- a schedule needs `min_new_labels` labels since the last retrain (an alert's or quality
  floor's episode asks for labels first and waits for them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from driftloop.retrain.episodes import Episode, Step

__all__ = ["RETRAIN_ACTION", "AlertTrigger", "Decision", "Notification", "Policy", "alert_triggers", "decide"]

RETRAIN_ACTION = "retrain"


class Alert(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime  # noqa: N815 - Alertmanager's field names
    endsAt: AwareDatetime | None = None  # noqa: N815
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = Field(min_length=1)


class Notification(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="allow")

    version: Literal["4"]
    groupKey: str = Field(min_length=1)  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: list[Alert] = Field(min_length=1)
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    truncatedAlerts: int = 0  # noqa: N815


@dataclass(frozen=True)
class AlertTrigger:
    """The retrain alerts of one model in one notification."""

    model: str
    firing: bool
    instances: tuple[str, ...]  # "<fingerprint>@<startsAt>" of the firing alerts
    alertnames: tuple[str, ...]
    group_key: str
    started_at: datetime | None  # the earliest startsAt of the firing alerts


def alert_triggers(notification: Notification) -> list[AlertTrigger]:
    """One trigger per model among the notification's alerts that carry `action: retrain` and a `model`."""
    by_model: dict[str, list[Alert]] = {}
    for alert in notification.alerts:
        if alert.labels.get("action") == RETRAIN_ACTION and alert.labels.get("model"):
            by_model.setdefault(alert.labels["model"], []).append(alert)
    triggers = []
    for model, alerts in sorted(by_model.items()):
        firing = [alert for alert in alerts if alert.status == "firing"]
        triggers.append(AlertTrigger(
            model=model,
            firing=bool(firing),
            instances=tuple(sorted(f"{a.fingerprint}@{a.startsAt.isoformat()}" for a in firing)),
            alertnames=tuple(sorted({a.labels.get("alertname", "") for a in alerts})),
            group_key=notification.groupKey,
            started_at=min((a.startsAt for a in firing), default=None),
        ))
    return triggers


@dataclass(frozen=True)
class Policy:
    cooldown_s: float = 3600.0
    min_new_labels: int = 100

    def __post_init__(self) -> None:
        if self.cooldown_s < 0 or self.min_new_labels < 0:
            raise ValueError("cooldown_s and min_new_labels must be at least 0")


@dataclass(frozen=True)
class Decision:
    """What a trigger does: `decision` (one of episodes.DECISIONS), why, and where a new episode starts."""

    decision: str
    reason: str
    start: Step | None = None
    joined: str | None = None  # the episode a skipped trigger is counted against


def decide(source: str, now: datetime, policy: Policy, episodes: Sequence[Episode], *, firing: bool = True,
           instances: Iterable[str] = (), handled: dict[str, str] | None = None,
           new_labels: int | None = None) -> Decision:
    """The decision on one trigger of a model, given that model's episodes (newest first).

    `handled` maps alert instances that already started or joined an episode to that episode;
    `new_labels` is the number of labels since the last retrain (for a schedule).
    """
    if source == "alertmanager" and not firing:
        return Decision("skipped_resolved", "the alert resolved: nothing to retrain")
    running = next((episode for episode in episodes if not episode.finished), None)
    if running is not None:
        kind = "skipped_busy" if source == "manual" else "skipped_cooldown"
        return Decision(kind, f"episode {running.id} of this model is running ({running.step})", joined=running.id)
    instances = tuple(instances)
    handled = handled or {}
    if source == "alertmanager" and instances and all(instance in handled for instance in instances):
        episode = handled[instances[0]]
        return Decision("skipped_cooldown", f"these alerts already started or joined episode {episode}", joined=episode)
    if source != "manual" and episodes:
        last = episodes[0]
        since = now - last.created_at
        if since < timedelta(seconds=policy.cooldown_s):
            return Decision("skipped_cooldown", f"episode {last.id} started {since.total_seconds():.0f} s ago "
                                                f"(cooldown {policy.cooldown_s:g} s)", joined=last.id)
    if source == "schedule" and new_labels is not None and new_labels < policy.min_new_labels:
        return Decision("skipped_too_few_labels", f"{new_labels} new labels since the last retrain, fewer than "
                                                  f"min_new_labels={policy.min_new_labels}")
    start = Step.SELECTING if source in ("alertmanager", "quality") else Step.SNAPSHOTTING
    return Decision("started", f"started by {source}", start=start)
