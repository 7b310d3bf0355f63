"""Retraining on Ray Train against plain single-process PyTorch, on the same snapshot, to the same epochs.

One curation snapshot (120,000 rows x 20 features by default: a nonlinear two-class rule on
Gaussian inputs) is prepared once (`retrain.prepare_training_data`: the split by event-id hash,
standardisation). Then, in this one run and on these same arrays:

- **baseline**: plain PyTorch in this process, one thread (as a Ray worker with one CPU): the same
  MLP spec, the same global batch (each of N Ray workers takes 1/N of it), Adam, the same epochs.
  It is timed after one warm-up backward pass: a process's first one imports `torch._dynamo`
  (seconds), which a long-lived trainer pays once; a Ray run pays it in every new worker, inside
  its overhead;
- **Ray Train** (`retrain.train_model`, Train V2 `TorchTrainer`, gloo DDP) with 1 and 2 workers
  on a local Ray started here as the retrain service starts one (`ray.init(num_cpus=2)`, Ray Train's
  report poll at 0.2 s).

Each is timed by wall clock and split into start-up (Ray: `ray.init`, and per run everything
that is neither loading data nor training: the controller, the worker group, process-group setup,
reports and checkpoints), data loading (arrays to tensors; for Ray, from the object store in the
worker) and training (the epochs themselves). `ray_fixed_overhead_s` is that start-up of a
1-worker run of 1,000 rows and one epoch with Ray up and warm (one such run before it, the
cluster's first, is reported as `split.first_run_overhead_s`); `ray.init` is reported beside it
(`split.ray_init_s`), paid once per service process. For scale, `split.bare_torch_trainer_s` is a
Ray Train `TorchTrainer` run, 1 worker, of a function that does nothing: the floor Ray itself sets. Accuracy of each is measured on 20,000 fresh rows of the same rule.

Projection to 8 and 32 workers. From the runs: c, the seconds per optimizer step of one worker
alone (1-worker run: compute, no all-reduce); from the 2-worker run, the seconds of one gloo
all-reduce of one float (a) and of a gradient-sized tensor (g). Ring all-reduce over N workers
costs 2(N-1) latency terms and moves 2(N-1)/N of the gradient, so with the N = 2 measurements
t(N) = (N-1) a + 2(N-1)/N (g - a). A run with N workers takes
ceil(train_rows / b) steps per epoch (b: the global batch) of c / N + t(N) each (a worker's share
of a step's compute shrinks with its share of the batch), plus the measured fixed overhead and
data loading: projected_N_s = overhead + loading + epochs x steps(N) x (c / N + t(N)). It assumes one
core per worker (this machine has 2, so the 2-worker figure itself shares them) and loopback-like
links; real networks have larger a and g.

Trigger to challenger, in the demo's setting: a `RetrainService` in this process gets a manual
trigger for a model whose labelled data is the demo's size (2,000 labelled predictions before a
drift and 1,300 after it, 20 features), and the seconds until its episode is `registered` are
measured (snapshot, 2 Ray workers with the default spec and early stopping, profile, registry),
with Ray already connected, as in a running service.

    ~/.cache/driftloop/venv/bin/python benchmarks/retrain_scaling.py                 # 5-10 minutes on 2 cores
    ~/.cache/driftloop/venv/bin/python benchmarks/retrain_scaling.py --rows 20000 --epochs 2 --output /tmp/rs.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

FEATURES = [f"f{i:02d}" for i in range(20)]
RESULTS = Path(__file__).resolve().parent / "results" / "retrain_scaling.json"


def rows(count: int, seed: int, prefix: str) -> pa.Table:
    """A nonlinear two-class rule on 20 Gaussian features, with label noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, len(FEATURES)))
    score = x[:, 0] * x[:, 1] + x[:, 2] - 0.5 * x[:, 3] ** 2 + 0.5 + 0.8 * np.tanh(x[:, 4:8].sum(axis=1))
    y = (score + 0.3 * rng.normal(size=count) > 0).astype(int)
    return pa.table({"event_id": [f"{prefix}-{i}" for i in range(count)], "label": y.astype(str).tolist(),
                     **{f"feature.{name}": x[:, j] for j, name in enumerate(FEATURES)}})


