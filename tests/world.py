"""Test helpers for serving, shadow and gate: a small world that drifts, tiny models trained on it, registered.

Models are the built-in `mlp` spec trained in this process with plain PyTorch (full-batch Adam,
a few hundred rows, well under a second): the tests of the server, the shadow scorer and the gate
are about what happens to a registered version, not about training it on Ray.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from driftloop.retrain import ModelRegistry, Preprocessor, TrainingRecord, get_spec, save_model_files

FEATURES = [f"f{i}" for i in range(4)]


def world(rows: int, concept: str, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Inputs and true labels. Concept "a": the label is f0 > 0; concept "b" (after a drift): f1 > 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, len(FEATURES)))
    column = {"a": 0, "b": 1}[concept]
    labels = (x[:, column] > 0).astype(int).astype(str)
    return {name: x[:, i] for i, name in enumerate(FEATURES)}, labels


def train(features: dict[str, np.ndarray], labels: np.ndarray, seed: int = 0, epochs: int = 150):
    """(state_dict, preprocessor, classes) of an MLP fitted to the data."""
    torch.manual_seed(seed)
    spec = get_spec("mlp").with_params(module_params={"hidden": 16})
    preprocessor = Preprocessor.fit(features)
    classes = sorted(set(labels.tolist()) | {"0", "1"})
    x = torch.as_tensor(preprocessor.transform(features))
    y = torch.as_tensor([classes.index(label) for label in labels])
    module = spec.build_module(preprocessor.width, len(classes))
    optimiser = torch.optim.Adam(module.parameters(), lr=0.02)
    for _ in range(epochs):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimiser.step()
    return module.state_dict(), preprocessor, classes, spec


def register(registry: ModelRegistry, tmp_path: Path, features, labels, *, model: str = "churn", seed: int = 0,
             alias: str | None = None, reason: str = "", preprocessor: Preprocessor | None = None):
    """Train on (features, labels) and register the result; with `alias`, point it there."""
    state, fitted, classes, spec = train(features, labels, seed)
    fitted = preprocessor or fitted
    folder = tmp_path / f"model-{uuid.uuid4().hex[:8]}"
    save_model_files(folder, state, spec.name, spec.module_params, fitted.width, classes, fitted)
    training = TrainingRecord(run_path=str(folder), workers=1, use_gpu=False, wall_s=0.1)
    return registry.register(model, folder, spec=spec.to_dict(), features=list(fitted.feature_names),
                             classes=classes, training=training, metrics={}, origin="test", alias=alias,
                             reason=reason or (f"test: {alias}" if alias else ""))


def prediction_event(request_id: str, features: dict, label: str, version: int | str, model: str = "churn",
                     at: datetime | None = None, p: float = 0.9) -> dict:
    """A logged prediction as a model server writes it."""
    other = "1" if label == "0" else "0"
    return {"schema_version": 1, "event_id": uuid.uuid4().hex, "request_id": request_id,
            "timestamp": (at or datetime.now(UTC)).isoformat(), "model_name": model, "model_version": str(version),
            "features": features, "output": {"label": label, "probabilities": {label: p, other: round(1 - p, 6)}},
            "latency_ms": 1.0}


def feedback_event(request_id: str, label: str, at: datetime | None = None) -> dict:
    return {"schema_version": 1, "event_id": uuid.uuid4().hex, "request_id": request_id,
            "timestamp": ((at or datetime.now(UTC)) + timedelta(seconds=1)).isoformat(), "label": label,
            "source": "user"}


class UserThreads:
    """Threads that play users until the `with` block ends; a subclass gives what one of them does, `_run(seed)`."""

    def __init__(self, threads: int) -> None:
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(threads)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, seed: int) -> None:
        raise NotImplementedError


def start_service(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`driftloop COMMAND` as its own process, its stderr (the log) to `log`."""
    return subprocess.Popen([sys.executable, "-m", "driftloop.cli", *command], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"))


def stop_all(processes: list[subprocess.Popen]) -> None:
    """SIGTERM every process at once, then wait for each (SIGKILL after 30 s)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
