"""The labels of one model as they reach the store: the stream of error bits the sequential detectors read.

Each read costs what arrived since the last one, not the history: new prediction rows extend an
in-memory index of the model's predictions of the last horizon (request id, time, predicted label;
searched by a hash of the request id, so a lookup does not scan a week of rows), and new
feedback rows are matched against it with the labelled view's own rule
(`collector.store.match_labels`). Every label within the horizon of its prediction is one bit,
1 when the model was wrong, in feedback-time order; a correction is one more bit (a detector cannot
unlearn one). Feedback stored before its prediction waits up to `wait` for it. Only the feedback
position is worth saving: the index is rebuilt from the store at start.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.collector.store import CLOCK_SKEW, Store, match_labels

__all__ = ["LabelStream", "PredictionIndex"]

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
        self.predictions = PredictionIndex()
        self._predictions_at: dict = {}
        self._waiting: pa.Table | None = None

    def read(self, now: datetime) -> np.ndarray:
        """Bits (1 = wrong) of the labels that arrived since the last call, oldest feedback first."""
        cutoff = now - self.horizon
        new = self.store.arrived("prediction", cutoff, self._predictions_at, self.model, columns=PREDICTION_COLUMNS)
        self._predictions_at = new.position
        if new.rows.num_rows:
            rows = new.rows.select(PREDICTION_COLUMNS).cast(PREDICTIONS)
            self.predictions.add(rows.filter(pc.is_valid(rows["label"])))
        self.predictions.drop_before(cutoff)
        arrived = self.store.arrived("feedback", cutoff - CLOCK_SKEW, self.position, columns=FEEDBACK_COLUMNS)
        fresh = arrived.rows
        if fresh.num_rows:
            fresh = fresh.filter(pc.is_valid(fresh["label"])).select(FEEDBACK_COLUMNS)
            fresh = fresh.append_column("seen", pa.array([now] * fresh.num_rows, TIME)).cast(FEEDBACK)
        candidates = [t for t in (self._waiting, fresh) if t is not None and t.num_rows]
        bits = np.zeros(0, dtype=np.int8)
        waiting = None
        if candidates:
            feedback = pa.concat_tables(candidates)
            matched = match_labels(self.predictions.find(feedback["request_id"]), feedback, self.horizon)
            if matched.num_rows:
                wrong = pc.fill_null(pc.not_equal(matched["label"], matched["true_label"]), True)
                bits = wrong.to_numpy(zero_copy_only=False).astype(np.int8)
            done = pc.is_in(feedback["event_id"], value_set=matched["feedback_event_id"])
            # Only recent feedback can be waiting for a prediction still on its way; older feedback whose
            # prediction is not in the index labels one from before the horizon, or of another model.
            recent = pc.greater_equal(feedback["timestamp"], pa.scalar(now - self.wait - CLOCK_SKEW, TIME))
            still = pc.and_(recent, pc.greater_equal(feedback["seen"], pa.scalar(now - self.wait, TIME)))
            waiting = feedback.filter(pc.and_(pc.invert(done), still))
            if waiting.num_rows > MAX_WAITING:
                waiting = waiting.slice(waiting.num_rows - MAX_WAITING)
        self._waiting = waiting
        self.position = arrived.position
        return bits


class PredictionIndex:
    """Predictions found by request id without scanning them all: a week of them costs a lookup, not a pass.

    Rows are kept sorted by a 64-bit hash of their request id (a binary search finds a request's
    rows), with the newest in a small unsorted tail that is merged in once it holds `seal_rows`.
    Rows older than a cutoff are dropped once they are a twentieth of the index. `find` may return
    rows of another request with the same hash; the caller's join on the request id drops them.
    """

    def __init__(self, seal_rows: int = 50_000) -> None:
        self.seal_rows = seal_rows
        self._sorted = PREDICTIONS.empty_table()
        self._sorted_hashes = np.zeros(0, dtype=np.uint64)
        self._tail: list[pa.Table] = []
        self._tail_hashes: list[np.ndarray] = []

    @property
    def num_rows(self) -> int:
        return self._sorted.num_rows + sum(t.num_rows for t in self._tail)

    def add(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self._tail.append(rows)
            self._tail_hashes.append(_hashes(rows["request_id"]))
            if sum(t.num_rows for t in self._tail) >= self.seal_rows:
                self._seal()

    def find(self, request_ids: pa.ChunkedArray | pa.Array) -> pa.Table:
        """Rows whose request id hashes like one of `request_ids`."""
        wanted = np.unique(_hashes(request_ids))
        low = np.searchsorted(self._sorted_hashes, wanted, "left")
        high = np.searchsorted(self._sorted_hashes, wanted, "right")
        counts = high - low
        first_of_group = np.repeat(low - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
        rows = [self._sorted.take(first_of_group + np.arange(int(counts.sum())))]
        rows += [t.filter(pa.array(np.isin(h, wanted))) for t, h in zip(self._tail, self._tail_hashes, strict=True)]
        return pa.concat_tables(rows)

    def drop_before(self, cutoff: datetime) -> None:
        """Forget rows older than `cutoff`, when they have become a twentieth of the index."""
        if self._sorted.num_rows == 0:
            return
        times = self._sorted["timestamp"].combine_chunks().cast(pa.int64()).to_numpy()
        keep = times >= int(cutoff.timestamp() * 1_000_000)
        if np.count_nonzero(~keep) * 20 >= len(keep):
            self._sorted = self._sorted.filter(pa.array(keep))
            self._sorted_hashes = self._sorted_hashes[keep]

    def _seal(self) -> None:
        table = pa.concat_tables([self._sorted, *self._tail])
        hashes = np.concatenate([self._sorted_hashes, *self._tail_hashes])
        order = np.argsort(hashes, kind="stable")
        self._sorted, self._sorted_hashes = table.take(order).combine_chunks(), hashes[order]
        self._tail, self._tail_hashes = [], []


def _hashes(values: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A 64-bit hash of each string (pandas' SipHash of the values)."""
    return pd.util.hash_array(np.asarray(values.to_pylist() if len(values) < 1000 else
                                         values.to_numpy(zero_copy_only=False), dtype=object))


TIME = pa.timestamp("us", tz="UTC")
PREDICTIONS = pa.schema([("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", TIME), ("label", pa.string())])
FEEDBACK = pa.schema([("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", TIME), ("label", pa.string()),
                      ("source", pa.string()), ("seen", TIME)])
