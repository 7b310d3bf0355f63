"""Prepared inputs: the one path from named feature values to the float32 matrix a module reads.

Training, the model server and the shadow scorer all go through `Preprocessor.transform`, so
they can never disagree about preprocessing. Numeric features are standardised with the
training data's mean and standard deviation (a missing value becomes the mean, i.e. 0);
categorical ones are one-hot over the categories seen in training (an unseen or missing one is
all zeros). The fitted statistics and vocabularies are plain JSON (`to_dict`/`from_dict`),
saved beside the weights, never pickled.

Feature values come as a store table (`feature.<name>` columns), a mapping of name to values,
or records (one dict per row, as a model server receives them):

>>> prep = Preprocessor.fit({"age": [20.0, 40.0], "plan": ["a", "b"]})
>>> prep.feature_names, prep.width
(('age', 'plan'), 3)
>>> prep.transform([{"age": 30.0, "plan": "b"}, {"age": None, "plan": "z"}]).tolist()
[[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["FORMAT_VERSION", "CategoricalInput", "InputError", "NumericInput", "Preprocessor", "feature_columns"]

FORMAT_VERSION = 1
FEATURE_PREFIX = "feature."


class InputError(ValueError):
    """Feature values a model cannot read: `feature` names the first bad one, `reason` says why."""

    def __init__(self, feature: str, reason: str, row: int | None = None) -> None:
        where = f"row {row}, " if row is not None else ""
        super().__init__(f"{where}feature {feature!r}: {reason}")
        self.feature = feature
        self.reason = reason
        self.row = row


@dataclass(frozen=True)
class NumericInput:
    """A standardised numeric feature: (x - mean) / scale; missing -> 0."""

    name: str
    mean: float
    scale: float
    kind: str = "numeric"

    @property
    def width(self) -> int:
        return 1


@dataclass(frozen=True)
class CategoricalInput:
    """A one-hot categorical feature over `categories` (in training, most frequent first); unseen -> zeros."""

    name: str
    categories: tuple[str, ...]
    kind: str = "categorical"

    @property
    def width(self) -> int:
        return len(self.categories)


Input = NumericInput | CategoricalInput


@dataclass(frozen=True)
class Preprocessor:
    """The fitted preparation of a model's inputs, in the order the module reads them."""

    inputs: tuple[Input, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    @property
    def width(self) -> int:
        return sum(spec.width for spec in self.inputs)

    @property
    def numeric_only(self) -> bool:
        return all(isinstance(spec, NumericInput) for spec in self.inputs)

    @classmethod
    def fit(cls, data, features: Sequence[str] | None = None, categorical: Sequence[str] | None = None) -> Preprocessor:
        """Fit on training data. `features`: which to use (default: all); `categorical`: which are one-hot
        (default: those holding strings; numbers and booleans are numeric)."""
        columns = feature_columns(data)
        names = list(features) if features is not None else sorted(columns)
        if not names:
            raise InputError("", "the training data has no features")
        for name in names:
            if name not in columns:
                raise InputError(name, f"needed by the model but not in the data; it has {sorted(columns)}")
        inputs: list[Input] = []
        for name in names:
            values = columns[name]
            one_hot = name in categorical if categorical is not None else _holds_strings(values)
            inputs.append(_fit_categorical(name, values) if one_hot else _fit_numeric(name, values))
        return cls(tuple(inputs))

    def transform(self, data) -> np.ndarray:
        """The (rows, width) float32 matrix of `data` (a table, a mapping of columns, or records)."""
        if isinstance(data, np.ndarray):
            return self._transform_matrix(data)
        if _is_records(data):
            self.check_records(data)
            data = {spec.name: [record.get(spec.name) for record in data] for spec in self.inputs}
        columns = feature_columns(data)
        missing = [spec.name for spec in self.inputs if spec.name not in columns]
        if missing:
            raise InputError(missing[0], f"needed by the model but not in the data; it has {sorted(columns)}")
        rows = _length(columns[self.inputs[0].name])
        out = np.zeros((rows, self.width), dtype=np.float32)
        at = 0
        for spec in self.inputs:
            values = columns[spec.name]
            if _length(values) != rows:
                raise InputError(spec.name, f"has {_length(values)} values where the other features have {rows}")
            if isinstance(spec, NumericInput):
                numbers = _floats(values, spec.name)
                standardised = (numbers - spec.mean) / spec.scale
                out[:, at] = np.where(np.isfinite(standardised), standardised, 0.0)
            else:
                index = {category: i for i, category in enumerate(spec.categories)}
                for row, text in enumerate(_texts(values)):
                    position = index.get(text)
                    if position is not None:
                        out[row, at + position] = 1.0
            at += spec.width
        return out

    def _transform_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """A float matrix whose columns are the features in `feature_names` order (numeric models only)."""
        if not self.numeric_only:
            categorical = [spec.name for spec in self.inputs if not isinstance(spec, NumericInput)]
            raise InputError(categorical[0], "is categorical: pass named values (a table or records), not a matrix")
        if matrix.ndim != 2 or matrix.shape[1] != len(self.inputs):
            raise InputError("", f"a matrix needs {len(self.inputs)} columns ({list(self.feature_names)}); "
                                 f"got shape {matrix.shape}")
        return self.transform({spec.name: matrix[:, i] for i, spec in enumerate(self.inputs)})

    def check_records(self, records: Sequence[Mapping]) -> None:
        """InputError for the first record with a missing, unknown or wrongly typed feature (null is allowed)."""
        known = {spec.name: spec for spec in self.inputs}
        for row, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise InputError("", f"a record must map feature names to values, got {type(record).__name__}", row)
            for name in record:
                if name not in known:
                    raise InputError(name, f"is not a feature of this model; it reads {list(known)}", row)
            for name, spec in known.items():
                if name not in record:
                    raise InputError(name, "is missing (send null for a missing value)", row)
                value = record[name]
                if value is None:
                    continue
                if isinstance(spec, NumericInput):
                    if not isinstance(value, (int, float)) or (isinstance(value, float) and math.isinf(value)):
                        raise InputError(name, f"must be a number, got {type(value).__name__} {value!r:.40}", row)
                elif not isinstance(value, (str, int, bool)):
                    raise InputError(name, f"must be a category (a string), got {type(value).__name__}", row)

    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION,
                "inputs": [{key: list(value) if isinstance(value, tuple) else value for key, value in vars(spec).items()}
                           for spec in self.inputs]}

    @classmethod
    def from_dict(cls, document: Mapping) -> Preprocessor:
        if document.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported preprocessing format_version {document.get('format_version')!r}; "
                             f"this code reads {FORMAT_VERSION}")
        inputs: list[Input] = []
        for entry in document["inputs"]:
            entry = dict(entry)
            kind = entry.pop("kind")
            if kind == "numeric":
                inputs.append(NumericInput(name=entry["name"], mean=float(entry["mean"]), scale=float(entry["scale"])))
            elif kind == "categorical":
                inputs.append(CategoricalInput(name=entry["name"], categories=tuple(entry["categories"])))
            else:
                raise ValueError(f"unknown input kind {kind!r} in preprocessing; valid: ['numeric', 'categorical']")
        return cls(tuple(inputs))


