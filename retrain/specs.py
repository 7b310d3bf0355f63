"""Model specs: what to train, from which features, prepared how, with which training parameters.

A spec names a model family: its input features (None: every feature the training data has),
which of them are categorical (one-hot; None: strings and booleans are), a factory of the
`torch.nn.Module` (`module(n_inputs, n_classes, **module_params)`) and its parameters, and the
training parameters. The built-in specs are the explicit registry `MODELS`; a user's own spec
comes in through the Python entry-point group `driftloop.models`, the way pytest finds plugins:

    # pyproject.toml of the user's package
    [project.entry-points."driftloop.models"]
    churn_net = "churn_models.specs:CHURN_NET"      # a ModelSpec, or a function returning one

`get_spec(name)` looks in `MODELS` first, then in the entry points; a spec that cannot be
imported or is not a spec is a `SpecError` naming the spec and the cause, as is a module
factory that fails (`ModelSpec.build_module`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

__all__ = ["ENTRY_POINT_GROUP", "MODELS", "ModelSpec", "SpecError", "TrainingParams", "available_specs", "get_spec"]

ENTRY_POINT_GROUP = "driftloop.models"


class SpecError(ValueError):
    """A model spec that cannot be found, imported, built or trained; names the spec and the cause."""

    def __init__(self, spec: str, reason: str) -> None:
        super().__init__(f"model spec {spec!r}: {reason}")
        self.spec = spec
        self.reason = reason


@dataclass(frozen=True)
class TrainingParams:
    """How a spec is trained.

    `validation_share` of the rows (chosen by a hash of their event id, the same every run) is
    held out; training stops after `patience` epochs without a lower validation loss (0: never
    early), and the epoch with the lowest validation loss is the one kept. `batch_size` is the
    global batch: each of N workers takes batch_size / N rows a step, so a run takes the same
    steps, and learns alike, on any number of workers.
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    validation_share: float = 0.2
    patience: int = 3

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size}
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be an integer of at least 1, got {value!r}")
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate)
                and self.learning_rate > 0):
            raise ValueError(f"'learning_rate' must be a positive number, got {self.learning_rate!r}")
        if self.weight_decay < 0:
            raise ValueError(f"'weight_decay' must be at least 0, got {self.weight_decay!r}")
        if not 0 < self.validation_share < 1:
            raise ValueError(f"'validation_share' must be between 0 and 1 (exclusive), got {self.validation_share!r}")
        if not isinstance(self.patience, int) or self.patience < 0:
            raise ValueError(f"'patience' must be an integer of at least 0, got {self.patience!r}")


@dataclass(frozen=True)
class ModelSpec:
    """A trainable model family. See the module docstring; `with_params` derives a variant."""

    name: str
    module: Callable[..., Any]
    module_params: Mapping[str, Any] = field(default_factory=dict)
    features: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    training: TrainingParams = field(default_factory=TrainingParams)
    task: str = "classification"
    description: str = ""

    TASKS = ("classification",)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a spec needs a non-empty name, got {self.name!r}")
        if not callable(self.module):
            raise SpecError(self.name, f"'module' must be a callable that returns a torch.nn.Module, got {self.module!r}")
        if self.task not in self.TASKS:
            raise SpecError(self.name, f"Invalid 'task' {self.task!r}. Valid values are: {list(self.TASKS)}")
        object.__setattr__(self, "module_params", MappingProxyType(dict(self.module_params)))
        if self.features is not None:
            object.__setattr__(self, "features", tuple(self.features))
        if self.categorical is not None:
            object.__setattr__(self, "categorical", tuple(self.categorical))
            unknown = set(self.categorical) - set(self.features or self.categorical)
            if unknown:
                raise SpecError(self.name, f"categorical features {sorted(unknown)} are not among its features")

    def with_params(self, training: Mapping[str, Any] | None = None, module_params: Mapping[str, Any] | None = None,
                    features: tuple[str, ...] | None = None) -> ModelSpec:
        """This spec with some training or module parameters (or the feature list) replaced."""
        try:
            params = replace(self.training, **dict(training or {}))
        except TypeError as error:
            raise SpecError(self.name, f"unknown training parameter ({error}); known: {list(asdict(self.training))}") from None
        return replace(self, training=params, module_params={**self.module_params, **dict(module_params or {})},
                       features=self.features if features is None else tuple(features))

    def build_module(self, n_inputs: int, n_classes: int):
        """The spec's module for `n_inputs` prepared inputs and `n_classes` outputs; SpecError if it fails."""
        try:
            module = self.module(n_inputs, n_classes, **self.module_params)
        except Exception as error:  # noqa: BLE001 - the user's code: any failure is named with the spec
            raise SpecError(self.name, f"its module factory failed: {type(error).__name__}: {error}") from error
        import torch

        if not isinstance(module, torch.nn.Module):
            raise SpecError(self.name, f"its module factory returned {type(module).__name__}, not a torch.nn.Module")
        return module

    def to_dict(self) -> dict:
        """The spec as JSON (the factory by its import path, for the record only: it is looked up by spec name)."""
        return {
            "name": self.name,
            "task": self.task,
            "module": f"{self.module.__module__}:{getattr(self.module, '__qualname__', repr(self.module))}",
            "module_params": dict(self.module_params),
            "features": None if self.features is None else list(self.features),
            "categorical": None if self.categorical is None else list(self.categorical),
            "training": asdict(self.training),
            "description": self.description,
        }


