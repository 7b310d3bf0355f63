"""The demo's first champion: the `mlp` spec trained on the reference digits in this process, then registered.

Plain PyTorch (full-batch Adam, a second or two on a laptop) with the same data preparation,
model files and registration as a retrain on Ray, so the drift monitor gets its reference
profile from the registry and the model server a champion to serve. Retrains go through Ray.
"""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa

from driftloop.settings import Settings


def train_first_champion(settings: Settings, model: str, table: pa.Table, folder: Path, seed: int = 0,
                         steps: int = 300):
    import torch

    from driftloop.drift_service import fit_estimator
    from driftloop.retrain import TrainingRecord, prepare_training_data, save_model_files
    from driftloop.retrain.candidates import register_candidate
    from driftloop.retrain.training import TrainedModel
    from driftloop.retrain_service import open_registry, spec_for

    started = time.monotonic()
    torch.manual_seed(seed)
    spec = spec_for(settings, model)
    data = prepare_training_data(table, spec)
    module = spec.build_module(data.n_inputs, len(data.classes))
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(steps):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(module(x), y).backward()
        optimiser.step()
    module.eval()
    with torch.no_grad():
        accuracy = float((module(torch.as_tensor(data.x_val)).argmax(1) == torch.as_tensor(data.y_val)).float().mean())
    save_model_files(folder, module.state_dict(), spec.name, spec.module_params, data.n_inputs, data.classes,
                     data.preprocessor)
    trained = TrainedModel(
        folder=folder, record=TrainingRecord(run_path=str(folder), workers=1, use_gpu=False,
                                             wall_s=time.monotonic() - started),
        metrics={"val_accuracy": accuracy, "val_rows": len(data.y_val)}, classes=tuple(data.classes),
        features=tuple(data.preprocessor.feature_names),
    )
    return register_candidate(open_registry(settings), model, trained, table, spec, snapshot_id=None, origin="demo",
                              alias="champion", reason="the demo's first champion, trained on the reference digits",
                              actor="demo", sample_rows=settings.drift.reference_sample_rows,
                              fit_estimator=lambda rows, folder: fit_estimator(settings, model, rows, folder))
