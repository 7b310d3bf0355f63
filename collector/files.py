"""The store's files: where an event goes, how a file is written durably, what is not yet committed.

Layout: predictions/model=<name>/date=<YYYY-MM-DD>/hour=<HH>/<topic>+<partition>+<first>+<last>.parquet
        feedback/date=<YYYY-MM-DD>/hour=<HH>/<topic>+<partition>+<first>+<last>.parquet
        _pending/<topic>+<partition>+<first>+<last>   the files of a batch not yet committed to Kafka

A model's folder holds its URL-quoted name; a name whose quoted form is longer than
`MODEL_FOLDER_CHARS` gets `~` and a hash of the name instead, so that no folder name
passes the file system's 255 bytes, whatever the name (the rows keep the name itself).

The pending index is what makes recovery cheap: before a batch's files are written, a
marker listing them is written to `_pending/`, and it is removed once Kafka has the
batch's offsets. Recovering a partition reads that partition's markers (a handful),
never the whole store.

Compaction: a folder holding more than a threshold of files gets its committed files
(those no marker lists) merged, one file per partition named by the offsets it spans, so that
the file count tracks hours and partitions, not requests.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import urllib.parse
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

STORE_DIRS = {"prediction": "predictions", "feedback": "feedback", "shadow": "shadow"}
PENDING_DIR = "_pending"
MODEL_FOLDER_CHARS = 200
# Errors of the machine, not of a record: retried (the batch is not committed), never dead-lettered.
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EIO, errno.EROFS, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE}


def model_folder(name: str) -> str:
    """The value of a model's folder (`model=<value>`): its quoted name, or `~` and a hash when that is too long."""
    quoted = urllib.parse.quote(name, safe="")
    if len(quoted) <= MODEL_FOLDER_CHARS:
        return quoted
    return "~" + hashlib.sha256(name.encode()).hexdigest()[:32]


def is_environment_error(error: BaseException) -> bool:
    """True for a full disk, an I/O error and the like: the machine's fault, to be retried, not a bad record."""
    return isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS or isinstance(error, MemoryError)


