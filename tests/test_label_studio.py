"""Labelling on the session's real Label Studio: push a batch, annotate through its API, the labels reach the store.

Label Studio is started by `stack up` (the `label_studio` fixture); the ingestion API runs for real
(uvicorn) with the webhook route, the store writer writes the store; each test has its own topics,
data dir and Label Studio project.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from events import prediction_documents, produce, run_cli, stored_counts, wait_until
from prometheus_client import CollectorRegistry

from driftloop import curation_service, labelling_service
from driftloop.collector import create_app
from driftloop.collector.label_studio import WEBHOOK_PATH
from driftloop.collector.store import Store
from driftloop.settings import Settings, load_settings
from driftloop.stack import LABEL_STUDIO_VERSION, LocalStack, free_port, local_credentials

MODEL = "churn"
# Annotators label now, and a label counts only within the label horizon of its prediction: recent traffic.
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
END = START + timedelta(hours=1)
SECRET = "test-webhook-secret-0123456789"



@contextmanager
def ingestion_api(kafka: str, settings: Settings):
    """The ingestion API with the webhook route, as `driftloop api run` builds it, on `api.port`."""
    app = create_app(bootstrap_servers=kafka, topics=settings.kafka.topics(), registry=CollectorRegistry(),
                     label_studio_secret=SECRET, annotated_requests=Store(settings.store_dir).annotated_requests)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api.port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_until(lambda: server.started or not thread.is_alive(), 30, 0.05) and thread.is_alive()
    try:
        yield f"http://127.0.0.1:{settings.api.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture
def settings(label_studio: LocalStack, kafka, kafka_settings, data_dir, tmp_path) -> Settings:
    """This test's settings: its topics and data dir, the session's Label Studio as a team's own (url + token)."""
    stack = label_studio.settings.stack
    return load_settings(
        data_dir=data_dir,
        kafka={"bootstrap_servers": kafka, "topic_prefix": kafka_settings.topic_prefix},
        stack={"state_dir": tmp_path / "stack", "start_label_studio": False},
        api={"port": free_port()},
        label_studio={"url": label_studio.label_studio.url, "token": local_credentials(stack).token,
                      "webhook_secret": SECRET, "project_title": f"test {uuid.uuid4().hex[:8]}: {{model}}"},
    )


@pytest.fixture
def api(settings, kafka):
    with ingestion_api(kafka, settings) as url:
        assert settings.label_studio_webhook_url() == url + WEBHOOK_PATH
        yield url


@pytest.fixture
def predictions(writer, kafka, kafka_settings):
    documents = prediction_documents(200, seed=5, start=START)
    produce(kafka, kafka_settings.topic("predictions"), documents)
    assert wait_until(lambda: stored_counts(writer)[0] == 200, 60)
    return {document["request_id"]: document for document in documents}


def select(settings: Settings, budget: int):
    strategy = curation_service.build_strategy(settings, "margin", False, False)
    request = curation_service.batch_request(settings, MODEL, budget, timedelta(hours=2), END)
    return curation_service.select(settings, strategy, request)


def env_of(settings: Settings) -> dict:
    return {**os.environ, "DRIFTLOOP_DATA_DIR": str(settings.data_dir),
            "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "DRIFTLOOP_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
            "DRIFTLOOP_STACK__STATE_DIR": str(settings.stack.state_dir),
            "DRIFTLOOP_STACK__START_LABEL_STUDIO": "false",
            "DRIFTLOOP_API__PORT": str(settings.api.port),
            "DRIFTLOOP_LABEL_STUDIO__URL": settings.label_studio.url,
            "DRIFTLOOP_LABEL_STUDIO__TOKEN": settings.label_studio.token.get_secret_value(),
            "DRIFTLOOP_LABEL_STUDIO__WEBHOOK_SECRET": SECRET,
            "DRIFTLOOP_LABEL_STUDIO__PROJECT_TITLE": settings.label_studio.project_title}


