"""Raw Kafka values to one flat Arrow table per batch, without a Python object per event.

Arrow's JSON reader parses a batch in C++ (~450k events/s here) where pydantic
manages ~65k. Vectorised checks flag every row that might break the schema;
only those rows go through `collector.schemas` (the authority), which accepts
them or names the bad field. A batch Arrow cannot read at all (garbage bytes,
a value that changes type between rows) is parsed row by row instead.

The store's layout, the same from either path:
  event_id, request_id, timestamp (UTC), model_name, model_version, latency_ms,
  label (string), score, `proba.<class>`, `feature.<name>`, embedding   (predictions)
  event_id, request_id, timestamp (UTC), label (string), rating, source   (feedback)
plus kafka_partition and kafka_offset on both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from driftloop.collector.schemas import InvalidEvent, decode

TIMESTAMP = pa.timestamp("us", tz="UTC")
AWARE_ISO8601 = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|z|[+-]\d{2}(:?\d{2})?)$"
NUMBER_TYPES = (pa.int64(), pa.float64())
FEATURE_TYPES = (pa.int64(), pa.float64(), pa.bool_(), pa.string(), pa.null())
COLUMNS = {
    "prediction": {"schema_version", "event_id", "request_id", "timestamp", "model_name", "model_version",
                   "features", "embedding", "output", "latency_ms"},
    "feedback": {"schema_version", "event_id", "request_id", "timestamp", "label", "rating", "source"},
}
REQUIRED = {
    "prediction": ("event_id", "request_id", "timestamp", "model_name", "model_version", "features", "output"),
    "feedback": ("event_id", "request_id", "timestamp"),
}
MAX_LENGTH = {"event_id": 128, "request_id": 128, "model_name": 256, "model_version": 128}
SOURCES = ("user", "annotator", "system")


@dataclass(frozen=True)
class ParsedBatch:
    """The valid events of a batch as one table, and the index and error of each rejected one."""

    table: pa.Table
    rejected: list[tuple[int, InvalidEvent]]


def parse_batch(kind: str, values: list[bytes], partition: int, offsets: list[int]) -> ParsedBatch:
    """Validate and flatten one batch of raw event values of `kind` from one Kafka partition."""
    table = _read_json(values)
    if table is None:
        return _row_by_row(kind, values, partition, offsets)
    suspects = np.flatnonzero(_suspect_rows(kind, table))
    rejected = []
    for index in suspects:
        try:
            decode(kind, values[index])
        except InvalidEvent as error:
            rejected.append((int(index), error))
    keep = np.ones(len(values), dtype=bool)
    keep[[index for index, _ in rejected]] = False
    if len(suspects) and not keep.all():
        table = table.filter(pa.array(keep))
    try:
        flat = _flatten(kind, table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return _row_by_row(kind, values, partition, offsets)  # a suspect row the schema accepted but Arrow cannot hold
    kept_offsets = pa.array(np.asarray(offsets)[keep], pa.int64())
    return ParsedBatch(_with_position(flat, partition, kept_offsets), rejected)


def _read_json(values: list[bytes]) -> pa.Table | None:
    """One table of all values, or None if any value is not one JSON object on one line."""
    lines = b"\n".join(values)
    if lines.count(b"\n") != len(values) - 1:  # a value spanning lines would shift every row after it
        return None
    try:
        # A native buffer and one thread: the read then runs beside the fetch loop without the GIL.
        table = pajson.read_json(pa.BufferReader(lines), read_options=pajson.ReadOptions(use_threads=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == len(values) else None  # an empty value is a skipped line


def _suspect_rows(kind: str, table: pa.Table) -> np.ndarray:
    """Rows that may break the schema. A superset of the invalid ones: the schema decides."""
    suspect = np.zeros(table.num_rows, dtype=bool)

    def flag(mask) -> None:
        nonlocal suspect
        suspect |= np.asarray(pc.fill_null(mask, True), dtype=bool)

    for name in table.column_names:
        if name not in COLUMNS[kind]:
            flag(pc.is_valid(table[name]))
    for name in REQUIRED[kind]:
        if name not in table.column_names:
            return np.ones(table.num_rows, dtype=bool)
        flag(pc.is_null(table[name]))
    for name, longest in MAX_LENGTH.items():
        if name in table.column_names:
            _check_string(table[name], 1, longest, flag)
    if "schema_version" in table.column_names:
        column = table["schema_version"]
        flag(pc.is_valid(column) if column.type != pa.int64() else pc.not_equal(column, 1))
    timestamp = table["timestamp"]
    if timestamp.type == pa.string():
        flag(pc.invert(pc.match_substring_regex(timestamp, AWARE_ISO8601)))
    else:
        flag(pc.is_valid(timestamp))
    if kind == "prediction":
        _check_prediction(table, flag)
    else:
        _check_feedback(table, flag)
    return suspect


def _check_string(column: pa.ChunkedArray, shortest: int, longest: int, flag) -> None:
    if column.type != pa.string():
        flag(pc.is_valid(column))
        return
    length = pc.utf8_length(column)
    flag(pc.or_(pc.less(length, shortest), pc.greater(length, longest)))


def _check_number(column: pa.ChunkedArray, flag, minimum: float | None = None) -> None:
    if column.type == pa.null():
        return
    if column.type not in NUMBER_TYPES:
        flag(pc.is_valid(column))
    elif minimum is not None:
        flag(pc.less(column, minimum))


def _check_label(column: pa.ChunkedArray, flag) -> None:
    if column.type == pa.string():
        flag(pc.greater(pc.utf8_length(column), 256))
    elif column.type not in (pa.int64(), pa.null()):
        flag(pc.is_valid(column))


def _check_prediction(table: pa.Table, flag) -> None:
    features = table["features"]
    if not pa.types.is_struct(features.type) or features.type.num_fields == 0:
        flag(pc.is_valid(features))
    else:
        all_null = None
        for field in features.type:
            child = pc.struct_field(features, field.name)
            if field.type not in FEATURE_TYPES or not 1 <= len(field.name) <= 256:
                flag(pc.is_valid(child))
            all_null = pc.is_null(child) if all_null is None else pc.and_(all_null, pc.is_null(child))
        flag(all_null)  # {} is invalid, {"a": null} is not: let the schema tell them apart
    if "latency_ms" in table.column_names:
        _check_number(table["latency_ms"], flag, minimum=0)
    if "embedding" in table.column_names:
        embedding = table["embedding"]
        if embedding.type != pa.null():
            if not pa.types.is_list(embedding.type) or embedding.type.value_type not in NUMBER_TYPES:
                flag(pc.is_valid(embedding))
            else:
                flag(pc.greater(pc.list_value_length(embedding), 65536))
    output = table["output"]
    if not pa.types.is_struct(output.type):
        flag(pc.is_valid(output))
        return
    said = None
    for field in output.type:
        child = pc.struct_field(output, field.name)
        if field.name == "label":
            _check_label(child, flag)
        elif field.name == "score":
            _check_number(child, flag)
        elif field.name == "probabilities":
            _check_probabilities(child, flag)
        else:
            flag(pc.is_valid(child))
        said = pc.is_valid(child) if said is None else pc.or_(said, pc.is_valid(child))
    flag(pc.invert(said) if said is not None else pc.is_valid(output))


def _check_probabilities(column: pa.ChunkedArray, flag) -> None:
    if column.type == pa.null():
        return
    if not pa.types.is_struct(column.type) or column.type.num_fields == 0:
        flag(pc.is_valid(column))
        return
    total = None
    for field in column.type:
        child = pc.struct_field(column, field.name)
        if field.type not in NUMBER_TYPES or len(field.name) > 256:
            flag(pc.is_valid(child))
            continue
        flag(pc.or_(pc.less(child, 0), pc.greater(child, 1)))
        value = pc.fill_null(pc.cast(child, pa.float64()), 0.0)
        total = value if total is None else pc.add(total, value)
    if total is not None:
        flag(pc.and_(pc.is_valid(column), pc.greater(pc.abs(pc.subtract(total, 1.0)), 1e-3)))


def _check_feedback(table: pa.Table, flag) -> None:
    label = table["label"] if "label" in table.column_names else None
    rating = table["rating"] if "rating" in table.column_names else None
    if label is not None:
        _check_label(label, flag)
    if rating is not None:
        _check_number(rating, flag)
    has_label = pc.is_valid(label) if label is not None else pa.array(np.zeros(table.num_rows, bool))
    has_rating = pc.is_valid(rating) if rating is not None else pa.array(np.zeros(table.num_rows, bool))
    flag(pc.invert(pc.or_(has_label, has_rating)))
    if "source" in table.column_names:
        source = table["source"]
        if source.type == pa.string():
            flag(pc.invert(pc.is_in(source, pa.array(SOURCES))))
        else:
            flag(pc.is_valid(source))


def _flatten(kind: str, table: pa.Table) -> pa.Table:
    """The store's flat layout from a validated table of either kind."""
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "event_id": table["event_id"],
        "request_id": table["request_id"],
        "timestamp": pc.cast(pc.utf8_replace_slice(table["timestamp"], 10, 11, "T"), TIMESTAMP),
    }
    if kind == "feedback":
        columns["label"] = _as_string(table, "label", n)
        columns["rating"] = _column(table, "rating", pa.float64(), n)
        source = table["source"] if "source" in table.column_names else pa.nulls(n, pa.string())
        columns["source"] = pc.fill_null(pc.cast(source, pa.string()), "user")
        return pa.table(columns)
    columns["model_name"] = table["model_name"]
    columns["model_version"] = table["model_version"]
    columns["latency_ms"] = _column(table, "latency_ms", pa.float64(), n)
    output = table["output"]
    names = {field.name for field in output.type}
    columns["label"] = pc.cast(pc.struct_field(output, "label"), pa.string()) if "label" in names else pa.nulls(n, pa.string())
    columns["score"] = pc.cast(pc.struct_field(output, "score"), pa.float64()) if "score" in names else pa.nulls(n, pa.float64())
    if "probabilities" in names:
        probabilities = pc.struct_field(output, "probabilities")
        if pa.types.is_struct(probabilities.type):
            for field in probabilities.type:
                columns[f"proba.{field.name}"] = pc.cast(pc.struct_field(probabilities, field.name), pa.float64())
    for field in table["features"].type:
        columns[f"feature.{field.name}"] = pc.struct_field(table["features"], field.name)
    embedding = table["embedding"] if "embedding" in table.column_names else None
    if embedding is not None and pa.types.is_list(embedding.type):
        columns["embedding"] = pc.cast(embedding, pa.list_(pa.float64()))
    return pa.table(columns)


