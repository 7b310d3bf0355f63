"""Reference profiles: what the drift statistics need from the reference, computed once.

A profile is built from a training set or a time window (a pyarrow Table or a
pandas DataFrame) and then scores any number of windows, each at the cost of
that window alone: a numeric feature keeps its sorted finite values (K-S and
Wasserstein answer with `np.searchsorted` on them), a categorical feature its
category counts. It is saved as `profile.json` plus one `.npy` per numeric
feature (no pickle) and loads back identical.

Column kinds follow Evidently 0.7's inference, so the automatic choice of
statistic matches Evidently's: floats are numeric; integers are categorical
with at most 10 distinct values, numeric otherwise; strings, booleans and
pandas categories are categorical; other types (timestamps, lists) are skipped.

For a very large reference, `sketch_size=k` keeps k evenly spaced quantiles
instead of every value (count, min, max, std and distinct values stay exact);
the sketch's CDF is then within 1/k of the reference's at every point, and the
normed Wasserstein distance within (max - min) / (k * std) (docs/drift.md).

>>> import pandas as pd
>>> frame = pd.DataFrame({"age": [31.0, 45.0, 27.0, None], "plan": ["a", "b", "a", "a"]})
>>> profile = ReferenceProfile.build(frame)
>>> profile.features["age"].values.tolist(), profile.features["age"].missing
([27.0, 31.0, 45.0], 1)
>>> profile.features["plan"].categories, profile.features["plan"].counts
(('a', 'b'), (3, 1))
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from driftloop.drift.calibration import WassersteinNull

FORMAT_VERSION = 2  # 2: numeric columns keep their Wasserstein null (drift.calibration); 1 still loads
READABLE_VERSIONS = (1, 2)
KINDS = ("numeric", "categorical")
ROLES = ("feature", "prediction", "probability", "score")
INTEGER_CARDINALITY_LIMIT = 10  # Evidently: an integer column with <= 10 distinct values is categorical
DISTINCT_LIMIT = 20  # Evidently bins a numeric column by value (not Sturges) when the reference has <= 20 distinct values
SKIPPED_COLUMNS = frozenset({
    "event_id", "request_id", "timestamp", "model_name", "model_version", "latency_ms", "latency",
    "true_label", "rating", "feedback_source", "feedback_timestamp", "schema_version",
})


@dataclass(frozen=True, eq=False)
class NumericFeature:
    """A numeric column of the reference: sorted finite values (or a quantile sketch of them).

    `count` is the number of finite values in the reference (also when
    `values` is a sketch), `missing` the NaN/null/inf ones. `distinct` and
    `distinct_counts` are the value counts when there are at most
    DISTINCT_LIMIT distinct values (empty otherwise); `unique` is exact.
    """

    name: str
    values: np.ndarray
    count: int
    missing: int
    std: float
    unique: int
    minimum: float
    maximum: float
    integer: bool = False
    sketched: bool = False
    distinct: tuple = ()
    distinct_counts: tuple[int, ...] = ()
    role: str = "feature"
    kind: str = field(default="numeric", init=False)
    prefix_: np.ndarray = field(init=False, repr=False)
    null_: WassersteinNull | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        values = np.ascontiguousarray(self.values, dtype=np.float64)
        object.__setattr__(self, "values", values)
        # Prefix sums of values centred on the median: Wasserstein integrates the reference CDF with them.
        object.__setattr__(self, "prefix_", np.concatenate(([0.0], np.cumsum(values - self.centre))))

    def null(self) -> WassersteinNull:
        """The normed Wasserstein distance's null distribution (`drift.calibration`), computed once and kept.

        `ReferenceProfile.save` writes it with the profile, so a loaded profile
        scores a window at the window's cost alone.
        """
        if self.null_ is None:
            object.__setattr__(self, "null_", WassersteinNull.of(self.values, max(float(self.std), 0.001)))
        return self.null_

    @property
    def continuous(self) -> bool:
        """More than DISTINCT_LIMIT distinct values: the statistics that need a null use the precomputed one."""
        return self.unique > DISTINCT_LIMIT

    @property
    def centre(self) -> float:
        return float(self.values[len(self.values) // 2]) if len(self.values) else 0.0

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, NumericFeature)
            and json.dumps(self._meta()) == json.dumps(other._meta())  # NaN std of an empty column equals itself
            and np.array_equal(self.values, other.values)
        )

    __hash__ = None  # type: ignore[assignment]

    def _meta(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "role": self.role, "count": self.count, "missing": self.missing,
            "std": self.std, "unique": self.unique,
            "minimum": self.minimum, "maximum": self.maximum, "integer": self.integer, "sketched": self.sketched,
            "distinct": list(self.distinct), "distinct_counts": list(self.distinct_counts),
        }

    @classmethod
    def from_values(cls, name: str, column, sketch_size: int | None = None, role: str = "feature") -> NumericFeature:
        raw = _as_float(column, name)
        finite = raw[np.isfinite(raw)]
        finite.sort()
        count = len(finite)
        std = float(np.std(finite)) if count else math.nan
        boundaries = np.flatnonzero(np.diff(finite)) + 1 if count else np.array([], dtype=np.intp)
        unique = len(boundaries) + 1 if count else 0
        distinct: tuple = ()
        distinct_counts: tuple[int, ...] = ()
        if 0 < unique <= DISTINCT_LIMIT:
            starts = np.concatenate(([0], boundaries))
            distinct = tuple(finite[starts].tolist())
            distinct_counts = tuple(np.diff(np.concatenate((starts, [count]))).tolist())
        sketched = sketch_size is not None and count > sketch_size
        values = _sketch(finite, sketch_size) if sketched else finite
        return cls(
            name=name, values=values, count=count, missing=len(raw) - count, std=std, unique=unique,
            minimum=float(finite[0]) if count else math.nan, maximum=float(finite[-1]) if count else math.nan,
            integer=_is_integer(column), sketched=sketched, distinct=distinct, distinct_counts=distinct_counts, role=role,
        )


@dataclass(frozen=True)
class CategoricalFeature:
    """A categorical column of the reference: its categories (nulls dropped) and their counts."""

    name: str
    categories: tuple
    counts: tuple[int, ...]
    missing: int
    role: str = "feature"
    kind: str = field(default="categorical", init=False)

    @property
    def count(self) -> int:
        return int(sum(self.counts))

    def _meta(self) -> dict:
        return {
            "name": self.name, "kind": self.kind, "role": self.role, "missing": self.missing,
            "categories": list(self.categories), "counts": list(self.counts),
        }

    @classmethod
    def from_values(cls, name: str, column, role: str = "feature") -> CategoricalFeature:
        categories, counts, missing = category_counts(column)
        return cls(name=name, categories=categories, counts=counts, missing=missing, role=role)


FeatureProfile = NumericFeature | CategoricalFeature


@dataclass(frozen=True)
class Performance:
    """Accuracy of the model's predictions on the reference, when true labels were there."""

    accuracy: float
    labelled: int


