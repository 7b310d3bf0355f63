"""The unlabelled rows a strategy chooses from, as arrays, plus the context some strategies need.

A pool is built from a store table (`Pool.from_table`: the `feature.*`,
`proba.*`, `label` and `embedding` columns the store writer lays out) or from
arrays. Strategies never touch the store: pure core, I/O at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.curation.predictor import Predictor

__all__ = ["Pool", "feature_matrix"]


@dataclass(frozen=True)
class Pool:
    """Candidates for labelling.

    `features` is (rows, features) float64; NaN means missing. `probabilities`
    (rows, classes) are a model's class probabilities, columns in the order of
    `classes`. `embeddings` (rows, dims) is an optional model embedding that the
    diversity strategies may use instead of the features. `reference` holds
    feature rows the model was trained on (drift-targeted selection looks for
    rows unlike them); `labelled` holds feature rows that already have labels
    (k-center starts its cover from them).
    """

    ids: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...] = ()
    probabilities: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    embeddings: np.ndarray | None = None
    reference: np.ndarray | None = None
    labelled: np.ndarray | None = None

    def __post_init__(self) -> None:
        rows = len(self.ids)
        if self.features.ndim != 2 or len(self.features) != rows:
            raise ValueError(f"features must be 2-D with one row per id ({rows}); got shape {self.features.shape}")
        if self.probabilities is not None:
            if self.probabilities.shape != (rows, len(self.classes)):
                raise ValueError(
                    f"probabilities must have shape (rows, classes) = ({rows}, {len(self.classes)}); "
                    f"got {self.probabilities.shape}"
                )
        if self.embeddings is not None and len(self.embeddings) != rows:
            raise ValueError(f"embeddings must have one row per id ({rows}); got {len(self.embeddings)}")
        for name in ("reference", "labelled"):
            context = getattr(self, name)
            if context is not None and (context.ndim != 2 or context.shape[1] != self.features.shape[1]):
                raise ValueError(f"{name} must be 2-D with the pool's {self.features.shape[1]} feature columns")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(cls, table: pa.Table, feature_names: list[str] | None = None) -> Pool:
        """A pool from store rows: `event_id`, numeric `feature.<name>`, and `proba.<class>`, `embedding` if logged.

        `feature_names` picks and orders the features (default: every numeric
        or boolean `feature.*` column, sorted by name).
        """
        names = feature_names if feature_names is not None else numeric_features(table)
        classes = sorted(c.removeprefix("proba.") for c in table.column_names if c.startswith("proba."))
        probabilities = None
        if classes:
            probabilities = np.column_stack([_floats(table[f"proba.{c}"]) for c in classes])
            if np.isnan(probabilities).any():  # a row without logged probabilities carries no uncertainty
                probabilities = None
                classes = []
        embeddings = None
        if "embedding" in table.column_names and pa.types.is_list(table["embedding"].type):
            lengths = pc.list_value_length(table["embedding"])
            if table.num_rows and pc.min(lengths).as_py() == pc.max(lengths).as_py() and table["embedding"].null_count == 0:
                flat = pc.list_flatten(table["embedding"]).to_numpy(zero_copy_only=False)
                embeddings = flat.astype(np.float64).reshape(table.num_rows, -1)
        return cls(
            ids=np.asarray(table["event_id"].to_pylist(), dtype=object),
            features=feature_matrix(table, names),
            feature_names=tuple(names),
            probabilities=probabilities,
            classes=tuple(classes),
            embeddings=embeddings,
        )

    def scored_by(self, predictor: Predictor) -> Pool:
        """This pool with `predictor`'s class probabilities in place of the logged ones."""
        probabilities = np.asarray(predictor.predict_proba(self.features), dtype=np.float64)
        return replace(self, probabilities=probabilities, classes=tuple(str(c) for c in predictor.classes_))

    def with_context(self, reference: np.ndarray | None = None, labelled: np.ndarray | None = None) -> Pool:
        """This pool with reference rows and/or already-labelled rows (same feature columns)."""
        return replace(
            self,
            reference=self.reference if reference is None else np.asarray(reference, dtype=np.float64),
            labelled=self.labelled if labelled is None else np.asarray(labelled, dtype=np.float64),
        )

    def predicted(self) -> np.ndarray:
        """The most probable class of each row (needs probabilities)."""
        return np.asarray(self.classes, dtype=object)[np.argmax(self.require_probabilities("balanced"), axis=1)]

    def require_probabilities(self, strategy: str) -> np.ndarray:
        if self.probabilities is None:
            raise ValueError(
                f"the {strategy!r} strategy needs class probabilities: log them with each prediction "
                "(output.probabilities) or score the pool with a model (Pool.scored_by)"
            )
        return self.probabilities


def numeric_features(table: pa.Table) -> list[str]:
    """Names of the numeric and boolean `feature.*` columns of a store table, sorted."""
    return sorted(
        name.removeprefix("feature.")
        for name, kind in zip(table.column_names, table.schema.types, strict=True)
        if name.startswith("feature.") and (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind))
    )


def feature_matrix(table: pa.Table, names: list[str]) -> np.ndarray:
    """The `feature.<name>` columns as a float64 matrix; null becomes NaN."""
    missing = [n for n in names if f"feature.{n}" not in table.column_names]
    if missing:
        raise ValueError(f"features {missing} are not in the table; it has {numeric_features(table)}")
    if not names:
        return np.empty((table.num_rows, 0))
    return np.column_stack([_floats(table[f"feature.{n}"]) for n in names])


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
