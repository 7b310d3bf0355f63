"""The demo's world: scikit-learn's handwritten digits as a model's traffic, and the drift that hits it.

Each request is one 8x8 image (64 pixel features `px_<row>_<col>`, 0..16) with fresh pixel noise,
so no two requests are the same. The 1,797 images are split once by the seed: the first champion
trains on `REFERENCE_IMAGES` of them, traffic draws from the rest. After the onset the images are
rotated (or shifted, or heavily noised) before the noise: what a scanner knocked askew does to a
digit classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

REFERENCE_IMAGES = 1000
FEATURES = [f"px_{row}_{col}" for row in range(8) for col in range(8)]
CLASSES = [str(digit) for digit in range(10)]


@dataclass(frozen=True)
class Request:
    features: dict[str, float]
    truth: str
    drifted: bool


class DigitsWorld:
    """Reference rows for the first champion, and requests before and after the drift."""

    def __init__(self, seed: int, kind: str = "rotate", degrees: float = 35.0, noise: float = 0.5) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        order = np.random.default_rng(seed).permutation(len(digits.target))
        self.images = digits.images.astype(np.float64)
        self.labels = digits.target.astype(str)
        self.reference_index, self.traffic_index = order[:REFERENCE_IMAGES], order[REFERENCE_IMAGES:]
        self.kind, self.degrees, self.noise = kind, degrees, noise
        self.rng = np.random.default_rng(seed + 1)
        self._drifted = self._transform(self.images[self.traffic_index])

    def reference(self, copies: int = 1) -> pa.Table:
        """The first champion's training rows (`feature.<px>` and `label`), each image `copies` times, noised."""
        index = np.tile(self.reference_index, copies)
        pixels = self._noised(self.images[index]).reshape(len(index), -1)
        columns = {f"feature.{name}": pa.array(pixels[:, i]) for i, name in enumerate(FEATURES)}
        columns["label"] = pa.array(self.labels[index].tolist(), pa.string())
        columns["event_id"] = pa.array([f"reference-{i}" for i in range(len(index))], pa.string())
        return pa.table(columns)

    def request(self, drifted: bool) -> Request:
        pick = int(self.rng.integers(len(self.traffic_index)))
        image = self._drifted[pick] if drifted else self.images[self.traffic_index[pick]]
        pixels = self._noised(image[None])[0].reshape(-1).round(3)
        return Request(dict(zip(FEATURES, pixels.tolist(), strict=True)), str(self.labels[self.traffic_index[pick]]),
                       drifted)

    def _noised(self, images: np.ndarray) -> np.ndarray:
        return np.clip(images + self.rng.normal(0, self.noise, images.shape), 0, 16)

    def _transform(self, images: np.ndarray) -> np.ndarray:
        from scipy import ndimage

        if self.kind == "rotate":
            return np.stack([ndimage.rotate(image, self.degrees, reshape=False, order=1) for image in images])
        if self.kind == "shift":
            return np.stack([ndimage.shift(image, (0, 1), order=0) for image in images])
        if self.kind == "noise":
            return np.clip(images + np.random.default_rng(7).normal(0, 4.0, images.shape), 0, 16)
        raise ValueError(f"unknown drift kind {self.kind!r}: rotate, shift or noise")
