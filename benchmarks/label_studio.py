"""Label Studio in the loop: start to ready, pushing a batch, and an annotation's way into the store.

One process runs the ingestion API (uvicorn in a thread, with the webhook route) and the
collector (StoreWriter, default settings) against a local Kafka; Label Studio is started by
the stack code (`stack up` of Label Studio alone) on a fresh state dir.

- seconds_start_cold: `up` on an empty state dir (its database copied from the template `./run setup`
  migrated, the admin user and token made) until its API answers the admin's token;
- seconds_start_warm: after `down`, `up` again on the same database, until it answers;
- seconds_push_1000_tasks: `curate push` of a 1,000-row batch (project, webhook, import, task ids);
- seconds_annotation_to_store_p50 / _p95: from an annotator's POST of an annotation (Label Studio
  saves it and calls the webhook) until the label is in the store's labelled view, over
  `--annotations` annotations posted one every `--interval` seconds (target: p95 < 5 s).

Baselines, in the same run, printed with the ratio: `curate export` of the same batch to a
file (what a team did by hand before), and the same feedback posted straight to `POST
/v1/feedback` (the path every other label takes), timed the same way into the store.

    ~/.cache/driftloop/venv/bin/python benchmarks/label_studio.py --tasks 1000 --annotations 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import uvicorn
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from driftloop import curation_service, labelling_service
from driftloop.collector import Store, StoreWriter, StoreWriterConfig, create_app
from driftloop.curation import export_batch
from driftloop.settings import load_settings
from driftloop.stack import LocalStack, free_port, local_credentials
from driftloop.stack.process import port_open

RESULTS = Path(__file__).parent / "results" / "label_studio.json"
SECRET = "benchmark-webhook-secret-0123"
MODEL = "churn"


def predictions(count: int, start: datetime, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(count, 10)).round(5)
    documents = []
    for i in range(count):
        p = float(1 / (1 + np.exp(-features[i, 0])))
        documents.append({
            "schema_version": 1, "event_id": f"bench-p{i}", "request_id": f"bench-r{i}",
            "timestamp": (start + timedelta(milliseconds=10 * i)).isoformat(), "model_name": MODEL,
            "model_version": "1", "features": {f"f{j}": float(v) for j, v in enumerate(features[i])},
            "output": {"label": int(p > 0.5), "probabilities": {"0": 1 - p, "1": p}},
        })
    return documents


class Watcher:
    """Polls the store's labelled view; notes when each request id is first labelled."""

    def __init__(self, store: Store, start: datetime, end: datetime) -> None:
        self.store, self.start, self.end = store, start, end
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                labelled = self.store.labelled(MODEL, self.start, self.end)["request_id"].to_pylist()
            except Exception:  # noqa: BLE001  a file compacted under the read: read again
                labelled = []
            now = time.monotonic()
            for request_id in labelled:
                self.seen.setdefault(request_id, now)
            time.sleep(0.05)

    def wait_for(self, request_ids: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(r in self.seen for r in request_ids):
            time.sleep(0.1)


def latencies(posted: dict[str, float], watcher: Watcher) -> list[float]:
    return [watcher.seen[r] - t for r, t in posted.items() if r in watcher.seen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--annotations", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between two annotations")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="driftloop-bench-ls-"))
    ports = {"kafka_port": free_port(), "kafka_controller_port": free_port(), "label_studio_port": free_port()}
    base = dict(data_dir=root / "data", stack={"state_dir": root / "stack", **ports, "kafka_heap": "512m",
                                               "start_prometheus": False, "start_alertmanager": False},
                api={"port": free_port()}, label_studio={"webhook_secret": SECRET})
    settings = load_settings(**base)
    kafka_only = load_settings(**{**base, "stack": {**base["stack"], "start_label_studio": False}})
    ls_only = load_settings(**{**base, "stack": {**base["stack"], "start_kafka": False}})
    LocalStack(kafka_only).up()
    label_studio = LocalStack(ls_only)
    try:
        cold = label_studio.up()[0].seconds_to_ready
        print(f"Label Studio cold start: {cold:.1f} s")
        label_studio.down()
        port = ls_only.stack.label_studio_port
        deadline = time.monotonic() + 30
        while port_open(port) and time.monotonic() < deadline:  # its socket closes as the process ends
            time.sleep(0.1)
        warm = label_studio.up()[0].seconds_to_ready
        print(f"Label Studio warm start: {warm:.1f} s")
        run(settings, args, cold, warm)
    finally:
        label_studio.down()
        LocalStack(kafka_only).down()