@dataclass(frozen=True)
class ReferenceProfile:
    """Everything drift scoring needs from the reference, by column name.

    Build with `ReferenceProfile.build(table)`, keep with `save(folder)` and
    `ReferenceProfile.load(folder)`; score windows with `drift.window.WindowDrift`.
    """

    features: Mapping[str, FeatureProfile]
    rows: int
    performance: Performance | None = None

    @classmethod
    def build(
        cls,
        table: pa.Table | pd.DataFrame,
        columns: Sequence[str] | None = None,
        kinds: Mapping[str, str] | None = None,
        prediction: str = "label",
        target: str = "true_label",
        sketch_size: int | None = None,
    ) -> ReferenceProfile:
        """Profile `columns` of `table` (default: see `profiled_columns`), kinds inferred unless given in `kinds`.

        `prediction` names the predicted-label column and `target` the true
        label: when both are there, `performance` holds the accuracy.
        `sketch_size` (e.g. 10_000) keeps that many quantiles per numeric column.
        """
        kinds = dict(kinds or {})
        for name, kind in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"Invalid kind {kind!r} for column {name!r}. Valid values are: {KINDS}")
        if sketch_size is not None and sketch_size < 2:
            raise ValueError(f"sketch_size must be an integer >= 2 or None, got {sketch_size!r}")
        names = list(columns) if columns is not None else profiled_columns(_column_names(table), prediction)
        missing = [name for name in names if name not in _column_names(table)]
        if missing:
            raise ValueError(f"Columns {missing} are not in the table. Its columns are: {_column_names(table)}")
        features: dict[str, FeatureProfile] = {}
        for name in names:
            column = _column(table, name)
            kind = kinds.get(name) or infer_kind(column)
            if kind is None:
                continue
            role = column_role(name, prediction)
            if kind == "numeric":
                features[name] = NumericFeature.from_values(name, column, sketch_size, role)
            else:
                features[name] = CategoricalFeature.from_values(name, column, role)
        return cls(features=features, rows=len(table), performance=_performance(table, prediction, target))

    def save(self, folder: str | Path) -> Path:
        """Write `profile.json`, one `numeric_<i>.npy` per numeric column and, for a continuous one, its
        `null_<i>.npy` (the Wasserstein null, computed here if not yet), as `folder`; return the folder.

        The files are written (and flushed to disk) into a new folder beside
        `folder`, which then takes its place by rename: a crash leaves either
        the previous profile whole or the new one whole, never a mix that
        loads. `folder` is the profile: anything else in it goes with the
        previous profile.
        """
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.partial")
        staging.mkdir()
        try:
            documents = []
            for index, feature in enumerate(self.features.values()):
                document = feature._meta()
                if isinstance(feature, NumericFeature):
                    document["values_file"] = f"numeric_{index:04d}.npy"
                    _write_durably(staging / document["values_file"],
                                   lambda file, values=feature.values: np.save(file, values, allow_pickle=False))
                    if feature.continuous:
                        null = feature.null()
                        document["null_file"] = f"null_{index:04d}.npy"
                        document["null_sizes"] = null.sizes.tolist()
                        _write_durably(staging / document["null_file"],
                                       lambda file, table=null.table: np.save(file, table, allow_pickle=False))
                documents.append(document)
            performance = None if self.performance is None else vars(self.performance)
            manifest = {"format_version": FORMAT_VERSION, "rows": self.rows, "performance": performance,
                        "features": documents}
            text = json.dumps(manifest, indent=1, allow_nan=True).encode()
            _write_durably(staging / "profile.json", lambda file: file.write(text))
            _replace_folder(staging, folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ReferenceProfile:
        folder = Path(folder)
        manifest = json.loads((folder / "profile.json").read_text())
        if manifest.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(
                f"Unsupported profile format_version {manifest.get('format_version')!r} in {folder}: this code reads "
                f"versions {list(READABLE_VERSIONS)}. Build the profile again with this version of driftloop."
            )
        features: dict[str, FeatureProfile] = {}
        for document in manifest["features"]:
            document = dict(document)
            kind = document.pop("kind")
            if kind == "numeric":
                values = np.load(folder / document.pop("values_file"), allow_pickle=False)
                null_file, null_sizes = document.pop("null_file", None), document.pop("null_sizes", None)
                feature = NumericFeature(
                    values=values, **{**document, "distinct": tuple(document["distinct"]),
                                      "distinct_counts": tuple(document["distinct_counts"])})
                if null_file is not None:  # a version-1 profile has none: the first calibrated score computes it
                    table = np.load(folder / null_file, allow_pickle=False)
                    object.__setattr__(feature, "null_", WassersteinNull(np.array(null_sizes, dtype=np.float64), table))
                features[document["name"]] = feature
            else:
                features[document["name"]] = CategoricalFeature(
                    **{**document, "categories": tuple(document["categories"]), "counts": tuple(document["counts"])})
        performance = manifest["performance"]
        return cls(features=features, rows=manifest["rows"], performance=None if performance is None else Performance(**performance))


def _write_durably(path: Path, write) -> None:
    """Create `path`, let `write(file)` fill it, and flush it to disk before returning."""
    with open(path, "xb") as file:
        write(file)
        file.flush()
        os.fsync(file.fileno())


def _replace_folder(staging: Path, folder: Path) -> None:
    """Move the complete `staging` folder to `folder`, the previous `folder` (if any) out of the way first.

    Between the two renames `folder` is absent for a moment (a crash there
    leaves the previous profile beside it, as `.<name>.<id>.previous`); it is
    never partly written.
    """
    _fsync_folder(staging)
    previous = None
    if folder.exists():
        previous = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.previous")
        os.rename(folder, previous)
    os.rename(staging, folder)
    _fsync_folder(folder.parent)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def profiled_columns(names: Sequence[str], prediction: str = "label") -> list[str]:
    """The columns profiled by default: a store table's `feature.*`, the prediction, `proba.*` and `score`;
    for a plain frame without `feature.*` columns, every column but the store's bookkeeping ones.

    >>> profiled_columns(["event_id", "feature.age", "label", "proba.yes", "latency_ms"])
    ['feature.age', 'label', 'proba.yes']
    """
    if any(name.startswith("feature.") for name in names):
        return [n for n in names if n.startswith(("feature.", "proba.")) or n in (prediction, "score")]
    return [n for n in names if n not in SKIPPED_COLUMNS]


def column_role(name: str, prediction: str = "label") -> str:
    if name == prediction:
        return "prediction"
    if name.startswith("proba."):
        return "probability"
    return "score" if name == "score" else "feature"


def infer_kind(column) -> str | None:
    """'numeric', 'categorical' or None (skipped), by Evidently 0.7's rules (its `infer_column_type`).

    >>> import pandas as pd
    >>> infer_kind(pd.Series([1.5, 2.0])), infer_kind(pd.Series([1, 2, 3])), infer_kind(pd.Series(range(11)))
    ('numeric', 'categorical', 'numeric')
    """
    series = column if isinstance(column, pd.Series) else _to_series(column)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_float_dtype(dtype):
        return "numeric"
    if pd.api.types.is_integer_dtype(dtype):
        return "categorical" if series.nunique() <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        present = series.dropna()
        if len(present) == 0:
            return None
        return "categorical" if isinstance(present.iloc[0], str) else None
    return None


def category_counts(column) -> tuple[tuple, tuple[int, ...], int]:
    """(categories, counts, nulls) of a column, most frequent first, as plain Python values."""
    if not isinstance(column, (pa.Array, pa.ChunkedArray, pd.Series)):
        try:  # Arrow counts a plain array several times faster than pandas
            column = pa.array(np.asarray(column, dtype=object), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):  # mixed types: pandas copes
            column = pd.Series(np.asarray(column, dtype=object))
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        nulls = column.null_count
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        counted = column.drop_null().value_counts()
        values = counted.field("values").to_pylist()
        counts = counted.field("counts").to_numpy()
        order = np.argsort(-counts, kind="stable")
        return tuple(values[i] for i in order), tuple(counts[order].tolist()), nulls
    series = column
    counted = series.value_counts(dropna=True, sort=True)
    counted = counted[counted > 0]  # a pandas Categorical lists unused categories with 0
    return tuple(counted.index.tolist()), tuple(int(c) for c in counted.to_numpy()), int(series.isna().sum())


def _as_float(column, name: str = "") -> np.ndarray:
    """The column as float64, nulls as NaN; a ValueError that says so when it is not numeric."""
    try:
        if isinstance(column, (pa.Array, pa.ChunkedArray)):
            return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
        if isinstance(column, pd.Series):
            return column.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError, pa.ArrowInvalid) as error:
        raise ValueError(f"column {name!r} should be numeric but holds {_dtype(column)} values ({error})") from None


