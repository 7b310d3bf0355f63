"""The registry database: one SQLite file (WAL), its schema versioned by `PRAGMA user_version`.

The model registry, the retrain service's triggers and episodes, and its leases share this
file, so a version, the alias that names it and the episode that made it can change in one
transaction. The schema is a list of migrations, each a SQL script run once, in order, inside
`BEGIN IMMEDIATE`; `PRAGMA user_version` counts those applied. A new table or column is one
more entry at the end of `MIGRATIONS` (never an edit of an applied one).

Connections are per thread (`Database.connection()`), in autocommit mode: a change that must
be atomic goes through `transaction()`, which takes SQLite's write lock at `BEGIN IMMEDIATE`,
so a compare-and-swap reads and writes under the same lock.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["MIGRATIONS", "Database", "SchemaTooNew"]

MIGRATIONS: list[str] = [
    # 1: model versions, aliases and their append-only history.
    """
    CREATE TABLE versions (
        model TEXT NOT NULL,
        version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        spec_name TEXT NOT NULL,
        spec TEXT NOT NULL,                -- JSON: the spec and its parameters as trained
        features TEXT NOT NULL,            -- JSON list: the input features, by name
        classes TEXT NOT NULL,             -- JSON list: the classes, in the order of the outputs
        snapshot_id TEXT,
        training TEXT NOT NULL,            -- JSON: run path, workers, wall time, per-epoch metrics
        metrics TEXT NOT NULL,             -- JSON: validation metrics
        artifact_sha256 TEXT NOT NULL,
        parent_version INTEGER,
        origin TEXT NOT NULL,              -- what made it: "episode", "manual", ...
        episode_id TEXT UNIQUE,            -- at most one version per episode
        PRIMARY KEY (model, version)
    );
    CREATE TABLE aliases (
        model TEXT NOT NULL,
        alias TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (model, alias),
        FOREIGN KEY (model, version) REFERENCES versions (model, version)
    );
    CREATE TABLE alias_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        alias TEXT NOT NULL,
        from_version INTEGER,
        to_version INTEGER,
        moved_at TEXT NOT NULL,
        reason TEXT NOT NULL,
        evidence TEXT NOT NULL,            -- JSON object
        actor TEXT NOT NULL
    );
    CREATE INDEX alias_history_by_model ON alias_history (model, alias, id);
    CREATE TRIGGER alias_history_no_update BEFORE UPDATE ON alias_history
        BEGIN SELECT RAISE(ABORT, 'the alias history is append-only'); END;
    CREATE TRIGGER alias_history_no_delete BEFORE DELETE ON alias_history
        BEGIN SELECT RAISE(ABORT, 'the alias history is append-only'); END;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 2: the retrain service: notifications as received, triggers and their decisions, episodes.
    """
    CREATE TABLE notifications (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        group_key TEXT NOT NULL,
        status TEXT NOT NULL,
        body TEXT NOT NULL,                -- the webhook's JSON, as received
        processed_at TEXT
    );
    CREATE INDEX notifications_pending ON notifications (processed_at, id);
    CREATE TABLE episodes (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        source TEXT NOT NULL,
        step TEXT NOT NULL,
        outcome TEXT,                      -- NULL while it runs; then registered, failed, ...
        reason TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        finished_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,  -- starts of the current step (a restart resumes it)
        state TEXT NOT NULL DEFAULT '{}'   -- JSON: what the steps produced (batch, snapshot, run, version)
    );
    CREATE INDEX episodes_by_model ON episodes (model, created_at);
    CREATE TABLE episode_steps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        episode_id TEXT NOT NULL REFERENCES episodes (id),
        from_step TEXT,
        to_step TEXT NOT NULL,
        at TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE triggers (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        received_at TEXT NOT NULL,
        model TEXT NOT NULL,
        source TEXT NOT NULL,              -- alertmanager, schedule, quality, manual
        decision TEXT NOT NULL,            -- started, skipped_cooldown, skipped_resolved, skipped_too_few_labels, failed
        reason TEXT NOT NULL DEFAULT '',
        episode_id TEXT REFERENCES episodes (id),
        notification_id INTEGER REFERENCES notifications (id),
        group_key TEXT,
        fingerprints TEXT NOT NULL DEFAULT '[]',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX triggers_by_model ON triggers (model, id);
    """,
    # 3: the promotion gate (retrain/decisions.py): trials, their append-only decisions, the shadow scorer's status.
    """
    CREATE TABLE gate_trials (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        model TEXT NOT NULL,
        kind TEXT NOT NULL,                -- promotion (challenger vs champion) or watch (new champion vs previous)
        candidate_version INTEGER NOT NULL,
        baseline_version INTEGER,
        episode_id TEXT,
        started_at TEXT NOT NULL,          -- pairs count from predictions made at or after this time
        deadline_at TEXT NOT NULL,
        status TEXT NOT NULL,              -- open, promoted, rejected, kept, rolled_back, superseded
        reason TEXT NOT NULL DEFAULT '',
        closed_at TEXT
    );
    CREATE UNIQUE INDEX gate_trials_one_open ON gate_trials (model, kind) WHERE status = 'open';
    CREATE INDEX gate_trials_by_model ON gate_trials (model, id);
    CREATE TABLE gate_decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        trial_id INTEGER NOT NULL REFERENCES gate_trials (id),
        model TEXT NOT NULL,
        decided_at TEXT NOT NULL,
        outcome TEXT NOT NULL,             -- continue, promote, reject, keep, rollback
        reason TEXT NOT NULL,
        pairs INTEGER NOT NULL,
        evidence TEXT NOT NULL,            -- JSON: counts, accuracies, statistic, threshold, guardrails
        alias_change_id INTEGER            -- the alias history entry the decision made, if it moved an alias
    );
    CREATE INDEX gate_decisions_by_trial ON gate_decisions (trial_id, id);
    CREATE TRIGGER gate_decisions_no_update BEFORE UPDATE ON gate_decisions
        BEGIN SELECT RAISE(ABORT, 'gate decisions are append-only'); END;
    CREATE TRIGGER gate_decisions_no_delete BEFORE DELETE ON gate_decisions
        BEGIN SELECT RAISE(ABORT, 'gate decisions are append-only'); END;
    CREATE TABLE shadow_status (
        model TEXT PRIMARY KEY,
        state TEXT NOT NULL,               -- waiting, scoring, refused
        versions TEXT NOT NULL DEFAULT '[]',
        reason TEXT NOT NULL DEFAULT '',
        updated_at TEXT NOT NULL
    );
    CREATE TABLE shadow_refusals (
        model TEXT NOT NULL,
        version INTEGER NOT NULL,
        reason TEXT NOT NULL,
        refused_at TEXT NOT NULL,
        PRIMARY KEY (model, version)
    );
    """,
]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer driftloop: this code does not know its schema."""


class Database:
    """One SQLite file, migrated on open; a connection per thread."""

    def __init__(self, path: Path, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; use `transaction()` for anything atomic)."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                         check_same_thread=True)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")  # a committed notification survives a power cut
            connection.execute("PRAGMA foreign_keys = ON")
            self._local.connection = connection
        return connection

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception): the write lock from the first read."""
        connection = self.connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def schema_version(self) -> int:
        return self.connection().execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        with self.transaction() as connection:  # two processes opening a new file at once migrate it once
            current = connection.execute("PRAGMA user_version").fetchone()[0]
            if current > len(MIGRATIONS):
                raise SchemaTooNew(f"{self.path} has schema version {current}; this driftloop knows up to "
                                   f"{len(MIGRATIONS)}: upgrade driftloop")
            for number, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in _statements(script):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {number}")


def _statements(script: str) -> list[str]:
    """The statements of a migration script; a trigger's body keeps its inner semicolons."""
    statements, current = [], []
    for line in script.splitlines():
        if not current and not line.strip():
            continue
        current.append(line)
        joined = "\n".join(current)
        if sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if any(line.split("--", 1)[0].strip() for line in current):
        raise ValueError(f"a migration ends in an incomplete statement: {' '.join(current)[:80]}")
    return statements
