"""Training as an importable plain function, run by Ray Train on one or many workers.

`train_func(config)` is what each Ray worker runs; tests import it and check
the loss fell. Weights are saved as a `state_dict` plus a JSON config, so a
model is loaded without unpickling arbitrary objects.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "model.json"


@dataclass(frozen=True)
class TrainConfig:
    """What one training run needs. `data_path` is an .npz with float `x` and integer `y`."""

    data_path: str
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    hidden: int = 64
    seed: int = 0


class MLPClassifier(nn.Module):
    """A small multi-layer perceptron: the reference model driftloop retrains."""

    def __init__(self, n_features: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.n_features, self.n_classes, self.hidden = n_features, n_classes, hidden
        self.layers = nn.Sequential(
            nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def train_func(config: dict) -> None:
    """One Ray Train worker: train on its shard, report the mean loss of each epoch, rank 0 checkpoints."""
    settings = TrainConfig(**config)
    torch.manual_seed(settings.seed)
    data = np.load(settings.data_path)
    x = torch.as_tensor(data["x"], dtype=torch.float32)
    y = torch.as_tensor(data["y"], dtype=torch.long)
    n_classes = int(y.max()) + 1
    loader = ray.train.torch.prepare_data_loader(
        DataLoader(TensorDataset(x, y), batch_size=settings.batch_size, shuffle=True)
    )
    model = ray.train.torch.prepare_model(MLPClassifier(x.shape[1], n_classes, settings.hidden))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    context = ray.train.get_context()

    for epoch in range(settings.epochs):
        if context.get_world_size() > 1:
            loader.sampler.set_epoch(epoch)
        losses = []
        for features, labels in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(features), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        metrics = {"epoch": epoch, "loss": float(np.mean(losses)), "first_batch_loss": losses[0], "last_batch_loss": losses[-1]}
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = None
            if context.get_world_rank() == 0:
                save_model(_unwrap(model), Path(folder))
                checkpoint = Checkpoint.from_directory(folder)
            ray.train.report(metrics, checkpoint=checkpoint)


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel, if it was wrapped."""
    return getattr(model, "module", model)


def save_model(model: MLPClassifier, folder: Path) -> None:
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    shape = {"n_features": model.n_features, "n_classes": model.n_classes, "hidden": model.hidden}
    (folder / CONFIG_FILE).write_text(json.dumps(shape))


def load_model(folder: Path) -> MLPClassifier:
    """Rebuild a model from its JSON config and weights, never unpickling objects."""
    model = MLPClassifier(**json.loads((folder / CONFIG_FILE).read_text()))
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, weights_only=True))
    return model.eval()


def train(config: TrainConfig, num_workers: int, storage_path: Path, use_gpu: bool = False) -> ray.train.Result:
    """Run `train_func` on `num_workers` Ray workers; the caller has connected to Ray."""
    trainer = TorchTrainer(
        train_func,
        train_loop_config=asdict(config),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
        run_config=RunConfig(storage_path=str(storage_path.resolve()), name="driftloop-train"),
    )
    return trainer.fit()
