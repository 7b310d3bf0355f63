"""Reading the store: DuckDB over the Parquet files the store writer made.

Drift, curation and retraining read events only through this class. Times
are UTC; windows are half-open, [start, end). Partition folders (model, date;
DuckDB decodes their URL-quoted values) let it skip files outside the window.

Every reader sees each event once. The store holds each Kafka record once, but
one event may be in Kafka twice (a client that retried after a 503, a producer
retry, a paused collector that finished a write after its partition moved on):
readers keep the first-written copy of each event id (the earliest Kafka record
time, then partition and offset). `sql` gives the same views to `driftloop store
query`, read-only: only SELECT statements, and no file outside the store.
"""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from driftloop.collector.files import STORE_DIRS, file_position, model_folder

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
FIRST_WRITTEN = "kafka_timestamp NULLS LAST, kafka_partition, kafka_offset"
FIRST_OF_EACH_EVENT = f"QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY {FIRST_WRITTEN}) = 1"
# What DuckDB says when a file it was given, or had listed, is gone (compaction replaced it).
VANISHED_FILE = ("No such file", "No files found that match the pattern")
READ_ONLY_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
BASE_COLUMNS = pa.schema([("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC"))])
# A feedback event labels a prediction of the same request when its time lies in
# [prediction time - CLOCK_SKEW, prediction time + horizon]: the clocks of the model server and of
# whoever sends feedback may disagree a little, but feedback an hour before its prediction is not its.
CLOCK_SKEW = timedelta(hours=1)
MAX_LISTINGS = 100_000  # folder listings a Store keeps
LABEL_COLUMNS = ("true_label", "rating", "feedback_source", "feedback_timestamp")


# The labelled view: a feedback event labels a prediction of its request when it carries a label
# and came within [prediction time - CLOCK_SKEW, prediction time + horizon] (params: skew, horizon).
IN_HORIZON = ("f.request_id = p.request_id AND f.label IS NOT NULL "
              "AND f.timestamp >= p.timestamp - ? AND f.timestamp <= p.timestamp + ?")
LATEST_LABEL = f"""
    SELECT p.*, f.label AS true_label, f.rating, f.source AS feedback_source, f.timestamp AS feedback_timestamp
    FROM p JOIN ({{feedback}}) f ON {IN_HORIZON}
    QUALIFY row_number() OVER (PARTITION BY p.event_id ORDER BY f.timestamp DESC, f.kafka_offset DESC, f.event_id DESC) = 1
    ORDER BY p.timestamp, p.event_id"""
# Feedback that counts: withdrawals and the labels of the annotations they withdraw do not. (An annotation is
# never saved again once deleted: its id is not reused. So no time is compared, and no two clocks must agree.)
COUNTED_FEEDBACK = """
    SELECT f.event_id, f.request_id, f.timestamp, f.label, f.rating, f.source, f.kafka_offset FROM {scan} f
    WHERE f.withdrawn IS NOT TRUE AND (f.annotation IS NULL OR f.annotation NOT IN (
        SELECT w.annotation FROM {scan} w WHERE w.withdrawn AND w.annotation IS NOT NULL))"""
WITHOUT_LABEL = f"SELECT p.* FROM p ANTI JOIN ({{feedback}}) f ON {IN_HORIZON} ORDER BY p.timestamp, p.event_id"
EVERY_LABEL = f"""
    SELECT p.event_id, p.request_id, p.timestamp, p.label, f.event_id AS feedback_event_id, f.label AS true_label,
           f.source AS feedback_source, f.timestamp AS feedback_timestamp
    FROM p JOIN ({{feedback}}) f ON {IN_HORIZON}
    QUALIFY row_number() OVER (PARTITION BY p.event_id, f.event_id) = 1
    ORDER BY f.timestamp, f.event_id, p.event_id"""


TIME = pa.timestamp("us", tz="UTC")
MATCHED = pa.schema([("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", TIME), ("label", pa.string()),
                     ("feedback_event_id", pa.string()), ("true_label", pa.string()), ("feedback_source", pa.string()),
                     ("feedback_timestamp", TIME)])


@dataclass(frozen=True)
class Arrived:
    """What `Store.arrived` read: the new rows, and the position to read on from next time."""

    rows: pa.Table
    position: dict[str, dict[str, int]]


