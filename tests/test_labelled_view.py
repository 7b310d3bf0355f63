"""The labelled view on hand-written Parquet files: which feedback labels a prediction, and what a correction is.

The rule (docs/collector.md): a feedback event labels a prediction of its request when it carries a
label and its time lies in [prediction time - 1 h, prediction time + horizon]; the latest such
label wins. Feedback outside that interval labels nothing and corrects nothing.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from events import prediction_documents, write_to_store

from driftloop.collector.files import PendingIndex, compact
from driftloop.collector.store import Store, match_labels

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
WEEK = 7 * DAY
TS = pa.timestamp("us", tz="UTC")


def write_predictions(store: Path, rows: list[tuple[str, datetime, str]], model: str = "churn") -> None:
    """(request id, time, predicted label) rows, one file per hour folder, as the store writer lays them out."""
    for offset, (request_id, moment, label) in enumerate(rows):
        folder = store / "predictions" / f"model={model}" / moment.strftime("date=%Y-%m-%d/hour=%H")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "event_id": [f"p-{request_id}"], "request_id": [request_id], "timestamp": pa.array([moment], TS),
            "model_name": [model], "model_version": ["1"], "label": [label], "feature.x": [1.0],
            "kafka_partition": pa.array([0], pa.int32()), "kafka_offset": pa.array([offset], pa.int64()),
        }), folder / f"t.predictions+0+{offset:020d}+{offset:020d}.parquet")


def write_feedback(store: Path, rows: list[tuple], first_offset: int = 0) -> None:
    """(request id, time, label, rating) rows, one file each."""
    for offset, (request_id, moment, label, rating) in enumerate(rows, start=first_offset):
        folder = store / "feedback" / moment.strftime("date=%Y-%m-%d/hour=%H")
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({
            "event_id": [f"f-{request_id}-{offset}"], "request_id": [request_id], "timestamp": pa.array([moment], TS),
            "label": pa.array([label], pa.string()), "rating": pa.array([rating], pa.float64()), "source": ["user"],
            "kafka_partition": pa.array([0], pa.int32()), "kafka_offset": pa.array([offset], pa.int64()),
        }), folder / f"t.feedback+0+{offset:020d}+{offset:020d}.parquet")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    root = tmp_path / "store"
    write_predictions(root, [
        ("late-correction", T0, "1"),      # labelled after an hour, "corrected" ten days later
        ("corrected", T0, "1"),            # labelled, then corrected within the horizon
        ("too-late", T0, "1"),             # feedback only after the horizon
        ("rated", T0, "0"),                # a rating, no label
        ("early", T0, "0"),                # feedback stamped ten minutes before the prediction
        ("long-before", T0, "0"),          # feedback stamped a day before: another request that reused the id
        ("unlabelled", T0 + HOUR, "1"),
    ])
    write_feedback(root, [
        ("late-correction", T0 + HOUR, "1", None),
        ("late-correction", T0 + 10 * DAY, "0", None),
        ("corrected", T0 + HOUR, "1", None),
        ("corrected", T0 + 2 * DAY, "0", 1.0),
        ("too-late", T0 + 8 * DAY, "0", None),
        ("rated", T0 + HOUR, None, 4.0),
        ("early", T0 - timedelta(minutes=10), "0", None),
        ("long-before", T0 - DAY, "1", None),
    ])
    return Store(root)


def labels(table: pa.Table) -> dict[str, str]:
    return dict(zip(table["request_id"].to_pylist(), table["true_label"].to_pylist(), strict=True))


def test_a_correction_is_a_later_label_within_the_horizon(store):
    view = store.labelled("churn", T0 - HOUR, T0 + 2 * HOUR, horizon=WEEK)
    assert labels(view) == {"late-correction": "1", "corrected": "0", "early": "0"}
    corrected = view.filter(pa.compute.equal(view["request_id"], "corrected")).to_pylist()[0]
    assert corrected["feedback_timestamp"] == T0 + 2 * DAY and corrected["rating"] == 1.0
    assert sorted(store.unlabelled("churn", T0 - HOUR, T0 + 2 * HOUR, horizon=WEEK)["request_id"].to_pylist()) == [
        "long-before", "rated", "too-late", "unlabelled"]


def test_the_answer_does_not_depend_on_the_window_asked_for(store):
    narrow = labels(store.labelled("churn", T0, T0 + timedelta(seconds=1), horizon=WEEK))
    assert narrow == labels(store.labelled("churn", horizon=WEEK))
    assert narrow == labels(store.labelled("churn", T0 - 30 * DAY, T0 + 30 * DAY, horizon=WEEK))
    assert narrow == {"late-correction": "1", "corrected": "0", "early": "0"}


def test_the_horizon_comes_first(store):
    # a 12 h horizon: the 2-day correction no longer counts, the label an hour in does
    assert labels(store.labelled("churn", horizon=12 * HOUR)) == {"late-correction": "1", "corrected": "1", "early": "0"}
    # a horizon shorter than every delay after the prediction keeps only the early feedback
    assert labels(store.labelled("churn", horizon=timedelta(minutes=30))) == {"early": "0"}
    # labelled and unlabelled split the predictions in two, whatever the horizon
    for horizon in (timedelta(minutes=30), 12 * HOUR, WEEK, 30 * DAY):
        both = store.labelled("churn", horizon=horizon).num_rows + store.unlabelled("churn", horizon=horizon).num_rows
        assert both == 7


def test_an_empty_view_has_the_label_columns(tmp_path):
    write_predictions(tmp_path / "store", [("a", T0, "1")])
    view = Store(tmp_path / "store").labelled("churn")
    assert view.num_rows == 0 and {"true_label", "rating", "feedback_source", "feedback_timestamp"} <= set(view.column_names)


def test_every_label_in_the_horizon_is_one_observation_for_the_detectors(store):
    predictions = store.predictions("churn")
    feedback = store.feedback()
    matched = match_labels(predictions, feedback, WEEK)
    pairs = list(zip(matched["request_id"].to_pylist(), matched["true_label"].to_pylist(), strict=True))
    assert pairs == [("early", "0"), ("corrected", "1"), ("late-correction", "1"), ("corrected", "0")]


def test_arrived_reads_what_came_since_its_position(store, tmp_path):
    first = store.arrived("feedback", T0 - 2 * DAY, columns=["request_id", "label"])
    assert first.rows.num_rows == 8
    again = store.arrived("feedback", T0 - 2 * DAY, first.position, columns=["request_id", "label"])
    assert again.rows.num_rows == 0 and again.position == first.position
    write_feedback(store.store_dir, [("unlabelled", T0 + 2 * HOUR, "1", None)], first_offset=8)
    new = store.arrived("feedback", T0 - 2 * DAY, first.position, columns=["request_id", "label"])
    assert new.rows["request_id"].to_pylist() == ["unlabelled"]
    # folders before `since` are not read and leave the position
    recent = store.arrived("feedback", T0 + 3 * DAY, columns=["request_id"])
    assert sorted(recent.rows["request_id"].to_pylist()) == ["late-correction", "too-late"]
    assert all(name >= "date=2026-11-05" for name in recent.position)


def small_files(store_dir: Path, count: int, written: int) -> tuple[datetime, list[dict], int]:
    """`count` predictions of churn a minute apart in one hour; the first `written` stored, 3 to a file.
    Returns the hour, the documents and the next offset."""
    hour = T0.replace(minute=0)
    documents = [{**d, "timestamp": (hour + timedelta(minutes=i)).isoformat()}
                 for i, d in enumerate(prediction_documents(count, model="churn"))]
    offset = 0
    for start in range(0, written, 3):
        offset = write_to_store(store_dir, "prediction", documents[start:start + 3], "p", 0, offset)
    return hour, documents, offset


def test_an_incremental_reader_reads_on_across_a_compaction(tmp_path):
    """Compaction merges a partition's files under the offsets they span, so a reader that goes by
    offsets neither reads a merged row twice nor skips the rows it had not read yet."""
    store_dir = tmp_path / "store"
    hour, documents, offset = small_files(store_dir, 40, written=30)
    store = Store(store_dir)
    first = store.arrived("prediction", hour, model="churn", columns=["event_id"])
    assert first.rows.num_rows == 30
    offset = write_to_store(store_dir, "prediction", documents[30:35], "p", 0, offset)  # not read yet
    folder = next((store_dir / "predictions").rglob("hour=*"))
    assert compact(folder, PendingIndex(store_dir), threshold=4), "the folder's files were merged"
    assert len(list(folder.glob("*.parquet"))) == 1
    write_to_store(store_dir, "prediction", documents[35:40], "p", 0, offset)
    after = Store(store_dir).arrived("prediction", hour, first.position, model="churn", columns=["event_id"])
    assert after.rows["event_id"].to_pylist() == [d["event_id"] for d in documents[30:40]]


def test_readers_of_a_window_never_fail_while_compaction_replaces_its_files(tmp_path):
    """A reader lists a window's files, then DuckDB reads them; compaction may merge them in between.
    The read is then made again on a new listing: every read sees every row, never an error."""
    store_dir = tmp_path / "store"
    hour = T0.replace(minute=0)
    documents = [{**d, "timestamp": (hour + timedelta(seconds=i)).isoformat()}
                 for i, d in enumerate(prediction_documents(600, model="churn"))]
    offset = write_to_store(store_dir, "prediction", documents[:2], "p", 0, 0)
    store, stop, failures = Store(store_dir), threading.Event(), []

    def read_all_the_time():
        while not stop.is_set():
            try:
                store.predictions("churn", hour, hour + timedelta(hours=1))
                store.labelled("churn", hour, hour + timedelta(hours=1))
            except Exception as error:  # what a reader would have seen
                failures.append(error)

    reader = threading.Thread(target=read_all_the_time)
    reader.start()
    try:
        folder = None
        for start in range(2, 600, 2):
            offset = write_to_store(store_dir, "prediction", documents[start:start + 2], "p", 0, offset)
            folder = folder or next((store_dir / "predictions").rglob("hour=*"))
            compact(folder, PendingIndex(store_dir), threshold=3)
    finally:
        stop.set()
        reader.join()
    assert not failures, failures[:3]
    assert store.predictions("churn", hour, hour + timedelta(hours=1)).num_rows == 600



def test_an_incremental_reader_whose_listing_names_a_file_compaction_removed_lists_again(tmp_path):
    """The monitor's reader (`Store.arrived`) lists a folder, then reads its files one by one, and
    compaction may remove one in between. Made certain here: the listing the store keeps is made to
    outlive a compaction (the folder's time set back). The read lists again and reads each row once."""
    store_dir = tmp_path / "store"
    hour, documents, _ = small_files(store_dir, 12, written=12)
    folder = next((store_dir / "predictions").rglob("hour=*"))
    long_ago = time.time() - 60
    os.utime(folder, (long_ago, long_ago))
    store = Store(store_dir)
    assert store.arrived("prediction", hour, model="churn", columns=["event_id"]).rows.num_rows == 12  # listed, kept
    assert compact(folder, PendingIndex(store_dir), threshold=3), "the folder's four files were merged into one"
    os.utime(folder, (long_ago, long_ago))
    again = store.arrived("prediction", hour, model="churn", columns=["event_id"])
    assert again.rows["event_id"].to_pylist() == [d["event_id"] for d in documents]
