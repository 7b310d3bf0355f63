"""Single-feedback POSTs/s through the ingestion API, against a bare FastAPI endpoint, and zero-loss check.

Both servers run in their own process through collector.api.serve (uvicorn, one
worker, same GC settings) on 127.0.0.1 and take the same load in the same run: wrk,
one thread, `--connections` keep-alive connections, after a warm-up (`--warmup`), each
request a new feedback event with a unique request id.
- api: collector.api.create_app; a 202 means Kafka acknowledged the event (acks=all).
- bare: a FastAPI endpoint validating the same FeedbackEvent body; it writes nothing.
wrk keeps the event id of every 202; afterwards the feedback topic is read back
and each of them must be there (`stored`: those found; `lost`: the others).

    ~/.cache/driftloop/venv/bin/python benchmarks/api_load.py --seconds 20 --connections 32

Needs wrk (`apt-get install -y wrk`). Kafka, the server and wrk share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from wrk_load import run_wrk, wrk_script

from driftloop.collector.api import create_app, serve
from driftloop.collector.schemas import FeedbackEvent
from driftloop.collector.topics import Topics
from driftloop.settings import load_settings
from driftloop.stack import LocalStack, free_port
from driftloop.stack.process import require_tool

RESULTS = Path(__file__).parent / "results" / "api_load.json"

# One wrk thread: a new request id per request; the event id of each 202 kept; statuses counted.
WRK_SCRIPT = wrk_script(r"""
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/feedback", nil,
    '{"request_id":"' .. run .. '-' .. n .. '","label":' .. (n % 3) .. ',"source":"user"}')
end
""", ok_status=202, id_pattern=r'"event_ids":%["([^"]+)"')


def bare_app() -> FastAPI:
    """The baseline: FastAPI validating the same body, answering like the API, writing nothing."""
    app = FastAPI()

    @app.post("/v1/feedback", status_code=202)
    async def log_feedback(event: FeedbackEvent) -> dict:
        return {"accepted": 1, "event_ids": [event.event_id]}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def run_server(kind: str, bootstrap: str, prefix: str, port: int) -> None:
    app = bare_app() if kind == "bare" else create_app(
        bootstrap_servers=bootstrap, topics=Topics(prefix), registry=CollectorRegistry()
    )
    serve(app, host="127.0.0.1", port=port, log_level="warning")


def load(url: str, seconds: float, connections: int, run: str, workdir: Path) -> dict:
    """wrk against `url` for `seconds`; its figures, the statuses and the ids of the accepted requests."""
    return run_wrk(WRK_SCRIPT, url, seconds, connections, run, workdir)


def measure(kind: str, bootstrap: str, prefix: str, args, workdir: Path) -> dict:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=run_server, args=(kind, bootstrap, prefix, port))
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start")
            time.sleep(0.2)
        load(url, args.warmup, args.connections, f"{kind}-warmup", workdir)  # Kafka's JIT too
        figures = load(url, args.seconds, args.connections, f"{kind}-{os.getpid()}", workdir)
    finally:
        server.terminate()  # uvicorn shuts down gracefully: the API closes its producer
        server.join(30)
    figures["requests_per_s"] = figures["requests"] / (figures["duration_us"] / 1e6)
    status_counts = {int(code): count for code, count in figures["statuses"].items()}
    print(
        f"  {kind}: {figures['requests_per_s']:,.0f} requests/s, p50 {figures['p50_us'] / 1000:.2f} ms, "
        f"p99 {figures['p99_us'] / 1000:.2f} ms, statuses {status_counts}, socket errors {figures['socket_errors']}",
        flush=True,
    )
    return figures


def stored_ids(bootstrap: str, topic: str, wanted: set[str]) -> set[str]:
    """The wanted event ids found in `topic` (read from the beginning to its current end)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    found = set()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    event = FeedbackEvent.model_validate_json(record.value)
                    if event.event_id in wanted:
                        found.add(event.event_id)
    finally:
        consumer.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=10, help="seconds of load before each measurement")
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()
    require_tool("wrk", "apt-get install -y wrk")

    with tempfile.TemporaryDirectory() as state:
        state = Path(state)
        settings = load_settings(
            data_dir=state / "data",
            stack={"state_dir": state / "stack", "start_prometheus": False, "start_alertmanager": False,
                   "kafka_port": free_port(), "kafka_controller_port": free_port(), "kafka_heap": "512m"},
            kafka={"topic_prefix": "bench."},
        )
        stack = LocalStack(settings)
        stack.up()  # creates the topics too
        try:
            bootstrap = settings.kafka_bootstrap()
            print(f"driftloop API (202 after Kafka acks=all), {args.connections} connections, {args.seconds} s", flush=True)
            api = measure("api", bootstrap, "bench.", args, state)
            print("bare FastAPI endpoint (same validation, writes nothing) ...", flush=True)
            bare = measure("bare", bootstrap, "bench.", args, state)
            accepted = set(api["ids"])
            print(f"reading the feedback topic back for {len(accepted):,} accepted event ids ...", flush=True)
            stored = stored_ids(bootstrap, settings.kafka.topic("feedback"), accepted)
        finally:
            stack.down()

    figures = {
        "requests_per_s": round(api["requests_per_s"]),
        "bare_requests_per_s": round(bare["requests_per_s"]),
        "ratio_vs_bare_api": round(api["requests_per_s"] / bare["requests_per_s"], 3),
        "p50_ms": round(api["p50_us"] / 1000, 2),
        "p99_ms": round(api["p99_us"] / 1000, 2),
        "bare_p50_ms": round(bare["p50_us"] / 1000, 2),
        "bare_p99_ms": round(bare["p99_us"] / 1000, 2),
        "accepted": len(accepted),
        "stored": len(stored),
        "lost": len(accepted - stored),
        "not_accepted": api["requests"] - len(accepted),
        "seconds": args.seconds,
        "connections": args.connections,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