def run(settings, args, cold: float, warm: float) -> None:
    bootstrap = settings.kafka_bootstrap()
    config = StoreWriterConfig(bootstrap, settings.kafka.topics(), settings.store_dir, group_id="bench-ls")
    writer = StoreWriter(config, CollectorRegistry())
    stop = threading.Event()
    threading.Thread(target=writer.run, args=(stop,), daemon=True).start()
    app = create_app(bootstrap_servers=bootstrap, topics=settings.kafka.topics(), registry=CollectorRegistry(),
                     label_studio_secret=SECRET, annotated_requests=Store(settings.store_dir).annotated_requests)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api.port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    start = datetime.now(UTC) - timedelta(minutes=30)
    documents = predictions(args.tasks + args.annotations, start)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    for document in documents:
        producer.send(settings.kafka.topic("predictions"), key=document["request_id"].encode(),
                      value=orjson.dumps(document))
    producer.flush()
    producer.close()
    store = Store(settings.store_dir)
    while store.predictions(MODEL).num_rows < len(documents):
        time.sleep(0.2)

    strategy = curation_service.build_strategy(settings, "margin", False, False)
    end = start + timedelta(hours=1)
    request = curation_service.batch_request(settings, MODEL, args.tasks, timedelta(hours=2), end)
    batch = curation_service.select(settings, strategy, request)
    began = time.perf_counter()
    pushed = labelling_service.push(settings, batch.batch_id)
    push_s = time.perf_counter() - began
    began = time.perf_counter()
    export_batch(batch, Path(tempfile.mkdtemp()) / "batch.json", "label-studio")
    export_s = time.perf_counter() - began
    print(f"push {len(batch)} tasks: {push_s:.2f} s; baseline `curate export` to a file: {export_s:.3f} s "
          f"(push / export = {push_s / export_s:.0f}x)")

    token = local_credentials(settings.stack).token
    annotator = httpx.Client(base_url=settings.label_studio_url(), headers={"Authorization": f"Token {token}"},
                             timeout=60)
    watcher = Watcher(store, start - timedelta(hours=1), end)
    posted: dict[str, float] = {}
    for request_id in list(pushed.tasks)[: args.annotations]:
        began = time.monotonic()
        answer = annotator.post(f"/api/tasks/{pushed.tasks[request_id]}/annotations", json={"result": [
            {"from_name": "label", "to_name": "input", "type": "choices", "value": {"choices": ["1"]}}]})
        assert answer.status_code == 201, answer.text
        posted[request_id] = began
        time.sleep(max(0.0, args.interval - (time.monotonic() - began)))
    watcher.wait_for(list(posted), 120)
    through_label_studio = latencies(posted, watcher)

    # Baseline: the same labels for other requests, straight to POST /v1/feedback, one every interval.
    api = httpx.Client(base_url=f"http://127.0.0.1:{settings.api.port}", timeout=30)
    direct: dict[str, float] = {}
    others = [d["request_id"] for d in documents if d["request_id"] not in pushed.tasks][: max(1, args.annotations // 4)]
    for request_id in others:
        began = time.monotonic()
        answer = api.post("/v1/feedback", json={"request_id": request_id, "label": "1", "source": "annotator"})
        assert answer.status_code == 202, answer.text
        direct[request_id] = began
        time.sleep(max(0.0, args.interval - (time.monotonic() - began)))
    watcher.wait_for(list(direct), 120)
    watcher.stop.set()
    baseline = latencies(direct, watcher)
    missing = len(posted) - len(through_label_studio)

    p50, p95 = statistics.median(through_label_studio), float(np.percentile(through_label_studio, 95))
    b50, b95 = statistics.median(baseline), float(np.percentile(baseline, 95))
    print(f"annotation to store over {len(through_label_studio)} annotations ({missing} never arrived): "
          f"p50 {p50:.2f} s, p95 {p95:.2f} s (target p95 < 5 s: {'met' if p95 < 5 else 'MISSED'})")
    print(f"baseline POST /v1/feedback to store over {len(baseline)}: p50 {b50:.2f} s, p95 {b95:.2f} s "
          f"(Label Studio / direct: p50 {p50 / b50:.2f}x, p95 {p95 / b95:.2f}x)")
    server.should_exit = True
    stop.set()
    results = {
        "seconds_start_cold": round(cold, 2),
        "seconds_start_warm": round(warm, 2),
        "seconds_push_1000_tasks": round(push_s, 2),
        "seconds_annotation_to_store_p50": round(p50, 3),
        "seconds_annotation_to_store_p95": round(p95, 3),
    }
    if args.tasks != 1000 or args.annotations != 200:
        print(f"(a small run: --tasks {args.tasks} --annotations {args.annotations}; results not written)")
        print(json.dumps(results, indent=2))
        return
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
