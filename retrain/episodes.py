"""Retrain episodes as a persisted state machine, and the triggers that start them.

An episode is one retrain of one model, from the trigger to the promotion gate's last word on
its challenger. Its steps are `Step`, the allowed moves are the one table `TRANSITIONS`, and
every move is one transaction that checks the step it leaves (a compare-and-swap), appends to
`episode_steps`, and stores what the step produced in the episode's `state`. A step is
idempotent: a service killed in the middle of one finds the episode in that step when it starts
again, and runs the step again (counting `attempts`; the waiting steps do not count), or closes
the episode; it never starts a second episode for the same trigger and never registers twice
(the registry keeps one version per episode).

    selecting ──▶ labelling ──▶ snapshotting ──▶ training ──▶ registering ──▶ shadowing ──▶ watching ──▶ kept
        │             │              │              │             │  │            │            ├──────▶ rolled_back
        │             │              │              │             │  │            └──▶ rejected └──────▶ superseded
        │             │              │              │             │  └──▶ registered (no champion to gate against)
        └─────────────┴──────────────┴──────────────┴─────────────┴──────▶ failed  (from every step that runs)

An episode starts in `selecting` (an alert or a quality floor: labels are asked for first) or
in `snapshotting` (a schedule or a person: the labels are there already). In `shadowing` the
challenger answers the champion's traffic in shadow and the promotion gate decides (promoted:
`watching`; or `rejected`); in `watching` the gate compares the new champion with the previous
one and rolls it back if it is worse (`rolled_back`) or keeps it (`kept`). An alias moved by hand
meanwhile ends the episode `superseded`. Without a champion there is nothing to gate against:
the episode ends `registered`, and the first champion is promoted by hand.

Every trigger is recorded with its decision (`DECISIONS`), whether or not it started anything.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from driftloop.retrain.database import Database

__all__ = [
    "DECISIONS",
    "INITIAL_STEPS",
    "SOURCES",
    "TRANSITIONS",
    "WAITING_STEPS",
    "Episode",
    "EpisodeStore",
    "IllegalTransition",
    "Step",
    "StepConflict",
    "TriggerRecord",
]

SOURCES = ("alertmanager", "schedule", "quality", "manual")
DECISIONS = ("started", "skipped_cooldown", "skipped_resolved", "skipped_too_few_labels", "skipped_busy", "failed")


class Step(StrEnum):
    SELECTING = "selecting"        # choose the labelling batch from the drifted window
    LABELLING = "labelling"        # wait for min_new_labels labels, or the deadline
    SNAPSHOTTING = "snapshotting"  # the training set, versioned by content
    TRAINING = "training"          # the Ray Train run
    REGISTERING = "registering"    # profile, artifact, version, challenger alias
    REGISTERED = "registered"      # registered as challenger with no champion to gate against: done
    SHADOWING = "shadowing"        # scored in shadow; the promotion gate decides (retrain/gating.py)
    WATCHING = "watching"          # promoted; the gate watches it against the previous champion
    REJECTED = "rejected"          # the gate rejected the challenger
    KEPT = "kept"                  # promoted, and the watch ended without a rollback
    ROLLED_BACK = "rolled_back"    # promoted, then rolled back by the watch
    SUPERSEDED = "superseded"      # the aliases were moved by hand during the gate or the watch
    FAILED = "failed"


# Where each step may go. A step with no way out ends the episode; its name is the outcome.
TRANSITIONS: dict[Step, frozenset[Step]] = {
    Step.SELECTING: frozenset({Step.LABELLING, Step.FAILED}),
    Step.LABELLING: frozenset({Step.SNAPSHOTTING, Step.FAILED}),
    Step.SNAPSHOTTING: frozenset({Step.TRAINING, Step.FAILED}),
    Step.TRAINING: frozenset({Step.REGISTERING, Step.FAILED}),
    Step.REGISTERING: frozenset({Step.SHADOWING, Step.REGISTERED, Step.FAILED}),
    Step.SHADOWING: frozenset({Step.WATCHING, Step.REJECTED, Step.SUPERSEDED, Step.FAILED}),
    Step.WATCHING: frozenset({Step.KEPT, Step.ROLLED_BACK, Step.SUPERSEDED, Step.FAILED}),
    Step.REGISTERED: frozenset(),
    Step.REJECTED: frozenset(),
    Step.KEPT: frozenset(),
    Step.ROLLED_BACK: frozenset(),
    Step.SUPERSEDED: frozenset(),
    Step.FAILED: frozenset(),
}
INITIAL_STEPS = frozenset({Step.SELECTING, Step.SNAPSHOTTING})
# Steps that wait on the world (labels, the gate) and cost nothing to resume: their starts are not counted.
WAITING_STEPS = frozenset({Step.LABELLING, Step.SHADOWING, Step.WATCHING})


def is_terminal(step: Step) -> bool:
    return not TRANSITIONS[step]


class IllegalTransition(ValueError):
    """A move the table does not allow."""


class StepConflict(RuntimeError):
    """The episode is not in the step the caller left from: someone else moved it."""


@dataclass(frozen=True)
class Episode:
    id: str
    model: str
    source: str
    step: Step
    outcome: str | None
    reason: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    attempts: int
    state: Mapping[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    def describe(self) -> dict:
        return {"id": self.id, "model": self.model, "source": self.source, "step": str(self.step),
                "outcome": self.outcome, "reason": self.reason, "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(),
                "finished_at": self.finished_at.isoformat() if self.finished_at else None,
                "attempts": self.attempts, "state": dict(self.state)}


@dataclass(frozen=True)
class TriggerRecord:
    id: int
    received_at: datetime
    model: str
    source: str
    decision: str
    reason: str
    episode_id: str | None
    notification_id: int | None
    group_key: str | None
    fingerprints: tuple[str, ...]
    detail: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict:
        return {"id": self.id, "received_at": self.received_at.isoformat(), "model": self.model,
                "source": self.source, "decision": self.decision, "reason": self.reason,
                "episode_id": self.episode_id, "notification_id": self.notification_id,
                "group_key": self.group_key, "fingerprints": list(self.fingerprints), "detail": dict(self.detail)}


class EpisodeStore:
    """Episodes, their step log, triggers and webhook notifications in the registry database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- notifications (the webhook writes, the service processes) ------------------------------

    def record_notification(self, group_key: str, status: str, body: Mapping) -> int:
        """Store a webhook notification as received (committed before the webhook answers 2xx)."""
        with self.database.transaction() as db:
            cursor = db.execute("INSERT INTO notifications (received_at, group_key, status, body) VALUES (?, ?, ?, ?)",
                                (_now(), group_key, status, json.dumps(body, sort_keys=True)))
        return cursor.lastrowid

    def pending_notifications(self, limit: int = 100) -> list[tuple[int, dict]]:
        rows = self.database.connection().execute(
            "SELECT id, body FROM notifications WHERE processed_at IS NULL ORDER BY id LIMIT ?", (limit,))
        return [(row["id"], json.loads(row["body"])) for row in rows]

    # -- triggers and episodes ------------------------------------------------------------------

    def record_trigger(self, db, model: str, source: str, decision: str, reason: str = "", *,
                       episode_id: str | None = None, notification_id: int | None = None, group_key: str | None = None,
                       fingerprints: Sequence[str] = (), detail: Mapping | None = None) -> int:
        """Insert one trigger row inside the caller's transaction `db`."""
        if source not in SOURCES:
            raise ValueError(f"Invalid trigger source {source!r}. Valid values are: {list(SOURCES)}")
        if decision not in DECISIONS:
            raise ValueError(f"Invalid decision {decision!r}. Valid values are: {list(DECISIONS)}")
        cursor = db.execute(
            """INSERT INTO triggers (received_at, model, source, decision, reason, episode_id, notification_id,
                   group_key, fingerprints, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (_now(), model, source, decision, reason, episode_id, notification_id, group_key,
             json.dumps(sorted(fingerprints)), json.dumps(dict(detail or {}), sort_keys=True, default=str)),
        )
        return cursor.lastrowid

    def create_episode(self, db, model: str, source: str, step: Step, state: Mapping | None = None) -> Episode:
        """Insert a new episode inside the caller's transaction `db`."""
        if step not in INITIAL_STEPS:
            raise IllegalTransition(f"an episode starts in {sorted(INITIAL_STEPS)}, not {step}")
        episode_id = f"ep-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
        now = _now()
        db.execute("""INSERT INTO episodes (id, model, source, step, created_at, updated_at, state)
                      VALUES (?, ?, ?, ?, ?, ?, ?)""",
                   (episode_id, model, source, str(step), now, now, json.dumps(dict(state or {}), default=str)))
        db.execute("INSERT INTO episode_steps (episode_id, from_step, to_step, at, note) VALUES (?, NULL, ?, ?, ?)",
                   (episode_id, str(step), now, f"started by {source}"))
        return _episode(db.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone())

    def advance(self, episode_id: str, from_step: Step, to_step: Step, state: Mapping | None = None,
                note: str = "", reason: str = "") -> Episode:
        """Move the episode from `from_step` to `to_step` (one transaction), merging `state` into its state."""
        if to_step not in TRANSITIONS[from_step]:
            raise IllegalTransition(f"an episode may go from {from_step} to {sorted(TRANSITIONS[from_step])}, "
                                    f"not to {to_step}")
        now = _now()
        with self.database.transaction() as db:
            row = db.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone()
            if row is None:
                raise LookupError(f"no episode {episode_id!r}")
            if row["step"] != str(from_step):
                raise StepConflict(f"episode {episode_id} is at {row['step']}, not {from_step}")
            merged = {**json.loads(row["state"]), **dict(state or {})}
            outcome = str(to_step) if is_terminal(to_step) else None
            db.execute("""UPDATE episodes SET step = ?, updated_at = ?, attempts = 0, state = ?, outcome = ?,
                          reason = CASE WHEN ? != '' THEN ? ELSE reason END, finished_at = ? WHERE id = ?""",
                       (str(to_step), now, json.dumps(merged, default=str), outcome, reason, reason,
                        now if outcome else None, episode_id))
            db.execute("INSERT INTO episode_steps (episode_id, from_step, to_step, at, note) VALUES (?, ?, ?, ?, ?)",
                       (episode_id, str(from_step), str(to_step), now, note or reason))
            return _episode(db.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone())

    def fail(self, episode_id: str, from_step: Step, reason: str) -> Episode:
        return self.advance(episode_id, from_step, Step.FAILED, reason=reason or "failed")

    def begin_attempt(self, episode_id: str, step: Step) -> int:
        """Count one more start of the episode's current step; the count (1 on the first start)."""
        with self.database.transaction() as db:
            cursor = db.execute("UPDATE episodes SET attempts = attempts + 1, updated_at = ? WHERE id = ? AND step = ?",
                                (_now(), episode_id, str(step)))
            if cursor.rowcount == 0:
                raise StepConflict(f"episode {episode_id} is not at {step}")
            return db.execute("SELECT attempts FROM episodes WHERE id = ?", (episode_id,)).fetchone()[0]

    def update_state(self, episode_id: str, step: Step, state: Mapping) -> Episode:
        """Merge `state` into the episode's state without moving it (progress within a step)."""
        with self.database.transaction() as db:
            row = db.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone()
            if row is None or row["step"] != str(step):
                raise StepConflict(f"episode {episode_id} is not at {step}")
            merged = {**json.loads(row["state"]), **dict(state)}
            db.execute("UPDATE episodes SET state = ?, updated_at = ? WHERE id = ?",
                       (json.dumps(merged, default=str), _now(), episode_id))
            return _episode(db.execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone())

    def get(self, episode_id: str) -> Episode:
        row = self.database.connection().execute("SELECT * FROM episodes WHERE id = ?", (episode_id,)).fetchone()
        if row is None:
            raise LookupError(f"no episode {episode_id!r}")
        return _episode(row)

    def episodes(self, model: str | None = None, active: bool | None = None, limit: int = 1000) -> list[Episode]:
        """Episodes, newest first; `active=True` only those still running, False only finished ones."""
        query, params = "SELECT * FROM episodes WHERE 1 = 1", []
        if model is not None:
            query, params = query + " AND model = ?", [*params, model]
        if active is not None:
            query += " AND outcome IS NULL" if active else " AND outcome IS NOT NULL"
        rows = self.database.connection().execute(query + " ORDER BY created_at DESC, id DESC LIMIT ?",
                                                  [*params, limit])
        return [_episode(row) for row in rows]

    def steps(self, episode_id: str) -> list[tuple[str | None, str, datetime, str]]:
        rows = self.database.connection().execute(
            "SELECT from_step, to_step, at, note FROM episode_steps WHERE episode_id = ? ORDER BY id", (episode_id,))
        return [(row["from_step"], row["to_step"], _time(row["at"]), row["note"]) for row in rows]

    def triggers(self, model: str | None = None, limit: int = 1000) -> list[TriggerRecord]:
        query, params = "SELECT * FROM triggers", []
        if model is not None:
            query, params = query + " WHERE model = ?", [model]
        rows = self.database.connection().execute(query + " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [_trigger(row) for row in rows]


def _episode(row) -> Episode:
    return Episode(
        id=row["id"], model=row["model"], source=row["source"], step=Step(row["step"]), outcome=row["outcome"],
        reason=row["reason"], created_at=_time(row["created_at"]), updated_at=_time(row["updated_at"]),
        finished_at=_time(row["finished_at"]) if row["finished_at"] else None, attempts=row["attempts"],
        state=json.loads(row["state"]),
    )


def _trigger(row) -> TriggerRecord:
    return TriggerRecord(
        id=row["id"], received_at=_time(row["received_at"]), model=row["model"], source=row["source"],
        decision=row["decision"], reason=row["reason"], episode_id=row["episode_id"],
        notification_id=row["notification_id"], group_key=row["group_key"],
        fingerprints=tuple(json.loads(row["fingerprints"])), detail=json.loads(row["detail"]),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
