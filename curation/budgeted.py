"""Budgeted selection from the store: the unlabelled predictions of a window, scored, picked, recorded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from driftloop.collector.store import Store
from driftloop.curation.batches import Batch, BatchLedger
from driftloop.curation.pool import Pool, feature_matrix, numeric_features
from driftloop.curation.predictor import Predictor
from driftloop.curation.strategies.base import Strategy

__all__ = ["BatchRequest", "select_batch"]


@dataclass(frozen=True)
class BatchRequest:
    """Which predictions to choose from, and how many to send for labelling.

    The pool is the predictions of `model` in [start, end) without feedback
    within `label_horizon` and never sent for labelling before.
    """

    model: str
    budget: int
    start: datetime
    end: datetime
    label_horizon: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise ValueError(f"budget must be at least 1, got {self.budget}")
        if self.start >= self.end:
            raise ValueError(f"the window is empty: start {self.start} is not before end {self.end}")


def select_batch(
    store: Store,
    ledger: BatchLedger,
    strategy: Strategy,
    request: BatchRequest,
    reference: pa.Table | None = None,
    predictor: Predictor | None = None,
    on_stage: Callable[[str], None] = lambda _stage: None,
) -> Batch | None:
    """Select up to `request.budget` inputs with `strategy` and record them; None when the pool is empty.

    The ledger is locked from reading the pool to recording the batch, so two
    selections running at once never pick the same input. `on_stage` hears
    "reading", "scoring", "selecting" and "recording" as they begin (for a
    progress display). `reference` (store rows of the model, or the sample a
    reference profile keeps) is what drift-targeted selection compares the
    pool against. `predictor`, when given, scores the pool instead of the
    probabilities the model logged.
    """
    with ledger.lock():
        on_stage("reading")
        rows = store.unlabelled(request.model, request.start, request.end, horizon=request.label_horizon)
        rows = _not_sent_before(rows, ledger)
        if rows.num_rows == 0:
            return None
        pool = Pool.from_table(rows)
        pool = pool.with_context(labelled=_features(store.labelled(request.model, request.start, request.end,
                                                                   horizon=request.label_horizon), pool))
        if reference is not None:
            pool = pool.with_context(reference=_features(reference, pool))
        on_stage("scoring")
        if predictor is not None:
            pool = pool.scored_by(predictor)
        on_stage("selecting")
        selection = strategy.select(pool, request.budget)
        on_stage("recording")
        return ledger.record(selection, rows, request.model, request.budget, request.start, request.end)


def _not_sent_before(rows: pa.Table, ledger: BatchLedger) -> pa.Table:
    """The rows whose request was never put in a batch (of the batches that can hold their times)."""
    if rows.num_rows == 0:
        return rows
    bounds = pc.min_max(rows["timestamp"]).as_py()
    sent = ledger.selected_request_ids(bounds["min"], bounds["max"] + timedelta(microseconds=1))
    if not sent:
        return rows
    return rows.filter(pc.invert(pc.is_in(rows["request_id"], pa.array(sorted(sent), pa.string()))))


def _features(table: pa.Table, pool: Pool):
    """The pool's feature columns of `table` (other store rows of the same model), or None if it has none."""
    if table.num_rows == 0 or not set(pool.feature_names) <= set(numeric_features(table)):
        return None
    return feature_matrix(table, list(pool.feature_names))