def plain_torch(data, spec, test_x: np.ndarray, test_y: np.ndarray) -> dict:
    """The baseline: the same module, batch size, optimizer and epochs in this process, without Ray."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)  # what a Ray worker with one CPU gets (OMP_NUM_THREADS=1)
    torch.nn.Linear(2, 2)(torch.zeros(1, 2)).sum().backward()  # the first backward of a process imports torch._dynamo
    began = time.perf_counter()
    torch.manual_seed(spec.training.seed)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    loaded = time.perf_counter()
    module = spec.build_module(data.n_inputs, len(data.classes))
    optimizer = torch.optim.Adam(module.parameters(), lr=spec.training.learning_rate)
    loader = DataLoader(TensorDataset(x, y), batch_size=spec.training.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(spec.training.seed))
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(spec.training.epochs):
        module.train()
        for features, labels in loader:
            optimizer.zero_grad()
            loss_fn(module(features), labels).backward()
            optimizer.step()
    trained = time.perf_counter()
    module.eval()
    with torch.no_grad():
        accuracy = float((module(torch.as_tensor(test_x)).argmax(1).numpy() == test_y).mean())
    return {"seconds": trained - began, "loading_s": loaded - began, "training_s": trained - loaded,
            "startup_s": 0.0, "accuracy": accuracy}


def ray_run(data, spec, workers: int, storage: Path, test_table: pa.Table, measure: bool) -> dict:
    from driftloop.retrain import RunSettings, load_predictor, train_model

    trained = train_model(data, spec, RunSettings(storage_path=storage, num_workers=workers, timeout_s=1800,
                                                  measure_allreduce=measure),
                          f"bench-{workers}-{time.time_ns()}", storage / f"model-{workers}-{time.time_ns()}")
    predictor = load_predictor(trained.folder)
    accuracy = float((predictor.predict(test_table) == np.asarray(test_table["label"].to_pylist())).mean())
    timings = trained.timings
    return {"seconds": timings["fit_s"], "startup_s": timings["overhead_s"], "loading_s": timings["load_s"],
            "training_s": timings["train_s"], "step_s": timings["step_s"], "accuracy": accuracy,
            "allreduce": trained.details.get("allreduce"), "steps": trained.details["steps"]}


def _noop(config: dict) -> None:
    return None


def bare_torch_trainer(storage: Path) -> float:
    """Seconds of a Ray Train V2 TorchTrainer run of a function that does nothing: Ray's own floor."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    began = time.perf_counter()
    TorchTrainer(_noop, scaling_config=ScalingConfig(num_workers=1),
                 run_config=RunConfig(storage_path=str(storage), name=f"bare-{time.time_ns()}")).fit()
    return time.perf_counter() - began


def project(workers: int, one: dict, two: dict, overhead: float, train_rows: int, batch: int, epochs: int) -> float:
    latency, gradient = two["allreduce"]["latency_s"], two["allreduce"]["gradient_s"]
    allreduce = (workers - 1) * latency + 2 * (workers - 1) / workers * max(0.0, gradient - latency)
    steps = math.ceil(train_rows / batch)
    return overhead + one["loading_s"] + epochs * steps * (one["step_s"] / workers + allreduce)


