"""The model server under load, logging every prediction through Kafka, against a bare FastAPI endpoint on the same Predictor.

Both servers run in their own process through collector.api.serve (uvicorn, one worker, the
same GC settings) on 127.0.0.1 and take the same load in the same run: wrk, one thread,
`--connections` keep-alive connections, after a warm-up, each request one prediction of 20
numeric features with a new request id, for `--seconds` seconds.
- serve: `driftloop serve`'s app (retrain.serving.create_server): the registry's champion, an MLP
  of the built-in spec, every prediction logged through EventLogger to Kafka (acks=all), metrics;
- bare: a FastAPI endpoint validating the same body and calling the same `ModelPredictor`,
  logging nothing.
wrk keeps the request id of every 200. Afterwards the predictions topic is read back (`logged`)
and written into a store by the real store writer (`stored`); `lost` are answered predictions
not in the store.

    .venv/bin/python benchmarks/serve_load.py --seconds 20 --connections 8

Needs wrk (`apt-get install -y wrk`). Kafka, the server and wrk share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shadow_throughput import register_models  # noqa: E402  the same MLP champion
from wrk_load import run_wrk, wrk_script  # noqa: E402

from driftloop.retrain.serving import PredictRequest  # noqa: E402  the server's own body model, for the baseline
from driftloop.settings import load_settings  # noqa: E402
from driftloop.stack import LocalStack, free_port  # noqa: E402
from driftloop.stack.process import require_tool  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "serve_load.json"

# One wrk thread: a new request id and 20 random features per request; the id of each 200 kept.
WRK_SCRIPT = wrk_script(r"""
math.randomseed(7)

request = function()
  n = n + 1
  local parts = {}
  for j = 0, 19 do parts[#parts + 1] = string.format('"f%02d":%.5f', j, math.random() * 4 - 2) end
  return wrk.format(nil, "/v1/predict", nil,
    '{"request_id":"' .. run .. '-' .. n .. '","features":{' .. table.concat(parts, ",") .. '}}')
end
""", ok_status=200, id_pattern=r'"request_id":"([^"]+)"')


def bare_app(settings):
    """The baseline: FastAPI, the same body model, the same Predictor; no logging, no metrics."""
    import numpy as np
    import orjson
    from fastapi import FastAPI
    from fastapi.responses import Response

    from driftloop.retrain_service import open_registry

    predictor = open_registry(settings).load("churn", "champion").predictor
    classes = [str(c) for c in predictor.classes_]
    app = FastAPI()

    @app.post("/v1/predict")
    async def predict(body: PredictRequest) -> Response:
        probabilities = predictor.predict_proba([body.features])[0].tolist()
        label = classes[int(np.argmax(probabilities))]
        return Response(orjson.dumps({"request_id": body.request_id, "model": "churn", "version": 1, "label": label,
                                      "probabilities": dict(zip(classes, probabilities, strict=True))}),
                        media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    return app


def run_server(kind: str, settings, port: int) -> None:
    import torch

    from driftloop.collector.api import serve
    from driftloop.promotion_service import build_server

    torch.set_num_threads(1)
    serve(bare_app(settings) if kind == "bare" else build_server(settings, "churn"), "127.0.0.1", port, "warning")


def load(url: str, seconds: float, connections: int, run: str, workdir: Path) -> dict:
    """wrk against `url` for `seconds`; its figures, the statuses and the ids of the accepted requests."""
    return run_wrk(WRK_SCRIPT, url, seconds, connections, run, workdir)


def measure(kind: str, settings, args, workdir: Path) -> dict:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=run_server, args=(kind, settings, port))
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if not server.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {kind} server did not start")
            time.sleep(0.2)
        load(url, args.warmup, args.connections, f"{kind}-warmup", workdir)
        figures = load(url, args.seconds, args.connections, f"{kind}-{os.getpid()}", workdir)
    finally:
        server.terminate()  # uvicorn shuts down gracefully: the server's logger flushes and closes
        server.join(60)
    figures["requests_per_s"] = figures["requests"] / (figures["duration_us"] / 1e6)
    print(f"  {kind}: {figures['requests_per_s']:,.0f} requests/s, p50 {figures['p50_us'] / 1000:.2f} ms, "
          f"p99 {figures['p99_us'] / 1000:.2f} ms, statuses {figures['statuses']}, "
          f"socket errors {figures['socket_errors']}", flush=True)
    return figures


def logged_ids(bootstrap: str, topic: str, wanted: set[str]) -> set[str]:
    """The wanted request ids found in the predictions topic (read from the beginning to its end)."""
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=10_000)
    found = set()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        deadline = time.monotonic() + 300
        while any(consumer.position(tp) < end[tp] for tp in partitions) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                found.update(request for request in (orjson.loads(r.value)["request_id"] for r in records)
                             if request in wanted)
    finally:
        consumer.close()
    return found


def stored_ids(settings, wanted: set[str]) -> set[str]:
    """Write the predictions topic into the store with the real store writer; the wanted ids found there."""
    from prometheus_client import CollectorRegistry

    from driftloop.collector import Store, StoreWriter, StoreWriterConfig

    config = StoreWriterConfig(settings.kafka_bootstrap(), settings.kafka.topics(), settings.store_dir,
                               group_id="bench-store")
    metrics = CollectorRegistry()
    writer = StoreWriter(config, metrics)
    topic = config.topics.predictions
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and (metrics.get_sample_value(
                "driftloop_collector_events_ingested_total", {"topic": topic}) or 0) < len(wanted):
            writer.step()
        writer.flush_all()
    finally:
        writer.close()
    return set(Store(settings.store_dir).predictions("churn")["request_id"].to_pylist()) & wanted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=8)
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
            register_models(settings.data_dir / "registry", state)
            print(f"driftloop serve (MLP champion, every prediction logged to Kafka), {args.connections} "
                  f"connections, {args.seconds} s", flush=True)
            served = measure("serve", settings, args, state)
            print("bare FastAPI endpoint (same body, same Predictor, logs nothing) ...", flush=True)
            bare = measure("bare", settings, args, state)
            answered = set(served["ids"])
            print(f"reading back {len(answered):,} answered predictions from Kafka and the store ...", flush=True)
            logged = logged_ids(settings.kafka_bootstrap(), settings.kafka.topic("predictions"), answered)
            stored = stored_ids(settings, answered)
        finally:
            stack.down()

    figures = {
        "requests_per_s": round(served["requests_per_s"]),
        "bare_requests_per_s": round(bare["requests_per_s"]),
        "ratio_vs_bare": round(served["requests_per_s"] / bare["requests_per_s"], 3),
        "p50_ms": round(served["p50_us"] / 1000, 2),
        "p99_ms": round(served["p99_us"] / 1000, 2),
        "logged": len(logged),
        "stored": len(stored),
        "lost": len(answered - stored),
        "answered": len(answered),
        "not_answered": served["requests"] - len(answered),
        "bare_p50_ms": round(bare["p50_us"] / 1000, 2),
        "bare_p99_ms": round(bare["p99_us"] / 1000, 2),
        "seconds": args.seconds,
        "connections": args.connections,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(figures, indent=2))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
