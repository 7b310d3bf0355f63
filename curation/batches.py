"""The record of every batch sent for labelling, so that no input is ever sent twice.

A batch is one Parquet file under the ledger's folder, named by its id and
written whole or not at all: the selected store rows (features, the model's
output) with each pick's `rank`, `selection_score` and `reason`, and the strategy, model,
window and time in the file's metadata. The file is what `export` reads, so a
batch can be exported again, in any format, at any time.

An index (`index.json`, rewritten whole with each batch) keeps each batch's model, size and the
time range of its predictions, so a selection reads only the batches its window can overlap,
not every batch ever sent. A batch file the index does not know yet (a crash between the two
writes) is read once and added; the batch files stay the record. A batch pushed to Label
Studio has `<batch_id>.label-studio.json` beside it: the server, the project and each request's task id.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.collector.store_writer import write_durably
from driftloop.curation.selection import Selection

__all__ = ["Batch", "BatchLedger"]

METADATA_KEY = b"driftloop.batch"
INDEX_FILE = "index.json"
INDEX_FORMAT = 1
TASKS_SUFFIX = ".label-studio.json"  # beside a batch: where it was pushed, and each request's task id


@dataclass(frozen=True)
class Batch:
    """One recorded batch: its id, where it lies, what chose it, and its rows (best first)."""

    batch_id: str
    path: Path
    model: str
    strategy: str
    budget: int
    created_at: datetime
    window_start: datetime | None
    window_end: datetime | None
    rows: pa.Table

    def __len__(self) -> int:
        return self.rows.num_rows

    def describe(self) -> dict:
        """What a batch is, without its rows (the file's metadata, and what `curate batches` lists)."""
        return {
            "batch_id": self.batch_id,
            "model": self.model,
            "strategy": self.strategy,
            "budget": self.budget,
            "size": len(self),
            "created_at": self.created_at.isoformat(),
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
        }


class BatchLedger:
    """The batches under one folder. `lock()` serialises select-and-record between processes.

    The lock is a POSIX file lock: it holds on one machine or a shared POSIX file
    system, not on object storage.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the ledger's file lock: two selections at once would pick the same rows."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def record(
        self,
        selection: Selection,
        pool_rows: pa.Table,
        model: str,
        budget: int,
        window_start: datetime | None = None,
        window_end: datetime | None = None,
        now: datetime | None = None,
    ) -> Batch:
        """Write the picks of `selection` (rows of `pool_rows`, matched by event_id) as a new batch."""
        created_at = (now or datetime.now(UTC)).astimezone(UTC)
        position = {event_id: i for i, event_id in enumerate(pool_rows["event_id"].to_pylist())}
        missing = [event_id for event_id in selection.ids if event_id not in position]
        if missing:
            raise ValueError(f"selected ids not in the pool's rows: {missing[:5]}")
        # The store has a `score` column of its own (the model's output): the pick's is `selection_score`.
        picks = selection.to_table().drop_columns(["event_id"]).rename_columns(["rank", "selection_score", "reason"])
        chosen = pool_rows.take([position[event_id] for event_id in selection.ids])
        rows = pa.Table.from_arrays([*picks.columns, *chosen.columns], names=[*picks.column_names, *chosen.column_names])
        digest = hashlib.sha256("\n".join(selection.ids).encode()).hexdigest()[:8]
        batch_id = f"{created_at:%Y%m%dT%H%M%SZ}-{digest}"
        batch = Batch(batch_id, self.folder / f"{batch_id}.parquet", model, selection.strategy, budget,
                      created_at, window_start, window_end, rows)
        metadata = {METADATA_KEY: json.dumps(batch.describe()).encode()}
        write_durably(rows.replace_schema_metadata(metadata), batch.path)
        index = self._index()
        index[batch_id] = _index_entry(rows, model)
        self._save_index(index)
        return batch

    def batches(self) -> list[Batch]:
        """Every recorded batch, oldest first."""
        return [self.load(path.stem) for path in sorted(self.folder.glob("*.parquet"))]

    def load(self, batch_id: str) -> Batch:
        path = self.folder / f"{batch_id}.parquet"
        inside = path.resolve().parent == self.folder.resolve() and "/" not in batch_id and "\\" not in batch_id
        if not inside or not path.is_file():
            known = sorted(p.stem for p in self.folder.glob("*.parquet"))
            raise ValueError(f"no batch {batch_id!r} in {self.folder}; recorded batches: {known[-10:]}")
        rows = pq.read_table(path)
        if rows.schema.metadata is None or METADATA_KEY not in rows.schema.metadata:
            raise ValueError(f"{path} is not a batch of driftloop's (it has no batch metadata)")
        meta = json.loads(rows.schema.metadata[METADATA_KEY])
        return Batch(
            batch_id=meta["batch_id"],
            path=path,
            model=meta["model"],
            strategy=meta["strategy"],
            budget=int(meta["budget"]),
            created_at=datetime.fromisoformat(meta["created_at"]),
            window_start=_time(meta["window_start"]),
            window_end=_time(meta["window_end"]),
            rows=rows.replace_schema_metadata(None),
        )

    def record_tasks(self, batch_id: str, where: dict) -> Path:
        """Record where a batch went for labelling (a Label Studio: its url, project and each request's task id),
        whole or not at all, beside the batch file; a later push of the batch rewrites it."""
        self.load(batch_id)  # a known batch, or ValueError listing them
        path = self.folder / f"{batch_id}{TASKS_SUFFIX}"
        temporary = path.with_name(f".{path.name}.tmp")
        with open(temporary, "w") as handle:
            json.dump(where, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return path

    def tasks(self, batch_id: str) -> dict | None:
        """What `record_tasks` recorded for the batch, or None when it was never pushed."""
        self.load(batch_id)
        try:
            return json.loads((self.folder / f"{batch_id}{TASKS_SUFFIX}").read_text())
        except FileNotFoundError:
            return None

    def selected_request_ids(self, start: datetime | None = None, end: datetime | None = None) -> set[str]:
        """Request ids of every input put in a batch, of any model; with a window, of the batches that
        hold predictions in [start, end) (read from the index: the other batch files are not opened)."""
        return {
            request_id
            for batch_id in self.batches_overlapping(start, end)
            for request_id in pq.read_table(self.folder / f"{batch_id}.parquet", columns=["request_id"])["request_id"].to_pylist()
        }

    def batches_overlapping(self, start: datetime | None = None, end: datetime | None = None) -> list[str]:
        """Ids of the batches with predictions in [start, end) (and of those whose rows carry no time), oldest first."""
        chosen = []
        for batch_id, entry in sorted(self._index().items()):
            first, last = _time(entry["first"]), _time(entry["last"])
            if first is None or ((end is None or first < end) and (start is None or last >= start)):
                chosen.append(batch_id)
        return chosen

    def _index(self) -> dict[str, dict]:
        """batch id -> {model, size, first, last} for every batch file there is (unknown ones read and added)."""
        path = self.folder / INDEX_FILE
        try:
            document = json.loads(path.read_text())
            index = document["batches"] if document.get("format") == INDEX_FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError):
            index = {}
        files = {p.stem for p in self.folder.glob("*.parquet")}
        index = {batch_id: entry for batch_id, entry in index.items() if batch_id in files}
        for batch_id in sorted(files - set(index)):
            rows = pq.read_table(self.folder / f"{batch_id}.parquet")
            index[batch_id] = _index_entry(rows, json.loads(rows.schema.metadata[METADATA_KEY])["model"])
        return index

    def _save_index(self, index: dict[str, dict]) -> None:
        path = self.folder / INDEX_FILE
        temporary = path.with_name(f".{INDEX_FILE}.tmp")
        with open(temporary, "w") as handle:
            json.dump({"format": INDEX_FORMAT, "batches": index}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # whole or not at all; a missing entry is rebuilt from its batch file


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _index_entry(rows: pa.Table, model: str) -> dict:
    """What the index keeps of a batch: its model, size and the time range of its predictions (None if untimed)."""
    first = last = None
    if "timestamp" in rows.column_names and rows.num_rows and rows["timestamp"].null_count < rows.num_rows:
        bounds = pc.min_max(rows["timestamp"]).as_py()
        first, last = bounds["min"].isoformat(), bounds["max"].isoformat()
    return {"model": model, "size": rows.num_rows, "first": first, "last": last}

