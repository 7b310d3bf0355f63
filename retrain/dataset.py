"""Dataset assembly: a curation snapshot (or any labelled table) to the arrays a training run reads.

Rows are split into training and validation by a hash of their event id (for store rows, the
prediction's id: one per request), so the same row is on the same side in every run, on every
machine, whatever the order of the table. The preprocessing is fitted on the training rows
only. A table a model cannot learn from is a `DataError` that says why: no rows, one class, a
feature the spec needs that the data lacks, no rows left on one side of the split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from driftloop.retrain.preprocessing import InputError, Preprocessor
from driftloop.retrain.specs import ModelSpec

__all__ = ["DataError", "TrainingData", "prepare_training_data", "validation_mask"]

LABEL = "label"
ID_COLUMNS = ("event_id", "request_id")
_BUCKETS = 10_000


class DataError(ValueError):
    """Training data a model cannot be trained on; the message says why."""


@dataclass(frozen=True)
class TrainingData:
    """Prepared arrays (float32 inputs, int64 class indices) and what is needed to read them back."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: tuple[str, ...]
    preprocessor: Preprocessor

    @property
    def n_inputs(self) -> int:
        return self.x_train.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {"x_train": self.x_train, "y_train": self.y_train, "x_val": self.x_val, "y_val": self.y_val}


def validation_mask(ids: list[str], share: float) -> np.ndarray:
    """True for the rows held out for validation: sha256 of the id, in buckets of 1/10,000.

    >>> validation_mask(["r1", "r2", "r3", "r4"], 0.5).tolist()
    [True, True, False, True]
    """
    threshold = round(share * _BUCKETS)
    buckets = np.fromiter((int.from_bytes(hashlib.sha256(str(i).encode()).digest()[:4], "big") % _BUCKETS
                           for i in ids), dtype=np.int64, count=len(ids))
    return buckets < threshold


def prepare_training_data(table: pa.Table, spec: ModelSpec) -> TrainingData:
    """Split, fit the preprocessing on the training side, and transform both sides."""
    if table.num_rows == 0:
        raise DataError("the snapshot is empty: no labelled rows to train on")
    if LABEL not in table.column_names:
        raise DataError(f"the training data has no {LABEL!r} column; it has {table.column_names}")
    labels = table[LABEL].to_pylist()
    if any(label is None for label in labels):
        raise DataError(f"{sum(label is None for label in labels)} rows have no label")
    texts = np.asarray([str(label) for label in labels], dtype=object)
    classes = tuple(sorted(set(texts.tolist())))
    if len(classes) < 2:
        raise DataError(f"the snapshot has one class only ({classes[0]!r}, {table.num_rows} rows): "
                        "a classifier needs at least two")
    id_column = next((name for name in ID_COLUMNS if name in table.column_names), None)
    ids = table[id_column].to_pylist() if id_column else [str(i) for i in range(table.num_rows)]
    held_out = validation_mask(ids, spec.training.validation_share)
    if held_out.all() or not held_out.any():
        raise DataError(f"{table.num_rows} rows are too few to hold out a validation share of "
                        f"{spec.training.validation_share}: one side of the split is empty")
    train_rows = pa.array(np.flatnonzero(~held_out))
    val_rows = pa.array(np.flatnonzero(held_out))
    try:
        preprocessor = Preprocessor.fit(table.take(train_rows), features=spec.features, categorical=spec.categorical)
        x_train, x_val = preprocessor.transform(table.take(train_rows)), preprocessor.transform(table.take(val_rows))
    except InputError as error:
        raise DataError(str(error)) from None
    index = {label: i for i, label in enumerate(classes)}
    y = np.fromiter((index[label] for label in texts), dtype=np.int64, count=len(texts))
    return TrainingData(x_train, y[~held_out], x_val, y[held_out], classes, preprocessor)
