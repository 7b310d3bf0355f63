"""Batches into a real Label Studio, and its annotations back out, through its HTTP API.

One project per model (titled from a template, found again by its title), whose labelling
config comes from the model's classes (`label_studio_config`). Pushing a batch imports its
rows as tasks (the features to show, the model's answer as a prediction with its score), skips
the requests the project holds already, and returns each request's task id, which the caller
records against the batch (`BatchLedger.record_tasks`); pushing again creates nothing twice.
The project's webhook points Label Studio's annotation events at driftloop's ingestion API.
`annotation_events` reads the annotations of a batch's tasks back, for `curate sync`.

Authentication is Label Studio's `Authorization: Token <token>` (a legacy API token: the local
stack enables them; on a team's server, an organisation admin enables legacy tokens, or gives
a personal access token's refresh token, which this client does not exchange).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from driftloop.collector.label_studio import WEBHOOK_ACTIONS, annotation_event
from driftloop.collector.schemas import FeedbackEventV2
from driftloop.curation.batches import Batch
from driftloop.curation.labelling import _classes, _task, label_studio_config

__all__ = ["LabelStudio", "LabelStudioError", "PushResult", "annotation_events", "push_batch"]

PAGE_SIZE = 500


class LabelStudioError(RuntimeError):
    """Label Studio refused a call, or could not be reached; the message says which call and why."""


@dataclass(frozen=True)
class PushResult:
    """What one push did: the project, whether it was made now, tasks imported now, tasks it held already."""

    project_id: int
    project_created: bool
    imported: int
    already_there: int
    tasks: dict[str, int]  # request id -> task id, for every row of the batch


class LabelStudio:
    """A small client of Label Studio's API: projects, tasks, webhooks (httpx, one connection pool)."""

    def __init__(self, url: str, token: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s,
                                  headers={"Authorization": f"Token {token}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LabelStudio:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs):
        """One API call; its JSON (None for an empty answer), or LabelStudioError naming the call and the answer."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise LabelStudioError(f"Label Studio at {self.url} did not answer {method} {path}: {error}") from None
        if response.status_code == 401:
            raise LabelStudioError(f"Label Studio at {self.url} refused the token (401): check label_studio.token, "
                                   "and that the organisation allows legacy API tokens")
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio refused {method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def _pages(self, path: str, params: dict) -> Iterator[dict]:
        page = 1
        while True:
            try:
                answer = self.call("GET", path, params={**params, "page": page, "page_size": PAGE_SIZE})
            except LabelStudioError as error:
                if " 404 " in str(error) and page > 1:  # Django's paginator: past the last page
                    return
                raise
            items = answer.get("results", answer.get("tasks", [])) if isinstance(answer, dict) else answer
            yield from items
            if not isinstance(answer, dict) or len(items) < PAGE_SIZE or (answer.get("next") is None and "results" in answer):
                return
            page += 1

    def projects(self) -> list[dict]:
        return list(self._pages("/api/projects", {}))

    def project(self, title: str, label_config: str) -> tuple[int, bool]:
        """The id of the project titled `title` (made with `label_config` if there is none), and whether it was made."""
        for project in self.projects():
            if project.get("title") == title:
                return int(project["id"]), False
        made = self.call("POST", "/api/projects", json={"title": title, "label_config": label_config})
        return int(made["id"]), True

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project, with its data and annotations."""
        return list(self._pages("/api/tasks", {"project": project_id, "fields": "all"}))

    def import_tasks(self, project_id: int, tasks: list[dict]) -> list[int]:
        """Import tasks (with their predictions); the new tasks' ids."""
        if not tasks:
            return []
        answer = self.call("POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=tasks)
        return [int(task_id) for task_id in answer.get("task_ids", [])]

    def ensure_webhook(self, project_id: int, url: str, headers: dict[str, str]) -> int:
        """The project's webhook to `url` for the annotation events, made or brought up to date; its id."""
        wanted = {"project": project_id, "url": url, "send_payload": True, "send_for_all_actions": False,
                  "headers": headers, "is_active": True, "actions": list(WEBHOOK_ACTIONS)}
        for hook in self.call("GET", "/api/webhooks", params={"project": project_id}) or []:
            if hook.get("url") == url and hook.get("project") == project_id:
                if hook.get("headers") != headers or sorted(hook.get("actions", [])) != sorted(WEBHOOK_ACTIONS) \
                        or not hook.get("is_active"):
                    self.call("PATCH", f"/api/webhooks/{hook['id']}", json={k: v for k, v in wanted.items()
                                                                             if k != "project"})
                return int(hook["id"])
        return int(self.call("POST", "/api/webhooks", json=wanted)["id"])


def push_batch(client: LabelStudio, batch: Batch, title: str, webhook: tuple[str, dict[str, str]] | None) -> PushResult:
    """Import `batch` into the model's project as tasks; the requests the project holds already are not imported again."""
    classes = _classes(batch)
    if not classes:
        raise ValueError(f"batch {batch.batch_id} of {batch.model!r} has no classes (no probabilities or labels "
                         "logged): Label Studio's choices are the model's classes")
    project_id, created = client.project(title, label_studio_config(classes))
    if webhook is not None:
        client.ensure_webhook(project_id, *webhook)
    held = _tasks_by_request(client.tasks(project_id))
    rows = batch.rows.to_pylist()
    new = [_task(batch, row) for row in rows if row["request_id"] not in held]
    client.import_tasks(project_id, new)
    if new:
        held = _tasks_by_request(client.tasks(project_id))
    tasks = {row["request_id"]: held[row["request_id"]] for row in rows}
    return PushResult(project_id, created, len(new), len(rows) - len(new), tasks)


def annotation_events(client: LabelStudio, project_id: int, task_ids: set[int]) -> tuple[list[FeedbackEventV2], set[str]]:
    """The label events of every saved annotation of the tasks `task_ids`, and the requests those tasks hold."""
    events, requests = [], set()
    for task in client.tasks(project_id):
        if int(task["id"]) not in task_ids:
            continue
        request_id = (task.get("data") or {}).get("request_id")
        if not request_id:
            continue
        requests.add(request_id)
        for annotation in task.get("annotations") or []:
            event = annotation_event(request_id, annotation, f"task {task['id']}.annotations")
            if event is not None:
                events.append(event)
    return events, requests


def _tasks_by_request(tasks: list[dict]) -> dict[str, int]:
    held = {}
    for task in tasks:
        request_id = (task.get("data") or {}).get("request_id")
        if request_id and request_id not in held:
            held[request_id] = int(task["id"])
    return held
