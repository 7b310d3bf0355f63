"""The serving half end to end, as a user runs it: `driftloop serve`, `shadow run` and `gate run` on a real Kafka and store.

Users send requests at a steady, bounded rate and label every answer. A challenger trained on
shuffled labels is rejected; after the world drifts, one trained on the new concept is promoted
and the server swaps to it; when the world drifts back, the watch finds the new champion worse
than the previous one and rolls it back. No request fails, and the responses and the store name
each version that answered.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pyarrow.compute as pc
from events import wait_until
from prometheus_client import CollectorRegistry
from test_shadow import Writing
from world import FEATURES, UserThreads, register, start_service, stop_all, world

from driftloop.collector import EventLogger, Store
from driftloop.retrain import ModelRegistry
from driftloop.retrain.decisions import GateLedger
from driftloop.stack import free_port


class Users(UserThreads):
    """Threads that call the server at a bounded rate and label each answer with the world's current concept."""

    def __init__(self, url: str, logger: EventLogger, threads: int = 3, pause_s: float = 0.03,
                 max_requests: int = 30_000, max_seconds: float = 900) -> None:
        self.url, self.logger, self.pause_s = url, logger, pause_s
        self.concept = "a"
        self.answers: list[tuple[float, str, int, int | None]] = []  # (time, request id, status, version)
        self.budget = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        super().__init__(threads)

    def versions_seen(self) -> list[int]:
        """The versions that answered, in order, each run of equal ones once."""
        with self.lock:
            ordered = [version for _, _, _, version in sorted(self.answers) if version is not None]
        return [v for i, v in enumerate(ordered) if i == 0 or ordered[i - 1] != v]

    def _run(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                with self.lock:
                    if self.budget <= 0:
                        return
                    self.budget -= 1
                x = rng.normal(size=len(FEATURES))
                truth = str(int(x[0 if self.concept == "a" else 1] > 0))
                request_id = uuid.uuid4().hex
                try:
                    answer = client.post("/v1/predict", json={"request_id": request_id,
                                                              "features": dict(zip(FEATURES, x.tolist(), strict=True))})
                    version = answer.json().get("version") if answer.status_code == 200 else None
                    status = answer.status_code
                except httpx.HTTPError as error:
                    status, version = 0, None
                    self.failures.append(f"{type(error).__name__}: {error}")
                with self.lock:
                    self.answers.append((time.monotonic(), request_id, status, version))
                if status == 200:
                    self.logger.log_feedback(request_id=request_id, label=truth, source="user")
                self.stop.wait(self.pause_s)


def start(command: list[str], env: dict, name: str) -> subprocess.Popen:
    return start_service(command, env, Path(env["LOGS"]) / f"{name}.log")


def test_reject_promote_and_roll_back_under_load_without_a_failed_request(kafka, kafka_settings, data_dir, tmp_path):
    registry = ModelRegistry.open(data_dir / "registry")
    ledger = GateLedger(registry.database)
    features_a, labels_a = world(600, "a", seed=0)
    features_b, labels_b = world(600, "b", seed=1)
    register(registry, tmp_path, features_a, labels_a, alias="champion", reason="first champion")
    port = free_port()
    (tmp_path / "logs").mkdir()
    env = {**os.environ, "LOGS": str(tmp_path / "logs"), "DRIFTLOOP_DATA_DIR": str(data_dir),
           "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka, "DRIFTLOOP_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
           "DRIFTLOOP_STACK__STATE_DIR": str(tmp_path / "stack"), "DRIFTLOOP_SERVE__PORT": str(port),
           "DRIFTLOOP_SERVE__RELOAD_INTERVAL_S": "0.2", "DRIFTLOOP_SHADOW__REFRESH_S": "0.5",
           "DRIFTLOOP_SHADOW__START_FROM": "earliest", "DRIFTLOOP_GATE__CHECK_INTERVAL_S": "1",
           "DRIFTLOOP_GATE__MIN_PAIRS": "30", "DRIFTLOOP_GATE__LATENCY_P99_FACTOR": "20",
           "DRIFTLOOP_GATE__LATENCY_ROWS": "50"}
    processes = [start(["serve", "--model", "churn"], env, "serve"),
                 start(["shadow", "run", "--model", "churn"], env, "shadow"),
                 start(["gate", "run", "--model", "churn"], env, "gate")]
    url = f"http://127.0.0.1:{port}"
    logger = EventLogger(kafka, kafka_settings.topics(), CollectorRegistry())
    try:
        assert wait_until(lambda: _healthy(url) or any(p.poll() is not None for p in processes), timeout_s=120)
        assert all(p.poll() is None for p in processes), _logs(tmp_path)
        store = Store(data_dir / "store")
        with Writing(kafka, kafka_settings, data_dir):
            with Users(url, logger) as users:
                shuffled = register(registry, tmp_path, features_a, np.random.default_rng(2).permutation(labels_a),
                                    alias="challenger", reason="test: trained on shuffled labels")
                assert wait_until(lambda: _closed(ledger, shuffled.version), timeout_s=300), _logs(tmp_path)
                assert _closed(ledger, shuffled.version).status == "rejected"
                assert registry.aliases("churn") == {"champion": 1}

                users.concept = "b"  # the world drifts: version 1 is right half the time now
                drifted = register(registry, tmp_path, features_b, labels_b, alias="challenger",
                                   reason="test: trained on labels after the drift")
                assert wait_until(lambda: registry.alias("churn", "champion") == drifted.version, timeout_s=300), \
                    _logs(tmp_path)
                users.concept = "a"  # and drifts back: the new champion is the worse one now
                assert wait_until(lambda: registry.alias("churn", "champion") == 1, timeout_s=300), _logs(tmp_path)
                assert wait_until(lambda: users.versions_seen()[-1:] == [1], timeout_s=60)
            logger.flush()
            answered = [(request, version) for _, request, status, version in users.answers if status == 200]
            assert wait_until(lambda: store.predictions("churn").num_rows >= len(answered), timeout_s=120)
        assert not users.failures and {status for _, _, status, _ in users.answers} == {200}, users.failures[:5]
        assert users.versions_seen() == [1, drifted.version, 1], "responses named both versions across the swaps"
        stored = store.predictions("churn")
        by_request = dict(zip(stored["request_id"].to_pylist(), stored["model_version"].to_pylist(), strict=True))
        assert all(by_request.get(request) == str(version) for request, version in answered), \
            "every answer is in the store under the version that gave it"
        assert set(pc.unique(stored["model_version"]).to_pylist()) == {"1", str(drifted.version)}

        moves = [(c.from_version, c.to_version, c.actor) for c in registry.history("churn", "champion")]
        assert moves[-2:] == [(1, drifted.version, "gate"), (drifted.version, 1, "gate")]
        outcomes = [(t.kind, t.candidate_version, t.status) for t in ledger.trials("churn")]
        assert outcomes == [("promotion", shuffled.version, "rejected"), ("promotion", drifted.version, "promoted"),
                            ("watch", drifted.version, "rolled_back")]
    finally:
        logger.close(timeout_s=10)
        stop_all(processes)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _closed(ledger: GateLedger, version: int):
    found = [t for t in ledger.trials("churn") if t.kind == "promotion" and t.candidate_version == version]
    return found[-1] if found and found[-1].status != "open" else None


def _logs(tmp_path) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted((tmp_path / "logs").iterdir()))
