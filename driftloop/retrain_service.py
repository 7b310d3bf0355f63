"""The retrain commands and service, built from the settings: the registry, training runs, triggers, episodes."""

from __future__ import annotations

from driftloop.layout import registry_dir
from driftloop.retrain import ModelRegistry
from driftloop.settings import Settings


def open_registry(settings: Settings) -> ModelRegistry:
    """The model registry the settings name (`<data_dir>/registry` unless registry.dir says otherwise)."""
    return ModelRegistry.open(registry_dir(settings))