class Store:
    """Queries over one store directory. Cheap to create; each query opens the files it needs.

    A Store that lives long (a monitor's) keeps its folder listings while the folders do not
    change, so a run that reads what arrived does not list a week of folders again.
    """

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = Path(store_dir)
        self._listings: dict[str, tuple[int, list[str]]] = {}  # folder -> (mtime, names): see _listing

    def _scan(self, kind: str, model: str | None = None, start: datetime | None = None,
              end: datetime | None = None) -> str | None:
        """A subquery over the files of `kind` (a read_parquet(...) of them), or None when there is none.

        With a window (`start`, `end`, and the model for predictions), only the files of the hour
        folders that can hold its events are read: a query costs its window, not the store's history.
        """
        folder = self.store_dir / STORE_DIRS[kind]
        if start is None or end is None:
            if not any(folder.rglob("*.parquet")):
                return None
            source = "'" + str(folder / "**" / "*.parquet").replace("'", "''") + "'"
        else:
            # Each hour folder as a pattern DuckDB expands as it reads: compaction may replace the files
            # between our listing and its read, not between its own listing and its read.
            folders = [folder for folder, _ in self._hour_folders(kind, model, start, end) if self._parquet_files(folder)]
            if not folders:
                return None
            source = "[" + ", ".join("'" + os.path.join(folder, "*.parquet").replace("'", "''") + "'"
                                     for folder in folders) + "]"
        files = f"read_parquet({source}, hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        # Files written before the store kept each record's Kafka time lack `kafka_timestamp`, and feedback
        # files without an event of schema version 2 lack `annotation` and `withdrawn`: null there.
        absent = "NULL::TIMESTAMPTZ AS kafka_timestamp"
        if kind == "feedback":
            absent += ", NULL::VARCHAR AS annotation, NULL::BOOLEAN AS withdrawn"
        return f"(SELECT * FROM {files} UNION ALL BY NAME SELECT {absent} WHERE false)"

    def _hour_folders(self, kind: str, model: str | None, start: datetime, end: datetime) -> list[tuple[str, str]]:
        """(folder, "date=…/hour=…") of each hour folder whose hour overlaps [start, end], oldest first."""
        root = str(self.store_dir / STORE_DIRS[kind])
        if kind in ("prediction", "shadow"):
            if model is None:
                raise ValueError(f"{STORE_DIRS[kind]} are read per model: name the model")
            root = os.path.join(root, f"model={model_folder(model)}")
        first = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        first_day, last_day = _day(first), _day(end.astimezone(UTC))
        first_hour, last_hour = first.strftime("%Y-%m-%dT%H"), end.astimezone(UTC).strftime("%Y-%m-%dT%H")
        folders = []
        for day in self._partition_values(root, "date"):
            if not first_day <= day <= last_day:
                continue
            day_folder = os.path.join(root, f"date={day}")
            for hour in self._partition_values(day_folder, "hour"):
                if len(hour) == 2 and hour.isdigit() and first_hour <= f"{day}T{hour}" <= last_hour:
                    folders.append((os.path.join(day_folder, f"hour={hour}"), f"date={day}/hour={hour}"))
        return folders

    def _query(self, kind: str, model: str | None, start: datetime | None, end: datetime | None,
               select: Callable[[str], tuple[str, list]]) -> pa.Table:
        """Run `select(scan)` (SQL and its parameters) over the files of `kind` in the window (no window: all
        of them); an empty table when there are none. The files are listed again when compaction replaced one before DuckDB read it."""
        def query() -> pa.Table:
            scan = self._scan(kind, model, start, end)
            if scan is None:
                return BASE_COLUMNS.empty_table()
            sql, params = select(scan)
            with duckdb.connect() as connection:
                connection.execute("SET TimeZone = 'UTC'")
                return connection.sql(sql, params=params).to_arrow_table()

        return _again_if_compacted(query)

    def models(self) -> list[str]:
        folder = self.store_dir / STORE_DIRS["prediction"]
        names = []
        for path in folder.glob("model=*"):
            value = path.name.removeprefix("model=")
            if value.startswith("~"):  # a long name: the folder holds its hash, a file holds the name
                value = _model_name_in(path) or value
            else:
                value = urllib.parse.unquote(value)
            names.append(value)
        return sorted(names)

    def has_feedback(self) -> bool:
        return self._scan("feedback") is not None

    def predictions(self, model: str, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Predictions of `model` with timestamps in [start, end), oldest first, each event once."""
        return self._model_events("prediction", model, start, end)

    def shadow(self, model: str, start: datetime | None = None, end: datetime | None = None,
               version: str | None = None) -> pa.Table:
        """Challengers' answers to `model`'s traffic (the shadow view), of one `version` if given, oldest first.

        A shadow event is a prediction event: the request id and the time of the prediction it
        shadows, the challenger's version and output.
        """
        return self._model_events("shadow", model, start, end, version)

    def _model_events(self, kind: str, model: str, start: datetime | None, end: datetime | None,
                      version: str | None = None) -> pa.Table:
        """Events of `kind` (prediction or shadow) of `model` in [start, end), oldest first, each event once."""
        start, end = _window(start, end)
        where_version = "" if version is None else "AND model_version = ?"
        return self._query(kind, model, start, end, lambda scan: (
            f"""SELECT * EXCLUDE (model, date, hour) FROM {scan}
                WHERE model = ? AND model_name = ? AND date >= ? AND date <= ? AND timestamp >= ? AND timestamp < ?
                {where_version}
                {FIRST_OF_EACH_EVENT}
                ORDER BY timestamp, event_id""",
            [urllib.parse.unquote(model_folder(model)), model, _day(start), _day(end), start, end,
             *([] if version is None else [str(version)])],
        ))

    def feedback(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Feedback with timestamps in [start, end), oldest first, each event once."""
        start, end = _window(start, end)
        return self._query("feedback", None, start, end, lambda scan: (
            f"""SELECT * EXCLUDE (date, hour) FROM {scan}
                WHERE date >= ? AND date <= ? AND timestamp >= ? AND timestamp < ?
                {FIRST_OF_EACH_EVENT}
                ORDER BY timestamp, event_id""",
            [_day(start), _day(end), start, end],
        ))

    def annotated_requests(self, annotations: list[str]) -> dict[str, str]:
        """The request each of `annotations` (feedback's `annotation`) labelled, for those the store has."""
        if not annotations:
            return {}
        rows = self._query("feedback", None, None, None, lambda scan: (
            f"SELECT DISTINCT annotation, request_id FROM {scan} WHERE annotation IN "
            f"(SELECT unnest(?::VARCHAR[])) AND withdrawn IS NOT TRUE", [list(annotations)]))
        if "annotation" not in rows.column_names:  # no feedback stored yet
            return {}
        return dict(zip(rows["annotation"].to_pylist(), rows["request_id"].to_pylist(), strict=True))

    def feedback_of(self, request_ids: list[str]) -> pa.Table:
        """Every feedback event (each once) of the requests `request_ids`, of any time: event_id, request_id,
        label, source, annotation, withdrawn."""
        rows = None
        if request_ids:
            rows = self._query("feedback", None, None, None, lambda scan: (
                f"""SELECT event_id, request_id, label, source, annotation, withdrawn FROM {scan}
                    WHERE request_id IN (SELECT unnest(?::VARCHAR[])) {FIRST_OF_EACH_EVENT}""", [list(request_ids)]))
        if rows is None or "annotation" not in rows.column_names:
            return pa.table({name: pa.array([], pa.string()) for name in ("event_id", "request_id", "annotation")})
        return rows

    def labelled(
        self, model: str, start: datetime | None = None, end: datetime | None = None,
        horizon: timedelta = timedelta(days=7),
    ) -> pa.Table:
        """Predictions in the window with their label: the latest feedback label given within `horizon`.

        A feedback event labels a prediction of its request when it carries a label and its
        time lies in [prediction time - CLOCK_SKEW, prediction time + horizon]; feedback
        outside that interval labels nothing and corrects nothing. Of the labels in it, the
        latest (by event time, then by arrival) wins: a correction is a later label within the
        horizon. A withdrawal (feedback of schema version 2, from a deleted annotation) takes
        back every label of its annotation: they label nothing. So a row's label never depends on the window asked for, nor on feedback that
        came after the horizon. Feedback may be stored before its prediction; the join is on
        event time, not arrival. Adds `true_label`, `rating` (of that same feedback event),
        `feedback_source`, `feedback_timestamp`.
        """
        return self._join(model, start, end, horizon, labelled=True)

    def unlabelled(
        self, model: str, start: datetime | None = None, end: datetime | None = None,
        horizon: timedelta = timedelta(days=7),
    ) -> pa.Table:
        """Predictions in the window that no feedback labels within `horizon`: the pool for labelling.

        Together with `labelled` it splits the window's predictions in two (a rating without
        a label labels nothing).
        """
        return self._join(model, start, end, horizon, labelled=False)

    def _join(self, model: str, start, end, horizon: timedelta, labelled: bool) -> pa.Table:
        predictions = self.predictions(model, start, end)
        start, end = _window(start, end)

        def join() -> pa.Table:
            scan = self._scan("feedback", None, max(start - CLOCK_SKEW, FAR_PAST), min(end + horizon, FAR_FUTURE))
            if predictions.num_rows == 0 or scan is None:
                return predictions if not labelled else _with_label_columns(predictions.slice(0, 0))
            feedback = COUNTED_FEEDBACK.format(scan=scan)
            with duckdb.connect() as connection:
                connection.execute("SET TimeZone = 'UTC'")
                connection.register("p", predictions)
                sql = LATEST_LABEL if labelled else WITHOUT_LABEL
                return connection.sql(sql.format(feedback=feedback), params=[CLOCK_SKEW, horizon]).to_arrow_table()

        return _again_if_compacted(join)

    def _partition_values(self, folder: str, key: str) -> list[str]:
        """The values of the `key=value` subfolders of `folder`, sorted."""
        prefix = f"{key}="
        return [name.removeprefix(prefix) for name in self._listing(folder) if name.startswith(prefix)]

    def _parquet_files(self, folder: str) -> list[str]:
        """Names of the finished Parquet files in `folder`, sorted (a file being written is a hidden .tmp)."""
        return [name for name in self._listing(folder) if name.endswith(".parquet") and not name.startswith(".")]

    def _listing(self, folder: str) -> list[str]:
        """The sorted entry names of `folder`; kept while its modification time says nothing was added or removed.

        A listing is kept only when the folder last changed more than a second before: a change
        in the same tick of the file system's clock could otherwise leave the time as it was.
        """
        try:
            changed = os.stat(folder).st_mtime_ns
        except FileNotFoundError:
            return []
        kept = self._listings.get(folder)
        if kept is not None and kept[0] == changed:
            return kept[1]
        try:
            with os.scandir(folder) as entries:
                names = sorted(entry.name for entry in entries)
        except FileNotFoundError:
            return []
        if time.time_ns() - changed > 1_000_000_000:
            if len(self._listings) >= MAX_LISTINGS:
                self._listings.clear()
            self._listings[folder] = (changed, names)
        return names

    def arrived(
        self, kind: str, since: datetime, position: Mapping[str, Mapping[str, int]] | None = None,
        model: str | None = None, columns: list[str] | None = None,
    ) -> Arrived:
        """Rows of `kind` (of `model`) stored after `position`, in the hour folders from `since` on.

        The incremental read of a service that runs every minute: it costs what arrived, not
        the history. A file is named by the topic, partition and offsets it holds, and one
        partition's files appear in a folder in offset order (a replay rewrites the same
        offsets), so a position per hour folder and partition says what was read; folders
        before `since` are neither listed nor kept in the returned position. `columns` picks
        columns (those a file lacks come back null); `kafka_partition` and `kafka_offset` are
        always kept. Rows come file by file, oldest folder first.
        """
        position = position or {}
        since = _window(since, None)[0]
        tables, after = [], {}
        for folder, name in self._hour_folders(kind, model, since, FAR_FUTURE):
            done = dict(position.get(name, {}))
            tables += self._arrived_in(folder, done, columns)
            if done:
                after[name] = done
        if not tables:
            return Arrived(pa.table({name: pa.array([], pa.string()) for name in columns or []}), after)
        return Arrived(pa.concat_tables(tables, promote_options="permissive"), after)

    def _arrived_in(self, folder: str, done: dict[str, int], columns: list[str] | None,
                    attempts: int = 5) -> list[pa.Table]:
        """The rows of `folder` past the offsets in `done` (which it moves on), file by file.

        Compaction may remove a listed file before it is read: the folder is then listed again
        and read on from `done`, so the merged file gives the rows not read yet, once.
        """
        tables = []
        for attempt in range(attempts):
            try:
                for file_name in self._parquet_files(folder):
                    named = file_position(file_name)
                    if named is None:  # not named by the store writer
                        continue
                    key, _, last = named
                    next_offset = done.get(key, 0)
                    if last < next_offset:
                        continue
                    table = _read_columns(os.path.join(folder, file_name), columns)
                    if next_offset:
                        table = table.filter(pc.greater_equal(table["kafka_offset"], next_offset))
                    tables.append(table)
                    done[key] = last + 1
                return tables
            except FileNotFoundError:
                if attempt == attempts - 1:
                    raise
                self._listings.pop(folder, None)
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def sql(self, query: str) -> pa.Table:
        """Run one read-only SQL query over the store's views (for `driftloop store query`).

        `predictions`, `feedback` and `shadow` hold each event once (the first-written copy), as
        every reader sees them; `predictions_records` (and so on) hold every stored Kafka
        record, duplicates included. Only SELECT (and EXPLAIN) statements run, and DuckDB may
        read no file outside the store: `read_text('/etc/passwd')` and `COPY ... TO` are refused.
        """
        statements = duckdb.extract_statements(query)
        if len(statements) != 1 or statements[0].type not in READ_ONLY_STATEMENTS:
            kinds = [statement.type.name for statement in statements]
            raise ValueError(f"the store is read-only: one SELECT query is allowed, got {kinds or 'nothing'}")
        return _again_if_compacted(lambda: self._sandboxed(query))

    def _sandboxed(self, query: str) -> pa.Table:
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            for kind, view in (("prediction", "predictions"), ("feedback", "feedback"), ("shadow", "shadow")):
                scan = self._scan(kind)
                if scan is not None:
                    connection.execute(f"CREATE VIEW {view}_records AS SELECT * FROM {scan}")
                    connection.execute(f"CREATE VIEW {view} AS SELECT * FROM {view}_records {FIRST_OF_EACH_EVENT}")
            store = str(self.store_dir.resolve()).replace("'", "''")
            connection.execute(f"SET allowed_directories = ['{store}/']")
            connection.execute("SET enable_external_access = false")
            connection.execute("SET lock_configuration = true")
            return connection.sql(query).to_arrow_table()


def _again_if_compacted(query, attempts: int = 5) -> pa.Table:
    """Run `query`; when compaction replaced a file between the listing and DuckDB's read, run it again
    (`query` lists the files itself)."""
    for attempt in range(attempts):
        try:
            return query()
        except duckdb.IOException as error:
            if attempt == attempts - 1 or not any(sign in str(error) for sign in VANISHED_FILE):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _model_name_in(folder: Path) -> str | None:
    for path in folder.rglob("*.parquet"):
        names = pq.ParquetFile(path).read(columns=["model_name"])["model_name"]
        return names[0].as_py() if len(names) else None
    return None


def match_labels(predictions: pa.Table, feedback: pa.Table, horizon: timedelta) -> pa.Table:
    """Every label of `feedback` within `horizon` of a prediction in `predictions`: one row per pair.

    The same rule as `Store.labelled`, but each labelling feedback event is a row of its own
    (a correction too), ordered by feedback time: the stream a sequential detector reads.
    `predictions` needs `event_id`, `request_id`, `timestamp`, `label`; `feedback` the store's
    feedback columns.
    """
    if predictions.num_rows and feedback.num_rows:  # a few labels against a week of predictions: filter first
        predictions = predictions.filter(pc.is_in(predictions["request_id"], value_set=feedback["request_id"]))
    if predictions.num_rows == 0 or feedback.num_rows == 0:
        return MATCHED.empty_table()
    with _in_memory().cursor() as connection:  # a cursor costs ~1 ms, a new database ~100 ms
        connection.execute("SET TimeZone = 'UTC'")
        connection.register("p", predictions)
        connection.register("feedback_rows", feedback)
        sql = EVERY_LABEL.format(feedback="SELECT * FROM feedback_rows")
        return connection.sql(sql, params=[CLOCK_SKEW, horizon]).to_arrow_table().cast(MATCHED)


_MEMORY: list[duckdb.DuckDBPyConnection] = []


def _in_memory() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB for joining tables it already holds (one cursor per call)."""
    if not _MEMORY:
        _MEMORY.append(duckdb.connect())
    return _MEMORY[0]


def _with_label_columns(predictions: pa.Table) -> pa.Table:
    """An empty labelled view: the predictions' columns and the label columns."""
    types = (pa.string(), pa.float64(), pa.string(), pa.timestamp("us", tz="UTC"))
    for name, kind in zip(LABEL_COLUMNS, types, strict=True):
        predictions = predictions.append_column(name, pa.array([], kind))
    return predictions


def _read_columns(path: str, columns: list[str] | None) -> pa.Table:
    """One store file's `columns` (null where the file lacks one) and its Kafka position."""
    if columns is None:
        return pq.read_table(path)
    names = pq.read_schema(path).names
    wanted = list(dict.fromkeys([*columns, "kafka_partition", "kafka_offset"]))
    table = pq.read_table(path, columns=[name for name in wanted if name in names])
    for name in wanted:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows))
    return table.select(wanted)


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    start, end = start or FAR_PAST, end or FAR_FUTURE
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone (use datetime.now(UTC), not utcnow())")
    return start.astimezone(UTC), end.astimezone(UTC)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")
