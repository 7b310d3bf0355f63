"""A strategy's answer: which pool rows to label, best first, each with a score and a reason."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

__all__ = ["Selection"]


@dataclass(frozen=True)
class Selection:
    """Ranked picks of one strategy: `ids[0]` is the row most worth labelling.

    `scores` are the strategy's own (higher: more worth labelling; their scale
    differs between strategies); `reasons` are one short sentence per pick, for
    the person who reviews the batch.
    """

    strategy: str
    ids: tuple[str, ...]
    scores: tuple[float, ...]
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.scores) == len(self.reasons):
            raise ValueError(
                f"ids, scores and reasons must have one entry per pick; got {len(self.ids)}, "
                f"{len(self.scores)} and {len(self.reasons)}"
            )
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("a selection names each id once")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, strategy: str, ids: np.ndarray, rows: np.ndarray, scores: np.ndarray, reasons: list[str]) -> Selection:
        """The picks `rows` (indices into `ids`, best first) with their scores."""
        return cls(strategy, tuple(str(i) for i in ids[rows]), tuple(float(s) for s in scores), tuple(reasons))

    def to_table(self) -> pa.Table:
        """One row per pick: rank (0 is best), event_id, score, reason."""
        return pa.table({
            "rank": pa.array(range(len(self)), pa.int32()),
            "event_id": pa.array(self.ids, pa.string()),
            "score": pa.array(self.scores, pa.float64()),
            "reason": pa.array(self.reasons, pa.string()),
        })