def mlp_module(n_inputs: int, n_classes: int, hidden: int = 64, layers: int = 2, dropout: float = 0.0):
    """The built-in MLP (driftloop.retrain.models.MLPClassifier); torch is imported only here."""
    from driftloop.retrain.models import MLPClassifier

    return MLPClassifier(n_inputs, n_classes, hidden=hidden, layers=layers, dropout=dropout)


MLP = ModelSpec(
    name="mlp",
    module=mlp_module,
    module_params={"hidden": 64, "layers": 2, "dropout": 0.0},
    training=TrainingParams(epochs=30, batch_size=128, learning_rate=3e-3, patience=5),
    description="A multi-layer perceptron for tabular classification: standardised numeric, one-hot categorical inputs.",
)

# The built-in specs. A new one is one entry here; users add theirs through ENTRY_POINT_GROUP.
MODELS: dict[str, ModelSpec] = {"mlp": MLP}


def get_spec(name: str) -> ModelSpec:
    """The spec called `name`: a built-in one, else one a package installed under `driftloop.models`."""
    if name in MODELS:
        return MODELS[name]
    found = [point for point in entry_points(group=ENTRY_POINT_GROUP) if point.name == name]
    if not found:
        raise SpecError(name, f"no such spec. Built in: {sorted(MODELS)}; installed through the "
                              f"{ENTRY_POINT_GROUP!r} entry points: {sorted(_installed())}")
    point = found[0]
    try:
        loaded = point.load()
    except Exception as error:  # noqa: BLE001 - a broken plugin must not take the service down
        raise SpecError(name, f"its entry point {point.value!r} failed to import: {type(error).__name__}: {error}") from error
    if callable(loaded) and not isinstance(loaded, ModelSpec):
        try:
            loaded = loaded()
        except Exception as error:  # noqa: BLE001
            raise SpecError(name, f"its entry point {point.value!r} raised {type(error).__name__}: {error}") from error
    if not isinstance(loaded, ModelSpec):
        raise SpecError(name, f"its entry point {point.value!r} gave {type(loaded).__name__}, not a ModelSpec")
    return loaded if loaded.name == name else replace(loaded, name=name)


def available_specs() -> dict[str, str]:
    """Every spec name and where it comes from ('built-in', or the entry point's distribution and value)."""
    specs = {name: "built-in" for name in MODELS}
    for name, origin in _installed().items():
        specs.setdefault(name, origin)
    return dict(sorted(specs.items()))


def _installed() -> dict[str, str]:
    found = {}
    for point in entry_points(group=ENTRY_POINT_GROUP):
        distribution = point.dist.name if point.dist is not None else "unknown distribution"
        found.setdefault(point.name, f"{distribution} ({point.value})")
    return found
