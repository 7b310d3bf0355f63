"""The main job, end to end on the local stack. For now: a round trip of events through Kafka,
then a Ray Train job on what came back.

Later issues grow this into the whole loop (store, drift, curation, retraining).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from rich.console import Console
from rich.progress import track

from collector import FeedbackEvent, PredictionEvent, PredictionOutput, decode, encode
from driftloop.ray_cluster import connect_ray
from driftloop.settings import Settings
from driftloop.stack import LocalStack
from retrain import TrainConfig, train

FEATURES = [f"f{i:02d}" for i in range(20)]


def synthetic_events(count: int, seed: int = 0) -> list[tuple[PredictionEvent, FeedbackEvent]]:
    """Predictions of a logistic model on 20 Gaussian features, each with its true label."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=len(FEATURES))
    run = uuid.uuid4().hex[:8]
    pairs = []
    for i, row in enumerate(rng.normal(size=(count, len(FEATURES)))):
        p_one = float(1 / (1 + np.exp(-row @ weights)))
        request_id = f"demo-{run}-{i}"
        prediction = PredictionEvent(
            request_id=request_id,
            model_name="demo-classifier",
            model_version="1",
            features=dict(zip(FEATURES, row.round(6).tolist(), strict=True)),
            output=PredictionOutput(label=int(p_one > 0.5), probabilities={"0": 1 - p_one, "1": p_one}),
            latency_ms=float(rng.gamma(2.0, 2.0)),
        )
        feedback = FeedbackEvent(request_id=request_id, label=int(rng.random() < p_one), source="user")
        pairs.append((prediction, feedback))
    return pairs


def end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return consumer.end_offsets(partitions)
    finally:
        consumer.close()


def read_from(bootstrap: str, start: dict[TopicPartition, int], expected: int, timeout_s: float = 60) -> list:
    """Read every record after `start` until `expected` have arrived (or the timeout passes)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    consumer.assign(list(start))
    for partition, offset in start.items():
        consumer.seek(partition, offset)
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def run_demo(settings: Settings, count: int, console: Console) -> None:
    console.rule("1. local stack")
    LocalStack(settings).up()
    bootstrap = settings.kafka_bootstrap()
    predictions, feedback = settings.kafka.topic("predictions"), settings.kafka.topic("feedback")

    console.rule(f"2. send {count} predictions and {count} feedback events (acks=all)")
    start = end_offsets(bootstrap, [predictions, feedback])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="lz4", linger_ms=10)
    began = time.monotonic()
    for prediction, label in track(synthetic_events(count), description="sending", console=console):
        producer.send(predictions, key=prediction.request_id.encode(), value=encode(prediction))
        producer.send(feedback, key=label.request_id.encode(), value=encode(label))
    producer.flush()
    producer.close()
    console.print(f"acknowledged by the broker in {time.monotonic() - began:.2f} s")

    console.rule("3. read them back from Kafka and validate against the schemas")
    records = read_from(bootstrap, start, expected=2 * count)
    kinds = {predictions: "prediction", feedback: "feedback"}
    events = [decode(kinds[record.topic], record.value) for record in records]
    by_topic = Counter(record.topic for record in records)
    same_partition = _partition_agreement(records, kinds)
    console.print(f"read back: {dict(by_topic)}; all {len(events)} valid against the schemas")
    console.print(f"feedback in the same partition as its prediction: {same_partition:.0%}")
    if len(records) != 2 * count:
        raise RuntimeError(f"sent {2 * count} events but read back {len(records)}")

    console.rule(f"4. train a model on what came back, on Ray ({settings.ray.num_workers} workers)")
    data_path = settings.data_dir / "demo" / "train.npz"
    training_set(events, data_path)
    connect_ray(settings.ray)
    result = train(TrainConfig(data_path=str(data_path), epochs=3), settings.ray.num_workers, settings.data_dir / "ray")
    console.print(
        f"loss {result.metrics['first_batch_loss']:.3f} -> {result.metrics['last_batch_loss']:.3f}; "
        f"checkpoint: {result.checkpoint.path}"
    )


def training_set(events: list, path: Path) -> None:
    """Features of each prediction with the label its feedback gave, as an .npz for the trainer."""
    labels = {e.request_id: e.label for e in events if isinstance(e, FeedbackEvent)}
    rows = [(list(e.features.values()), labels[e.request_id]) for e in events
            if isinstance(e, PredictionEvent) and e.request_id in labels]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=np.array([r[0] for r in rows], dtype=np.float32), y=np.array([r[1] for r in rows]))


def _partition_agreement(records: list, kinds: dict[str, str]) -> float:
    """Share of request ids whose prediction and feedback share a partition number (same key)."""
    where: dict[str, dict[str, int]] = {}
    for record in records:
        where.setdefault(record.key.decode(), {})[kinds[record.topic]] = record.partition
    pairs = [p for p in where.values() if len(p) == 2]
    return sum(p["prediction"] == p["feedback"] for p in pairs) / max(len(pairs), 1)
