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

import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.collector.files import STORE_DIRS, model_folder

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
FIRST_WRITTEN = "kafka_timestamp NULLS LAST, kafka_partition, kafka_offset"
FIRST_OF_EACH_EVENT = f"QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY {FIRST_WRITTEN}) = 1"
READ_ONLY_STATEMENTS = (duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN)
BASE_COLUMNS = pa.schema([("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", pa.timestamp("us", tz="UTC"))])


class Store:
    """Queries over one store directory. Cheap to create; each query opens the files it needs."""

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = Path(store_dir)

    def _scan(self, kind: str) -> str | None:
        """A read_parquet(...) expression over every file of `kind`, or None when there is none."""
        folder = self.store_dir / STORE_DIRS[kind]
        if not any(folder.rglob("*.parquet")):
            return None
        pattern = str(folder / "**" / "*.parquet").replace("'", "''")
        return f"read_parquet('{pattern}', hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"

    def _query(self, sql: str, params: list) -> pa.Table:
        def query() -> pa.Table:
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
        scan = self._scan("prediction")
        if scan is None:
            return BASE_COLUMNS.empty_table()
        start, end = _window(start, end)
        return self._query(
            f"""SELECT * EXCLUDE (model, date, hour) FROM {scan}
                WHERE model = ? AND model_name = ? AND date >= ? AND date <= ? AND timestamp >= ? AND timestamp < ?
                {FIRST_OF_EACH_EVENT}
                ORDER BY timestamp, event_id""",
            [urllib.parse.unquote(model_folder(model)), model, _day(start), _day(end), start, end],
        )

    def feedback(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Feedback with timestamps in [start, end), oldest first, each event once."""
        scan = self._scan("feedback")
        if scan is None:
            return BASE_COLUMNS.empty_table()
        start, end = _window(start, end)
        return self._query(
            f"""SELECT * EXCLUDE (date, hour) FROM {scan}
                WHERE date >= ? AND date <= ? AND timestamp >= ? AND timestamp < ?
                {FIRST_OF_EACH_EVENT}
                ORDER BY timestamp, event_id""",
            [_day(start), _day(end), start, end],
        )

    def labelled(
        self, model: str, start: datetime | None = None, end: datetime | None = None,
        horizon: timedelta = timedelta(days=7),
    ) -> pa.Table:
        """Predictions in the window joined to their feedback, when it came within `horizon` of the prediction.

        Feedback may be stored before its prediction; the join is on event time,
        not arrival. With several feedback events, the latest wins. Adds
        `true_label`, `rating`, `feedback_source`, `feedback_timestamp`.
        """
        return self._join(model, start, end, horizon, labelled=True)

    def unlabelled(
        self, model: str, start: datetime | None = None, end: datetime | None = None,
        horizon: timedelta = timedelta(days=7),
    ) -> pa.Table:
        """Predictions in the window with no feedback within `horizon`: the pool for labelling."""
        return self._join(model, start, end, horizon, labelled=False)

    def _join(self, model: str, start, end, horizon: timedelta, labelled: bool) -> pa.Table:
        predictions = self.predictions(model, start, end)
        feedback_scan = self._scan("feedback")
        if predictions.num_rows == 0 or feedback_scan is None:
            return predictions if not labelled else predictions.slice(0, 0)
        start, end = _window(start, end)
        latest_feedback = f"""
            SELECT request_id, label AS true_label, rating, source AS feedback_source, timestamp AS feedback_timestamp
            FROM {feedback_scan}
            WHERE date <= ?
            QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY timestamp DESC, event_id DESC) = 1"""
        on = "f.request_id = p.request_id AND f.feedback_timestamp <= p.timestamp + ?"
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            connection.register("p", predictions)
            if labelled:
                sql = f"SELECT p.*, f.* EXCLUDE (request_id) FROM p JOIN ({latest_feedback}) f ON {on} ORDER BY p.timestamp, p.event_id"
            else:
                sql = f"SELECT p.* FROM p ANTI JOIN ({latest_feedback}) f ON {on} ORDER BY p.timestamp, p.event_id"
            return connection.sql(sql, params=[_day(min(end + horizon, FAR_FUTURE)), horizon]).to_arrow_table()

    def sql(self, query: str) -> pa.Table:
        """Run one read-only SQL query over the store's views (for `driftloop store query`).

        `predictions` and `feedback` hold each event once (the first-written copy), as every
        reader sees them; `predictions_records` and `feedback_records` hold every stored Kafka
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
            for kind, view in (("prediction", "predictions"), ("feedback", "feedback")):
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
    """Run `query`; when compaction replaced a file between DuckDB's listing and its read, list again."""
    for attempt in range(attempts):
        try:
            return query()
        except duckdb.IOException as error:
            if attempt == attempts - 1 or "No such file" not in str(error):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _model_name_in(folder: Path) -> str | None:
    for path in folder.rglob("*.parquet"):
        names = pq.ParquetFile(path).read(columns=["model_name"])["model_name"]
        return names[0].as_py() if len(names) else None
    return None


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    start, end = start or FAR_PAST, end or FAR_FUTURE
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone (use datetime.now(UTC), not utcnow())")
    return start.astimezone(UTC), end.astimezone(UTC)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")
