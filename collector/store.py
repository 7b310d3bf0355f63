"""Reading the store: DuckDB over the Parquet files the store writer made.

Drift, curation and retraining read events only through this class. Times
are UTC; windows are half-open, [start, end). Partition folders (model, date;
DuckDB decodes their URL-quoted values) let it skip files outside the window.
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa

from driftloop.collector.store_writer import STORE_DIRS

FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
# The store holds each Kafka record once; a client that retried (say after a 503) may have put
# one event into Kafka twice, with the same event id. Readers see each event once.
FIRST_OF_EACH_EVENT = "QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY kafka_partition, kafka_offset) = 1"
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
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            return connection.sql(sql, params=params).to_arrow_table()

    def models(self) -> list[str]:
        folder = self.store_dir / STORE_DIRS["prediction"]
        return sorted(urllib.parse.unquote(p.name.removeprefix("model=")) for p in folder.glob("model=*"))

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
            [model, model, _day(start), _day(end), start, end],
        )

    def shadow(self, model: str, start: datetime | None = None, end: datetime | None = None,
               version: str | None = None) -> pa.Table:
        """Challengers' answers to `model`'s traffic (the shadow view), of one `version` if given, oldest first.

        A shadow event is a prediction event: the request id and the time of the prediction it
        shadows, the challenger's version and output.
        """
        scan = self._scan("shadow")
        if scan is None:
            return BASE_COLUMNS.empty_table()
        start, end = _window(start, end)
        where_version = "" if version is None else "AND model_version = ?"
        return self._query(
            f"""SELECT * EXCLUDE (model, date, hour) FROM {scan}
                WHERE model = ? AND model_name = ? AND date >= ? AND date <= ? AND timestamp >= ? AND timestamp < ?
                {where_version}
                {FIRST_OF_EACH_EVENT}
                ORDER BY timestamp, event_id""",
            [model, model, _day(start), _day(end), start, end, *([] if version is None else [str(version)])],
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
        """Run SQL over the views `predictions`, `feedback` and `shadow` (for `driftloop store query`)."""
        with duckdb.connect() as connection:
            connection.execute("SET TimeZone = 'UTC'")
            for kind, view in (("prediction", "predictions"), ("feedback", "feedback"), ("shadow", "shadow")):
                scan = self._scan(kind)
                if scan is not None:
                    connection.execute(f"CREATE VIEW {view} AS SELECT * FROM {scan}")
            return connection.sql(query).to_arrow_table()


def _window(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    start, end = start or FAR_PAST, end or FAR_FUTURE
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must carry a time zone (use datetime.now(UTC), not utcnow())")
    return start.astimezone(UTC), end.astimezone(UTC)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")
