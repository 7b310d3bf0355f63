"""Training on Ray Train (2.60, Train V2): `train_func(config)` on each worker, `train_model` to run it.

`train_func` is an importable plain function, as in Ray's own examples: it turns its config
dict into a frozen `TrainConfig` on its first line, trains its shard (DistributedDataParallel
over gloo on CPUs, NCCL on GPUs, set up by `TorchTrainer`), evaluates the validation rows each
epoch, reports the epoch's metrics (`ray.train.report` is a barrier of all workers), and rank 0
checkpoints whenever the validation loss fell, so the latest checkpoint is the best one. It
resumes from the last checkpoint when Ray restarts the worker group (`max_failures`), stops
early after `patience` epochs without improvement, raises on a NaN or infinite loss, and rank
0 returns its history and timings (`Result.return_value`).

`train_model` runs it under a wall-clock limit of its own. Ray's collective timeouts are
10-30 minutes and a hung worker blocks every other one at the next `report`, so the run is
aborted when the limit passes, and the error names the worker whose heartbeat is oldest. A
worker that dies fails the run at once (after `max_failures` restarts), naming its rank.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from driftloop.retrain.dataset import TrainingData
from driftloop.retrain.model_files import WEIGHTS_FILE, save_model_files
from driftloop.retrain.registry import EpochMetrics, TrainingRecord
from driftloop.retrain.specs import ModelSpec, SpecError, get_spec

__all__ = ["RunSettings", "TrainConfig", "TrainedModel", "TrainingFailed", "TrainingTimeout", "train_func",
           "train_model"]

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.pt"
PROGRESS_DIR = "progress"
HEARTBEAT_S = 1.0


class TrainingFailed(RuntimeError):
    """A training run that ended without a model; `reason` says why (a worker, the loss, the data, Ray)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TrainingTimeout(TrainingFailed):
    """The run passed its wall-clock limit and was aborted."""


@dataclass(frozen=True)
class TrainConfig:
    """What one worker needs. `data` is an ObjectRef of (or a path to an .npz of) the arrays of
    `TrainingData.arrays()`; `progress_dir`, when set, gets one heartbeat file per worker."""

    data: Any
    spec: str
    module_params: Mapping[str, Any]
    n_inputs: int
    n_classes: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.0
    seed: int = 0
    patience: int = 0
    progress_dir: str | None = None
    measure_allreduce: bool = False


def train_func(config: dict) -> dict:
    """One Ray Train worker. Returns (rank 0's is `Result.return_value`) the history and timings."""
    settings = TrainConfig(**config)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    heartbeat = _Heartbeat(settings.progress_dir, rank)
    try:
        return _train(settings, rank, world, heartbeat)
    finally:
        heartbeat.close()


