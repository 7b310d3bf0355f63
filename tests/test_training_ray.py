"""Ray Train (2.60, Train V2) on a real local Ray: DDP on 1 and 2 workers, registration, dead and hung workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pytest
import torch
from models import labelled_rows

from driftloop.collector.store import Store
from driftloop.curation import SnapshotSpec, build_snapshot
from driftloop.drift import ReferenceProfile
from driftloop.retrain import (
    ModelRegistry,
    RunSettings,
    TrainingFailed,
    TrainingTimeout,
    get_spec,
    prepare_training_data,
    train_model,
)
from driftloop.retrain.candidates import register_candidate
from driftloop.retrain.training import PROGRESS_DIR, heartbeats


def accuracy(predictor, table: pa.Table) -> float:
    return float((predictor.predict(table) == np.asarray(table["label"].to_pylist())).mean())


def test_two_workers_register_a_version_that_reloads_bit_identically_and_matches_one_worker(ray_local, tmp_path):
    snapshot = build_snapshot(Store(tmp_path / "store"), SnapshotSpec(model="churn"), tmp_path / "snapshots",
                              reference=labelled_rows(4000, seed=0))
    spec = get_spec("mlp").with_params(training={"epochs": 8, "batch_size": 64, "learning_rate": 3e-3, "patience": 3})
    data = prepare_training_data(snapshot.read(), spec)
    held_out = labelled_rows(2000, seed=1, prefix="test")
    registry = ModelRegistry.open(tmp_path / "registry")
    accuracies = {}
    for workers in (1, 2):
        trained = train_model(data, spec, RunSettings(storage_path=tmp_path / "ray", num_workers=workers, timeout_s=600),
                              f"churn-{workers}", tmp_path / f"model-{workers}")
        assert [e.epoch for e in trained.record.epochs][0] == 0 and trained.record.workers == workers
        assert len({node[2] for node in trained.details["worker_nodes"]}) == workers, "one process per worker"
        checkpoint_weights = (trained.folder / "weights.pt").read_bytes()
        version = register_candidate(registry, "churn", trained, snapshot.read(), spec, snapshot_id=snapshot.snapshot_id,
                                     origin="test", reason=f"{workers} workers")
        loaded = registry.load("churn", version.version)
        assert (loaded.folder / "weights.pt").read_bytes() == checkpoint_weights, "the best checkpoint, byte for byte"
        saved = torch.load(loaded.folder / "weights.pt", weights_only=True)
        assert all(torch.equal(saved[k], v) for k, v in loaded.predictor.module.state_dict().items())
        accuracies[workers] = accuracy(loaded.predictor, held_out)
        assert version.metrics["val_accuracy"] == max(e.val_accuracy for e in version.training.epochs
                                                      if e.epoch == version.training.best_epoch)
        profile = ReferenceProfile.load(loaded.profile_dir)
        assert {"feature.f00", "label", "proba.0"} <= set(profile.features), "the profile has what live traffic has"
        assert profile.performance.labelled == snapshot.manifest["rows"]
    assert registry.aliases("churn") == {"challenger": 2}
    assert accuracies[1] > 0.75, f"the MLP learns the rule: {accuracies}"
    assert abs(accuracies[2] - accuracies[1]) < 0.04, f"2 workers within noise of 1: {accuracies}"


def run_in_thread(target):
    outcome: dict = {}

    def run():
        began = time.monotonic()
        try:
            outcome["value"] = target()
        except BaseException as error:  # noqa: BLE001 - the test inspects it
            outcome["error"] = error
        outcome["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def worker_pid_when_training(progress, rank: int, thread: threading.Thread, outcome: dict) -> int:
    while thread.is_alive():
        beats = {beat["rank"]: beat for beat in heartbeats(progress)}
        if rank in beats and beats[rank]["step"] >= 3 and 0 in beats:
            return beats[rank]["pid"]
        time.sleep(0.2)
    raise AssertionError(f"the run ended before worker rank {rank} trained: {outcome}; {heartbeats(progress)}")


def long_run(tmp_path, name: str, timeout_s: float):
    spec = get_spec("mlp").with_params(training={"epochs": 200, "batch_size": 8, "patience": 0})
    data = prepare_training_data(labelled_rows(6000, seed=2), spec)
    settings = RunSettings(storage_path=tmp_path / "ray", num_workers=2, timeout_s=timeout_s)
    return lambda: train_model(data, spec, settings, name, tmp_path / name), tmp_path / "ray" / name / PROGRESS_DIR


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_a_dead_or_hung_worker_ends_the_run_within_its_limit_naming_it(ray_local, tmp_path, fault):
    limit = 150 if fault == "killed" else 120  # start-up alone takes a minute on a busy 2-core machine
    target, progress = long_run(tmp_path, f"fault-{fault}", timeout_s=limit)
    thread, outcome = run_in_thread(target)
    pid = worker_pid_when_training(progress, 1, thread, outcome)
    os.kill(pid, signal.SIGKILL if fault == "killed" else signal.SIGSTOP)
    try:
        thread.join(timeout=limit + 60)
        assert not thread.is_alive(), "the run must end within its limit"
    finally:
        if fault == "hung":
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    error = outcome.get("error")
    assert isinstance(error, TrainingFailed), outcome
    assert "worker rank 1" in error.reason, error.reason
    if fault == "killed":
        assert "died" in error.reason and not isinstance(error, TrainingTimeout)
        assert outcome["seconds"] < limit, "a dead worker fails the run at once, not at the limit"
    else:
        assert isinstance(error, TrainingTimeout) and f"limit of {limit} s" in error.reason
        assert f"pid {pid}" in error.reason, "the hung worker is named"
    assert not (tmp_path / f"fault-{fault}").exists(), "nothing half-trained is written"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.5)
    assert not _alive(pid), "the stopped worker was cleaned up (it would hold a CPU of the session's Ray)"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False