def _is_integer(column) -> bool:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return pa.types.is_integer(column.type) and column.null_count == 0
    return pd.api.types.is_integer_dtype(getattr(column, "dtype", None)) and not pd.isna(column).any() \
        if hasattr(column, "dtype") else False


def _dtype(column) -> str:
    return str(column.type if isinstance(column, (pa.Array, pa.ChunkedArray)) else getattr(column, "dtype", type(column)))


def _sketch(sorted_values: np.ndarray, size: int) -> np.ndarray:
    """`size` evenly spaced order statistics, at ranks floor((i + 1/2) n / size): a CDF within 1/size of the full one."""
    n = len(sorted_values)
    ranks = ((np.arange(size) + 0.5) * n / size).astype(np.int64)
    return sorted_values[np.minimum(ranks, n - 1)]


def _column_names(table) -> list[str]:
    return list(table.column_names) if isinstance(table, pa.Table) else [str(c) for c in table.columns]


def _column(table, name: str):
    return table.column(name) if isinstance(table, pa.Table) else table[name]


def _to_series(column) -> pd.Series:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return column.to_pandas()
    return pd.Series(column)


def _performance(table, prediction: str, target: str) -> Performance | None:
    names = _column_names(table)
    if prediction not in names or target not in names:
        return None
    predicted = _to_series(_column(table, prediction)).reset_index(drop=True)
    truth = _to_series(_column(table, target)).reset_index(drop=True)
    labelled = truth.notna()
    if not labelled.any():
        return None
    correct = (predicted[labelled].astype(str) == truth[labelled].astype(str)).to_numpy()
    return Performance(accuracy=float(correct.mean()), labelled=int(labelled.sum()))