def _train(settings: TrainConfig, rank: int, world: int, heartbeat: _Heartbeat) -> dict:
    torch.manual_seed(settings.seed)

    began = time.perf_counter()
    arrays = _load_arrays(settings.data)
    x_train, y_train = torch.as_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"])
    x_val, y_val = torch.as_tensor(arrays["x_val"]), torch.as_tensor(arrays["y_val"])
    load_s = time.perf_counter() - began

    module = get_spec(settings.spec).with_params(module_params=settings.module_params).build_module(
        settings.n_inputs, settings.n_classes)
    optimizer_state, state = None, {"epoch": -1, "best_val_loss": math.inf, "best_epoch": None, "bad_epochs": 0,
                                    "history": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:  # Ray restarted the worker group: go on from the best epoch so far
        with checkpoint.as_directory() as folder:
            module.load_state_dict(torch.load(Path(folder) / WEIGHTS_FILE, weights_only=True))
            optimizer_state = torch.load(Path(folder) / OPTIMIZER_FILE, weights_only=True)
            state = json.loads((Path(folder) / STATE_FILE).read_text())
    model = ray.train.torch.prepare_model(module)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    generator = torch.Generator().manual_seed(settings.seed)
    per_worker = max(1, settings.batch_size // world)  # the global batch, split: the same steps on any worker count
    loader = ray.train.torch.prepare_data_loader(
        DataLoader(TensorDataset(x_train, y_train), batch_size=per_worker, shuffle=True, generator=generator))
    loss_fn = nn.CrossEntropyLoss()
    plain = getattr(model, "module", model)

    train_s, steps = 0.0, 0
    stopped_early = False
    for epoch in range(state["epoch"] + 1, settings.epochs):
        epoch_began = time.perf_counter()
        if world > 1:
            loader.sampler.set_epoch(epoch)
        model.train()
        total, count = torch.zeros(2, dtype=torch.float64), 0
        for step, (features, labels) in enumerate(loader):
            optimizer.zero_grad()
            loss = loss_fn(model(features), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the training loss is {loss.item()} at epoch {epoch}, step {step} "
                                         f"(worker rank {rank}): lower the learning rate or check the inputs")
            loss.backward()
            optimizer.step()
            total += torch.tensor([loss.item() * len(labels), len(labels)], dtype=torch.float64)
            count += 1
            heartbeat.beat(epoch, step)
        steps += count
        train_loss = _mean_over_workers(total, world)
        val_loss, val_accuracy = _evaluate(plain, x_val, y_val, loss_fn)
        if not math.isfinite(val_loss):
            raise FloatingPointError(f"the validation loss is {val_loss} at epoch {epoch} (worker rank {rank})")
        improved = val_loss < state["best_val_loss"]
        if improved:
            state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
        else:
            state["bad_epochs"] += 1
        seconds = time.perf_counter() - epoch_began
        train_s += seconds
        state["epoch"] = epoch
        state["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                 "val_accuracy": val_accuracy, "seconds": seconds})
        stop = _agree(settings.patience > 0 and state["bad_epochs"] >= settings.patience, world)
        metrics = {**state["history"][-1], "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"]}
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0 and improved:
                torch.save(plain.state_dict(), Path(folder) / WEIGHTS_FILE)
                torch.save(optimizer.state_dict(), Path(folder) / OPTIMIZER_FILE)
                (Path(folder) / STATE_FILE).write_text(json.dumps(state))
                saved = Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=saved)
        if stop:
            stopped_early = epoch < settings.epochs - 1
            break

    result = {
        "history": state["history"], "best_epoch": state["best_epoch"], "best_val_loss": state["best_val_loss"],
        "stopped_early": stopped_early, "load_s": load_s, "train_s": train_s, "steps": steps,
        "step_s": train_s / steps if steps else None, "world_size": world,
        "rows_per_worker": len(loader.sampler) if hasattr(loader, "sampler") else len(x_train),
        "worker_nodes": _gather([ray.get_runtime_context().get_node_id(), socket.gethostname(), os.getpid()], world),
    }
    if settings.measure_allreduce and world > 1:
        result["allreduce"] = _time_allreduce(plain)
    return result


def _load_arrays(data) -> dict[str, np.ndarray]:
    if isinstance(data, ray.ObjectRef):
        return ray.get(data)
    with np.load(data) as loaded:
        return {name: loaded[name] for name in loaded.files}


def _evaluate(module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> tuple[float, float]:
    module.eval()
    with torch.no_grad():
        logits = module(x)
        return float(loss_fn(logits, y)), float((logits.argmax(dim=1) == y).double().mean())


def _mean_over_workers(total: torch.Tensor, world: int) -> float:
    """The mean training loss of the epoch over every worker's rows."""
    if world > 1:
        torch.distributed.all_reduce(total)
    return float(total[0] / total[1]) if total[1] else math.nan


def _agree(decision: bool, world: int) -> bool:
    """Rank 0's decision, on every worker (they compute the same one; this makes sure they act alike)."""
    if world == 1:
        return decision
    flag = torch.tensor([1 if decision else 0])
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def _gather(value: list, world: int) -> list:
    if world == 1:
        return [value]
    everything: list = [None] * world
    torch.distributed.all_gather_object(everything, value)
    return everything


def _time_allreduce(module: nn.Module, repeats: int = 30) -> dict[str, float]:
    """Seconds per all-reduce of one float and of a gradient-sized tensor (the projection's α and β)."""
    parameters = sum(p.numel() for p in module.parameters())
    timings = {}
    for name, size in (("latency_s", 1), ("gradient_s", parameters)):
        tensor = torch.zeros(size)
        torch.distributed.barrier()
        began = time.perf_counter()
        for _ in range(repeats):
            torch.distributed.all_reduce(tensor)
        timings[name] = (time.perf_counter() - began) / repeats
    timings["gradient_bytes"] = parameters * 4
    return timings


class _Heartbeat:
    """A small JSON file per worker (rank, pid, host, epoch, step, when the step last moved, time), rewritten
    every second by a thread of its own.

    The thread keeps beating while training waits in a collective (torch releases the GIL there),
    and stops when the process is killed or frozen: at a timeout the stalest heartbeat is the
    worker that hung, and the others are the ones waiting for it.
    """

    def __init__(self, folder: str | None, rank: int) -> None:
        self.path = Path(folder) / f"rank-{rank}.json" if folder else None
        self.rank = rank
        self.epoch, self.step, self.moved = -1, -1, time.time()
        self._stop = threading.Event()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write()
            threading.Thread(target=self._run, name="driftloop-heartbeat", daemon=True).start()

    def beat(self, epoch: int, step: int) -> None:
        self.epoch, self.step, self.moved = epoch, step, time.time()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._write()
            except OSError:
                pass

    def _write(self) -> None:
        document = {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(), "epoch": self.epoch,
                    "step": self.step, "moved": self.moved, "time": time.time()}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document))
        temporary.rename(self.path)


