"""The model registry: every trained version, the aliases that say which serves, and their history.

A version records its model name and number, spec and parameters, training snapshot, training
run (path, workers, wall time, per-epoch metrics), validation metrics, the sha256 of its
content-addressed artifact (weights, preprocessing, the reference profile of its training
data), its parent version and what made it (an episode, by hand). Versions are never changed.

Aliases (`champion`, `challenger`, `previous`) point at versions. Every move is a
compare-and-swap: the caller says which version it expects the alias to point at now (None:
unset), and the move is refused with `StaleAlias` when another process moved it first. Moves
run inside `BEGIN IMMEDIATE`, several aliases at once when they belong together (a promotion
moves champion, challenger and previous in one transaction), and each is appended to the alias
history (from, to, when, why, evidence, who), which triggers in the database keep append-only.

Loading a version checks its artifact's sha256 and every file in it first, and reads the
weights with `torch.load(weights_only=True)`; a tampered or truncated artifact is an
`ArtifactError` and is never served.

    registry = ModelRegistry.open(data_dir / "registry")
    version = registry.register("churn", folder, spec=..., ..., alias="challenger", reason="episode ep-1")
    registry.promote("churn", expected_champion=3, expected_challenger=version.version, reason="gate", evidence={...})
    loaded = registry.load("churn", "champion")    # LoadedModel: .version, .predictor, .profile_dir
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from driftloop.retrain.artifacts import ArtifactError, ArtifactStore
from driftloop.retrain.database import Database
from driftloop.retrain.model_files import PROFILE_DIR, load_predictor

__all__ = [
    "ALIASES",
    "AliasChange",
    "AliasMove",
    "EpochMetrics",
    "LoadedModel",
    "ModelRegistry",
    "ModelVersion",
    "StaleAlias",
    "TrainingRecord",
    "UnknownVersion",
]

ALIASES = ("champion", "challenger", "previous")
DATABASE_FILE = "registry.db"
ARTIFACTS_DIR = "artifacts"


class StaleAlias(RuntimeError):
    """A compare-and-swap found the alias somewhere else than the caller expected: nothing moved."""

    def __init__(self, model: str, alias: str, expected: int | None, actual: int | None) -> None:
        super().__init__(f"{model}: alias {alias!r} points at {_name(actual)}, not {_name(expected)} as expected; "
                         "nothing was moved (read it again and retry)")
        self.model, self.alias, self.expected, self.actual = model, alias, expected, actual


class UnknownVersion(LookupError):
    """No such model, version or alias in the registry."""


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    seconds: float


@dataclass(frozen=True)
class TrainingRecord:
    """The training run that made a version."""

    run_path: str
    workers: int
    use_gpu: bool
    wall_s: float
    epochs: tuple[EpochMetrics, ...] = ()
    best_epoch: int | None = None
    stopped_early: bool = False
    nodes: tuple[str, ...] = ()  # the Ray node of each worker, by rank

    def to_dict(self) -> dict:
        return {**asdict(self), "epochs": [asdict(e) for e in self.epochs], "nodes": list(self.nodes)}

    @classmethod
    def from_dict(cls, document: Mapping) -> TrainingRecord:
        return cls(**{**document, "epochs": tuple(EpochMetrics(**e) for e in document.get("epochs", ())),
                      "nodes": tuple(document.get("nodes", ()))})


@dataclass(frozen=True)
class ModelVersion:
    """One registered version; never changed once written."""

    model: str
    version: int
    created_at: datetime
    spec_name: str
    spec: Mapping[str, Any]
    features: tuple[str, ...]
    classes: tuple[str, ...]
    snapshot_id: str | None
    training: TrainingRecord
    metrics: Mapping[str, float]
    artifact_sha256: str
    parent_version: int | None
    origin: str
    episode_id: str | None = None

    def describe(self) -> dict:
        """A JSON-able summary (for `driftloop models show --json`)."""
        return {
            "model": self.model, "version": self.version, "created_at": self.created_at.isoformat(),
            "spec_name": self.spec_name, "spec": dict(self.spec), "features": list(self.features),
            "classes": list(self.classes), "snapshot_id": self.snapshot_id, "training": self.training.to_dict(),
            "metrics": dict(self.metrics), "artifact_sha256": self.artifact_sha256,
            "parent_version": self.parent_version, "origin": self.origin, "episode_id": self.episode_id,
        }


@dataclass(frozen=True)
class AliasMove:
    """Move `alias` to `to_version` (None: clear it), if it points at `expected` now (None: unset)."""

    alias: str
    to_version: int | None
    expected: int | None


@dataclass(frozen=True)
class AliasChange:
    """One entry of the alias history."""

    id: int
    model: str
    alias: str
    from_version: int | None
    to_version: int | None
    moved_at: datetime
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    actor: str = ""

    def describe(self) -> dict:
        return {"id": self.id, "model": self.model, "alias": self.alias, "from_version": self.from_version,
                "to_version": self.to_version, "moved_at": self.moved_at.isoformat(), "reason": self.reason,
                "evidence": dict(self.evidence), "actor": self.actor}


@dataclass(frozen=True)
class LoadedModel:
    """A version ready to score: its record, its `ModelPredictor`, and its verified artifact folder."""

    version: ModelVersion
    predictor: Any
    folder: Path

    @property
    def profile_dir(self) -> Path:
        return self.folder / PROFILE_DIR


class ModelRegistry:
    """Versions, aliases and history in the registry database; artifacts in a content-addressed folder."""

    def __init__(self, database: Database, artifacts: ArtifactStore) -> None:
        self.database = database
        self.artifacts = artifacts

    @classmethod
    def open(cls, folder: Path) -> ModelRegistry:
        """The registry under `folder`: `registry.db` and `artifacts/`."""
        folder = Path(folder)
        return cls(Database(folder / DATABASE_FILE), ArtifactStore(folder / ARTIFACTS_DIR))

    # -- writing -------------------------------------------------------------------------------

    def register(
        self,
        model: str,
        artifact_folder: Path,
        *,
        spec: Mapping[str, Any],
        features: Sequence[str],
        classes: Sequence[str],
        training: TrainingRecord,
        metrics: Mapping[str, float],
        snapshot_id: str | None = None,
        parent_version: int | None = None,
        origin: str = "manual",
        episode_id: str | None = None,
        alias: str | None = None,
        reason: str = "",
        evidence: Mapping[str, Any] | None = None,
        actor: str = "registry",
    ) -> ModelVersion:
        """Store the artifact and record a new version (and, with `alias`, point that alias at it).

        Idempotent per episode: registering for an `episode_id` that already has a version returns
        that version and changes nothing (a resumed episode never registers twice).
        """
        _check_model(model)
        if alias is not None:
            _check_alias(alias)
        if episode_id is not None and (existing := self.by_episode(episode_id)) is not None:
            return existing
        digest = self.artifacts.put(Path(artifact_folder))
        now = _now()
        with self.database.transaction() as db:
            if episode_id is not None:
                row = db.execute("SELECT * FROM versions WHERE episode_id = ?", (episode_id,)).fetchone()
                if row is not None:
                    return _version(row)
            number = db.execute("SELECT coalesce(max(version), 0) + 1 FROM versions WHERE model = ?",
                                (model,)).fetchone()[0]
            db.execute(
                """INSERT INTO versions (model, version, created_at, spec_name, spec, features, classes, snapshot_id,
                       training, metrics, artifact_sha256, parent_version, origin, episode_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (model, number, now, spec.get("name", ""), _json(spec), _json(list(features)), _json(list(classes)),
                 snapshot_id, _json(training.to_dict()), _json(dict(metrics)), digest, parent_version, origin,
                 episode_id),
            )
            if alias is not None:
                current = _alias(db, model, alias)
                self._move(db, model, AliasMove(alias, number, current), reason or f"registered version {number}",
                           evidence or {}, actor, now)
            row = db.execute("SELECT * FROM versions WHERE model = ? AND version = ?", (model, number)).fetchone()
        return _version(row)

    def move_alias(self, model: str, alias: str, to_version: int | None, *, expected: int | None, reason: str,
                   evidence: Mapping[str, Any] | None = None, actor: str = "") -> AliasChange:
        """Compare-and-swap one alias; StaleAlias when it does not point at `expected`."""
        return self.move_aliases(model, [AliasMove(alias, to_version, expected)], reason=reason, evidence=evidence,
                                 actor=actor)[0]

    def move_aliases(self, model: str, moves: Sequence[AliasMove], *, reason: str,
                     evidence: Mapping[str, Any] | None = None, actor: str = "") -> list[AliasChange]:
        """Compare-and-swap several aliases in one transaction: all move, or (StaleAlias) none."""
        if not moves:
            raise ValueError("no alias moves given")
        _require_reason(reason)
        for move in moves:
            _check_alias(move.alias)
        if len({move.alias for move in moves}) != len(moves):
            raise ValueError(f"each alias may move once per transaction: {[move.alias for move in moves]}")
        now = _now()
        with self.database.transaction() as db:
            return [self._move(db, model, move, reason, evidence or {}, actor, now) for move in moves]

    def promote(self, model: str, *, expected_champion: int | None, expected_challenger: int, reason: str,
                evidence: Mapping[str, Any] | None = None, actor: str = "") -> list[AliasChange]:
        """challenger -> champion, the old champion -> previous, challenger cleared: one transaction.

        Compare-and-swap on the champion and the challenger; `previous` follows the champion.
        """
        _require_reason(reason)
        now = _now()
        with self.database.transaction() as db:
            moves = [AliasMove("champion", expected_challenger, expected_champion),
                     AliasMove("challenger", None, expected_challenger)]
            if expected_champion is not None:
                moves.append(AliasMove("previous", expected_champion, _alias(db, model, "previous")))
            return [self._move(db, model, move, reason, evidence or {}, actor, now) for move in moves]

    def set_champion(self, model: str, version: int, *, expected: int | None, reason: str,
                     evidence: Mapping[str, Any] | None = None, actor: str = "") -> list[AliasChange]:
        """Make `version` the champion by hand (`driftloop models promote`); the old one becomes previous.

        Compare-and-swap on the champion; a challenger that is this version is cleared.
        """
        _require_reason(reason)
        now = _now()
        with self.database.transaction() as db:
            moves = [AliasMove("champion", version, expected)]
            if expected is not None and expected != version:
                moves.append(AliasMove("previous", expected, _alias(db, model, "previous")))
            if _alias(db, model, "challenger") == version:
                moves.append(AliasMove("challenger", None, version))
            return [self._move(db, model, move, reason, evidence or {}, actor, now) for move in moves]

    def rollback(self, model: str, *, reason: str, evidence: Mapping[str, Any] | None = None,
                 actor: str = "") -> AliasChange:
        """Undo the champion's last move: it goes back to the version it pointed at before.

        A compare-and-swap on that last move: if the champion moved since, StaleAlias. The
        `previous` alias is cleared when it named the version that is champion again.
        """
        _require_reason(reason)
        now = _now()
        with self.database.transaction() as db:
            last = db.execute("SELECT * FROM alias_history WHERE model = ? AND alias = 'champion' ORDER BY id DESC "
                              "LIMIT 1", (model,)).fetchone()
            if last is None or last["from_version"] is None:
                raise UnknownVersion(f"{model}: the champion has no earlier version to roll back to")
            back_to, current = last["from_version"], _alias(db, model, "champion")
            if current != last["to_version"]:
                raise StaleAlias(model, "champion", last["to_version"], current)
            evidence = {"undoes_history_id": last["id"], **dict(evidence or {})}
            change = self._move(db, model, AliasMove("champion", back_to, current), reason, evidence, actor, now)
            if _alias(db, model, "previous") == back_to:
                self._move(db, model, AliasMove("previous", None, back_to), reason, evidence, actor, now)
            return change

    def _move(self, db: sqlite3.Connection, model: str, move: AliasMove, reason: str, evidence: Mapping,
              actor: str, now: str) -> AliasChange:
        current = _alias(db, model, move.alias)
        if current != move.expected:
            raise StaleAlias(model, move.alias, move.expected, current)
        if move.to_version is None:
            db.execute("DELETE FROM aliases WHERE model = ? AND alias = ?", (model, move.alias))
        else:
            if db.execute("SELECT 1 FROM versions WHERE model = ? AND version = ?",
                          (model, move.to_version)).fetchone() is None:
                raise UnknownVersion(f"{model} has no version {move.to_version}; versions: {self._numbers(db, model)}")
            db.execute("""INSERT INTO aliases (model, alias, version, updated_at) VALUES (?, ?, ?, ?)
                          ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version,
                          updated_at = excluded.updated_at""", (model, move.alias, move.to_version, now))
        cursor = db.execute(
            """INSERT INTO alias_history (model, alias, from_version, to_version, moved_at, reason, evidence, actor)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            (model, move.alias, current, move.to_version, now, reason, _json(dict(evidence)), actor),
        )
        return AliasChange(cursor.lastrowid, model, move.alias, current, move.to_version, _time(now), reason,
                           dict(evidence), actor)

    # -- reading -------------------------------------------------------------------------------

    def models(self) -> list[str]:
        rows = self.database.connection().execute("SELECT DISTINCT model FROM versions ORDER BY model")
        return [row[0] for row in rows]

    def versions(self, model: str) -> list[ModelVersion]:
        rows = self.database.connection().execute("SELECT * FROM versions WHERE model = ? ORDER BY version", (model,))
        return [_version(row) for row in rows]

    def get(self, model: str, ref: int | str) -> ModelVersion:
        """A version by number, by alias ('champion', ...) or 'latest'; UnknownVersion names what exists."""
        db = self.database.connection()
        number = self._resolve(db, model, ref)
        row = db.execute("SELECT * FROM versions WHERE model = ? AND version = ?", (model, number)).fetchone()
        if row is None:
            raise UnknownVersion(f"{model} has no version {number}; versions: {self._numbers(db, model)}")
        return _version(row)

    def find(self, model: str, ref: int | str) -> ModelVersion | None:
        """Like `get`, but None where the alias is unset or the version does not exist."""
        try:
            return self.get(model, ref)
        except UnknownVersion:
            return None

    def by_episode(self, episode_id: str) -> ModelVersion | None:
        row = self.database.connection().execute("SELECT * FROM versions WHERE episode_id = ?",
                                                 (episode_id,)).fetchone()
        return None if row is None else _version(row)

    def alias(self, model: str, alias: str) -> int | None:
        _check_alias(alias)
        return _alias(self.database.connection(), model, alias)

    def aliases(self, model: str) -> dict[str, int]:
        rows = self.database.connection().execute("SELECT alias, version FROM aliases WHERE model = ? ORDER BY alias",
                                                  (model,))
        return {row["alias"]: row["version"] for row in rows}

    def history(self, model: str, alias: str | None = None, since_id: int = 0) -> list[AliasChange]:
        """Alias moves of `model` (of one alias, if given) after history id `since_id`, oldest first."""
        query, params = "SELECT * FROM alias_history WHERE model = ? AND id > ?", [model, since_id]
        if alias is not None:
            query, params = query + " AND alias = ?", [*params, alias]
        rows = self.database.connection().execute(query + " ORDER BY id", params)
        return [_change(row) for row in rows]

    def last_change_id(self, model: str | None = None) -> int:
        """The id of the latest alias move (of `model`, if given): poll it to notice moves cheaply."""
        db = self.database.connection()
        if model is None:
            return db.execute("SELECT coalesce(max(id), 0) FROM alias_history").fetchone()[0]
        return db.execute("SELECT coalesce(max(id), 0) FROM alias_history WHERE model = ?", (model,)).fetchone()[0]

    def artifact(self, version: ModelVersion) -> Path:
        """The version's artifact folder, verified against its sha256 (ArtifactError otherwise)."""
        try:
            return self.artifacts.verified(version.artifact_sha256)
        except ArtifactError as error:
            raise ArtifactError(f"{version.model} version {version.version}: {error}") from None

    def load(self, model: str, ref: int | str, device: str = "cpu") -> LoadedModel:
        """The version ready to score, after its artifact passed the sha256 check."""
        version = self.get(model, ref)
        folder = self.artifact(version)
        return LoadedModel(version, load_predictor(folder, device=device), folder)

    def profile_dir(self, model: str, ref: int | str = "champion") -> Path | None:
        """The verified reference profile folder of a version (default: the champion); None when it has none."""
        version = self.find(model, ref)
        if version is None:
            return None
        folder = self.artifact(version) / PROFILE_DIR
        return folder if (folder / "profile.json").is_file() else None

    def _resolve(self, db: sqlite3.Connection, model: str, ref: int | str) -> int:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            return int(ref)
        if ref == "latest":
            number = db.execute("SELECT max(version) FROM versions WHERE model = ?", (model,)).fetchone()[0]
            if number is None:
                raise UnknownVersion(f"no versions of model {model!r} in the registry; models: {self.models()}")
            return number
        _check_alias(ref)
        number = _alias(db, model, ref)
        if number is None:
            raise UnknownVersion(f"{model} has no {ref}; aliases set: {self.aliases(model) or 'none'}")
        return number

    def _numbers(self, db: sqlite3.Connection, model: str) -> list[int]:
        return [row[0] for row in db.execute("SELECT version FROM versions WHERE model = ? ORDER BY version", (model,))]


def _alias(db: sqlite3.Connection, model: str, alias: str) -> int | None:
    row = db.execute("SELECT version FROM aliases WHERE model = ? AND alias = ?", (model, alias)).fetchone()
    return None if row is None else row[0]


def _check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise ValueError(f"Invalid alias {alias!r}. Valid values are: {list(ALIASES)}")


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise ValueError("an alias move needs a reason: it is kept in the history")


def _check_model(model: str) -> None:
    if not model or not isinstance(model, str):
        raise ValueError(f"a model name must be a non-empty string, got {model!r}")


def _version(row: sqlite3.Row) -> ModelVersion:
    return ModelVersion(
        model=row["model"], version=row["version"], created_at=_time(row["created_at"]), spec_name=row["spec_name"],
        spec=json.loads(row["spec"]), features=tuple(json.loads(row["features"])),
        classes=tuple(json.loads(row["classes"])), snapshot_id=row["snapshot_id"],
        training=TrainingRecord.from_dict(json.loads(row["training"])), metrics=json.loads(row["metrics"]),
        artifact_sha256=row["artifact_sha256"], parent_version=row["parent_version"], origin=row["origin"],
        episode_id=row["episode_id"],
    )


def _change(row: sqlite3.Row) -> AliasChange:
    return AliasChange(row["id"], row["model"], row["alias"], row["from_version"], row["to_version"],
                       _time(row["moved_at"]), row["reason"], json.loads(row["evidence"]), row["actor"])


def _json(value) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _name(version: int | None) -> str:
    return "nothing" if version is None else f"version {version}"
