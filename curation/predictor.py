"""Anything that gives class probabilities: a scikit-learn classifier, or a PyTorch module behind a wrapper.

Strategies read probabilities from the pool; `Pool.scored_by(predictor)` puts a
model's there when the logged ones are not the model you want to score with
(a challenger, or a model trained since).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Predictor", "TorchPredictor"]


@runtime_checkable
class Predictor(Protocol):
    """The small protocol strategies score with; every scikit-learn classifier fits it as it is."""

    classes_: np.ndarray

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (rows, len(classes_)), each row summing to 1."""
        ...


class TorchPredictor:
    """A PyTorch module that maps a float32 feature batch to logits, as a Predictor.

    Scores in batches without gradients, on the CPU unless `device` says otherwise.
    """

    def __init__(self, module, classes: list | np.ndarray, batch_rows: int = 65_536, device: str = "cpu") -> None:
        if batch_rows < 1:
            raise ValueError(f"'batch_rows' must be at least 1, got {batch_rows}")
        self.module = module
        self.classes_ = np.asarray(classes)
        self.batch_rows = batch_rows
        self.device = device

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        import torch  # heavy: only when a torch model scores

        self.module.eval()
        out = np.empty((len(features), len(self.classes_)), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(features), self.batch_rows):
                batch = torch.as_tensor(np.asarray(features[start : start + self.batch_rows], dtype=np.float32))
                logits = self.module(batch.to(self.device))
                out[start : start + len(batch)] = torch.softmax(logits, dim=1).cpu().numpy()
        return out
