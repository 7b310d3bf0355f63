"""Every panel of every dashboard returns series on the real Prometheus scraping the real running services.

The services run as a user runs them, each in its own process, registered with the session's
Prometheus: the collector, the ingestion API, the model server, the shadow scorer, the drift
monitor and the retrain service (with its promotion gate). Users call the model server and label
its answers through the API; a malformed event and bad requests are sent too. One retrain episode
fails (nothing to snapshot yet); a second one trains a challenger on Ray, the gate promotes it, the
world drifts back and the watch rolls it back. Then every query of every panel and annotation is
run over the test's time range, as Grafana would with the variables set to this test's
environment and model; the test prints the panels that returned nothing and fails if any did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

import httpx
import numpy as np
from events import wait_until
from test_retrain_episodes import notification
from world import FEATURES, UserThreads, register, start_service, stop_all, world

from driftloop.dashboards.export import queries, render_all
from driftloop.retrain import ModelRegistry
from driftloop.retrain.episodes import EpisodeStore
from driftloop.stack import free_port

MODEL = f"live{uuid.uuid4().hex[:6]}"


class Users(UserThreads):
    """Threads that ask the model server and label each answer through the API with the world's current concept."""

    def __init__(self, serve_url: str, api_url: str, threads: int = 2, pause_s: float = 0.05) -> None:
        self.serve_url, self.api_url, self.pause_s = serve_url, api_url, pause_s
        self.concept = "b"  # the world drifted before the test began: the champion (concept a) is often wrong
        self.shift = 0.0  # added to the last feature: its distribution moves away from the reference
        self.answered = 0
        super().__init__(threads)

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set():
                x = rng.normal(size=len(FEATURES))
                x[-1] += self.shift
                truth = str(int(x[0 if self.concept == "a" else 1] > 0))
                request_id = uuid.uuid4().hex
                try:
                    answer = client.post(f"{self.serve_url}/v1/predict", json={
                        "request_id": request_id, "features": dict(zip(FEATURES, x.tolist(), strict=True))})
                    if answer.status_code == 200 and rng.random() < 0.8:  # some are never labelled: a pool
                        client.post(f"{self.api_url}/v1/feedback",
                                    json={"request_id": request_id, "label": truth, "source": "user"})
                    if answer.status_code == 200:
                        self.answered += 1
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                self.stop.wait(self.pause_s)


def start(command: list[str], env: dict, logs, name: str) -> subprocess.Popen:
    return start_service(command, env, logs / f"{name}.log")


def ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def as_grafana_would(expr: str) -> str:
    """The expression with the board's variables set to this test's environment and model."""
    return (expr.replace("$__rate_interval", "15s").replace("$__range", "1h").replace("$environment", "local")
            .replace("$model", MODEL))


def series_over(prometheus_url: str, expr: str, start: float, end: float) -> int:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "2s"})
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query_range?{query}", timeout=30) as response:
        return len(json.load(response)["data"]["result"])


