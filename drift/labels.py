"""The labels of one model as they reach the store: the stream of error bits the sequential detectors read.

Each read costs what arrived since the last one, not the history: new prediction rows extend an
in-memory index of the model's predictions of the last horizon (request id, time, predicted label),
and new feedback rows are matched against it with the labelled view's own rule
(`collector.store.match_labels`). Every label within the horizon of its prediction is one bit,
1 when the model was wrong, in feedback-time order; a correction is one more bit (a detector cannot
unlearn one). Feedback stored before its prediction waits up to `wait` for it. Only the feedback
position is worth saving: the index is rebuilt from the store at start.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.collector.store import CLOCK_SKEW, Store, match_labels

__all__ = ["LabelStream"]

PREDICTION_COLUMNS = ["event_id", "request_id", "timestamp", "label"]
FEEDBACK_COLUMNS = ["event_id", "request_id", "timestamp", "label", "source"]
MAX_WAITING = 200_000  # feedback rows waiting for their prediction (other models' feedback waits too)


class LabelStream:
    """`read(now)` returns the error bits of the labels of `model` that reached the store since the last read."""

    def __init__(self, store: Store, model: str, horizon: timedelta, position: dict | None = None,
                 wait: timedelta = timedelta(hours=1)) -> None:
        self.store = store
        self.model = model
        self.horizon = horizon
        self.wait = wait
        self.position: dict = dict(position or {})  # of the feedback read so far, per hour folder and partition
        self._predictions: pa.Table | None = None
        self._predictions_at: dict = {}
        self._waiting: pa.Table | None = None
        self._pruned_at: datetime | None = None

    def read(self, now: datetime) -> np.ndarray:
        """Bits (1 = wrong) of the labels that arrived since the last call, oldest feedback first."""
        index = self._index(now)
        arrived = self.store.arrived("feedback", now - self.horizon - CLOCK_SKEW, self.position, columns=FEEDBACK_COLUMNS)
        fresh = arrived.rows
        if fresh.num_rows:
            fresh = fresh.filter(pc.is_valid(fresh["label"])).select(FEEDBACK_COLUMNS)
            fresh = fresh.append_column("seen", pa.array([now] * fresh.num_rows, pa.timestamp("us", tz="UTC")))
            fresh = fresh.cast(_feedback_schema())
        candidates = [t for t in (self._waiting, fresh) if t is not None and t.num_rows]
        bits = np.zeros(0, dtype=np.int8)
        waiting = None
        if candidates:
            feedback = pa.concat_tables(candidates)
            matched = match_labels(index, feedback, self.horizon)
            if matched.num_rows:
                wrong = pc.fill_null(pc.not_equal(matched["label"], matched["true_label"]), True)
                bits = wrong.to_numpy(zero_copy_only=False).astype(np.int8)
            done = pc.is_in(feedback["event_id"], value_set=matched["feedback_event_id"]) if matched.num_rows else None
            still = pc.greater_equal(feedback["seen"], pa.scalar(now - self.wait, pa.timestamp("us", tz="UTC")))
            keep = still if done is None else pc.and_(pc.invert(done), still)
            waiting = feedback.filter(keep)
            if waiting.num_rows > MAX_WAITING:
                waiting = waiting.slice(waiting.num_rows - MAX_WAITING)
        self._waiting = waiting
        self.position = arrived.position
        return bits

    def _index(self, now: datetime) -> pa.Table:
        """The model's predictions of the last horizon with a predicted label, brought up to date."""
        cutoff = now - self.horizon
        new = self.store.arrived("prediction", cutoff, self._predictions_at, self.model, columns=PREDICTION_COLUMNS)
        self._predictions_at = new.position
        parts = [] if self._predictions is None else [self._predictions]
        if new.rows.num_rows:
            rows = new.rows.select(PREDICTION_COLUMNS).cast(_prediction_schema())
            parts.append(rows.filter(pc.is_valid(rows["label"])))
        index = pa.concat_tables(parts) if parts else _prediction_schema().empty_table()
        if self._pruned_at is None or now - self._pruned_at >= timedelta(minutes=10):
            index = index.filter(pc.greater_equal(index["timestamp"], pa.scalar(cutoff, pa.timestamp("us", tz="UTC"))))
            index = index.combine_chunks()
            self._pruned_at = now
        self._predictions = index
        return index


def _prediction_schema() -> pa.Schema:
    return pa.schema([("event_id", pa.string()), ("request_id", pa.string()),
                      ("timestamp", pa.timestamp("us", tz="UTC")), ("label", pa.string())])


def _feedback_schema() -> pa.Schema:
    return pa.schema([("event_id", pa.string()), ("request_id", pa.string()),
                      ("timestamp", pa.timestamp("us", tz="UTC")), ("label", pa.string()), ("source", pa.string()),
                      ("seen", pa.timestamp("us", tz="UTC"))])
