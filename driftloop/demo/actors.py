"""The people around the demo's model: users who send requests and label some answers, and an annotator.

Both talk to the services as real clients would: users call the model server's `POST /v1/predict`
at a steady rate and send labels to the ingestion API's `POST /v1/feedback` after a delay; the
annotator takes each labelling batch the retrain service records, exports it as Label Studio
tasks, answers them with the true labels (a careful annotator) after a delay, and imports the
export, which sends the labels to Kafka as annotator feedback.
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from driftloop.demo.world import DigitsWorld

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    at: float  # wall-clock seconds
    request_id: str
    status: int
    version: int | None
    label: str | None
    truth: str
    drifted: bool
    labelled: bool


class Users:
    """Requests at `rate` per second; `label_share` of the answers labelled `label_delay_s` later."""

    def __init__(self, world: DigitsWorld, serve_url: str, api_url: str, *, rate: float, label_share: float,
                 label_delay_s: float, onset_at: float, withhold_after_onset: bool, seed: int) -> None:
        import numpy as np

        self.world, self.serve_url, self.api_url = world, serve_url, api_url
        self.rate, self.label_share, self.label_delay_s = rate, label_share, label_delay_s
        self.onset_at, self.withhold = onset_at, withhold_after_onset
        self.rng = np.random.default_rng(seed + 2)
        self.answers: list[Answer] = []
        self.truth: dict[str, str] = {}
        self.feedback_accepted: list[str] = []  # event ids the API accepted (202: Kafka acknowledged them)
        self.failures: list[str] = []
        self._due: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._requests, name="demo-users", daemon=True),
                         threading.Thread(target=self._feedback, name="demo-feedback", daemon=True)]

    def start(self) -> Users:
        for thread in self.threads:
            thread.start()
        return self

    @property
    def threads(self) -> list[threading.Thread]:
        return self._threads

    def stop(self, drain_s: float = 15.0) -> None:
        """Stop sending requests; labels already due within `drain_s` are still sent."""
        self._stop.set()
        self._threads[0].join(30)
        self._threads[1].join(drain_s + 30)

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def _requests(self) -> None:
        period = 1.0 / self.rate
        with httpx.Client(base_url=self.serve_url, timeout=10) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if next_at > now:
                    self._stop.wait(next_at - now)
                    continue
                next_at = max(next_at + period, now - 1.0)  # a slow answer delays; it never makes a burst
                self._one(client)

    def _one(self, client: httpx.Client) -> None:
        drifted = time.time() >= self.onset_at
        request = self.world.request(drifted)
        request_id = uuid.uuid4().hex
        try:
            response = client.post("/v1/predict", json={"request_id": request_id, "features": request.features})
            status = response.status_code
            body = response.json() if status == 200 else {}
        except (httpx.HTTPError, ValueError) as error:
            status, body = 0, {}
            self.failures.append(f"{type(error).__name__}: {error}")
        labelled = status == 200 and self.rng.random() < self.label_share and not (drifted and self.withhold)
        with self._lock:
            self.truth[request_id] = request.truth
            self.answers.append(Answer(time.time(), request_id, status, body.get("version"), body.get("label"),
                                       request.truth, drifted, labelled))
            if labelled:
                heapq.heappush(self._due, (time.monotonic() + self.label_delay_s, request_id, request.truth))

    def _feedback(self) -> None:
        with httpx.Client(base_url=self.api_url, timeout=15) as client:
            while True:
                now = time.monotonic()
                with self._lock:
                    due = []
                    while self._due and self._due[0][0] <= now:
                        due.append(heapq.heappop(self._due))
                    left = len(self._due)
                if due:
                    self._send(client, due)
                elif self._stop.is_set() and (not left or self._stop_waited()):
                    return
                else:
                    time.sleep(0.2)

    def _stop_waited(self) -> bool:
        with self._lock:
            return not self._due or self._due[0][0] > time.monotonic() + 15

    def _send(self, client: httpx.Client, due: list[tuple[float, str, str]]) -> None:
        events = [{"event_id": uuid.uuid4().hex, "request_id": request_id, "label": truth, "source": "user",
                   "timestamp": datetime.now(UTC).isoformat()} for _, request_id, truth in due]
        for attempt in range(5):  # the same event ids each time: the store keeps one of each
            try:
                response = client.post("/v1/feedback", json={"events": events})
                if response.status_code == 202:
                    with self._lock:
                        self.feedback_accepted += [event["event_id"] for event in events]
                    return
                problem = f"feedback answered {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}"
            time.sleep(0.5 * (attempt + 1))
        self.failures.append(problem)


@dataclass
class Answered:
    batch_id: str
    size: int
    labels_sent: int
    at: float
    withheld: bool = False


class Annotator:
    """Answers each labelling batch recorded since `since` with the true labels, `delay_s` after it appeared."""

    def __init__(self, settings, truth: dict[str, str], folder: Path, *, delay_s: float, since: datetime,
                 withhold: bool) -> None:
        self.settings, self.truth, self.folder = settings, truth, folder
        self.delay_s, self.since, self.withhold = delay_s, since, withhold
        self.answered: list[Answered] = []
        self.failures: list[str] = []
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-annotator", daemon=True)

    def start(self) -> Annotator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    @property
    def labels_sent(self) -> int:
        return sum(answer.labels_sent for answer in self.answered)

    def _run(self) -> None:
        from driftloop.curation_service import ledger

        waiting: list[tuple[float, str]] = []
        while not self._stop.wait(1.0):
            try:
                for batch in ledger(self.settings).batches():
                    if batch.batch_id not in self._seen and batch.created_at >= self.since:
                        self._seen.add(batch.batch_id)
                        waiting.append((time.monotonic() + self.delay_s, batch.batch_id))
                for entry in [entry for entry in waiting if entry[0] <= time.monotonic()]:
                    waiting.remove(entry)
                    self._answer(entry[1])
            except Exception as error:  # noqa: BLE001 - the annotator says what went wrong and tries again
                log.warning("annotator: %s", error)
                self.failures.append(str(error))

    def _answer(self, batch_id: str) -> None:
        from driftloop.curation import export_batch
        from driftloop.curation_service import import_labels, ledger

        batch = ledger(self.settings).load(batch_id)
        if self.withhold:
            self.answered.append(Answered(batch_id, len(batch), 0, time.time(), withheld=True))
            return
        tasks_file = self.folder / f"{batch_id}-tasks.json"
        export_batch(batch, tasks_file, "label-studio")
        tasks = json.loads(tasks_file.read_text())
        for number, task in enumerate(tasks, start=1):
            truth = self.truth.get(task["data"]["request_id"])
            if truth is None:
                continue  # not a request of this run: left unlabelled
            task["annotations"] = [{"id": number, "was_cancelled": False,
                                    "updated_at": datetime.now(UTC).isoformat(),
                                    "result": [{"from_name": "label", "to_name": "input", "type": "choices",
                                                "value": {"choices": [truth]}}]}]
        export_file = self.folder / f"{batch_id}-export.json"
        export_file.write_text(json.dumps(tasks))
        _, sent = import_labels(self.settings, export_file)
        self.answered.append(Answered(batch_id, len(batch), sent, time.time()))