def heartbeats(folder: Path) -> list[dict]:
    """The latest heartbeat of each worker of a run, by rank."""
    beats = []
    for path in sorted(Path(folder).glob("rank-*.json")):
        try:
            beats.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(beats, key=lambda beat: beat["rank"])


# -- the driver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """How a training run uses Ray. `timeout_s` is the run's own wall-clock limit."""

    storage_path: Path
    num_workers: int = 1
    use_gpu: bool = False
    max_failures: int = 0
    timeout_s: float = 1800.0
    cpus_per_worker: float = 1.0
    placement_strategy: str = "PACK"
    measure_allreduce: bool = False

    def __post_init__(self) -> None:
        if self.num_workers < 1 or self.max_failures < 0 or self.timeout_s <= 0 or self.cpus_per_worker <= 0:
            raise ValueError("num_workers >= 1, max_failures >= 0, timeout_s > 0 and cpus_per_worker > 0 are required")
        if self.placement_strategy not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            raise ValueError(f"Invalid 'placement_strategy' {self.placement_strategy!r}. Valid values are: "
                             "['PACK', 'SPREAD', 'STRICT_PACK', 'STRICT_SPREAD']")


@dataclass(frozen=True)
class TrainedModel:
    """A finished run: the model folder (weights from the best checkpoint, JSON, preprocessing),
    its training record and validation metrics, and the timings the benchmark splits."""

    folder: Path
    record: TrainingRecord
    metrics: Mapping[str, float]
    classes: tuple[str, ...]
    features: tuple[str, ...]
    timings: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)


