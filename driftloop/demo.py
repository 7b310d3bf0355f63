"""The main job, end to end on the local stack.

For now: a model server logs predictions and feedback through Kafka, the
collector writes them exactly once into the Parquet store, Prometheus scrapes
the collector; then the inputs drift, the drift monitor sees it against a
profile of the earlier traffic, Prometheus shows the gauges and Evidently
writes a report; curation picks the drifted inputs most worth labelling,
annotators label them through a Label Studio export, their labels come back
through Kafka, and a versioned snapshot of the labelled data is what a Ray
Train job learns from. A later issue adds the promotion gate.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import CollectorRegistry
from rich.console import Console
from rich.progress import track

from driftloop.collector import EventLogger, PredictionOutput, Store, StoreWriter, StoreWriterConfig
from driftloop.curation import SnapshotSpec, build_snapshot, export_batch
from driftloop.curation_service import batch_request, build_strategy, import_labels, select
from driftloop.drift import DomainClassifierTest, DriftMetrics, DriftMonitor, MonitorConfig, ReferenceProfile
from driftloop.drift.report import write_report
from driftloop.drift_service import window_with_labels
from driftloop.layout import ray_storage_dir, snapshots_dir
from driftloop.ray_cluster import connect_ray
from driftloop.retrain import RunSettings, prepare_training_data, train_model
from driftloop.retrain.candidates import register_candidate
from driftloop.retrain_service import open_registry, spec_for
from driftloop.services import serve_metrics
from driftloop.settings import Settings
from driftloop.stack import LocalStack

MODEL = "demo-classifier"
FEATURES = [f"f{i:02d}" for i in range(20)]


def log_traffic(
    logger: EventLogger, count: int, labelled_share: float, seed: int = 0, shift: float = 0.0, shifted: int = 0
) -> list[str]:
    """A logistic model on 20 Gaussian features serving `count` requests; users label some of them.

    `shift` (in standard deviations) moves the first `shifted` features: the world drifting away.
    """
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(0).normal(size=len(FEATURES))  # the same model whatever the traffic
    run = uuid.uuid4().hex[:8]
    request_ids = []
    inputs = rng.normal(size=(count, len(FEATURES)))
    inputs[:, :shifted] += shift
    for i, row in enumerate(track(inputs, description="logging")):
        p_one = float(1 / (1 + np.exp(-row @ weights)))
        request_id = f"demo-{run}-{i}"
        logger.log_prediction(
            request_id=request_id, model_name=MODEL, model_version="1",
            features=dict(zip(FEATURES, row.round(6).tolist(), strict=True)),
            output=PredictionOutput(label=int(p_one > 0.5), probabilities={"0": 1 - p_one, "1": p_one}),
            latency_ms=float(rng.gamma(2.0, 2.0)),
        )
        if rng.random() < labelled_share:
            logger.log_feedback(request_id=request_id, label=int(rng.random() < p_one), source="user")
        request_ids.append(request_id)
    return request_ids


def wait_for(check, timeout_s: float, what: str):
    """The first result of `check` that is neither None nor False (a 0.0 gauge counts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (result := check()) is not None and result is not False:
            return result
        time.sleep(0.5)
    raise TimeoutError(f"{what} not seen after {timeout_s:.0f} s")


def prometheus_value(settings: Settings, promql: str) -> float | None:
    url = f"{settings.prometheus_url()}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def run_demo(settings: Settings, count: int, console: Console) -> None:
    console.rule("1. local stack")
    LocalStack(settings).up()
    bootstrap, topics = settings.kafka_bootstrap(), settings.kafka.topics()

    console.rule("2. the collector: Kafka to the Parquet store, exactly once")
    registry = CollectorRegistry()
    port = serve_metrics(settings, registry, "demo-collector", 0)
    writer = StoreWriter(
        StoreWriterConfig(bootstrap, topics, settings.store_dir, group_id=settings.collector.group_id, batch_seconds=0.5),
        registry,
    )
    stop = threading.Event()
    writing = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    writing.start()
    console.print(f"writing {topics.predictions} and {topics.feedback} into {settings.store_dir}; metrics on :{port}")

    console.rule(f"3. a model server logs {count} predictions; users label about 60%")
    reference_start = datetime.now(UTC)
    producer_metrics = CollectorRegistry()
    with EventLogger(bootstrap, topics, producer_metrics) as logger:
        request_ids = log_traffic(logger, count, labelled_share=0.6)
    sent = sum(producer_metrics.get_sample_value("driftloop_producer_events_sent_total", {"topic": t}) or 0
               for t in (topics.predictions, topics.feedback))
    failed = sum(producer_metrics.get_sample_value("driftloop_producer_events_failed_total", {"topic": t}) or 0
                 for t in (topics.predictions, topics.feedback))
    if failed:
        raise RuntimeError(f"{failed:.0f} events were not acknowledged by Kafka")
    console.print(f"{sent:.0f} events acknowledged by Kafka (acks=all), none failed")

    store = Store(settings.store_dir)
    wanted = set(request_ids)

    def stored_this_run() -> pa.Table | None:
        labelled = store.labelled(MODEL)
        mine = labelled.filter(pc.is_in(labelled["request_id"], pa.array(list(wanted))))
        unlabelled = store.unlabelled(MODEL)
        waiting = sum(1 for r in unlabelled["request_id"].to_pylist() if r in wanted)
        return mine if mine.num_rows + waiting == count and mine.num_rows else None

    labelled = wait_for(stored_this_run, 60, "this run's events in the store")
    console.print(f"in the store: {count} predictions of this run, {labelled.num_rows} joined to their feedback")
    ingested = wait_for(
        lambda: prometheus_value(settings, 'sum(driftloop_collector_events_ingested_total{service="demo-collector"})'),
        30, "the collector's metrics in Prometheus",
    )
    console.print(f"Prometheus scraped the collector: {ingested:.0f} events ingested")

    console.rule("4. the world shifts: drift in 12 of 20 features")
    reference_end = datetime.now(UTC)
    with EventLogger(bootstrap, topics, CollectorRegistry()) as logger:
        shifted_ids = set(log_traffic(logger, count, labelled_share=0.6, seed=1, shift=1.0, shifted=12))
    wait_for(lambda: shifted_ids <= set(store.predictions(MODEL, reference_end)["request_id"].to_pylist()),
             60, "the shifted traffic in the store")
    show_drift(settings, store, reference_start, reference_end, console)
    built = curate(settings, store, reference_start, reference_end, console)
    stop.set()
    writing.join(timeout=30)

    console.rule(f"7. train on snapshot {built.snapshot_id}, on Ray ({settings.ray.num_workers} workers); register it")
    snapshot = built.read()
    held = held_out_mask(snapshot)
    train_part, held_out = snapshot.filter(pa.array(~held)), snapshot.filter(pa.array(held))
    connect_ray(settings.ray)
    spec = spec_for(settings, MODEL).with_params(training={"epochs": 10})
    run = RunSettings(storage_path=ray_storage_dir(settings), num_workers=settings.ray.num_workers,
                      use_gpu=settings.ray.use_gpu, timeout_s=settings.ray.train_timeout_s)
    trained = train_model(prepare_training_data(train_part, spec), spec, run, f"demo-{uuid.uuid4().hex[:8]}",
                          settings.data_dir / "demo" / f"model-{uuid.uuid4().hex[:8]}")
    registry = open_registry(settings)
    version = register_candidate(registry, MODEL, trained, train_part, spec, snapshot_id=built.snapshot_id,
                                 origin="demo", reason="the demo's retrain")
    retrained = registry.load(MODEL, version.version).predictor
    labels = np.asarray(held_out["label"].to_pylist())
    before = served_accuracy(*features_and_labels(held_out))
    after = float((retrained.predict(held_out) == labels).mean())
    console.print(f"held-out accuracy ({len(labels)} labelled rows of the snapshot): served model {before:.3f}, "
                  f"retrained {after:.3f}; registered as {MODEL} version {version.version} (challenger)")


def held_out_mask(snapshot: pa.Table, share: float = 0.2) -> np.ndarray:
    """True for the rows held out: by a hash of the event id, the same every run."""
    buckets = np.array([int(hashlib.sha256(e.encode()).hexdigest()[:8], 16) % 100 for e in snapshot["event_id"].to_pylist()])
    return buckets < share * 100


def features_and_labels(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    x = np.column_stack([table[f"feature.{name}"].to_numpy() for name in FEATURES]).astype(np.float32)
    return x, np.asarray(table["label"].to_pylist(), dtype=np.int64)


def served_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the model that served the traffic (the demo's logistic model) on labelled rows."""
    weights = np.random.default_rng(0).normal(size=len(FEATURES))
    return float(((x @ weights > 0).astype(np.int64) == y).mean())


def show_drift(settings: Settings, store: Store, reference_start: datetime, reference_end: datetime, console: Console) -> None:
    """Profile the first traffic, monitor what came after it, show gauges in Prometheus and an Evidently report."""
    reference = window_with_labels(store, MODEL, reference_start, reference_end, timedelta(days=1))
    now = datetime.now(UTC)
    monitor = DriftMonitor(
        MonitorConfig(MODEL, window=now - reference_end), store, ReferenceProfile.build(reference),
        multivariate=DomainClassifierTest(seed=0), reference_sample=reference,
    )
    run = monitor.run_once(now)
    drifted = sorted(r.feature for r in run.window.results if r.drifted)
    console.print(
        f"{run.rows} predictions scored: dataset drift {run.drifted} (share {run.window.share:.2f}); "
        f"drifted: {', '.join(drifted)}; domain classifier AUC {run.multivariate.auc:.2f}"
    )
    registry = CollectorRegistry()
    registry.register(DriftMetrics([monitor]))
    serve_metrics(settings, registry, "demo-drift", 0)
    promql = f'driftloop_drift_dataset_drift{{model="{MODEL}"}}'
    gauge = wait_for(lambda: prometheus_value(settings, promql), 30, "the drift gauges in Prometheus")
    console.print(f"Prometheus: {promql} = {gauge:.0f}")
    console.rule("5. an Evidently report for people")
    current = window_with_labels(store, MODEL, reference_end, now, timedelta(days=1))
    files = write_report(reference, current, settings.data_dir / "reports" / MODEL)
    console.print(f"report: {files.html}")


def curate(settings: Settings, store: Store, reference_start: datetime, reference_end: datetime, console: Console):
    """Label the drifted inputs most worth it, round-trip them through a Label Studio file, snapshot the result."""
    console.rule("6. curation: label where the data drifted")
    now = datetime.now(UTC)
    strategy = build_strategy(settings, "drift_targeted", balanced=True, deduplicated=False)
    request = batch_request(settings, MODEL, 100, now - reference_end, now)
    batch = select(settings, strategy, request, reference_window=(reference_start, reference_end))
    if batch is None:
        raise RuntimeError("no unlabelled predictions of the drifted traffic to select from")
    console.print(f"batch {batch.batch_id}: {len(batch)} inputs by {batch.strategy}, e.g. {batch.rows['reason'][0]}")
    tasks_file = settings.data_dir / "demo" / "label-studio-tasks.json"
    export_batch(batch, tasks_file, "label-studio")
    export_file = tasks_file.with_name("label-studio-export.json")
    export_file.write_text(json.dumps(annotated(json.loads(tasks_file.read_text()))))
    labels, sent = import_labels(settings, export_file)
    console.print(f"annotators labelled the tasks in {tasks_file.name}; {sent} labels sent to Kafka as feedback")
    wanted = {event.request_id for event in labels.events}
    wait_for(lambda: wanted <= set(annotator_labels(store)), 60, "the annotators' labels in the store")
    built = build_snapshot(store, SnapshotSpec(model=MODEL, since=reference_start), snapshots_dir(settings))
    console.print(f"snapshot {built.snapshot_id}: {built.manifest['rows']} rows, per source {built.manifest['rows_per_source']}")
    return built


def annotated(tasks: list[dict]) -> list[dict]:
    """Label Studio's JSON export, once careful annotators (who know the true rule) have labelled every task."""
    weights = np.random.default_rng(0).normal(size=len(FEATURES))
    for number, task in enumerate(tasks, start=1):
        row = np.array([task["data"]["features"][name] for name in FEATURES])
        choice = str(int(row @ weights > 0))
        task["annotations"] = [{"id": number, "was_cancelled": False, "updated_at": datetime.now(UTC).isoformat(),
                                "result": [{"from_name": "label", "to_name": "input", "type": "choices",
                                            "value": {"choices": [choice]}}]}]
    return tasks


def annotator_labels(store: Store) -> list[str]:
    labelled = store.labelled(MODEL)
    return labelled.filter(pc.equal(labelled["feedback_source"], "annotator"))["request_id"].to_pylist()
