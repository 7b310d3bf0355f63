"""Labelled dataset snapshots: the training set of a retrain, versioned by its content.

A snapshot joins the reference data (what the model was first trained on)
with the store's labelled predictions of a recency window (user, system and
annotator feedback), optionally balanced by class, and writes it once under
an id derived from its content and from how it was built. The same inputs
always give the same id; any change of a row, a label or a setting gives
another. Retraining reads a snapshot by id, so a model can always name the
exact data it learnt from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.collector.store import Store
from driftloop.collector.store_writer import write_durably

__all__ = ["BALANCE_MODES", "Snapshot", "SnapshotSpec", "build_snapshot", "load_snapshot"]

BALANCE_MODES = ("none", "undersample")


@dataclass(frozen=True)
class SnapshotSpec:
    """How a snapshot is built.

    Labelled predictions of `model` in [since, until) are taken (None: no
    bound), joined to feedback that came within `label_horizon_hours`.
    `balance="undersample"` keeps as many rows of each class as the rarest
    class has; `max_per_class` caps every class (a seeded draw either way).
    """

    model: str
    since: datetime | None = None
    until: datetime | None = None
    label_horizon_hours: float = 168.0
    balance: str = "none"
    max_per_class: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.balance not in BALANCE_MODES:
            raise ValueError(f"Invalid 'balance' {self.balance!r}. Valid values are: {list(BALANCE_MODES)}")
        if self.max_per_class is not None and self.max_per_class < 1:
            raise ValueError(f"'max_per_class' must be at least 1, got {self.max_per_class}")

    def to_dict(self) -> dict:
        return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Snapshot:
    """A written snapshot: its id, its folder (`data.parquet`, `manifest.json`) and its manifest."""

    snapshot_id: str
    folder: Path
    manifest: dict

    @property
    def data_path(self) -> Path:
        return self.folder / "data.parquet"

    def read(self) -> pa.Table:
        return pq.read_table(self.data_path)


def build_snapshot(store: Store, spec: SnapshotSpec, folder: Path, reference: pa.Table | None = None) -> Snapshot:
    """Build the snapshot `spec` describes into `folder`/<id>/ (or find it there) and return it.

    `reference` is the original training data: a `label` column, the model's
    `feature.<name>` columns, and optionally `event_id` and `timestamp`. The
    store's rows must have the same features; a missing one is named.
    """
    labelled = store.labelled(spec.model, spec.since, spec.until, horizon=timedelta(hours=spec.label_horizon_hours))
    parts = [_from_store(labelled)] if labelled.num_rows else []
    if reference is not None and reference.num_rows:
        parts.insert(0, _from_reference(reference))
    if not parts:
        raise ValueError(f"nothing to snapshot: no reference rows and no labelled predictions of {spec.model!r} in the window")
    # A canonical order first, so that the seeded class balancing depends on the content alone.
    table = _aligned(parts).sort_by([("source", "ascending"), ("timestamp", "ascending"), ("event_id", "ascending")])
    table = _balanced(table, spec)
    content = _content_hash(table)
    snapshot_id = "snap-" + hashlib.sha256(f"{content}\n{json.dumps(spec.to_dict(), sort_keys=True)}".encode()).hexdigest()[:16]
    target = Path(folder) / snapshot_id
    if (target / "manifest.json").exists():
        return load_snapshot(folder, snapshot_id)
    manifest = _manifest(snapshot_id, content, table, spec)
    staging = Path(folder) / f".{snapshot_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    write_durably(table, staging / "data.parquet")
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    staging.rename(target)  # the folder appears whole, or not at all
    return Snapshot(snapshot_id, target, manifest)


def load_snapshot(folder: Path, snapshot_id: str) -> Snapshot:
    target = Path(folder) / snapshot_id
    if not (target / "manifest.json").exists():
        known = sorted(p.name for p in Path(folder).glob("snap-*"))
        raise ValueError(f"no snapshot {snapshot_id!r} in {folder}; snapshots there: {known[-10:]}")
    return Snapshot(snapshot_id, target, json.loads((target / "manifest.json").read_text()))


def _from_store(labelled: pa.Table) -> pa.Table:
    features = [name for name in labelled.column_names if name.startswith("feature.")]
    return pa.table({
        "source": labelled["feedback_source"].cast(pa.string()),
        "event_id": labelled["event_id"],
        "timestamp": labelled["timestamp"],
        "label": labelled["true_label"].cast(pa.string()),
        **{name: labelled[name] for name in features},
    })


def _from_reference(reference: pa.Table) -> pa.Table:
    if "label" not in reference.column_names:
        raise ValueError(f"the reference data needs a 'label' column; it has {reference.column_names}")
    rows = reference.num_rows
    if "event_id" in reference.column_names:
        event_ids = reference["event_id"]
    else:
        event_ids = pa.array([f"reference-{i}" for i in range(rows)])
    timestamps = (reference["timestamp"] if "timestamp" in reference.column_names
                  else pa.nulls(rows, pa.timestamp("us", tz="UTC")))
    return pa.table({
        "source": pa.array(["reference"] * rows),
        "event_id": pc.cast(event_ids, pa.string()),
        "timestamp": pc.cast(timestamps, pa.timestamp("us", tz="UTC")),
        "label": pc.cast(reference["label"], pa.string()),
        **{name: reference[name] for name in reference.column_names if name.startswith("feature.")},
    })


def _aligned(parts: list[pa.Table]) -> pa.Table:
    """One table of every part, the features as float64; a feature missing from any part is named."""
    features = [sorted(n for n in part.column_names if n.startswith("feature.")) for part in parts]
    if any(names != features[-1] for names in features):
        missing = sorted(set().union(*features) - set.intersection(*map(set, features)))
        raise ValueError(f"the reference data and the store's rows must have the same features; not in all: {missing}")
    columns = ["source", "event_id", "timestamp", "label", *features[-1]]
    return pa.concat_tables([
        part.select(columns).cast(pa.schema([
            ("source", pa.string()), ("event_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC")),
            ("label", pa.string()), *[(name, pa.float64()) for name in features[-1]],
        ]))
        for part in parts
    ]).combine_chunks()


def _balanced(table: pa.Table, spec: SnapshotSpec) -> pa.Table:
    """At most `max_per_class` rows per class, and as many as the rarest class has with undersampling."""
    labels = table["label"].to_numpy(zero_copy_only=False).astype(str)
    classes, counts = np.unique(labels, return_counts=True)
    keep = int(counts.min()) if spec.balance == "undersample" else int(counts.max())
    if spec.max_per_class is not None:
        keep = min(keep, spec.max_per_class)
    if keep >= counts.max():
        return table
    rng = np.random.default_rng(spec.seed)
    rows = [
        rng.choice(np.flatnonzero(labels == label), size=min(keep, count), replace=False)
        for label, count in zip(classes, counts, strict=True)
    ]
    return table.take(np.sort(np.concatenate(rows)))  # in the canonical order still


def _content_hash(table: pa.Table) -> str:
    """SHA-256 of the table's Arrow IPC stream: the same rows in the same order give the same hash."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:
        writer.write_table(table.replace_schema_metadata(None).combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def _manifest(snapshot_id: str, content: str, table: pa.Table, spec: SnapshotSpec) -> dict:
    labels, per_class = np.unique(table["label"].to_numpy(zero_copy_only=False).astype(str), return_counts=True)
    sources, per_source = np.unique(table["source"].to_numpy(zero_copy_only=False).astype(str), return_counts=True)
    start, end = pc.min(table["timestamp"]).as_py(), pc.max(table["timestamp"]).as_py()
    return {
        "snapshot_id": snapshot_id,
        "content_sha256": content,
        "rows": table.num_rows,
        "rows_per_class": {str(k): int(v) for k, v in zip(labels, per_class, strict=True)},
        "rows_per_source": {str(k): int(v) for k, v in zip(sources, per_source, strict=True)},
        "time_range": {"start": start.isoformat() if start else None, "end": end.isoformat() if end else None},
        "features": [name.removeprefix("feature.") for name in table.column_names if name.startswith("feature.")],
        "spec": spec.to_dict(),
        "created_at": datetime.now(UTC).isoformat(),
    }