def test_every_panel_returns_series_while_the_services_run(kafka, kafka_settings, prometheus, stack_settings,
                                                           data_dir, tmp_path, ray_local):
    began = time.time()
    registry = ModelRegistry.open(data_dir / "registry")
    features_a, labels_a = world(600, "a", seed=0)
    register(registry, tmp_path, features_a, labels_a, model=MODEL, alias="champion", reason="first champion")
    logs = tmp_path / "logs"
    logs.mkdir()
    serve_port, api_port, retrain_port = free_port(), free_port(), free_port()
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(data_dir), "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka,
           "DRIFTLOOP_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
           "DRIFTLOOP_STACK__STATE_DIR": str(stack_settings.stack.state_dir),  # register with the session's Prometheus
           "DRIFTLOOP_SERVE__PORT": str(serve_port), "DRIFTLOOP_API__PORT": str(api_port),
           "DRIFTLOOP_ALERTMANAGER__WEBHOOK_URL": f"http://127.0.0.1:{retrain_port}/v1/alerts",
           "DRIFTLOOP_SERVE__RELOAD_INTERVAL_S": "0.2", "DRIFTLOOP_SHADOW__REFRESH_S": "0.5",
           "DRIFTLOOP_SHADOW__START_FROM": "earliest", "DRIFTLOOP_GATE__CHECK_INTERVAL_S": "1",
           "DRIFTLOOP_GATE__MIN_PAIRS": "30", "DRIFTLOOP_GATE__LATENCY_P99_FACTOR": "20",
           "DRIFTLOOP_GATE__LATENCY_ROWS": "50", "DRIFTLOOP_DRIFT__INTERVAL_S": "2",
           "DRIFTLOOP_DRIFT__WINDOW_MINUTES": "10", "DRIFTLOOP_DRIFT__MIN_ROWS": "50",
           "DRIFTLOOP_RETRAIN__POLL_S": "0.5", "DRIFTLOOP_RETRAIN__COOLDOWN_S": "0",
           "DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "50", "DRIFTLOOP_RETRAIN__LABEL_DEADLINE_S": "15",
               "DRIFTLOOP_RETRAIN__SELECTION_WAIT_S": "5",
           "DRIFTLOOP_RAY__ADDRESS": ray_local.get_runtime_context().gcs_address, "DRIFTLOOP_RAY__NUM_WORKERS": "1",
           "DRIFTLOOP_RETRAIN__TRAINING": json.dumps({"epochs": 30, "batch_size": 32, "patience": 0})}
    serve_url, api_url, retrain_url = (f"http://127.0.0.1:{port}" for port in (serve_port, api_port, retrain_port))
    processes = [start(["collector", "run"], env, logs, "collector"), start(["api", "run"], env, logs, "api"),
                 start(["serve", "--model", MODEL], env, logs, "serve"),
                 start(["shadow", "run", "--model", MODEL], env, logs, "shadow"),
                 start(["retrain", "serve"], env, logs, "retrain")]
    episodes = EpisodeStore(registry.database)

    def log_tails() -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-2500:]}" for path in sorted(logs.iterdir()))

    def post_alert(fingerprint: str) -> None:
        body = notification(model=MODEL, fingerprint=fingerprint)
        assert httpx.post(f"{retrain_url}/v1/alerts", json=body, timeout=10).status_code == 200
        assert httpx.post(f"{retrain_url}/v1/alert-log", json=body, timeout=10).status_code == 200

    try:
        assert wait_until(lambda: all(ok(f"{url}/healthz") for url in (serve_url, api_url, retrain_url))
                          or any(p.poll() is not None for p in processes), 180), log_tails()
        assert all(p.poll() is None for p in processes), log_tails()
        post_alert("first")  # nothing is stored yet: this episode waits 15 s for labels, then fails at its snapshot
        assert wait_until(lambda: [e.outcome for e in episodes.episodes(MODEL)] == ["failed"], 120), log_tails()
        # bad input of every kind, for the error and dead-letter panels
        assert httpx.post(f"{serve_url}/v1/predict", json={"request_id": "r", "features": {"nope": 1}}).status_code == 422
        assert httpx.post(f"{api_url}/v1/feedback", json={"rating": "high"}).status_code == 422
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
        producer.send(kafka_settings.topic("predictions"), b"not json").get(timeout=10)
        producer.close()

        with Users(serve_url, api_url) as users:
            assert wait_until(lambda: users.answered >= 300, 300), log_tails()
            profiled = subprocess.run([sys.executable, "-m", "driftloop.cli", "drift", "profile", "--model", MODEL,
                                       "--window", "1h"], env=env, capture_output=True, text=True, timeout=300)
            assert profiled.returncode == 0, profiled.stderr
            processes.append(start(["drift", "run", "--model", MODEL], env, logs, "drift"))
            post_alert("second")  # labels of the drifted world are in: train a challenger on them
            # the webhook records the notification and answers; the episode opens right after
            assert wait_until(lambda: len(episodes.episodes(MODEL)) == 2, 60), log_tails()
            promoted = wait_until(lambda: registry.alias(MODEL, "champion") not in (None, 1)
                                  or episodes.episodes(MODEL)[0].finished, 900, interval_s=2)
            assert promoted and registry.alias(MODEL, "champion") != 1, f"{episodes.episodes(MODEL)[0]}\n{log_tails()}"
            users.concept, users.shift = "a", 3.0  # the world drifts back (the new champion is the worse one
            # now) and the inputs of the last feature move
            assert wait_until(lambda: episodes.episodes(MODEL)[0].outcome is not None, 600, interval_s=2), log_tails()
            assert episodes.episodes(MODEL)[0].outcome == "rolled_back", episodes.episodes(MODEL)[0].reason
            rolled_back = f'driftloop_retrain_episodes_total{{model="{MODEL}", outcome="rolled_back"}}'
            assert wait_until(lambda: series_over(prometheus.url, rolled_back, began, time.time()), 60), \
                "Prometheus scraped the retrain service after the episode ended"
            scraped_since = {f'driftloop_retrain_training_seconds_count{{model="{MODEL}"}}': "the training time",
                             f'driftloop_drift_feature_drifted{{model="{MODEL}"}} == 1': "a drifted feature"}
            for expr, what in scraped_since.items():
                assert wait_until(lambda expr=expr: series_over(prometheus.url, expr, time.time() - 5, time.time()),
                                  180), f"{what} reached Prometheus"
        assert not users.failures, users.failures[:5]

        end = time.time()
        panels: dict[str, list[str]] = {}  # a panel (or annotation) shows something when one of its queries does
        for document in render_all().values():
            for q in queries(document):
                panels.setdefault(f"{q.dashboard} / {q.panel}", []).append(q.expr)
        empty = {panel: exprs for panel, exprs in panels.items()
                 if not any(series_over(prometheus.url, as_grafana_would(expr), began, end) for expr in exprs)}
        print("panels whose queries returned nothing:\n" + "\n".join(f"{p}: {e}" for p, e in empty.items())
              if empty else f"all {len(panels)} panels and annotations returned series")
        assert not empty, f"{len(empty)} of {len(panels)} panels returned nothing: {sorted(empty)}"
    finally:
        stop_all(processes)