def cli_json(settings: Settings, *args: str) -> dict:
    done = run_cli(*args, "--json", env=env_of(settings), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


class Annotator:
    """An annotator at Label Studio: the calls its browser makes when a choice is submitted, changed, deleted."""

    def __init__(self, settings: Settings) -> None:
        self.http = httpx.Client(base_url=settings.label_studio.url, timeout=60,
                                 headers={"Authorization": f"Token {settings.label_studio.token.get_secret_value()}"})

    def label(self, task_id: int, label: str) -> int:
        answer = self.http.post(f"/api/tasks/{task_id}/annotations", json={"result": choice(label)})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def change(self, annotation_id: int, label: str) -> None:
        answer = self.http.patch(f"/api/annotations/{annotation_id}", json={"result": choice(label)})
        assert answer.status_code == 200, answer.text

    def delete(self, annotation_id: int) -> None:
        assert self.http.delete(f"/api/annotations/{annotation_id}").status_code == 204

    def tasks(self, project_id: int) -> list[dict]:
        answer = self.http.get("/api/tasks", params={"project": project_id, "page_size": 1000, "fields": "all"})
        return answer.json()["tasks"]


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "input", "type": "choices", "value": {"choices": [label]}}]


def flipped(prediction: dict) -> str:
    """The other class than the model's: a label the store can only have from the annotator."""
    return str(1 - prediction["output"]["label"])


def labels_in(store: Store) -> dict[str, tuple[str, str]]:
    table = store.labelled(MODEL, START - timedelta(hours=1), END)
    return {row["request_id"]: (row["true_label"], row["feedback_source"])
            for row in table.select(["request_id", "true_label", "feedback_source"]).to_pylist()}


def test_the_stack_starts_label_studio_records_its_pid_and_status_shows_it(label_studio):
    lock = Path(__file__).parent.parent / "label-studio.lock"
    assert f"label-studio=={LABEL_STUDIO_VERSION}\n" in lock.read_text(), "the stack runs the version the lock pins"
    rows = {row.name: row for row in label_studio.status()}
    assert rows["label-studio"].answers and rows["label-studio"].pid == label_studio.label_studio.process.pid()
    assert label_studio.label_studio.database.is_file(), "its SQLite database lies under the state dir"
    assert rows["label-studio"].address == label_studio.label_studio.url
    off = label_studio.settings.model_copy(update={"label_studio": label_studio.settings.label_studio.model_copy(
        update={"enabled": False})})
    assert "label-studio" not in {row.name for row in LocalStack(off).status()}, "a setting turns it off"


def test_a_pushed_batch_is_labelled_in_label_studio_and_the_labels_reach_the_store(settings, api, predictions, writer):
    batch = select(settings, 12)
    pushed = cli_json(settings, "curate", "push", batch.batch_id)
    assert pushed["imported"] == 12 and pushed["already_there"] == 0 and pushed["project_created"]
    annotator = Annotator(settings)
    tasks = annotator.tasks(pushed["project_id"])
    assert {task["data"]["request_id"] for task in tasks} == set(batch.rows["request_id"].to_pylist())
    first = next(task for task in tasks if task["id"] == pushed["tasks"][batch.rows["request_id"][0].as_py()])
    assert first["data"]["features"] == {
        name.removeprefix("feature."): value for name, value in batch.rows.slice(0, 1).to_pylist()[0].items()
        if name.startswith("feature.")}
    prediction = first["predictions"][0]
    model_answer = str(predictions[first["data"]["request_id"]]["output"]["label"])
    assert prediction["result"][0]["value"]["choices"] == [model_answer] and 0.5 <= prediction["score"] <= 1
    assert curation_service.ledger(settings).tasks(batch.batch_id)["tasks"] == pushed["tasks"]

    again = cli_json(settings, "curate", "push", batch.batch_id)
    assert again["imported"] == 0 and again["already_there"] == 12 and not again["project_created"]
    assert len(annotator.tasks(pushed["project_id"])) == 12, "pushing again creates no duplicates"

    wanted = {}
    for request_id in list(pushed["tasks"])[:6]:
        wanted[request_id] = flipped(predictions[request_id])
        annotator.label(pushed["tasks"][request_id], wanted[request_id])
    assert wait_until(lambda: len(labels_in(writer)) == 6, 30, 0.2), labels_in(writer)
    assert labels_in(writer) == {request_id: (label, "annotator") for request_id, label in wanted.items()}
    snapshot = curation_service.snapshot(settings, MODEL, None, END + timedelta(hours=1), None, "none", None)
    assert snapshot.manifest["rows_per_source"] == {"annotator": 6}


