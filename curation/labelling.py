"""The labelling round trip: batches out to annotators, their labels back into Kafka as feedback.

Out: Label Studio import JSON (each task carries the model's answer as a
pre-annotation, and a labelling config is written next to it), CSV or
Parquet. In: a Label Studio JSON export, or a CSV with `request_id` and
`label` columns. A file is checked whole before anything is sent: one bad
row stops the import with an error naming the row and the field, and no
label of the file reaches Kafka. Each label becomes a feedback event with
source "annotator" and an id derived from its content, so importing the same
file twice stores each label once.
"""

from __future__ import annotations

import csv
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import quoteattr

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from driftloop.collector.durable import durable_producer
from driftloop.collector.schemas import FeedbackEvent, encode
from driftloop.curation.batches import Batch, BatchLedger

__all__ = [
    "EXPORT_FORMATS", "LabelFileError", "ImportedLabels", "export_batch", "read_labels", "send_labels",
]

EXPORT_FORMATS = ("label-studio", "csv", "parquet")
FROM_NAME, TO_NAME = "label", "input"  # the names the labelling config gives its Choices and Table tags
# Labels derive their event ids from this namespace, their request and their content.
LABEL_NAMESPACE = uuid.UUID("5b0f4c1e-8a57-4d1c-9a0e-5f3c2d7e9b61")


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
    """The feedback events a label file gives, and how many of its rows had no label yet."""

    events: tuple[FeedbackEvent, ...]
    unlabelled_rows: int


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
    """Check a Label Studio JSON export or a label CSV whole and turn it into feedback events.

    Every labelled row must name a request sent for labelling in one of the
    ledger's batches, with a label among that batch's classes (when the model
    logged class probabilities). Rows without a label yet are counted, not
    sent. Raises LabelFileError naming the first bad row and field.
    """
    path = Path(path)
    if path.suffix.lower() == ".json":
        rows = _label_studio_rows(path)
    elif path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
    else:
        raise LabelFileError(path, None, "path", "expected a Label Studio JSON export (.json) or a CSV (.csv)")
    allowed = _allowed_labels(ledger)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    events, unlabelled, seen = [], 0, {}
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
        event_id = uuid.uuid5(LABEL_NAMESPACE, f"{request_id}\n{label}\n{annotation}").hex
        events.append(FeedbackEvent(event_id=event_id, request_id=request_id, label=label, source="annotator",
                                    timestamp=labelled_at or now))
    return ImportedLabels(tuple(events), unlabelled)


def send_labels(bootstrap_servers: str, topic: str, events: tuple[FeedbackEvent, ...], timeout_s: float = 60.0) -> int:
    """Send feedback events to Kafka and wait until every one is acknowledged (acks=all); the count sent."""
    producer = durable_producer(bootstrap_servers, linger_ms=20)
    try:
        futures = [producer.send(topic, key=e.request_id.encode(), value=encode(e)) for e in events]
        producer.flush(timeout=timeout_s)
        for future in futures:
            future.get(timeout=timeout_s)  # raises the Kafka error of a write that failed
    finally:
        producer.close(timeout=timeout_s)
    return len(events)


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


def _label_studio_rows(path: Path):
    """(row, request_id, label, labelled_at, annotation id) per task of a Label Studio JSON export."""
    try:
        tasks = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LabelFileError(path, None, "file", f"not a readable JSON file: {error}") from None
    if not isinstance(tasks, list):
        raise LabelFileError(path, None, "file", "a Label Studio export is a JSON list of tasks")
    rows = []
    for row, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise LabelFileError(path, row, "data", "a task is an object with a 'data' object")
        request_id = task["data"].get("request_id")
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            rows.append((row, request_id, None, None, None))
            continue
        latest = max(annotations, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        choices = [r for r in latest.get("result") or [] if isinstance(r, dict) and r.get("from_name") == FROM_NAME]
        if len(choices) != 1 or not isinstance((choices[0].get("value") or {}).get("choices"), list):
            raise LabelFileError(path, row, "annotations.result",
                                 f"expected one '{FROM_NAME}' choices result, found {len(choices)}")
        picked = choices[0]["value"]["choices"]
        if len(picked) != 1:
            raise LabelFileError(path, row, "annotations.result.value.choices", f"expected one choice, got {picked}")
        rows.append((row, request_id, str(picked[0]), _timestamp(path, row, latest), latest.get("id")))
    return rows


def _timestamp(path: Path, row: int, annotation: dict) -> datetime | None:
    text = annotation.get("updated_at") or annotation.get("created_at")
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise LabelFileError(path, row, "annotations.updated_at", f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _csv_rows(path: Path):
    """(row, request_id, label, None, None) per data row of a CSV with `request_id` and `label` columns."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("request_id", "label") if c not in (reader.fieldnames or [])]
            if missing:
                raise LabelFileError(path, 0, missing[0], f"column missing; the header has {reader.fieldnames}")
            return [
                (row, (record["request_id"] or "").strip(), (record["label"] or "").strip() or None, None, None)
                for row, record in enumerate(reader, start=1)
            ]
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
