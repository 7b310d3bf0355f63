"""Label files are checked whole, with errors that name the row and the field; exports are what tools read."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.curation import BatchLedger, LabelFileError, Pool, export_batch, make_strategy, read_labels


@pytest.fixture
def ledger(tmp_path) -> BatchLedger:
    """One batch of 4 inputs of a model with classes 'cat' and 'dog'."""
    p = np.array([0.5, 0.6, 0.7, 0.8, 0.9])
    rows = pa.table({
        "event_id": [f"e{i}" for i in range(5)], "request_id": [f"r{i}" for i in range(5)],
        "label": ["cat"] * 5, "score": [None] * 5, "proba.cat": p, "proba.dog": 1 - p, "feature.x": [1.0, 2, 3, 4, 5],
    })
    pool = Pool.from_table(rows)
    ledger = BatchLedger(tmp_path / "batches")
    ledger.record(make_strategy("margin").select(pool, 4), rows, "pets", 4)
    return ledger


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_good_csv_gives_annotator_feedback_with_ids_that_do_not_change(ledger, tmp_path):
    path = tmp_path / "labels.csv"
    write_csv(path, [{"request_id": "r0", "label": "dog"}, {"request_id": "r1", "label": ""}])
    labels = read_labels(path, ledger)
    assert [(e.request_id, e.label, e.source) for e in labels.events] == [("r0", "dog", "annotator")]
    assert labels.unlabelled_rows == 1
    assert read_labels(path, ledger).events[0].event_id == labels.events[0].event_id


@pytest.mark.parametrize(
    ("rows", "row", "field", "says"),
    [
        ([{"request_id": "r0", "label": "bird"}], 1, "label", "not a class"),
        ([{"request_id": "r4", "label": "dog"}], 1, "request_id", "not sent for labelling"),
        ([{"request_id": "", "label": "dog"}], 1, "request_id", "missing"),
        ([{"request_id": "r0", "label": "dog"}, {"request_id": "r0", "label": "cat"}], 2, "request_id", "twice"),
        ([{"request": "r0", "label": "dog"}], 0, "request_id", "column missing"),
    ],
    ids=["unknown-class", "never-sent", "no-request-id", "labelled-twice", "no-request-id-column"],
)
def test_a_bad_csv_names_the_row_and_the_field(ledger, tmp_path, rows, row, field, says):
    path = tmp_path / "labels.csv"
    write_csv(path, rows)
    with pytest.raises(LabelFileError, match=says) as raised:
        read_labels(path, ledger)
    assert (raised.value.row, raised.value.field) == (row, field)
    assert "Nothing of this file was sent" in str(raised.value)


def test_label_studio_exports_are_read_as_label_studio_writes_them(ledger, tmp_path):
    batch = ledger.batches()[0]
    tasks = json.loads(export_batch(batch, tmp_path / "tasks.json", "label-studio")[0].read_text())
    assert tasks[0]["data"]["features"] == {"x": 1.0} and tasks[0]["predictions"][0]["score"] == 0.5
    choice = {"from_name": "label", "to_name": "input", "type": "choices"}
    tasks[0]["annotations"] = [
        {"id": 1, "was_cancelled": False, "updated_at": "2026-11-23T10:00:00Z", "result": [{**choice, "value": {"choices": ["cat"]}}]},
        {"id": 2, "was_cancelled": False, "updated_at": "2026-11-23T11:00:00Z", "result": [{**choice, "value": {"choices": ["dog"]}}]},
        {"id": 3, "was_cancelled": True, "updated_at": "2026-11-23T12:00:00Z", "result": [{**choice, "value": {"choices": ["cat"]}}]},
    ]
    tasks[1]["annotations"] = [{"id": 4, "result": [{**choice, "value": {"text": ["?"]}}]}]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    with pytest.raises(LabelFileError) as raised:
        read_labels(tmp_path / "export.json", ledger)
    assert (raised.value.row, raised.value.field) == (2, "annotations.result")
    tasks[1]["annotations"] = []
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    labels = read_labels(tmp_path / "export.json", ledger)
    assert [(e.request_id, e.label) for e in labels.events] == [("r0", "dog")], "the latest annotation not cancelled"
    assert labels.events[0].timestamp.isoformat() == "2026-11-23T11:00:00+00:00"
    assert labels.unlabelled_rows == 3


def test_csv_and_parquet_exports_carry_the_model_answer_and_an_empty_label(ledger, tmp_path):
    batch = ledger.batches()[0]
    export_batch(batch, tmp_path / "batch.csv", "csv")
    with open(tmp_path / "batch.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["request_id"] for r in rows] == batch.rows["request_id"].to_pylist()
    assert rows[0]["predicted_label"] == "cat" and rows[0]["x"] == "1" and rows[0]["label"] == ""
    assert read_labels(tmp_path / "batch.csv", ledger).unlabelled_rows == 4, "the export reads back as a label file"
    with pytest.raises(ValueError, match="Valid values"):
        export_batch(batch, tmp_path / "batch.xlsx", "excel")


def test_a_large_label_file_is_streamed_not_loaded_whole(tmp_path):
    """5,000 tasks (~25 MB of JSON): reading them back holds a task at a time and the ids seen, not the file."""
    import tracemalloc

    request_ids = [f"r{i}" for i in range(5_000)]
    rows = pa.table({"event_id": request_ids, "request_id": request_ids, "label": ["cat"] * len(request_ids),
                     "feature.x": [1.0] * len(request_ids)})
    ledger = BatchLedger(tmp_path / "batches")
    ledger.record(make_strategy("random", seed=0).select(Pool.from_table(rows), len(request_ids)), rows, "pets", 5_000)
    choice = {"from_name": "label", "to_name": "input", "type": "choices", "value": {"choices": ["dog"]}}
    path = tmp_path / "export.json"
    with open(path, "w") as handle:
        handle.write("[\n")
        for i, request_id in enumerate(request_ids):
            task = {"id": i, "data": {"request_id": request_id, "features": {"x": 1.0}, "note": "n" * 5000},
                    "annotations": [{"id": i, "updated_at": "2026-11-23T10:00:00Z", "result": [choice]}]}
            handle.write(("," if i else "") + json.dumps(task) + "\n")
        handle.write("]\n")
    size = path.stat().st_size
    assert size > 20_000_000

    tracemalloc.start()
    labels = read_labels(path, ledger)
    baseline = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    sent = sum(1 for _ in labels.iter_events())
    peak = tracemalloc.get_traced_memory()[1] - baseline
    tracemalloc.stop()
    assert labels.count == sent == 5_000 and labels.unlabelled_rows == 0
    # Loading the file whole took about 14 times its size (a 78 MB file peaked at 1.1 GB).
    assert peak < size / 2, f"reading {size / 1e6:.0f} MB of labels back peaked at {peak / 1e6:.0f} MB"


def test_a_batch_id_cannot_name_a_file_outside_the_batch_folder(ledger, tmp_path):
    outside = tmp_path / "secret.parquet"
    pq.write_table(pa.table({"x": [1]}), outside)
    with pytest.raises(ValueError, match="no batch '../secret'"):
        ledger.load("../secret")
