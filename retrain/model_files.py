"""The files of one trained model in a folder: weights, the JSON that rebuilds it, and its preprocessing.

    weights.pt           the module's state_dict (torch.save), read back with weights_only=True
    model.json           spec name, module parameters, input width, classes
    preprocessing.json   the fitted Preprocessor (means, scales, vocabularies)
    profile/             the reference profile of its training data (drift package), if any

Nothing here unpickles an object: the module is rebuilt by its spec's factory from the JSON,
then given the weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from driftloop.retrain.preprocessing import Preprocessor
from driftloop.retrain.specs import SpecError, get_spec

__all__ = ["MODEL_FILE", "PREPROCESSING_FILE", "PROFILE_DIR", "WEIGHTS_FILE", "load_predictor", "save_model_files"]

WEIGHTS_FILE = "weights.pt"
MODEL_FILE = "model.json"
PREPROCESSING_FILE = "preprocessing.json"
PROFILE_DIR = "profile"
FORMAT_VERSION = 1


def save_model_files(folder: Path, weights: Path | Mapping, spec_name: str, module_params: Mapping, n_inputs: int,
                     classes: Sequence[str], preprocessor: Preprocessor) -> Path:
    """Write a model folder. `weights` is a state_dict, or a weights file to copy byte for byte."""
    import shutil

    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(weights, Path):
        shutil.copyfile(weights, folder / WEIGHTS_FILE)
    else:
        torch.save(dict(weights), folder / WEIGHTS_FILE)
    model = {"format_version": FORMAT_VERSION, "spec": spec_name, "module_params": dict(module_params),
             "n_inputs": int(n_inputs), "classes": [str(c) for c in classes]}
    (folder / MODEL_FILE).write_text(json.dumps(model, indent=1, sort_keys=True) + "\n")
    (folder / PREPROCESSING_FILE).write_text(json.dumps(preprocessor.to_dict(), indent=1) + "\n")
    return folder


def load_predictor(folder: Path, device: str = "cpu"):
    """The ModelPredictor of a model folder: module rebuilt from JSON, weights read with weights_only=True."""
    import torch

    from driftloop.retrain.predictor import ModelPredictor

    folder = Path(folder)
    model = json.loads((folder / MODEL_FILE).read_text())
    if model.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{folder / MODEL_FILE}: unsupported format_version {model.get('format_version')!r}")
    preprocessor = Preprocessor.from_dict(json.loads((folder / PREPROCESSING_FILE).read_text()))
    spec = get_spec(model["spec"]).with_params(module_params=model["module_params"])
    module = spec.build_module(model["n_inputs"], len(model["classes"]))
    state = torch.load(folder / WEIGHTS_FILE, map_location=device, weights_only=True)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise SpecError(spec.name, f"its module does not fit the saved weights: {error}") from None
    return ModelPredictor(module.to(device), preprocessor, model["classes"], device=device)