def write_durably(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that it is either whole under its name or not there at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, str(temporary), compression="zstd")  # a native file: written without the GIL
    _fsync(temporary)
    os.rename(temporary, path)
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's data to disk (on Linux, any descriptor of it will do)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class PendingIndex:
    """Markers of written but uncommitted batches, one file per batch under `<store>/_pending/`."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = Path(store_dir)
        self.folder = self.store_dir / PENDING_DIR

    def _marker(self, topic: str, partition: int, first: int, last: int) -> Path:
        return self.folder / f"{topic}+{partition}+{first:020d}+{last:020d}"

    def add(self, topic: str, partition: int, first: int, last: int, files: list[Path]) -> None:
        """Record, durably, that `files` are about to be written for offsets [first, last] of a partition."""
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self._marker(topic, partition, first, last)
        temporary = marker.with_name(f".{marker.name}.{uuid.uuid4().hex[:8]}.tmp")
        temporary.write_text("".join(f"{path.relative_to(self.store_dir).as_posix()}\n" for path in files))
        _fsync(temporary)
        os.rename(temporary, marker)
        _fsync(self.folder)

    def markers(self, topic: str, partition: int) -> list[tuple[int, int, Path]]:
        """(first, last, marker) of each batch of a partition not known to be committed."""
        prefix = f"{topic}+{partition}+"
        found = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(prefix) and not entry.name.endswith(".tmp"):
                first, last = entry.name[len(prefix):].split("+")
                found.append((int(first), int(last), Path(entry.path)))
        return sorted(found)

    def files(self, marker: Path) -> list[Path]:
        try:
            return [self.store_dir / line for line in marker.read_text().splitlines() if line]
        except FileNotFoundError:
            return []

    def listed(self) -> set[Path]:
        """Every file any marker lists: files that compaction must leave alone."""
        try:
            markers = [Path(entry.path) for entry in os.scandir(self.folder) if not entry.name.endswith(".tmp")]
        except FileNotFoundError:
            return set()
        return {path for marker in markers for path in self.files(marker)}

    def committed(self, topic: str, partition: int, next_offset: int) -> None:
        """Kafka has the offsets below `next_offset`: forget the markers of batches before it."""
        for _, last, marker in self.markers(topic, partition):
            if last < next_offset:
                marker.unlink(missing_ok=True)

    def recover(self, topic: str, partition: int, committed: int) -> int:
        """Delete the files of batches at or past `committed` (written, never committed); the files removed."""
        removed = 0
        for first, _, marker in self.markers(topic, partition):
            if first >= committed:
                for path in self.files(marker):
                    for leftover in (path, path.with_name(f".{path.name}.tmp")):
                        if leftover.exists():
                            log.info("removing %s: written after the last commit, replaying it", leftover.name)
                            leftover.unlink()
                            removed += 1
            marker.unlink(missing_ok=True)
        for entry in os.scandir(self.folder) if self.folder.exists() else ():
            if entry.name.startswith(f".{topic}+{partition}+") and entry.name.endswith(".tmp"):
                os.unlink(entry.path)  # a marker half-written by a crash: its files were never begun
        return removed


def compact(folder: Path, index: PendingIndex, threshold: int) -> list[Path]:
    """Merge a folder's committed files, partition by partition, when it holds more than `threshold`.

    Returns the merged files (none when nothing was merged).

    One process at a time per folder (a lock file; another process that finds it held skips).
    Written durably before the inputs go; a crash in between leaves rows twice, which the
    store's readers (each event once) do not see.
    """
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".parquet")]
    except FileNotFoundError:
        return []
    if len(names) <= threshold:
        return []
    with open(folder / ".compacting.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # another process compacts this folder now
        try:
            return _compact_locked(folder, index)
        except FileNotFoundError:  # an input went while we read it: another writer's recovery; next time
            return []
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _compact_locked(folder: Path, index: PendingIndex) -> list[Path]:
    names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".parquet")]
    busy = index.listed()
    by_partition: dict[str, list[tuple[int, int, Path]]] = {}
    for name in names:
        path = folder / name
        position = file_position(name)
        if path in busy or position is None:
            continue
        source, first, last = position
        by_partition.setdefault(source, []).append((first, last, path))
    merged = [_merge(folder, source, sorted(files)) for source, files in sorted(by_partition.items()) if len(files) > 1]
    if merged:
        _fsync(folder)
    return merged


def _merge(folder: Path, source: str, files: list[tuple[int, int, Path]]) -> Path:
    """One partition's committed files of a folder as one file, named by the offsets it spans.

    Keeping the `<topic>+<partition>+<first>+<last>` name keeps what readers that go by
    offsets rely on: within a folder a partition's files are in offset order, so a reader that
    had read up to some offset reads on from there in the merged file.
    """
    from driftloop.collector.columnar import unify  # the same rule as a batch: a feature of two types is text

    inputs = [path for _, _, path in files]
    table = pa.concat_tables(unify([pq.ParquetFile(path).read() for path in inputs]), promote_options="permissive")
    merged = folder / f"{source}+{files[0][0]:020d}+{max(last for _, last, _ in files):020d}.parquet"
    write_durably(table, merged)
    for path in inputs:
        if path != merged:
            path.unlink(missing_ok=True)
    log.info("compacted %d files of %s into %s", len(inputs), folder, merged.name)
    return merged


def file_position(name: str) -> tuple[str, int, int] | None:
    """("<topic>+<partition>", first offset, last offset) of a store file's name; None for another file."""
    try:
        topic, partition, first, last = name.removesuffix(".parquet").rsplit("+", 3)
        return f"{topic}+{partition}", int(first), int(last)
    except ValueError:
        return None
