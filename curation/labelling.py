"""The labelling round trip: batches out to annotators, their labels back into Kafka as feedback.

Out: Label Studio import JSON (each task carries the model's answer as a
pre-annotation, and a labelling config is written next to it), CSV or
Parquet. In: a Label Studio JSON export, or a CSV with `request_id` and
`label` columns. A file is checked whole before anything is sent: one bad
row stops the import with an error naming the row and the field, and no
label of the file reaches Kafka. Each label becomes a feedback event with
source "annotator" and an id derived from its content, so importing the same
file twice stores each label once; a Label Studio annotation gets the id its webhook gives it
(collector.label_studio), so a label that came by webhook or `curate sync` is not stored again.

Files are streamed, never loaded whole: `read_labels` checks the file in one
pass and keeps only each labelled request id (to catch a request labelled
twice); `ImportedLabels.iter_events` reads it again to send.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from driftloop.collector.durable import durable_producer
from driftloop.collector.label_studio import FROM_NAME, LABEL_NAMESPACE, TO_NAME, annotation_event_id, annotation_key
from driftloop.collector.schemas import FeedbackEvent, FeedbackEventV2, encode
from driftloop.curation.batches import Batch, BatchLedger

__all__ = [
    "EXPORT_FORMATS", "LabelFileError", "ImportedLabels", "export_batch", "read_labels", "send_labels",
]

EXPORT_FORMATS = ("label-studio", "csv", "parquet")


class LabelFileError(ValueError):
    """A label file that cannot be imported; `row` counts from 1 (a CSV's header is row 0)."""

    def __init__(self, path: Path, row: int | None, field: str, reason: str) -> None:
        where = f"row {row}, " if row is not None else ""
        super().__init__(f"{path}: {where}field {field!r}: {reason}. Nothing of this file was sent.")
        self.row = row
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class ImportedLabels:
    """A checked label file: how many labels it gives, how many rows had no label yet, and the events, streamed."""

    count: int
    unlabelled_rows: int
    _events: Callable[[], Iterator[FeedbackEvent]] = field(repr=False)

    def iter_events(self) -> Iterator[FeedbackEvent]:
        """The feedback events, read from the file again (raises LabelFileError if it changed since the check)."""
        return self._events()

    @property
    def events(self) -> tuple[FeedbackEvent, ...]:
        """All the events at once: for small files (a large one is better sent with `iter_events`)."""
        return tuple(self.iter_events())


def export_batch(batch: Batch, path: Path, fmt: str) -> list[Path]:
    """Write `batch` to `path` as `fmt` (one of EXPORT_FORMATS); the paths written."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Invalid format {fmt!r}. Valid values are: {list(EXPORT_FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(_for_annotators(batch), path)
        return [path]
    if fmt == "csv":
        pacsv.write_csv(_for_annotators(batch), path)
        return [path]
    tasks = [_task(batch, row) for row in batch.rows.to_pylist()]
    path.write_bytes(orjson.dumps(tasks, option=orjson.OPT_INDENT_2))
    config = path.with_name(f"{path.stem}.label_config.xml")
    config.write_text(label_studio_config(_classes(batch)))
    return [path, config]


def label_studio_config(classes: list[str]) -> str:
    """A Label Studio labelling config: the input's features as a table, one choice per class."""
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Table name="{TO_NAME}" value="$features"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>\n"
    )


