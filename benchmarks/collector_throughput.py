"""Events/s from Kafka topic to durable Parquet store, against a bare kafka-python consume loop.

Both read the same topic (4 partitions, events of 20 numeric features) in the
same run, each in its own process from the earliest offset with its own group:
- bare: poll and touch each record's value; no decode, no write, no commit;
- collector: the real StoreWriter: validate, write zstd Parquet, fsync, rename, commit.

    ~/.cache/driftloop/venv/bin/python benchmarks/collector_throughput.py --events 500000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import time
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer
from prometheus_client import CollectorRegistry

from driftloop.collector.store_writer import StoreWriter, StoreWriterConfig
from driftloop.collector.topics import Topics
from driftloop.settings import load_settings
from driftloop.stack import LocalStack, create_topics, free_port

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from events import prediction_documents  # noqa: E402  the tests' event generator, so both use the same events

RESULTS = Path(__file__).parent / "results" / "collector_throughput.json"


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=512 * 1024, compression_type="lz4"
    )
    for start in range(0, count, 50_000):
        for document in prediction_documents(min(50_000, count - start), seed=start):
            producer.send(topic, key=document["request_id"].encode(), value=orjson.dumps(document))
    producer.flush()
    producer.close()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bare_loop(bootstrap: str, topic: str, count: int, results) -> None:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id="bench-bare", enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=10_000, fetch_min_bytes=65536, fetch_max_wait_ms=100,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    seen, touched, began = 0, 0, None
    while seen < count:
        for records in consumer.poll(timeout_ms=500).values():
            began = began or time.perf_counter()
            for record in records:
                touched += len(record.value)
            seen += len(records)
    elapsed = time.perf_counter() - began
    consumer.close()
    results.put({"events_per_s": seen / elapsed, "peak_rss_mb": peak_rss_mb(), "bytes": touched})


def collector(bootstrap: str, prefix: str, store_dir: str, count: int, results) -> None:
    registry = CollectorRegistry()
    config = StoreWriterConfig(
        bootstrap_servers=bootstrap, topics=Topics(prefix), store_dir=Path(store_dir), group_id="bench-collector"
    )
    writer = StoreWriter(config, registry)
    began = None
    while (registry.get_sample_value("driftloop_collector_events_ingested_total", {"topic": config.topics.predictions}) or 0) < count:
        if writer.step() and began is None:
            began = time.perf_counter()
    elapsed = time.perf_counter() - began
    writer.close()
    results.put({"events_per_s": count / elapsed, "peak_rss_mb": peak_rss_mb()})


def in_child(target, *args) -> dict:
    results = multiprocessing.Queue()
    process = multiprocessing.Process(target=target, args=(*args, results))
    process.start()
    result = results.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        settings = load_settings(
            data_dir=Path(state) / "data",
            stack={"state_dir": Path(state) / "stack", "start_prometheus": False, "start_alertmanager": False,
                   "kafka_port": free_port(), "kafka_controller_port": free_port()},
            kafka={"topic_prefix": "bench."},
        )
        stack = LocalStack(settings)
        stack.up()
        try:
            bootstrap = settings.kafka_bootstrap()
            create_topics(bootstrap, settings.kafka)
            topic = settings.kafka.topic("predictions")
            print(f"producing {args.events} events of 20 features to {topic} ...", flush=True)
            produce(bootstrap, topic, args.events)
            print("bare kafka-python loop ...", flush=True)
            bare = in_child(bare_loop, bootstrap, topic, args.events)
            print(f"  {bare['events_per_s']:,.0f} events/s", flush=True)
            print("driftloop collector (validate, Parquet, fsync, commit) ...", flush=True)
            ours = in_child(collector, bootstrap, "bench.", str(settings.store_dir), args.events)
            print(f"  {ours['events_per_s']:,.0f} events/s", flush=True)
        finally:
            stack.down()

    figures = {
        "collector_events_per_s": round(ours["events_per_s"]),
        "bare_client_events_per_s": round(bare["events_per_s"]),
        "ratio_vs_bare_client": round(ours["events_per_s"] / bare["events_per_s"], 3),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "bare_client_peak_rss_mb": round(bare["peak_rss_mb"], 1),
        "events": args.events,
    }
    print(json.dumps(figures, indent=2))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
