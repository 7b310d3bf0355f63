"""A trained model becomes a registered candidate: its reference profile, then its version in the registry.

The reference profile is built by the drift package from the training rows *as this model
sees them*: the features, the model's own predicted label and class probabilities (the
columns live traffic has in the store), and the true label (so the profile's performance is
this model's accuracy on its training data). The drift monitor then compares live traffic with
what this version learned from, not with whatever an older model was trained on. Beside it, when
the caller asks, a performance estimator is fitted on the rows the training held out for
validation (its calibration must come from rows the model did not learn from).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.drift.profile import ReferenceProfile
from driftloop.retrain.dataset import validation_mask
from driftloop.retrain.model_files import PROFILE_DIR, load_predictor
from driftloop.retrain.preprocessing import FEATURE_PREFIX
from driftloop.retrain.registry import ModelRegistry, ModelVersion
from driftloop.retrain.specs import ModelSpec
from driftloop.retrain.training import TrainedModel

__all__ = ["REFERENCE_SAMPLE_FILE", "register_candidate", "scored_rows", "write_reference_profile"]

REFERENCE_SAMPLE_FILE = "reference_sample.parquet"  # the drift monitor's multivariate test reads these rows


def scored_rows(predictor, table: pa.Table) -> pa.Table:
    """`table`'s feature columns with the model's `label` and `proba.<class>`, and `true_label` from its labels."""
    probabilities = predictor.predict_proba(table)
    predicted = predictor.classes_[np.argmax(probabilities, axis=1)]
    columns = {f"{FEATURE_PREFIX}{name}": table[f"{FEATURE_PREFIX}{name}"] for name in predictor.feature_names
               if f"{FEATURE_PREFIX}{name}" in table.column_names}
    columns["label"] = pa.array(predicted.astype(str).tolist(), pa.string())
    for index, name in enumerate(predictor.classes_):
        columns[f"proba.{name}"] = pa.array(probabilities[:, index])
    if "label" in table.column_names:
        columns["true_label"] = table["label"].cast(pa.string())
    return pa.table(columns)


#: fits a performance estimator on scored held-out rows and saves it into the profile folder
EstimatorFit = Callable[[pa.Table, Path], object]


def write_reference_profile(folder: Path, predictor, table: pa.Table, sample_rows: int = 10_000,
                            sketch_size: int | None = 10_000, seed: int = 0, fit_estimator: EstimatorFit | None = None,
                            validation_share: float = 0.2) -> ReferenceProfile:
    """Profile `table` as `predictor` scores it into `folder` (profile.json, .npy, a row sample) and,
    with `fit_estimator`, fit the estimator on the `validation_share` of rows training held out."""
    rows = scored_rows(predictor, table)
    profile = ReferenceProfile.build(rows, sketch_size=sketch_size)
    profile.save(folder)
    keep = np.sort(np.random.default_rng(seed).permutation(rows.num_rows)[:sample_rows])
    pq.write_table(rows.take(pa.array(keep)), Path(folder) / REFERENCE_SAMPLE_FILE)
    if fit_estimator is not None and "event_id" in table.column_names:
        held_out = validation_mask(table["event_id"].to_pylist(), validation_share)
        fit_estimator(rows.filter(pa.array(held_out)), Path(folder))
    return profile


def register_candidate(
    registry: ModelRegistry,
    model: str,
    trained: TrainedModel,
    training_rows: pa.Table,
    spec: ModelSpec,
    *,
    snapshot_id: str | None,
    origin: str,
    episode_id: str | None = None,
    alias: str | None = "challenger",
    reason: str = "",
    evidence: Mapping[str, Any] | None = None,
    actor: str = "retrain",
    sample_rows: int = 10_000,
    fit_estimator: EstimatorFit | None = None,
) -> ModelVersion:
    """Profile the trained model's training rows beside its files (with `fit_estimator`, an estimator
    too), and register it (as challenger by default).

    Idempotent per `episode_id`: an episode that registered already gets its version back.
    """
    if episode_id is not None and (existing := registry.by_episode(episode_id)) is not None:
        return existing
    predictor = load_predictor(trained.folder)
    write_reference_profile(Path(trained.folder) / PROFILE_DIR, predictor, training_rows, sample_rows=sample_rows,
                            fit_estimator=fit_estimator, validation_share=spec.training.validation_share)
    return registry.register(
        model, trained.folder, spec=spec.to_dict(), features=trained.features, classes=trained.classes,
        training=trained.record, metrics=dict(trained.metrics), snapshot_id=snapshot_id,
        parent_version=registry.alias(model, "champion"), origin=origin, episode_id=episode_id, alias=alias,
        reason=reason or f"trained on {snapshot_id or 'a table'}", evidence=evidence or dict(trained.metrics),
        actor=actor,
    )