def train_model(data: TrainingData, spec: ModelSpec, run: RunSettings, name: str, folder: Path) -> TrainedModel:
    """Train `spec` on `data` with `run.num_workers` Ray workers (the caller has connected to Ray).

    Writes the model folder to `folder`; raises TrainingFailed (or TrainingTimeout) naming the cause.
    """
    spec.build_module(data.n_inputs, len(data.classes))  # a spec that cannot build fails here, before Ray
    began = time.perf_counter()
    storage = Path(run.storage_path).resolve()
    progress = storage / name / PROGRESS_DIR
    data_ref = ray.put(data.arrays())
    params = spec.training
    config = {
        "data": data_ref, "spec": spec.name, "module_params": dict(spec.module_params), "n_inputs": data.n_inputs,
        "n_classes": len(data.classes), "epochs": params.epochs, "batch_size": params.batch_size,
        "learning_rate": params.learning_rate, "weight_decay": params.weight_decay, "seed": params.seed,
        "patience": params.patience, "progress_dir": str(progress), "measure_allreduce": run.measure_allreduce,
    }
    TrainConfig(**config)  # the fields train_func reads, checked here
    trainer = _TimedTrainer(
        train_func,
        timeout_s=run.timeout_s,
        progress_dir=progress,
        train_loop_config=config,
        torch_config=TorchConfig(timeout_s=max(30, int(run.timeout_s))),
        scaling_config=ScalingConfig(num_workers=run.num_workers, use_gpu=run.use_gpu,
                                     resources_per_worker={"CPU": run.cpus_per_worker},
                                     placement_strategy=run.placement_strategy),
        run_config=RunConfig(name=name, storage_path=str(storage), failure_config=FailureConfig(max_failures=run.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    try:
        result = trainer.fit()
    except TrainingFailed:
        raise
    except ray.train.WorkerGroupError as error:
        raise TrainingFailed(_worker_failure(spec, error, progress)) from None
    except ray.train.TrainingFailedError as error:
        raise TrainingFailed(f"Ray Train failed: {_first_line(error)}") from None
    finally:
        del data_ref
    fit_s = time.perf_counter() - began
    value = result.return_value or {}
    if result.checkpoint is None or not value:
        raise TrainingFailed("the run finished without a checkpoint: no epoch completed")
    folder = Path(folder)
    with result.checkpoint.as_directory() as checkpoint:
        save_model_files(folder, Path(checkpoint) / WEIGHTS_FILE, spec.name, spec.module_params, data.n_inputs,
                         data.classes, data.preprocessor)
    best = next(e for e in value["history"] if e["epoch"] == value["best_epoch"])
    record = TrainingRecord(
        run_path=str(result.path), workers=run.num_workers, use_gpu=run.use_gpu, wall_s=fit_s,
        epochs=tuple(EpochMetrics(**entry) for entry in value["history"]), best_epoch=value["best_epoch"],
        stopped_early=value["stopped_early"], nodes=tuple(node[0] for node in value["worker_nodes"]),
    )
    metrics = {"val_accuracy": best["val_accuracy"], "val_loss": best["val_loss"], "val_rows": int(len(data.y_val)),
               "train_rows": int(len(data.y_train))}
    in_workers = value["load_s"] + value["train_s"]
    timings = {"fit_s": fit_s, "load_s": value["load_s"], "train_s": value["train_s"], "step_s": value["step_s"],
               "overhead_s": fit_s - in_workers}
    details = {"worker_nodes": value["worker_nodes"], "allreduce": value.get("allreduce"),
               "steps": value["steps"], "rows_per_worker": value["rows_per_worker"]}
    return TrainedModel(folder, record, metrics, data.classes, data.preprocessor.feature_names, timings, details)


_DEATHS = ("ActorDiedError", "RayActorError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError")


def _unwrap(cause: BaseException) -> BaseException:
    """The exception behind Ray Train's wrappers: a failed health check's, a user error's, a task's cause."""
    cause = getattr(cause, "health_check_failure", None) or getattr(cause, "_base_exc", None) or cause
    return getattr(cause, "cause", None) or cause


_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Socket closed", "remote worker")


def _worker_failure(spec: ModelSpec, error, progress: Path) -> str:
    """The reason of a failed worker group: a worker that died is named before the peers it took down.

    When a worker is killed, Ray often hears first from a survivor whose collective lost its peer
    (gloo: "Connection reset by peer"); the heartbeats then say which worker stopped, and whether
    its process is gone.
    """
    failures = {rank: _unwrap(cause) for rank, cause in sorted((getattr(error, "worker_failures", {}) or {}).items())}
    if not failures:
        return f"spec {spec.name!r}: the workers failed: {_first_line(error)}"
    died = [rank for rank, cause in failures.items() if type(cause).__name__ in _DEATHS]
    if died:
        others = sorted(set(failures) - set(died))
        lost = f"; rank {', '.join(map(str, others))} then lost its peers" if others else ""
        return (f"worker rank {', '.join(map(str, died))} died during training "
                f"({type(failures[died[0]]).__name__}: the process was killed or crashed){lost}")
    rank, cause = next(iter(failures.items()))
    if isinstance(cause, SpecError):
        return str(cause)
    text = _first_line(cause)
    if any(marker in text for marker in _PEER_LOST):
        culprit = _culprit(progress, exclude=set(failures))
        if culprit:
            return f"{culprit}; worker rank {rank} then lost its connection to it ({type(cause).__name__}: {text[:160]})"
    return f"spec {spec.name!r} failed to train on worker rank {rank}: {type(cause).__name__}: {text}"


def _culprit(progress: Path, exclude: set[int]) -> str | None:
    """The worker (not among `exclude`) whose heartbeat stopped first, and whether its process still exists."""
    beats = [beat for beat in heartbeats(progress) if beat["rank"] not in exclude]
    if not beats:
        return None
    oldest = min(beats, key=lambda beat: beat["time"])
    gone = oldest["host"] == socket.gethostname() and not Path(f"/proc/{oldest['pid']}").exists()
    return f"{_describe(oldest)} {'died' if gone else 'stopped responding'} during training, last {_where(oldest)}"


def _describe(beat: dict) -> str:
    return f"worker rank {beat['rank']} (pid {beat['pid']} on {beat['host']})"


def _where(beat: dict) -> str:
    if beat["epoch"] < 0:
        return "before its first step"
    return f"at epoch {beat['epoch']}, step {beat['step']}"


def _first_line(error: BaseException) -> str:
    """The line of an error (often a remote traceback) that says what happened."""
    noise = ("Traceback", "File ", "^", "~", "Training failed due to", "The above exception")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.strip().startswith(noise)]
    return (lines[-1] if lines else type(error).__name__)[:500]


class _TimedTrainer(TorchTrainer):
    """A TorchTrainer whose run is aborted after `timeout_s` (Ray 2.60's `fit` waits for ever).

    It starts the controller as `DataParallelTrainer._initialize_and_run_controller` does in
    Ray 2.60 and waits for it with a deadline; past it, it aborts the controller (which stops
    the workers) and raises TrainingTimeout naming the worker whose heartbeat is oldest.
    """

    def __init__(self, *args, timeout_s: float, progress_dir: Path, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._timeout_s = timeout_s
        self._progress_dir = progress_dir

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        from ray._common.constants import RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR
        from ray.train.v2._internal.constants import (
            DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE,
            get_env_vars_to_propagate,
        )
        from ray.train.v2._internal.execution.controller import TrainController

        env_vars = get_env_vars_to_propagate()
        env_vars.setdefault(RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR, DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE)
        controller_class = ray.remote(
            num_cpus=0,
            label_selector={ray._raylet.RAY_NODE_ID_KEY: ray.get_runtime_context().get_node_id()},
            runtime_env={"env_vars": env_vars},
        )(TrainController)
        controller = controller_class.remote(**controller_init_kwargs)
        try:
            ray.get(controller.run.remote(), timeout=self._timeout_s)
        except ray.exceptions.GetTimeoutError:
            stalled = _stalest(self._progress_dir)
            try:
                ray.get(controller.abort.remote(), timeout=30)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                pass
            ray.kill(controller, no_restart=True)
            raise TrainingTimeout(f"the run did not finish within its limit of {self._timeout_s:g} s and was "
                                  f"aborted; {stalled}") from None
        return ray.get(controller.get_result.remote())


def _stalest(progress_dir: Path) -> str:
    """Who held the run up: the worker whose heartbeat stopped (hung or frozen), else the slowest one."""
    beats = heartbeats(progress_dir)
    if not beats:
        return "no worker started training (check the cluster's free CPUs/GPUs)"
    now = time.time()
    oldest = min(beats, key=lambda beat: beat["time"])
    if now - oldest["time"] > 5 * HEARTBEAT_S:
        others = [beat["rank"] for beat in beats if beat is not oldest]
        waiting = f"; rank {', '.join(map(str, others))} waited for it" if others else ""
        return (f"{_describe(oldest)} hung: no heartbeat for {now - oldest['time']:.0f} s, last "
                f"{_where(oldest)}{waiting}")
    slowest = min(beats, key=lambda beat: (beat["epoch"], beat["step"]))
    return (f"every worker was alive; the slowest, {_describe(slowest)}, was {_where(slowest)} and last moved "
            f"{now - slowest['moved']:.0f} s ago")
