"""Where driftloop keeps its data under `data_dir`: one place names every folder.

Model names become single folder names (a '/' in a name is quoted), so a model can never
write outside its own folder.
"""

from __future__ import annotations

from pathlib import Path

from driftloop.settings import Settings

SAMPLE_FILE = "reference_sample.parquet"  # beside a profile: reference rows for the multivariate test
ESTIMATOR_FILE = "estimator.json"  # beside a profile: the fitted performance estimator (when the reference had labels)


def _folder_name(model: str) -> str:
    return model.replace("%", "%25").replace("/", "%2F")


def profile_dir(settings: Settings, model: str) -> Path:
    return settings.data_dir / "profiles" / _folder_name(model)


def reports_dir(settings: Settings, model: str) -> Path:
    return settings.data_dir / "reports" / _folder_name(model)


def monitor_dir(settings: Settings, model: str) -> Path:
    """The drift monitor's saved state: detectors, feedback position, drift events still owed."""
    return settings.data_dir / "monitor" / _folder_name(model)


def batches_dir(settings: Settings) -> Path:
    return settings.data_dir / "curation" / "batches"


def snapshots_dir(settings: Settings) -> Path:
    return settings.data_dir / "snapshots"


def registry_dir(settings: Settings) -> Path:
    """The model registry: `registry.db` and `artifacts/` (settings.registry.dir, else under data_dir)."""
    return settings.registry.dir or settings.data_dir / "registry"


def ray_storage_dir(settings: Settings) -> Path:
    """Where Ray Train runs keep their checkpoints (settings.ray.storage_path, else under data_dir)."""
    return settings.ray.storage_path or settings.data_dir / "ray"


def alert_log_file(settings: Settings) -> Path:
    """Every alert Alertmanager sent to the log receiver, one JSON line per alert and notification."""
    return settings.data_dir / "alerts" / "log.jsonl"