def _column(table: pa.Table, name: str, type_: pa.DataType, n: int):
    return pc.cast(table[name], type_) if name in table.column_names else pa.nulls(n, type_)


def _as_string(table: pa.Table, name: str, n: int):
    return pc.cast(table[name], pa.string()) if name in table.column_names else pa.nulls(n, pa.string())


def _with_position(table: pa.Table, partition: int, offsets: pa.Array) -> pa.Table:
    table = table.append_column("kafka_partition", pa.array(np.full(table.num_rows, partition, np.int32)))
    return table.append_column("kafka_offset", offsets)


def _row_by_row(kind: str, values: list[bytes], partition: int, offsets: list[int]) -> ParsedBatch:
    """The slow path: the schema validates each value; the valid ones are flattened in Python."""
    rows, kept, rejected = [], [], []
    for index, value in enumerate(values):
        try:
            event = decode(kind, value)
        except InvalidEvent as error:
            rejected.append((index, error))
            continue
        rows.append(_flat_row(kind, event))
        kept.append(offsets[index])
    table = _with_store_types(pa.Table.from_pylist(_unmix_types(rows))) if rows else _empty()
    return ParsedBatch(_with_position(table, partition, pa.array(kept, pa.int64())), rejected)


def _flat_row(kind: str, event) -> dict:
    row = {"event_id": event.event_id, "request_id": event.request_id, "timestamp": event.timestamp}
    if kind == "feedback":
        label = None if event.label is None else str(event.label)
        return {**row, "label": label, "rating": event.rating, "source": event.source}
    output = event.output
    row |= {
        "model_name": event.model_name,
        "model_version": event.model_version,
        "latency_ms": event.latency_ms,
        "label": None if output.label is None else str(output.label),
        "score": output.score,
    }
    row |= {f"proba.{name}": float(p) for name, p in (output.probabilities or {}).items()}
    row |= {f"feature.{name}": value for name, value in event.features.items()}
    if event.embedding is not None:
        row["embedding"] = event.embedding
    return row


def _unmix_types(rows: list[dict]) -> list[dict]:
    """A feature that is a number in one event and text in another is stored as text."""
    kinds: dict[str, set[type]] = {}
    for row in rows:
        for name, value in row.items():
            if name.startswith("feature.") and value is not None:
                kinds.setdefault(name, set()).add(bool if isinstance(value, bool) else str if isinstance(value, str) else float)
    mixed = {name for name, seen in kinds.items() if len(seen) > 1}
    if not mixed:
        return rows
    return [{k: (str(v) if k in mixed and v is not None else v) for k, v in row.items()} for row in rows]


STORE_TYPES = {"timestamp": TIMESTAMP, "label": pa.string(), "score": pa.float64(), "latency_ms": pa.float64(),
               "rating": pa.float64(), "source": pa.string()}


def _with_store_types(table: pa.Table) -> pa.Table:
    """The fast path's column types, where Python values left Arrow to guess (all-null columns)."""
    for name, type_ in STORE_TYPES.items():
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, pc.cast(table[name], type_))
    return table


def _empty() -> pa.Table:
    fields = [("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", TIMESTAMP)]
    return pa.schema(fields).empty_table()
