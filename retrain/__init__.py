"""Retraining: model specs, prepared inputs and the shared Predictor, Ray Train training, the model registry.

`import driftloop.retrain` loads neither torch nor Ray: the registry, the specs and the
preprocessing are plain Python, numpy and pyarrow (a server polling an alias, or the drift
monitor asking for the champion's profile, needs no more). Names that need torch or Ray are
imported when first used.
"""

from importlib import import_module

from driftloop.retrain.artifacts import ArtifactError, ArtifactStore
from driftloop.retrain.database import MIGRATIONS, Database, SchemaTooNew
from driftloop.retrain.dataset import DataError, TrainingData, prepare_training_data, validation_mask
from driftloop.retrain.leases import Lease, LeaseLost, Leases
from driftloop.retrain.preprocessing import CategoricalInput, InputError, NumericInput, Preprocessor, feature_columns
from driftloop.retrain.registry import (
    ALIASES,
    AliasChange,
    AliasMove,
    EpochMetrics,
    LoadedModel,
    ModelRegistry,
    ModelVersion,
    StaleAlias,
    TrainingRecord,
    UnknownVersion,
)
from driftloop.retrain.specs import (
    ENTRY_POINT_GROUP,
    MODELS,
    ModelSpec,
    SpecError,
    TrainingParams,
    available_specs,
    get_spec,
)

_HEAVY = {
    "MLPClassifier": "models",
    "ModelPredictor": "predictor",
    "load_predictor": "model_files",
    "save_model_files": "model_files",
    "RunSettings": "training",
    "TrainConfig": "training",
    "TrainedModel": "training",
    "TrainingFailed": "training",
    "TrainingTimeout": "training",
    "train_func": "training",
    "train_model": "training",
}


def __getattr__(name: str):
    if name in _HEAVY:
        return getattr(import_module(f"{__name__}.{_HEAVY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ALIASES",
    "ENTRY_POINT_GROUP",
    "MIGRATIONS",
    "MODELS",
    "AliasChange",
    "AliasMove",
    "ArtifactError",
    "ArtifactStore",
    "CategoricalInput",
    "DataError",
    "Database",
    "EpochMetrics",
    "InputError",
    "Lease",
    "LeaseLost",
    "Leases",
    "LoadedModel",
    "MLPClassifier",
    "ModelPredictor",
    "ModelRegistry",
    "ModelSpec",
    "ModelVersion",
    "NumericInput",
    "Preprocessor",
    "RunSettings",
    "SchemaTooNew",
    "SpecError",
    "StaleAlias",
    "TrainConfig",
    "TrainedModel",
    "TrainingData",
    "TrainingFailed",
    "TrainingParams",
    "TrainingRecord",
    "TrainingTimeout",
    "UnknownVersion",
    "available_specs",
    "feature_columns",
    "get_spec",
    "load_predictor",
    "prepare_training_data",
    "save_model_files",
    "train_func",
    "train_model",
    "validation_mask",
]
