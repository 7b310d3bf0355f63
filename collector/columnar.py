"""Raw Kafka values to one flat Arrow table per batch, without a Python object per good event.

Arrow's JSON reader parses a batch in C++ (~450k events/s here) where pydantic
manages ~65k. The rules are the schema's (`collector.schemas`); this module only
decides, cheaply, which rows certainly keep them:
- a value goes to Arrow only if it is one JSON object on one line that Arrow can
  safely read (it starts with `{`, and is not nested deeper than `MAX_BRACKETS`:
  a JSON `null` or a deeply nested value crashes pyarrow's reader);
- vectorised checks flag every row that might break a rule (a superset of the
  bad ones), and a batch Arrow cannot read at all (a value that changes type
  between rows, a duplicate key) is split in halves until the parts it can read
  are found;
- every other value, flagged or not read by Arrow, goes through the schema one
  by one (the per-event path), which accepts it or names the bad field.
So a good batch costs Arrow alone, a bad record costs itself, and both paths
accept exactly what the schema accepts.

The store's layout, the same from either path:
  event_id, request_id, timestamp (UTC), model_name, model_version, latency_ms,
  label (string), score, `proba.<class>`, `feature.<name>`, embedding   (predictions)
  event_id, request_id, timestamp (UTC), label (string), rating, source   (feedback)
  annotation, withdrawn (feedback of schema version 2 only; null in files without them)
plus kafka_partition, kafka_offset and kafka_timestamp (the record's time) on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from driftloop.collector.schemas import EventPolicy, InvalidEvent, decode

TIMESTAMP = pa.timestamp("us", tz="UTC")
# The canonical forms only (every encoder of ours writes one); any other time the schema judges alone.
CANONICAL_TIME = (r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
                  r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$")
INT64_LIMIT = 2.0**63  # a double this large may be an integer that does not fit in 64 bits
MAX_BRACKETS = 256  # more `{` and `[` than this in one value: the per-event path (orjson bounds the depth)
MIN_COLUMNAR = 32  # a part smaller than this that Arrow cannot read goes through the schema row by row
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
OUTPUT_FIELDS = ("label", "probabilities", "score")
SOURCES = ("user", "annotator", "system")


@dataclass(frozen=True)
class ParsedBatch:
    """The valid events of a batch as one table, and the index and error of each rejected one."""

    table: pa.Table
    rejected: list[tuple[int, InvalidEvent]]


def parse_batch(
    kind: str,
    values: list[bytes | None],
    partition: int,
    offsets: list[int],
    timestamps: list[int] | None = None,
    policy: EventPolicy | None = None,
) -> ParsedBatch:
    """Validate and flatten one batch of raw event values of `kind` from one Kafka partition.

    `timestamps` are the records' times (ms since the epoch), by which `policy.max_age` and
    `max_ahead` judge each event's time; without them the times are not judged.
    """
    policy = policy or EventPolicy()
    rows = np.arange(len(values))
    readable = np.array([_arrow_can_read(value) for value in values], dtype=bool)
    # A newline inside a JSON value can only be whitespace between tokens: a space reads the same.
    lines = [(value if b"\n" not in value else value.replace(b"\n", b" ")) if ok else b""
             for value, ok in zip(values, readable, strict=True)]
    tables, by_schema = [], list(rows[~readable])
    _columnar(kind, lines, rows[readable], policy, tables, by_schema)
    rejected = []
    if by_schema:
        table, bad = _per_event(kind, values, sorted(by_schema), policy)
        rejected.extend(bad)
        if table.num_rows:
            tables.append(table)
    table = _concat(tables) if tables else _empty().append_column("_row", pa.array([], pa.int64()))
    table, bad = _apply_policy(kind, table, timestamps, policy)
    rejected.extend(bad)
    rejected.sort(key=lambda item: item[0])
    return ParsedBatch(_with_position(table, partition, offsets, timestamps), rejected)


def _arrow_can_read(value) -> bool:
    """One JSON object Arrow's reader can take without crashing; anything else the schema judges."""
    return (
        type(value) is bytes
        and value[:1] == b"{"
        and value.count(b"{") + value.count(b"[") <= MAX_BRACKETS
        and b"\r" not in value
    )


