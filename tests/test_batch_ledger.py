"""The batch ledger's index: a selection reads the batches its window can overlap, not every past batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from driftloop.curation import BatchLedger, Pool, make_strategy

DAY = timedelta(days=1)
T0 = datetime(2026, 11, 2, tzinfo=UTC)


def record(ledger: BatchLedger, day: int, count: int = 5, timed: bool = True):
    p = np.linspace(0.5, 0.9, count)
    rows = {
        "event_id": [f"e{day}-{i}" for i in range(count)], "request_id": [f"r{day}-{i}" for i in range(count)],
        "label": ["cat"] * count, "proba.cat": p, "proba.dog": 1 - p, "feature.x": np.arange(count, dtype=float),
    }
    if timed:
        rows["timestamp"] = pa.array([T0 + day * DAY + timedelta(minutes=i) for i in range(count)],
                                     pa.timestamp("us", tz="UTC"))
    table = pa.table(rows)
    selection = make_strategy("margin").select(Pool.from_table(table), count)
    return ledger.record(selection, table, "pets", count, now=T0 + day * DAY + timedelta(hours=1))


def test_a_window_reads_only_the_batches_it_overlaps(tmp_path):
    ledger = BatchLedger(tmp_path / "batches")
    batches = [record(ledger, day) for day in range(3)]
    assert ledger.batches_overlapping(T0 + DAY, T0 + 2 * DAY) == [batches[1].batch_id]
    assert ledger.selected_request_ids(T0 + DAY, T0 + 2 * DAY) == {f"r1-{i}" for i in range(5)}
    assert ledger.selected_request_ids() == {f"r{d}-{i}" for d in range(3) for i in range(5)}
    assert ledger.batches_overlapping(T0 + 5 * DAY, T0 + 6 * DAY) == []


def test_the_index_heals_from_the_batch_files(tmp_path):
    ledger = BatchLedger(tmp_path / "batches")
    batches = [record(ledger, day) for day in range(2)]
    untimed = record(ledger, 7, timed=False)  # rows without a time: in every window
    index = tmp_path / "batches" / "index.json"
    document = json.loads(index.read_text())
    del document["batches"][batches[1].batch_id]  # a crash between the batch file and the index
    index.write_text(json.dumps(document))
    assert ledger.batches_overlapping(T0 + DAY, T0 + 2 * DAY) == sorted([batches[1].batch_id, untimed.batch_id])
    index.write_text("{ torn")
    assert ledger.batches_overlapping(T0, T0 + DAY) == sorted([batches[0].batch_id, untimed.batch_id])