def read_labels(path: Path, ledger: BatchLedger, now: datetime | None = None) -> ImportedLabels:
    """Check a Label Studio JSON export or a label CSV whole, streaming it, and describe the feedback it gives.

    Every labelled row must name a request sent for labelling in one of the
    ledger's batches, with a label among that batch's classes (when the model
    logged class probabilities). Rows without a label yet are counted, not
    sent. Raises LabelFileError naming the first bad row and field.
    """
    path = Path(path)
    if path.suffix.lower() not in (".json", ".csv"):
        raise LabelFileError(path, None, "path", "expected a Label Studio JSON export (.json) or a CSV (.csv)")
    allowed = _allowed_labels(ledger)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    unlabelled: list[int] = []
    count = sum(1 for _ in _events(path, allowed, now, unlabelled))
    checked = _fingerprint(path)

    def events() -> Iterator[FeedbackEvent]:
        if _fingerprint(path) != checked:
            raise LabelFileError(path, None, "file", "changed since it was checked; check it again")
        return _events(path, allowed, now, [])

    return ImportedLabels(count, unlabelled[0], events)


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _events(path: Path, allowed: dict[str, set[str]], now: datetime, unlabelled_out: list) -> Iterator[FeedbackEvent]:
    """The file's feedback events, each row checked; the count of unlabelled rows lands in `unlabelled_out`."""
    rows = _label_studio_rows(path) if path.suffix.lower() == ".json" else _csv_rows(path)
    unlabelled, seen = 0, {}
    for row, request_id, label, labelled_at, annotation in rows:
        if not request_id:
            raise LabelFileError(path, row, "request_id", "missing")
        if request_id not in allowed:
            raise LabelFileError(path, row, "request_id", f"{request_id!r} was not sent for labelling in any batch")
        if label is None or label == "":
            unlabelled += 1
            continue
        classes = allowed[request_id]
        if classes and label not in classes:
            raise LabelFileError(path, row, "label", f"{label!r} is not a class of the model: {sorted(classes)}")
        if request_id in seen:
            raise LabelFileError(path, row, "request_id", f"{request_id!r} is labelled twice (also row {seen[request_id]})")
        seen[request_id] = row
        if annotation is not None and labelled_at is not None:  # a Label Studio annotation: the webhook's id
            yield FeedbackEventV2(event_id=annotation_event_id(request_id, label, annotation, labelled_at),
                                  request_id=request_id, label=label, source="annotator", timestamp=labelled_at,
                                  annotation=annotation_key(annotation))
            continue
        event_id = uuid.uuid5(LABEL_NAMESPACE, f"{request_id}\n{label}\n{annotation}").hex
        yield FeedbackEvent(event_id=event_id, request_id=request_id, label=label, source="annotator",
                            timestamp=labelled_at or now)
    unlabelled_out.append(unlabelled)


def send_labels(bootstrap_servers: str, topic: str, events: Iterable[FeedbackEvent], timeout_s: float = 60.0) -> int:
    """Send feedback events to Kafka, streaming, and wait until every one is acknowledged (acks=all); the count sent.

    The producer recovers from a broker restart by itself (collector.durable); a send Kafka
    still refuses after `timeout_s` raises its error.
    """
    producer = durable_producer(bootstrap_servers, linger_ms=20, delivery_timeout_ms=int(timeout_s * 1000),
                                request_timeout_ms=min(30_000, int(timeout_s * 1000) - 20))
    failures: list[Exception] = []
    sent = 0
    try:
        for event in events:
            future = producer.send(topic, key=event.request_id.encode(), value=encode(event))
            future.add_errback(failures.append)
            sent += 1
        producer.flush(timeout=timeout_s)
    finally:
        producer.close(timeout=timeout_s)
    if failures:
        raise failures[0]
    return sent


def _classes(batch: Batch) -> list[str]:
    """The model's classes, from its logged probabilities, else from the labels it gave."""
    classes = [name.removeprefix("proba.") for name in batch.rows.column_names if name.startswith("proba.")]
    if not classes and "label" in batch.rows.column_names:
        classes = sorted({str(v) for v in batch.rows["label"].to_pylist() if v is not None})
    return sorted(classes)


def _features(row: dict) -> dict:
    return {key.removeprefix("feature."): value for key, value in row.items() if key.startswith("feature.")}


def _task(batch: Batch, row: dict) -> dict:
    """One Label Studio task: the input, the model's answer as a pre-annotation, where it came from."""
    task = {
        "data": {"event_id": row["event_id"], "request_id": row["request_id"], "features": _features(row)},
        "meta": {"batch_id": batch.batch_id, "rank": row["rank"], "reason": row["reason"]},
    }
    if row.get("label") is not None:
        probabilities = [value for key, value in row.items() if key.startswith("proba.") and value is not None]
        task["predictions"] = [{
            "model_version": f"{batch.model} {row.get('model_version', '')}".strip(),
            "score": max(probabilities) if probabilities else None,
            "result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                        "value": {"choices": [str(row["label"])]}}],
        }]
    return task