def feature_columns(data) -> dict:
    """Name -> values of the features in `data`: a store table (`feature.<name>` columns; a table without
    any is read by its column names), a mapping of name -> values, or records (one dict per row)."""
    if isinstance(data, pa.Table):
        prefixed = [name for name in data.column_names if name.startswith(FEATURE_PREFIX)]
        if prefixed:
            return {name.removeprefix(FEATURE_PREFIX): data[name] for name in prefixed}
        return {name: data[name] for name in data.column_names}
    if isinstance(data, Mapping):
        return dict(data)
    if _is_records(data):
        names = sorted({name for record in data for name in record})
        return {name: [record.get(name) for record in data] for name in names}
    raise TypeError(f"feature values must be a pyarrow Table, a mapping of columns or a list of records, "
                    f"not {type(data).__name__}")


def _is_records(data) -> bool:
    return isinstance(data, Sequence) and not isinstance(data, (str, bytes)) and (
        len(data) == 0 or isinstance(data[0], Mapping))


def _length(values) -> int:
    return len(values)


def _holds_strings(values) -> bool:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pa.types.is_string(values.type) or pa.types.is_large_string(values.type) or pa.types.is_dictionary(values.type)
    array = np.asarray(values)
    if array.dtype.kind in "US":
        return True
    if array.dtype.kind == "O":
        present = [value for value in array.tolist() if value is not None]
        return bool(present) and isinstance(present[0], str)
    return False


def _floats(values, name: str) -> np.ndarray:
    try:
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        array = np.asarray(values, dtype=object if _has_none(values) else None)
        if array.dtype.kind == "O":
            array = np.array([np.nan if value is None else value for value in array.tolist()], dtype=np.float64)
        return array.astype(np.float64, copy=False)
    except (TypeError, ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise InputError(name, f"must be numeric ({error})") from None


def _has_none(values) -> bool:
    return isinstance(values, (list, tuple)) and any(value is None for value in values)


def _texts(values) -> list[str | None]:
    """Category values as text, the same whether they came from Arrow, numpy or JSON."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_pylist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    return [_text(value) for value in values]


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _fit_numeric(name: str, values) -> NumericInput:
    numbers = _floats(values, name)
    finite = numbers[np.isfinite(numbers)]
    if len(finite) == 0:
        raise InputError(name, "has no numeric values in the training data")
    scale = float(np.std(finite))
    return NumericInput(name=name, mean=float(np.mean(finite)), scale=scale if scale > 0 else 1.0)


def _fit_categorical(name: str, values) -> CategoricalInput:
    texts = [text for text in _texts(values) if text is not None]
    if not texts:
        raise InputError(name, "has no values in the training data")
    categories, counts = np.unique(np.asarray(texts, dtype=object).astype(str), return_counts=True)
    order = sorted(range(len(categories)), key=lambda i: (-counts[i], categories[i]))
    return CategoricalInput(name=name, categories=tuple(str(categories[i]) for i in order))
