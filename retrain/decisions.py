"""The gate's records in the registry database: trials, their decisions, and the shadow scorer's status.

A **trial** is one comparison the gate runs: `promotion` (the challenger against the champion)
or `watch` (after a promotion, the new champion against the previous one). It counts pairs from
predictions made at or after its `started_at`, ends by its `deadline_at` at the latest, and is
`open` until the gate closes it (`promoted`, `rejected`, `kept`, `rolled_back`, or `superseded`
when someone moved the aliases by hand). At most one trial of each kind is open per model.

Every **decision** the gate takes on new evidence is appended to `gate_decisions` with its
evidence (pairs, both accuracies, the statistic and threshold, the guardrails) and, when it moved
an alias, the id of that entry of the alias history. Triggers keep the table append-only.

The shadow scorer writes its state per model (`waiting` for a challenger, `scoring`, or
`refused`) and, per version, why it refused to score it; the gate rejects a refused challenger.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from driftloop.retrain.database import Database
from driftloop.retrain.gate import TRIAL_KINDS

__all__ = ["DecisionRecord", "GateLedger", "SHADOW_STATES", "ShadowStatus", "TRIAL_STATUSES", "Trial"]

TRIAL_STATUSES = ("open", "promoted", "rejected", "kept", "rolled_back", "superseded")
SHADOW_STATES = ("waiting", "scoring", "refused")


@dataclass(frozen=True)
class Trial:
    id: int
    model: str
    kind: str
    candidate_version: int
    baseline_version: int | None
    episode_id: str | None
    started_at: datetime
    deadline_at: datetime
    status: str
    reason: str
    closed_at: datetime | None

    def describe(self) -> dict:
        return {"id": self.id, "model": self.model, "kind": self.kind, "candidate_version": self.candidate_version,
                "baseline_version": self.baseline_version, "episode_id": self.episode_id,
                "started_at": self.started_at.isoformat(), "deadline_at": self.deadline_at.isoformat(),
                "status": self.status, "reason": self.reason,
                "closed_at": None if self.closed_at is None else self.closed_at.isoformat()}


@dataclass(frozen=True)
class DecisionRecord:
    id: int
    trial_id: int
    model: str
    decided_at: datetime
    outcome: str
    reason: str
    pairs: int
    evidence: Mapping[str, Any]
    alias_change_id: int | None

    def describe(self) -> dict:
        return {"id": self.id, "trial_id": self.trial_id, "model": self.model, "decided_at": self.decided_at.isoformat(),
                "outcome": self.outcome, "reason": self.reason, "pairs": self.pairs, "evidence": dict(self.evidence),
                "alias_change_id": self.alias_change_id}


@dataclass(frozen=True)
class ShadowStatus:
    model: str
    state: str
    versions: tuple[int, ...]
    reason: str
    updated_at: datetime

    def describe(self) -> dict:
        return {"model": self.model, "state": self.state, "versions": list(self.versions), "reason": self.reason,
                "updated_at": self.updated_at.isoformat()}


class GateLedger:
    """Trials, decisions and the shadow scorer's status, in the registry's database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- trials ---------------------------------------------------------------------------------

    def open_trial(self, model: str, kind: str, *, candidate: int, baseline: int | None, started_at: datetime,
                   deadline_at: datetime, episode_id: str | None = None) -> Trial:
        """The open trial of this kind for `candidate`, opening it if there is none.

        An open trial of the same kind for another candidate is closed first as `superseded`.
        """
        if kind not in TRIAL_KINDS:
            raise ValueError(f"Invalid trial kind {kind!r}. Valid values are: {list(TRIAL_KINDS)}")
        now = _now()
        with self.database.transaction() as db:
            row = db.execute("SELECT * FROM gate_trials WHERE model = ? AND kind = ? AND status = 'open'",
                             (model, kind)).fetchone()
            if row is not None and row["candidate_version"] == candidate and row["baseline_version"] == baseline:
                return _trial(row)
            if row is not None:
                db.execute("UPDATE gate_trials SET status = 'superseded', reason = ?, closed_at = ? WHERE id = ?",
                           (f"a {kind} trial of version {candidate} against {_name(baseline)} replaced it", now,
                            row["id"]))
            cursor = db.execute(
                """INSERT INTO gate_trials (model, kind, candidate_version, baseline_version, episode_id, started_at,
                       deadline_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'open')""",
                (model, kind, candidate, baseline, episode_id, _iso(started_at), _iso(deadline_at)))
            return _trial(db.execute("SELECT * FROM gate_trials WHERE id = ?", (cursor.lastrowid,)).fetchone())

    def close_trial(self, trial_id: int, status: str, reason: str) -> Trial:
        """Close an open trial; closing a closed one changes nothing and returns it as it is."""
        if status not in TRIAL_STATUSES or status == "open":
            raise ValueError(f"Invalid trial status {status!r}. Valid values are: {list(TRIAL_STATUSES[1:])}")
        with self.database.transaction() as db:
            db.execute("UPDATE gate_trials SET status = ?, reason = ?, closed_at = ? WHERE id = ? AND status = 'open'",
                       (status, reason, _now(), trial_id))
            return _trial(db.execute("SELECT * FROM gate_trials WHERE id = ?", (trial_id,)).fetchone())

    def trial(self, trial_id: int) -> Trial:
        row = self.database.connection().execute("SELECT * FROM gate_trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise LookupError(f"no gate trial {trial_id}")
        return _trial(row)

    def open_trials(self, model: str | None = None, kind: str | None = None) -> list[Trial]:
        query, params = "SELECT * FROM gate_trials WHERE status = 'open'", []
        if model is not None:
            query, params = query + " AND model = ?", [*params, model]
        if kind is not None:
            query, params = query + " AND kind = ?", [*params, kind]
        return [_trial(row) for row in self.database.connection().execute(query + " ORDER BY id", params)]

    def episode_trial(self, episode_id: str, kind: str) -> Trial | None:
        """The latest trial of this kind for the challenger an episode registered."""
        row = self.database.connection().execute(
            "SELECT * FROM gate_trials WHERE episode_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
            (episode_id, kind)).fetchone()
        return None if row is None else _trial(row)

    def trials(self, model: str, limit: int = 50) -> list[Trial]:
        rows = self.database.connection().execute(
            "SELECT * FROM gate_trials WHERE model = ? ORDER BY id DESC LIMIT ?", (model, limit))
        return [_trial(row) for row in rows][::-1]

    # -- decisions ------------------------------------------------------------------------------

    def record(self, trial: Trial, outcome: str, reason: str, pairs: int, evidence: Mapping[str, Any],
               alias_change_id: int | None = None) -> DecisionRecord:
        with self.database.transaction() as db:
            cursor = db.execute(
                """INSERT INTO gate_decisions (trial_id, model, decided_at, outcome, reason, pairs, evidence,
                       alias_change_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                (trial.id, trial.model, _now(), outcome, reason, pairs, _json(evidence), alias_change_id))
            return _decision(db.execute("SELECT * FROM gate_decisions WHERE id = ?", (cursor.lastrowid,)).fetchone())

    def decisions(self, model: str, trial_id: int | None = None, final_only: bool = False,
                  limit: int = 100) -> list[DecisionRecord]:
        """Decisions of `model` (of one trial, if given), oldest first: the latest `limit` of them."""
        query, params = "SELECT * FROM gate_decisions WHERE model = ?", [model]
        if trial_id is not None:
            query, params = query + " AND trial_id = ?", [*params, trial_id]
        if final_only:
            query += " AND outcome != 'continue'"
        rows = self.database.connection().execute(query + " ORDER BY id DESC LIMIT ?", [*params, limit])
        return [_decision(row) for row in rows][::-1]

    def last_decision(self, trial_id: int) -> DecisionRecord | None:
        row = self.database.connection().execute(
            "SELECT * FROM gate_decisions WHERE trial_id = ? ORDER BY id DESC LIMIT 1", (trial_id,)).fetchone()
        return None if row is None else _decision(row)

    # -- the shadow scorer ----------------------------------------------------------------------

    def set_shadow_status(self, model: str, state: str, versions: Sequence[int] = (), reason: str = "") -> None:
        if state not in SHADOW_STATES:
            raise ValueError(f"Invalid shadow state {state!r}. Valid values are: {list(SHADOW_STATES)}")
        with self.database.transaction() as db:
            db.execute("""INSERT INTO shadow_status (model, state, versions, reason, updated_at) VALUES (?, ?, ?, ?, ?)
                          ON CONFLICT (model) DO UPDATE SET state = excluded.state, versions = excluded.versions,
                          reason = excluded.reason, updated_at = excluded.updated_at""",
                       (model, state, _json(list(versions)), reason, _now()))

    def shadow_status(self, model: str) -> ShadowStatus | None:
        row = self.database.connection().execute("SELECT * FROM shadow_status WHERE model = ?", (model,)).fetchone()
        if row is None:
            return None
        return ShadowStatus(row["model"], row["state"], tuple(json.loads(row["versions"])), row["reason"],
                            datetime.fromisoformat(row["updated_at"]))

    def refuse(self, model: str, version: int, reason: str) -> None:
        """Record that the shadow scorer will not score `version` (the first reason is kept)."""
        with self.database.transaction() as db:
            db.execute("INSERT OR IGNORE INTO shadow_refusals (model, version, reason, refused_at) VALUES (?, ?, ?, ?)",
                       (model, version, reason, _now()))

    def refusal(self, model: str, version: int) -> str | None:
        row = self.database.connection().execute(
            "SELECT reason FROM shadow_refusals WHERE model = ? AND version = ?", (model, version)).fetchone()
        return None if row is None else row["reason"]


def _trial(row: sqlite3.Row) -> Trial:
    return Trial(row["id"], row["model"], row["kind"], row["candidate_version"], row["baseline_version"],
                 row["episode_id"], datetime.fromisoformat(row["started_at"]),
                 datetime.fromisoformat(row["deadline_at"]), row["status"], row["reason"],
                 None if row["closed_at"] is None else datetime.fromisoformat(row["closed_at"]))


def _decision(row: sqlite3.Row) -> DecisionRecord:
    return DecisionRecord(row["id"], row["trial_id"], row["model"], datetime.fromisoformat(row["decided_at"]),
                          row["outcome"], row["reason"], row["pairs"], json.loads(row["evidence"]),
                          row["alias_change_id"])


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("trial times must carry a time zone (use datetime.now(UTC))")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _name(version: int | None) -> str:
    return "no champion" if version is None else f"version {version}"