def _for_annotators(batch: Batch) -> pa.Table:
    """The batch's rows as annotators see them: the model's answer, the features, and an empty `label`."""
    rows = batch.rows
    keep = ["rank", "event_id", "request_id", "selection_score", "reason"]
    table = rows.select(keep)
    if "label" in rows.column_names:
        table = table.append_column("predicted_label", rows["label"].cast(pa.string()))
    for name in rows.column_names:
        if name.startswith("feature."):
            table = table.append_column(name.removeprefix("feature."), rows[name])
    return table.append_column("label", pa.nulls(rows.num_rows, pa.string()))


def _label_studio_rows(path: Path) -> Iterator[tuple]:
    """(row, request_id, label, labelled_at, annotation id) per task of a Label Studio JSON export, streamed."""
    for row, task in enumerate(_json_list(path), start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelFileError(path, row, "data", "a task is an object with a 'data' object")
        request_id = task["data"].get("request_id")
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            yield row, request_id, None, None, None
            continue
        latest = max(annotations, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        choices = [r for r in latest.get("result") or [] if isinstance(r, dict) and r.get("from_name") == FROM_NAME]
        if len(choices) != 1 or not isinstance((choices[0].get("value") or {}).get("choices"), list):
            raise LabelFileError(path, row, "annotations.result",
                                 f"expected one '{FROM_NAME}' choices result, found {len(choices)}")
        picked = choices[0]["value"]["choices"]
        if len(picked) != 1:
            raise LabelFileError(path, row, "annotations.result.value.choices", f"expected one choice, got {picked}")
        yield row, request_id, str(picked[0]), _timestamp(path, row, latest), latest.get("id")


CHUNK_CHARS = 1 << 20
MAX_TASK_CHARS = 64 << 20


def _json_list(path: Path) -> Iterator:
    """The items of a JSON list, one at a time: memory holds one item and a 1 MiB window, not the file."""
    decoder = json.JSONDecoder()
    try:
        with open(path, encoding="utf-8") as handle:
            buffer, position, started = "", 0, False
            while True:
                if position > CHUNK_CHARS:
                    buffer, position = buffer[position:], 0
                while position < len(buffer) and buffer[position] in " \t\r\n,":
                    position += 1
                if not started and position < len(buffer):
                    if buffer[position] != "[":
                        raise LabelFileError(path, None, "file", "a Label Studio export is a JSON list of tasks")
                    started, position = True, position + 1
                    continue
                if started and position < len(buffer) and buffer[position] == "]":
                    return
                try:
                    item, end = decoder.raw_decode(buffer, position) if position < len(buffer) else (None, -1)
                except json.JSONDecodeError:
                    end = -1
                if end == -1 or end == len(buffer):  # incomplete (or may be): read more first
                    if len(buffer) - position > MAX_TASK_CHARS:
                        raise LabelFileError(path, None, "file", f"not a readable JSON file: malformed, or a task "
                                                                 f"longer than {MAX_TASK_CHARS} characters")
                    chunk = handle.read(CHUNK_CHARS)
                    if not chunk:
                        if end == len(buffer) and started:
                            raise LabelFileError(path, None, "file", "not a readable JSON file: the list is not closed")
                        raise LabelFileError(path, None, "file", "not a readable JSON file: it ends in the middle")
                    buffer += chunk
                    continue
                position = end
                yield item
    except (OSError, UnicodeDecodeError) as error:
        raise LabelFileError(path, None, "file", f"not a readable JSON file: {error}") from None


def _timestamp(path: Path, row: int, annotation: dict) -> datetime | None:
    text = annotation.get("updated_at") or annotation.get("created_at")
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise LabelFileError(path, row, "annotations.updated_at", f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _csv_rows(path: Path) -> Iterator[tuple]:
    """(row, request_id, label, None, None) per data row of a CSV with `request_id` and `label` columns, streamed."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("request_id", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelFileError(path, 0, missing[0], f"column missing; the header has {reader.fieldnames}")
            for row, record in enumerate(reader, start=1):
                yield row, (record["request_id"] or "").strip(), (record["label"] or "").strip() or None, None, None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise LabelFileError(path, None, "file", f"not a readable CSV file: {error}") from None


def _allowed_labels(ledger: BatchLedger) -> dict[str, set[str]]:
    """For every request sent for labelling, the labels its batch allows (empty: any)."""
    allowed = {}
    for batch in ledger.batches():
        classes = set(_classes(batch)) if any(n.startswith("proba.") for n in batch.rows.column_names) else set()
        for request_id in batch.rows["request_id"].to_pylist():
            allowed[request_id] = classes
    return allowed
