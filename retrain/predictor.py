"""A trained model behind curation's `Predictor` protocol: its module, its preprocessing, its classes.

The model server, the shadow scorer and curation score with this one class, and it prepares
inputs only through `Preprocessor.transform` (the same path training took), so the three can
never disagree. `predict_proba` takes a store table (`feature.<name>` columns), a mapping of
columns, records (dicts by feature name, checked: an `InputError` names a missing, unknown or
wrongly typed feature), or, for a model of numeric features only, a matrix whose columns are
`feature_names` in order (what `curation.Pool.scored_by` passes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from driftloop.curation.predictor import TorchPredictor
from driftloop.retrain.preprocessing import Preprocessor

__all__ = ["ModelPredictor"]


class ModelPredictor:
    """Class probabilities from a module and its fitted preprocessing. `classes_` are strings."""

    def __init__(self, module, preprocessor: Preprocessor, classes: Sequence[str], batch_rows: int = 65_536,
                 device: str = "cpu") -> None:
        self.module = module.eval()
        self.preprocessor = preprocessor
        self.classes_ = np.asarray([str(c) for c in classes])
        self._scorer = TorchPredictor(self.module, self.classes_, batch_rows=batch_rows, device=device)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.preprocessor.feature_names

    def prepare(self, features) -> np.ndarray:
        """The float32 matrix the module reads (the one prepared-inputs path)."""
        return self.preprocessor.transform(features)

    def predict_proba(self, features) -> np.ndarray:
        """(rows, len(classes_)) probabilities, rows summing to 1."""
        return self._scorer.predict_proba(self.prepare(features))

    def predict(self, features) -> np.ndarray:
        """The most probable class of each row."""
        return self.classes_[np.argmax(self.predict_proba(features), axis=1)]
