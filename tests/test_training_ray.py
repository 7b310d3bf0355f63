"""A real local Ray runs the training function on 2 workers (gloo DDP) and returns a loadable checkpoint."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from driftloop.retrain import TrainConfig, load_model, train


def test_two_worker_torch_trainer_returns_a_checkpoint(ray_local, tmp_path):
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    data_path = tmp_path / "digits.npz"
    np.savez(data_path, x=x, y=digits.target)

    result = train(TrainConfig(data_path=str(data_path), epochs=1, batch_size=32, learning_rate=3e-3),
                   num_workers=2, storage_path=tmp_path / "ray")

    assert result.error is None
    assert result.checkpoint is not None
    assert result.metrics["last_batch_loss"] < result.metrics["first_batch_loss"], "one epoch should lower the loss"
    with result.checkpoint.as_directory() as folder:
        from pathlib import Path

        model = load_model(Path(folder))
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(x)).argmax(1).numpy() == digits.target).mean()
    assert accuracy > 0.5, f"one epoch on digits should beat chance by far, got {accuracy:.2f}"
