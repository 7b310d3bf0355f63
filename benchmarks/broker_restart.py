"""A broker killed (SIGKILL) and restarted under a steady load: how long until writes are acknowledged again, and loss.

One process runs the ingestion API (uvicorn in a thread), a model server's EventLogger,
and the collector (StoreWriter); a client thread posts feedback batches of 10 events to
the API every 20 ms and the model server logs a prediction every 2 ms. After `--before`
seconds the broker is killed; after `--down` seconds it is started again; the load goes
on for `--after` seconds more, then every writer is flushed and the collector catches up.

- seconds_broker_down: from the kill to the first metadata request the restarted broker answers;
- seconds_to_first_ack_after_restart: from then to the later of the API's first 202 and the
  EventLogger's first acknowledgement (both writers back);
- acknowledged: event ids of 202 answers plus events the EventLogger had acknowledged;
- stored: of those, how many the store's readers see; acked_lost: the others;
- duplicated: rows the store's readers see more than once (each event should be read once).

Baseline, in the same run: the same producers' settings with kafka-python's idempotent
producer (what driftloop used before) send through the same kill; it is reported
(printed) as whether it was acknowledged again within the `--after` seconds.

    ~/.cache/driftloop/venv/bin/python benchmarks/broker_restart.py --before 10 --down 5 --after 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from driftloop.collector import EventLogger, Store, StoreWriter, StoreWriterConfig, create_app
from driftloop.collector.durable import kafka_unreachable
from driftloop.settings import load_settings
from driftloop.stack import LocalStack, free_port

RESULTS = Path(__file__).parent / "results" / "broker_restart.json"
START = "2026-11-23T09:00:00+00:00"


class Load:
    """The API client and the model server, recording when each write was acknowledged."""

    def __init__(self, url: str, logger: EventLogger, registry: CollectorRegistry, topic: str) -> None:
        self.url, self.logger, self.registry, self.topic = url, logger, registry, topic
        self.accepted: list[str] = []
        self.api_acks: list[float] = []
        self.logged = 0
        self.logger_counts: list[tuple[float, float]] = []
        self.running = threading.Event()
        self.threads = [threading.Thread(target=self._client), threading.Thread(target=self._model_server),
                        threading.Thread(target=self._watch_logger)]

    def start(self) -> None:
        self.running.set()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.running.clear()
        for thread in self.threads:
            thread.join()

    def _client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            i = 0
            while self.running.is_set():
                batch = [{"event_id": f"api-{i}-{j}", "request_id": f"r-{i}-{j}", "label": 1, "timestamp": START}
                         for j in range(10)]
                try:
                    answer = http.post("/v1/feedback", json={"events": batch})
                    if answer.status_code == 202:
                        self.accepted.extend(answer.json()["event_ids"])
                        self.api_acks.append(time.monotonic())
                except httpx.TransportError:
                    pass
                i += 1
                time.sleep(0.02)

    def _model_server(self) -> None:
        while self.running.is_set():
            self.logger.log_prediction(event_id=f"m-{self.logged}", request_id=f"m-{self.logged}", model_name="churn",
                                       model_version="1", features={"x": float(self.logged)}, output={"label": 1},
                                       timestamp=START)
            self.logged += 1
            time.sleep(0.002)

    def sent(self) -> float:
        return self.registry.get_sample_value("driftloop_producer_events_sent_total", {"topic": self.topic}) or 0

    def _watch_logger(self) -> None:
        while self.running.is_set():
            self.logger_counts.append((time.monotonic(), self.sent()))
            time.sleep(0.05)


def idempotent_baseline(bootstrap: str, topic: str) -> tuple[KafkaProducer, list[float], threading.Event]:
    """kafka-python's idempotent producer, as driftloop configured it before, sending a record every 5 ms."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                             delivery_timeout_ms=10_000, request_timeout_ms=9_995, max_block_ms=10_000,
                             reconnect_backoff_max_ms=1000)
    acks: list[float] = []
    running = threading.Event()
    running.set()

    def send() -> None:
        while running.is_set():
            try:
                producer.send(topic, value=b"baseline").add_callback(lambda _m: acks.append(time.monotonic()))
            except Exception:  # noqa: BLE001 - metadata unavailable while the broker is away
                pass
            time.sleep(0.005)

    threading.Thread(target=send, daemon=True).start()
    return producer, acks, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=float, default=10.0, help="seconds of load before the kill")
    parser.add_argument("--down", type=float, default=5.0, help="seconds the broker stays dead")
    parser.add_argument("--after", type=float, default=20.0, help="seconds of load after it is back")
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as state:
        state = Path(state)
        settings = load_settings(
            data_dir=state / "data",
            stack={"state_dir": state / "stack", "start_prometheus": False, "start_alertmanager": False,
                   "kafka_port": free_port(), "kafka_controller_port": free_port(), "kafka_heap": "512m"},
            kafka={"topic_prefix": "bench."},
        )
        stack = LocalStack(settings)
        stack.up()
        bootstrap, topics = settings.kafka_bootstrap(), settings.kafka.topics()
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            create_app(bootstrap_servers=bootstrap, topics=topics, registry=CollectorRegistry(), ack_timeout_s=3),
            host="127.0.0.1", port=port, log_level="warning", access_log=False))
        threading.Thread(target=server.run, daemon=True).start()
        writer = StoreWriter(StoreWriterConfig(bootstrap, topics, settings.store_dir, batch_seconds=0.5),
                             CollectorRegistry())
        stop_writer = threading.Event()
        collector = threading.Thread(target=writer.run, args=(stop_writer,), daemon=True)
        logger_registry = CollectorRegistry()
        logger = EventLogger(bootstrap, topics, logger_registry, buffer_events=200_000, block_timeout_s=60)
        try:
            while not server.started:
                time.sleep(0.05)
            collector.start()
            load = Load(f"http://127.0.0.1:{port}", logger, logger_registry, topics.predictions)
            baseline, baseline_acks, baseline_running = idempotent_baseline(bootstrap, settings.kafka.topic("shadow"))
            load.start()
            time.sleep(args.before)
            print(f"killing the broker (SIGKILL) after {len(load.accepted)} API events and {load.sent():.0f} "
                  "logged ones were acknowledged", flush=True)
            stack.kafka.process.stop(hard=True)
            killed = time.monotonic()
            time.sleep(args.down)
            restarting = threading.Thread(target=stack.up)
            restarting.start()
            while kafka_unreachable(bootstrap, timeout_s=1.0) is not None:
                time.sleep(0.1)
            ready = time.monotonic()
            restarting.join()
            print(f"broker answers again {ready - killed:.1f} s after the kill", flush=True)
            time.sleep(args.after)
            load.stop()
            baseline_running.clear()
            logger.flush(timeout_s=120)
            failed = logger_registry.get_sample_value("driftloop_producer_events_failed_total",
                                                      {"topic": topics.predictions}) or 0
            api_first = min((t for t in load.api_acks if t > killed), default=None)
            before_kill = max(count for t, count in load.logger_counts if t <= killed)
            logger_first = min((t for t, count in load.logger_counts if t > killed and count > before_kill + 10),
                               default=None)
            baseline_back = any(t > ready for t in baseline_acks)
            acked_ids = set(load.accepted) | ({f"m-{i}" for i in range(load.logged)} if failed == 0 else set())
            deadline = time.monotonic() + 180
            store = Store(settings.store_dir)
            while time.monotonic() < deadline:
                stored_ids = _stored_ids(store)
                if acked_ids <= stored_ids:
                    break
                time.sleep(1)
            stored_ids, read_rows = _stored_ids(store), _read_rows(store)
        finally:
            stop_writer.set()
            collector.join(timeout=60)
            logger.close(timeout_s=10)
            server.should_exit = True
            try:
                baseline.close(timeout=2)
            except Exception:  # noqa: BLE001 - the stuck idempotent producer may not close cleanly
                pass
            stack.down()

    firsts = [t for t in (api_first, logger_first) if t is not None]
    back_after = (max(firsts) - ready) if len(firsts) == 2 else None
    figures = {
        "seconds_broker_down": round(ready - killed, 2),
        "seconds_to_first_ack_after_restart": None if back_after is None else round(max(back_after, 0.0), 2),
        "acknowledged": len(acked_ids),
        "stored": len(acked_ids & stored_ids),
        "acked_lost": len(acked_ids - stored_ids),
        "duplicated": read_rows - len(stored_ids),
    }
    print(f"API first 202 {None if api_first is None else round(api_first - ready, 2)} s after the broker was ready; "
          f"EventLogger {None if logger_first is None else round(logger_first - ready, 2)} s; "
          f"EventLogger failures {failed:.0f}")
    print(f"baseline (kafka-python idempotent producer): acknowledged again within {args.after:.0f} s: {baseline_back}")
    print(json.dumps(figures, indent=2))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(figures, indent=2) + "\n")


def _stored_ids(store: Store) -> set[str]:
    ids = set()
    for view in ("predictions", "feedback"):
        try:
            ids.update(store.sql(f"SELECT event_id FROM {view}").column(0).to_pylist())
        except Exception:  # noqa: BLE001 - no file yet: the view does not exist
            pass
    return ids


def _read_rows(store: Store) -> int:
    return store.predictions("churn").num_rows + store.feedback().num_rows


if __name__ == "__main__":
    main()
