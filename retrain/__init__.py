"""Retraining: Ray Train jobs that rebuild the PyTorch model (triggers, registry, shadow and gate to come)."""

from driftloop.retrain.training import MLPClassifier, TrainConfig, load_model, save_model, train, train_func

__all__ = ["MLPClassifier", "TrainConfig", "load_model", "save_model", "train", "train_func"]