def test_an_updated_annotation_supersedes_its_label_and_a_deleted_one_withdraws_it(settings, api, predictions, writer):
    batch = select(settings, 4)
    pushed = labelling_service.push(settings, batch.batch_id)
    annotator = Annotator(settings)
    kept, dropped = list(pushed.tasks)[:2]
    kept_annotation = annotator.label(pushed.tasks[kept], "0")
    dropped_annotation = annotator.label(pushed.tasks[dropped], "1")
    assert wait_until(lambda: labels_in(writer) == {kept: ("0", "annotator"), dropped: ("1", "annotator")}, 30, 0.2)

    annotator.change(kept_annotation, "1")
    annotator.delete(dropped_annotation)
    assert wait_until(lambda: labels_in(writer) == {kept: ("1", "annotator")}, 30, 0.2), labels_in(writer)
    pool = writer.unlabelled(MODEL, START - timedelta(hours=1), END)["request_id"].to_pylist()
    assert dropped in pool and kept not in pool, "a withdrawn label leaves its input unlabelled again"


def test_sync_brings_in_what_the_webhook_missed_across_a_label_studio_restart_nothing_twice(
        settings, kafka, predictions, writer, label_studio):
    batch = select(settings, 6)
    annotator = Annotator(settings)
    with ingestion_api(kafka, settings):
        pushed = labelling_service.push(settings, batch.batch_id)
        requests = list(pushed.tasks)
        first = {request_id: annotator.label(pushed.tasks[request_id], "1") for request_id in requests[:2]}
        assert wait_until(lambda: len(labels_in(writer)) == 2, 30, 0.2)
    # The API is down: these calls of the webhook fail, and Label Studio does not retry them.
    for request_id in requests[2:5]:
        annotator.label(pushed.tasks[request_id], "0")
    annotator.delete(first[requests[0]])
    label_studio.label_studio.process.stop()
    assert not label_studio.status()[0].answers
    label_studio.up()  # a warm start: its database is kept

    synced = cli_json(settings, "curate", "sync", batch.batch_id)
    assert synced == {"batch_id": batch.batch_id, "labels": 4, "sent": 3, "withdrawn": 1}
    expected = {requests[1]: ("1", "annotator"), **{request_id: ("0", "annotator") for request_id in requests[2:5]}}
    assert wait_until(lambda: labels_in(writer) == expected, 30, 0.2), labels_in(writer)
    again = cli_json(settings, "curate", "sync", batch.batch_id)
    assert again["sent"] == 0 and again["withdrawn"] == 0, "a second sync sends nothing"
    assert stored_counts(writer, "feedback")[0] == stored_counts(writer, "feedback")[1] == 6, \
        "5 labels and 1 withdrawal, each stored once"


def test_the_file_formats_are_what_the_real_server_reads_and_writes(settings, predictions, writer, tmp_path):
    batch = select(settings, 5)
    tasks_file = tmp_path / "batch.json"
    done = run_cli("curate", "export", batch.batch_id, "--out", str(tasks_file), env=env_of(settings))
    assert done.returncode == 0, done.stderr
    annotator = Annotator(settings)
    config = tasks_file.with_name("batch.label_config.xml").read_text()
    project = annotator.http.post("/api/projects", json={"title": f"file {uuid.uuid4().hex[:6]}", "label_config": config})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    imported = annotator.http.post(f"/api/projects/{project_id}/import", content=tasks_file.read_bytes(),
                                   headers={"Content-Type": "application/json"})
    assert imported.status_code == 201, imported.text
    assert imported.json()["task_count"] == 5 and imported.json()["prediction_count"] == 5

    tasks = annotator.tasks(project_id)
    wanted = {task["data"]["request_id"]: flipped(predictions[task["data"]["request_id"]]) for task in tasks[:3]}
    for task in tasks[:3]:
        annotator.label(task["id"], wanted[task["data"]["request_id"]])
    export = annotator.http.get(f"/api/projects/{project_id}/export", params={"exportType": "JSON"})
    assert export.status_code == 200
    export_file = tmp_path / "export.json"
    export_file.write_bytes(export.content)
    done = run_cli("curate", "import", str(export_file), env=env_of(settings))
    assert done.returncode == 0, done.stderr
    assert "3 labels checked, 3 sent" in done.stdout
    assert wait_until(lambda: labels_in(writer) == {r: (label, "annotator") for r, label in wanted.items()}, 30, 0.2)
