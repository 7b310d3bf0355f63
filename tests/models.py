"""Test helpers for the retrain part: labelled tables, and model folders without a training run."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from driftloop.retrain import ModelRegistry, Preprocessor, TrainingRecord, get_spec, save_model_files

FEATURES = [f"f{i:02d}" for i in range(8)]


def labelled_rows(count: int, seed: int, prefix: str = "ref", classes: int = 3) -> pa.Table:
    """`classes` classes from a fixed nonlinear rule on 8 Gaussian features, as a snapshot's reference table."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, len(FEATURES)))
    score = x[:, 0] + x[:, 1] * x[:, 2] - 0.5 * x[:, 3]
    y = np.digitize(score, [-0.6, 0.6]) if classes == 3 else (score > 0).astype(int) if classes == 2 else np.zeros(count, int)
    return pa.table({"event_id": [f"{prefix}-{seed}-{i}" for i in range(count)], "label": y.astype(str).tolist(),
                     **{f"feature.{name}": x[:, j] for j, name in enumerate(FEATURES)}})


def write_reference(path, table: pa.Table):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def model_folder(tmp_path, seed: int, features=FEATURES[:4]):
    """A small untrained MLP in a model folder (weights, JSON, preprocessing, a profile file)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    spec = get_spec("mlp").with_params(module_params={"hidden": 8})
    module = spec.build_module(len(features), 2)
    data = {name: rng.normal(size=50) for name in features}
    folder = tmp_path / f"model-{seed}"
    save_model_files(folder, module.state_dict(), "mlp", spec.module_params, len(features), ["0", "1"],
                     Preprocessor.fit(data))
    (folder / "profile").mkdir()
    (folder / "profile" / "profile.json").write_text(json.dumps({"format_version": 1, "rows": 50, "performance": None, "features": []}))
    return folder, module, data


def register(registry: ModelRegistry, tmp_path, seed: int, model: str = "churn", features=FEATURES[:4], **extra):
    folder, module, data = model_folder(tmp_path, seed, features)
    training = TrainingRecord(run_path=str(tmp_path / "run"), workers=1, use_gpu=False, wall_s=1.5)
    version = registry.register(model, folder, spec=get_spec("mlp").to_dict(), features=list(features),
                                classes=["0", "1"], training=training, metrics={"val_accuracy": 0.5 + seed / 100},
                                snapshot_id=f"snap-{seed}", **extra)
    return version, module, data