def _columnar(kind: str, lines: list[bytes], rows: np.ndarray, policy: EventPolicy, tables: list, by_schema: list) -> None:
    """Append the flat table of the rows of `rows` that certainly keep the schema; the others to `by_schema`."""
    if not len(rows):
        return
    chunk = [lines[i] for i in rows]
    table = _read_json(chunk)
    if table is None:  # not one readable table: read each half on its own, down to small parts
        if len(rows) < 2 * MIN_COLUMNAR:
            by_schema.extend(rows)
            return
        half = len(rows) // 2
        _columnar(kind, lines, rows[:half], policy, tables, by_schema)
        _columnar(kind, lines, rows[half:], policy, tables, by_schema)
        return
    suspect = _suspect_rows(kind, table, chunk, policy)
    if suspect.any():
        by_schema.extend(rows[suspect])
        keep = ~suspect
        table, rows = table.filter(pa.array(keep)), rows[keep]
        if not len(rows):
            return
    try:
        flat = _flatten(kind, table)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # e.g. a time Arrow cannot cast
        by_schema.extend(rows)
        return
    tables.append(flat.append_column("_row", pa.array(rows, pa.int64())))


def _read_json(lines: list[bytes]) -> pa.Table | None:
    """One table of all values, or None when Arrow cannot read them as one table, one row each."""
    try:
        # A native buffer and one thread: the read then runs beside the fetch loop without the GIL.
        table = pajson.read_json(pa.BufferReader(b"\n".join(lines)), read_options=pajson.ReadOptions(use_threads=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    return table if table.num_rows == len(lines) else None  # two objects on one line make two rows


class _Flags:
    """The rows flagged so far; `flag` counts a null as suspect, `flag_if` as fine."""

    def __init__(self, table: pa.Table, lines: list[bytes]) -> None:
        self.suspect = np.zeros(table.num_rows, dtype=bool)
        self.lines = lines

    def flag(self, mask) -> None:
        self.suspect |= np.asarray(pc.fill_null(mask, True), dtype=bool)

    def flag_if(self, mask) -> None:
        self.suspect |= np.asarray(pc.fill_null(mask, False), dtype=bool)

    def all(self) -> None:
        self.suspect[:] = True

    def forbidden(self, column, name: str) -> None:
        """A key the schema refuses: rows that hold it, and rows that may hold it as null (Arrow cannot tell)."""
        self.flag_if(pc.is_valid(column))
        self.null_but_present(column, name)

    def null_but_present(self, column, name: str) -> None:
        """Rows where `name` is null: absent (often fine) or an explicit null (often not); the schema decides."""
        nulls = np.asarray(pc.is_null(column), dtype=bool) if column.type != pa.null() else np.ones(len(self.suspect), bool)
        if not nulls.any():
            return
        needle = orjson.dumps(name)
        for index in np.flatnonzero(nulls & ~self.suspect):
            line = self.lines[index]
            if needle in line or b"\\" in line:  # an escaped key could spell the name another way
                self.suspect[index] = True


def _suspect_rows(kind: str, table: pa.Table, lines: list[bytes], policy: EventPolicy) -> np.ndarray:
    """Rows that may break the schema. A superset of the invalid ones: the schema decides."""
    flags = _Flags(table, lines)
    for name in table.column_names:
        if name not in COLUMNS[kind]:
            flags.forbidden(table[name], name)
    for name in REQUIRED[kind]:
        if name not in table.column_names:
            flags.all()
            return flags.suspect
        flags.flag(pc.is_null(table[name]))
    for name, longest in MAX_LENGTH.items():
        if name in table.column_names:
            _check_string(table[name], 1, longest, flags)
    if "schema_version" in table.column_names:
        column = table["schema_version"]
        if column.type == pa.int64():
            flags.flag_if(pc.not_equal(column, 1))
        else:
            flags.flag_if(pc.is_valid(column))
        flags.null_but_present(column, "schema_version")
    timestamp = table["timestamp"]
    if timestamp.type == pa.string():
        canonical = pc.fill_null(pc.match_substring_regex(timestamp, CANONICAL_TIME), False)
        flags.flag(pc.invert(canonical))
        year = pc.cast(pc.utf8_slice_codeunits(pc.if_else(canonical, timestamp, "2000"), 0, 4), pa.int64())
        flags.flag_if(pc.or_(pc.less_equal(year, 1970), pc.greater_equal(year, 9998)))  # near the edges: the schema
    else:
        flags.all()
        return flags.suspect
    if kind == "prediction":
        _check_prediction(table, flags, policy)
    else:
        _check_feedback(table, flags)
    return flags.suspect


def _check_string(column, shortest: int, longest: int, flags: _Flags) -> None:
    if column.type != pa.string():
        flags.flag_if(pc.is_valid(column))
        return
    length = pc.utf8_length(column)
    flags.flag_if(pc.or_(pc.less(length, shortest), pc.greater(length, longest)))


def _check_number(column, flags: _Flags, minimum: float | None = None) -> None:
    """A nullable number: an int64 or a finite double, at least `minimum`."""
    if column.type == pa.null():
        return
    if column.type not in NUMBER_TYPES:
        flags.flag_if(pc.is_valid(column))
        return
    if column.type == pa.float64():
        flags.flag_if(pc.invert(pc.is_finite(column)))
    if minimum is not None:
        flags.flag_if(pc.less(column, minimum))


def _check_label(column, flags: _Flags) -> None:
    if column.type == pa.string():
        length = pc.utf8_length(column)
        flags.flag_if(pc.or_(pc.less(length, 1), pc.greater(length, 256)))
    elif column.type not in (pa.int64(), pa.null()):
        flags.flag_if(pc.is_valid(column))


def _check_prediction(table: pa.Table, flags: _Flags, policy: EventPolicy) -> None:
    features = table["features"]
    if not pa.types.is_struct(features.type) or features.type.num_fields == 0:
        flags.flag_if(pc.is_valid(features))
    elif features.type.num_fields > policy.max_features:  # which rows hold how many keys, only the schema can count
        flags.all()
    else:
        _check_features(features, flags)
    if "latency_ms" in table.column_names:
        _check_number(table["latency_ms"], flags, minimum=0)
    if "embedding" in table.column_names:
        _check_embedding(table["embedding"], flags)
    output = table["output"]
    if not pa.types.is_struct(output.type):
        flags.flag_if(pc.is_valid(output))
        return
    said = None
    for field in output.type:
        child = pc.struct_field(output, field.name)
        if field.name == "label":
            _check_label(child, flags)
        elif field.name == "score":
            _check_number(child, flags)
        elif field.name == "probabilities":
            _check_probabilities(child, flags)
        else:
            flags.forbidden(child, field.name)
        if field.name in OUTPUT_FIELDS:
            said = pc.is_valid(child) if said is None else pc.or_(said, pc.is_valid(child))
    flags.flag(pc.invert(said) if said is not None else pc.is_valid(output))


def _check_features(features, flags: _Flags) -> None:
    """Each feature: a number (finite; a double that may hide a too-large integer is flagged), bool, text or null."""
    all_null = None
    for field, child in zip(features.type, _children(features), strict=True):
        if field.type not in FEATURE_TYPES or not 1 <= len(field.name) <= 256:
            flags.forbidden(child, field.name)
        elif field.type == pa.float64():
            flags.flag_if(pc.or_(pc.invert(pc.is_finite(child)), pc.greater_equal(pc.abs(child), INT64_LIMIT)))
        all_null = pc.is_null(child) if all_null is None else pc.and_(all_null, pc.is_null(child))
    flags.flag(all_null)  # {} is invalid, {"a": null} is not: let the schema tell them apart


def _children(struct) -> list:
    """The child arrays of a struct column, each with the parent's nulls applied (one pass, not one per field)."""
    if not isinstance(struct, pa.ChunkedArray):
        return struct.flatten()
    per_chunk = [chunk.flatten() for chunk in struct.chunks]
    return [pa.chunked_array([children[i] for children in per_chunk], type=field.type)
            for i, field in enumerate(struct.type)]


def _check_embedding(embedding, flags: _Flags) -> None:
    if embedding.type == pa.null():
        return
    if not pa.types.is_list(embedding.type) or embedding.type.value_type not in NUMBER_TYPES:
        flags.flag_if(pc.is_valid(embedding))
        return
    array = _one_array(embedding)
    flags.flag_if(pc.greater(pc.list_value_length(array), 65536))
    values = pc.list_flatten(array)
    bad = pc.is_null(values)
    if values.type == pa.float64():
        bad = pc.or_(bad, pc.invert(pc.fill_null(pc.is_finite(values), True)))
    bad = np.asarray(bad, dtype=bool)
    if bad.any():
        parents = np.asarray(pc.list_parent_indices(array))
        flags.suspect[np.unique(parents[bad])] = True


def _one_array(column) -> pa.Array:
    if not isinstance(column, pa.ChunkedArray):
        return column
    if column.num_chunks == 1:
        return column.chunk(0)
    return pa.concat_arrays(column.chunks) if column.num_chunks else pa.array([], column.type)


def _check_probabilities(column, flags: _Flags) -> None:
    if column.type == pa.null():
        return
    if not pa.types.is_struct(column.type) or column.type.num_fields == 0:
        flags.flag_if(pc.is_valid(column))
        return
    total = None
    for field, child in zip(column.type, _children(column), strict=True):
        if field.type not in NUMBER_TYPES or len(field.name) > 256:
            flags.forbidden(child, field.name)
            continue
        valid = pc.is_valid(column)
        flags.flag_if(pc.and_(valid, pc.is_null(child)))  # a class absent from this row, or a null: the schema decides
        if field.type == pa.float64():
            flags.flag_if(pc.invert(pc.is_finite(child)))
        flags.flag_if(pc.or_(pc.less(child, 0), pc.greater(child, 1)))
        value = pc.fill_null(pc.cast(child, pa.float64()), 0.0)
        total = value if total is None else pc.add(total, value)
    if total is not None:
        flags.flag_if(pc.and_(pc.is_valid(column), pc.greater(pc.abs(pc.subtract(total, 1.0)), 1e-3)))


def _check_feedback(table: pa.Table, flags: _Flags) -> None:
    label = table["label"] if "label" in table.column_names else None
    rating = table["rating"] if "rating" in table.column_names else None
    if label is not None:
        _check_label(label, flags)
    if rating is not None:
        _check_number(rating, flags)
    has_label = pc.is_valid(label) if label is not None else pa.array(np.zeros(table.num_rows, bool))
    has_rating = pc.is_valid(rating) if rating is not None else pa.array(np.zeros(table.num_rows, bool))
    flags.flag(pc.invert(pc.or_(has_label, has_rating)))
    if "source" in table.column_names:
        source = table["source"]
        if source.type == pa.string():
            flags.flag_if(pc.invert(pc.is_in(source, pa.array(SOURCES))))
        else:
            flags.flag_if(pc.is_valid(source))
        flags.null_but_present(source, "source")  # an explicit null is not a source


def _flatten(kind: str, table: pa.Table) -> pa.Table:
    """The store's flat layout from a validated table of either kind."""
    n = table.num_rows
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "event_id": table["event_id"],
        "request_id": table["request_id"],
        "timestamp": pc.cast(table["timestamp"], TIMESTAMP),
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
            for field, child in zip(probabilities.type, _children(probabilities), strict=True):
                columns[f"proba.{field.name}"] = pc.cast(child, pa.float64())
    features = table["features"]
    for field, child in zip(features.type, _children(features), strict=True):
        columns[f"feature.{field.name}"] = child
    embedding = table["embedding"] if "embedding" in table.column_names else None
    if embedding is not None and pa.types.is_list(embedding.type):
        columns["embedding"] = pc.cast(embedding, pa.list_(pa.float64()))
    return pa.table(columns)


def _column(table: pa.Table, name: str, type_: pa.DataType, n: int):
    return pc.cast(table[name], type_) if name in table.column_names else pa.nulls(n, type_)


def _as_string(table: pa.Table, name: str, n: int):
    return pc.cast(table[name], pa.string()) if name in table.column_names else pa.nulls(n, pa.string())


def _per_event(kind: str, values: list, rows: list[int], policy: EventPolicy) -> tuple[pa.Table, list]:
    """The slow path: the schema validates each value; the valid ones are flattened in Python."""
    flat, kept, rejected = [], [], []
    for index in rows:
        value = values[index]
        if value is None:
            rejected.append((index, InvalidEvent("", "a tombstone: the record has no value", "not_an_object")))
            continue
        try:
            event = decode(kind, value)
        except InvalidEvent as error:
            rejected.append((index, error))
            continue
        if kind == "prediction" and (problem := policy.features_problem(len(event.features))):
            rejected.append((index, InvalidEvent("features", problem)))
            continue
        flat.append(_flat_row(kind, event))
        kept.append(index)
    if not flat:
        return _empty().append_column("_row", pa.array([], pa.int64())), rejected
    rows = _unmix_types(flat)
    names = dict.fromkeys(name for row in rows for name in row)  # every row's columns (from_pylist takes the first's)
    table = _with_store_types(pa.Table.from_pydict({name: [row.get(name) for row in rows] for name in names}))
    return table.append_column("_row", pa.array(kept, pa.int64())), rejected


def _flat_row(kind: str, event) -> dict:
    row = {"event_id": event.event_id, "request_id": event.request_id, "timestamp": event.timestamp}
    if kind == "feedback":
        label = None if event.label is None else str(event.label)
        row |= {"label": label, "rating": event.rating, "source": event.source}
        if event.schema_version >= 2:  # the annotation a label came from, and withdrawals of it
            row |= {"annotation": event.annotation, "withdrawn": event.withdrawn}
        return row
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
        row["embedding"] = [float(value) for value in event.embedding]
    return row


def _kind_of(value) -> type:
    return bool if isinstance(value, bool) else str if isinstance(value, str) else type(value)


def _unmix_types(rows: list[dict]) -> list[dict]:
    """A feature that is a number in one event and text in another is stored as text; int and float as float."""
    kinds: dict[str, set[type]] = {}
    for row in rows:
        for name, value in row.items():
            if name.startswith("feature.") and value is not None:
                kinds.setdefault(name, set()).add(_kind_of(value))
    as_text = {name for name, seen in kinds.items() if len(seen - {int, float}) and len(seen) > 1}
    as_float = {name for name, seen in kinds.items() if seen == {int, float}}
    if not as_text and not as_float:
        return rows
    def unmixed(name, value):
        if value is None:
            return None
        return str(value) if name in as_text else float(value) if name in as_float else value
    return [{k: unmixed(k, v) for k, v in row.items()} for row in rows]


STORE_TYPES = {"timestamp": TIMESTAMP, "label": pa.string(), "score": pa.float64(), "latency_ms": pa.float64(),
               "rating": pa.float64(), "source": pa.string(), "embedding": pa.list_(pa.float64()),
               "annotation": pa.string(), "withdrawn": pa.bool_()}


def _with_store_types(table: pa.Table) -> pa.Table:
    """The fast path's column types, where Python values left Arrow to guess (all-null columns)."""
    for name, type_ in STORE_TYPES.items():
        if name in table.column_names:
            table = table.set_column(table.schema.get_field_index(name), name, pc.cast(table[name], type_))
    return table


def _concat(tables: list[pa.Table]) -> pa.Table:
    """One table of the parts of a batch, rows back in their order."""
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(unify(tables), promote_options="permissive")
    return table.take(pc.sort_indices(table["_row"]))


def unify(tables: list[pa.Table]) -> list[pa.Table]:
    """Tables whose columns can be concatenated: a column that is text in one and a number or bool in another is text."""
    types: dict[str, set] = {}
    for table in tables:
        for field in table.schema:
            if field.type != pa.null():
                types.setdefault(field.name, set()).add(_arrow_kind(field.type))
    mixed = {name for name, kinds in types.items() if len(kinds) > 1}
    return [_as_text(table, mixed) for table in tables] if mixed else tables


def _arrow_kind(type_: pa.DataType) -> str:
    if pa.types.is_boolean(type_):
        return "bool"
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return "str"
    if pa.types.is_integer(type_) or pa.types.is_floating(type_):
        return "number"
    return str(type_)


def _as_text(table: pa.Table, names: set[str]) -> pa.Table:
    for name in names & set(table.column_names):
        values = [None if v is None else str(v) for v in table[name].to_pylist()]
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(values, pa.string()))
    return table


def _apply_policy(kind: str, table: pa.Table, timestamps: list[int] | None, policy: EventPolicy) -> tuple[pa.Table, list]:
    """Drop the rows whose model name or time the deployment's policy refuses; (kept, rejected)."""
    if table.num_rows == 0:
        return table, []
    refused: dict[int, InvalidEvent] = {}
    rows = table["_row"].to_numpy()
    if kind == "prediction" and (policy.model_names or policy.model_name_pattern is not None):
        for name in pc.unique(table["model_name"]).to_pylist():
            if problem := policy.model_name_problem(name):
                for index in np.flatnonzero(np.asarray(pc.equal(table["model_name"], name), dtype=bool)):
                    refused[int(rows[index])] = InvalidEvent("model_name", problem)
    if timestamps is not None:
        event_us = pc.cast(table["timestamp"], pa.int64()).to_numpy()
        clock_us = np.asarray(timestamps, dtype=np.int64)[rows] * 1000
        early = event_us < clock_us - int(policy.max_age.total_seconds() * 1e6)
        late = event_us > clock_us + int(policy.max_ahead.total_seconds() * 1e6)
        for index in np.flatnonzero(early | late):
            moment = datetime.fromtimestamp(event_us[index] / 1e6, UTC)
            clock = datetime.fromtimestamp(clock_us[index] / 1e6, UTC)
            refused.setdefault(int(rows[index]), InvalidEvent("timestamp", policy.time_problem(moment, clock)))
    if not refused:
        return table, []
    keep = np.array([int(row) not in refused for row in rows], dtype=bool)
    return table.filter(pa.array(keep)), sorted(refused.items())


def _with_position(table: pa.Table, partition: int, offsets: list[int], timestamps: list[int] | None) -> pa.Table:
    rows = table["_row"].to_numpy() if table.num_rows else np.zeros(0, np.int64)
    table = table.drop_columns(["_row"])
    table = table.append_column("kafka_partition", pa.array(np.full(table.num_rows, partition, np.int32)))
    table = table.append_column("kafka_offset", pa.array(np.asarray(offsets, dtype=np.int64)[rows], pa.int64()))
    if timestamps is None:
        moments = pa.nulls(table.num_rows, TIMESTAMP)
    else:
        moments = pa.array(np.asarray(timestamps, dtype=np.int64)[rows] * 1000, pa.int64()).cast(TIMESTAMP)
    return table.append_column("kafka_timestamp", moments)


def _empty() -> pa.Table:
    fields = [("event_id", pa.string()), ("request_id", pa.string()), ("timestamp", TIMESTAMP)]
    return pa.schema(fields).empty_table()