def trigger_to_challenger(folder: Path) -> dict:
    """Seconds from a manual trigger to a registered challenger, with the demo's data sizes."""
    import pyarrow.parquet as pq

    from driftloop.retrain_service import RetrainService
    from driftloop.settings import load_settings

    reference = pa.concat_tables([rows(2000, seed=11, prefix="before"), rows(1300, seed=12, prefix="after")])
    pq.write_table(reference, folder / "demo-reference.parquet")
    settings = load_settings(data_dir=folder / "data", retrain={
        "min_new_labels": 0, "reference_files": {"demo-classifier": str(folder / "demo-reference.parquet")}},
        ray={"num_workers": 2})
    service = RetrainService(settings)
    began = time.perf_counter()
    _, episode = service.trigger("demo-classifier", "manual")
    finished = service.run_episode(episode.id)
    seconds = time.perf_counter() - began
    if finished.outcome != "registered":
        raise RuntimeError(f"the demo episode ended {finished.outcome}: {finished.reason}")
    return {"seconds": seconds, "epochs": len(finished.state["training"]["epochs"]),
            "rows": finished.state["snapshot_rows"], "val_accuracy": finished.state["metrics"]["val_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    import ray

    from driftloop.collector.store import Store
    from driftloop.curation import SnapshotSpec, build_snapshot
    from driftloop.ray_cluster import connect_ray
    from driftloop.retrain import get_spec, prepare_training_data
    from driftloop.settings import RaySettings

    with tempfile.TemporaryDirectory(prefix="retrain-scaling-") as tmp:
        folder = Path(tmp)
        snapshot = build_snapshot(Store(folder / "store"), SnapshotSpec(model="bench"), folder / "snapshots",
                                  reference=rows(args.rows, seed=0, prefix="train"))
        spec = get_spec("mlp").with_params(training={"epochs": args.epochs, "patience": 0})
        data = prepare_training_data(snapshot.read(), spec)
        test = rows(20_000, seed=1, prefix="test")
        test_x, test_y = data.preprocessor.transform(test), np.asarray(test["label"].to_pylist()).astype(int)
        print(f"snapshot {snapshot.snapshot_id}: {snapshot.manifest['rows']} rows x {len(FEATURES)} features; "
              f"{len(data.y_train)} train, {len(data.y_val)} validation; {args.epochs} epochs, batch "
              f"{spec.training.batch_size} (global)", flush=True)

        plain = plain_torch(data, spec, test_x, test_y)
        print(f"plain PyTorch: {plain['seconds']:.1f} s, accuracy {plain['accuracy']:.4f}", flush=True)
        began = time.perf_counter()
        connect_ray(RaySettings(num_cpus=2))  # as the retrain service starts a local Ray
        ray_init_s = time.perf_counter() - began
        tiny_spec = spec.with_params(training={"epochs": 1})
        tiny = prepare_training_data(rows(1000, seed=3, prefix="tiny"), tiny_spec)
        cold = ray_run(tiny, tiny_spec, 1, folder / "ray", test, measure=False)  # the cluster's first run: cold
        warm = ray_run(tiny, tiny_spec, 1, folder / "ray", test, measure=False)
        bare = bare_torch_trainer(folder / "ray")
        print(f"Ray fixed overhead: {warm['startup_s']:.1f} s per run ({cold['startup_s']:.1f} s on the first run "
              f"after ray.init; a bare TorchTrainer run: {bare:.1f} s)", flush=True)
        one = ray_run(data, spec, 1, folder / "ray", test, measure=False)
        print(f"Ray 1 worker: {one['seconds']:.1f} s (overhead {one['startup_s']:.1f}), accuracy {one['accuracy']:.4f}",
              flush=True)
        two = ray_run(data, spec, 2, folder / "ray", test, measure=True)
        print(f"Ray 2 workers: {two['seconds']:.1f} s (overhead {two['startup_s']:.1f}), accuracy {two['accuracy']:.4f}",
              flush=True)
        demo = trigger_to_challenger(folder)
        print(f"trigger to registered challenger (demo's setting): {demo['seconds']:.1f} s", flush=True)
        ray.shutdown()

    train_rows = len(data.y_train)
    result = {
        "plain_torch_s": round(plain["seconds"], 2),
        "ray_1_worker_s": round(one["seconds"], 2),
        "ray_2_workers_s": round(two["seconds"], 2),
        "ray_fixed_overhead_s": round(warm["startup_s"], 2),
        "accuracy_plain": round(plain["accuracy"], 4),
        "accuracy_ray_1": round(one["accuracy"], 4),
        "accuracy_ray_2": round(two["accuracy"], 4),
        "projected_8_workers_s": round(project(8, one, two, warm["startup_s"], train_rows, spec.training.batch_size, args.epochs), 2),
        "projected_32_workers_s": round(project(32, one, two, warm["startup_s"], train_rows, spec.training.batch_size, args.epochs), 2),
        "trigger_to_challenger_s": round(demo["seconds"], 2),
        "split": {
            "ray_init_s": round(ray_init_s, 2),
            "first_run_overhead_s": round(cold["startup_s"], 2),
            "bare_torch_trainer_s": round(bare, 2),
            **{name: {key: round(run[key], 3) for key in ("startup_s", "loading_s", "training_s")}
               for name, run in (("plain_torch", plain), ("ray_1_worker", one), ("ray_2_workers", two))},
            "step_s_1_worker": one["step_s"], "step_s_2_workers": two["step_s"], "allreduce_2_workers": two["allreduce"],
        },
        "setup": {"rows": snapshot.manifest["rows"], "train_rows": train_rows, "features": len(FEATURES),
                  "epochs": args.epochs, "global_batch": spec.training.batch_size, "demo": demo,
                  "machine": f"{os.cpu_count()} cores, shared with other work"},
    }
    print(f"Ray 2 workers / plain: {two['seconds'] / plain['seconds']:.2f}x; accuracy gap "
          f"{abs(two['accuracy'] - plain['accuracy']) * 100:.2f} points (target <= 1); fixed overhead "
          f"{warm['startup_s']:.1f} s (target < 10)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
