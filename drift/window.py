"""Dataset-level drift of one window against a reference profile.

Each profiled column is scored by its statistic (chosen as Evidently 0.7's
DataDriftPreset chooses, unless told), p-values are optionally corrected for
testing many columns at once, and the window drifts when the share of drifted
columns reaches `drift_share` (0.5, as Evidently's preset).

Evidently's automatic choice, by the number of non-null REFERENCE values n and
the number of distinct values v in both columns together:

=============  ==========================  ===============================
n              numeric                     categorical
=============  ==========================  ===============================
<= 1000        v > 5: ks; else chisquare   chisquare (z when v <= 2)
               (z when v <= 2)
> 1000         v > 5: wasserstein;         jensenshannon
               else jensenshannon
=============  ==========================  ===============================

`chisquare` here is Evidently's formula (`chisquare_evidently`) under
`method="evidently"`, and the calibrated two-sample test under the default
`method="auto"`, which is otherwise identical.

>>> import numpy as np, pandas as pd
>>> from driftloop.drift.profile import ReferenceProfile
>>> rng = np.random.default_rng(1)
>>> reference = pd.DataFrame({"x": rng.normal(size=2000), "y": rng.normal(size=2000)})
>>> window = pd.DataFrame({"x": rng.normal(size=500), "y": rng.normal(1.0, size=500)})
>>> verdict = WindowDrift().score(ReferenceProfile.build(reference), window)
>>> [(r.feature, r.method, r.drifted) for r in verdict.results], verdict.share, verdict.drifted
([('x', 'wasserstein', False), ('y', 'wasserstein', True)], 0.5, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa

from driftloop.drift.profile import (
    FeatureProfile,
    NumericFeature,
    ReferenceProfile,
    _column,
    _column_names,
    profiled_columns,
)
from driftloop.drift.results import DriftResult
from driftloop.drift.stats import STATISTICS, get_statistic
from driftloop.drift.stats._base import current_counts

CORRECTIONS = (None, "bonferroni", "bh")
METHODS = ("auto", "evidently", *STATISTICS)


@dataclass(frozen=True)
class WindowResult:
    """Per-column results and the dataset verdict of one window.

    `share` is drifted columns / scored columns (NaN-score columns, e.g. missing
    from the window, are not counted); `drifted` is share >= drift_share.
    `new_columns` were in the window but not in the profile (not scored).
    """

    results: tuple[DriftResult, ...]
    drifted_count: int
    scored_count: int
    share: float
    drift_share: float
    drifted: bool
    correction: str | None = None
    new_columns: tuple[str, ...] = ()

    @property
    def by_feature(self) -> dict[str, DriftResult]:
        return {result.feature: result for result in self.results}

    def to_dict(self) -> dict:
        return {
            "results": [result.to_dict() for result in self.results],
            "drifted_count": self.drifted_count, "scored_count": self.scored_count,
            "share": None if math.isnan(self.share) else self.share, "drift_share": self.drift_share,
            "drifted": self.drifted, "correction": self.correction, "new_columns": list(self.new_columns),
        }

    @classmethod
    def from_dict(cls, document: dict) -> WindowResult:
        return cls(**{
            **document,
            "results": tuple(DriftResult.from_dict(r) for r in document["results"]),
            "share": math.nan if document["share"] is None else document["share"],
            "new_columns": tuple(document["new_columns"]),
        })


class WindowDrift:
    """Scores windows against a profile. Parameters here, data in `score`.

    method: "auto" (Evidently's choice with the calibrated chi-square),
      "evidently" (Evidently's choice and its chi-square formula), or a
      statistic name for every column it accepts (others fall back to "auto").
    methods: per-column overrides {column: statistic name}.
    thresholds: per-column thresholds {column: value} (default: the method's).
    drift_share: share of drifted columns at which the window drifts, in (0, 1].
    correction: None, "bonferroni" or "bh" (Benjamini–Hochberg), applied to the
      p-value results of the window together.
    """

    def __init__(
        self,
        method: str = "auto",
        methods: Mapping[str, str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        drift_share: float = 0.5,
        correction: str | None = None,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"Invalid 'method' {method!r}. Valid values are: {list(METHODS)}")
        for column, name in (methods or {}).items():
            if name not in STATISTICS:
                raise ValueError(f"Invalid method {name!r} for column {column!r}. Valid values are: {list(STATISTICS)}")
        if correction not in CORRECTIONS:
            raise ValueError(f"Invalid 'correction' {correction!r}. Valid values are: {list(CORRECTIONS)}")
        if not 0 < drift_share <= 1:
            raise ValueError(f"'drift_share' must be a float in (0, 1]. Got {drift_share!r} instead.")
        self.method = method
        self.methods = dict(methods or {})
        self.thresholds = dict(thresholds or {})
        self.drift_share = drift_share
        self.correction = correction

    def score(self, profile: ReferenceProfile, window: pa.Table | pd.DataFrame) -> WindowResult:
        """Score every profiled column of `window` (a pyarrow Table or pandas DataFrame)."""
        names = _column_names(window)
        results = [self.score_column(feature, _column(window, name) if name in names else None)
                   for name, feature in profile.features.items()]
        results = _corrected(results, self.correction)
        scored = [r for r in results if not math.isnan(r.score)]
        drifted_count = sum(r.drifted for r in scored)
        share = drifted_count / len(scored) if scored else math.nan
        new_columns = tuple(n for n in profiled_columns(names) if n not in profile.features)
        return WindowResult(
            results=tuple(results), drifted_count=drifted_count, scored_count=len(scored), share=share,
            drift_share=self.drift_share, drifted=bool(scored) and share >= self.drift_share,
            correction=self.correction, new_columns=new_columns,
        )

    def score_column(self, feature: FeatureProfile, column) -> DriftResult:
        """One column's result; bad input (missing, wrong type, empty) gives a NaN score with a note."""
        if column is None:
            name = self.methods.get(feature.name) or ("ks" if feature.kind == "numeric" else "chisquare")
            return self._unscored(feature, name, "column missing from the window")
        statistic = get_statistic("ks" if feature.kind == "numeric" else "chisquare")
        try:
            cleaned = statistic.prepare(feature, column)
        except ValueError as error:
            return self._unscored(feature, self.methods.get(feature.name) or statistic.name, str(error))
        name = self.methods.get(feature.name) or self._choose(feature, cleaned)
        return get_statistic(name, self.thresholds.get(feature.name)).score_prepared(feature, cleaned)

    def _unscored(self, feature: FeatureProfile, name: str, note: str) -> DriftResult:
        threshold = self.thresholds.get(feature.name) or STATISTICS[name].default_threshold
        return DriftResult(feature.name, name, math.nan, float(threshold), False, STATISTICS[name].p_value, note)

    def _choose(self, feature: FeatureProfile, cleaned) -> str:
        if self.method not in ("auto", "evidently") and feature.kind in STATISTICS[self.method].kinds:
            return self.method
        chosen = evidently_choice(feature, cleaned)
        if chosen == "chisquare" and self.method == "evidently":
            return "chisquare_evidently"
        return chosen


def evidently_choice(feature: FeatureProfile, cleaned) -> str:
    """Evidently 0.7's default statistic for this column (`_get_default_stattest`), with 'chisquare' for its chi-square.

    >>> from driftloop.drift.profile import CategoricalFeature
    >>> evidently_choice(CategoricalFeature("c", ("a", "b", "c"), (400, 300, 300), 0), (("a", "b"), (5, 5)))
    'chisquare'
    >>> evidently_choice(CategoricalFeature("c", ("a", "b", "c"), (800, 300, 300), 0), (("a", "b"), (5, 5)))
    'jensenshannon'
    """
    distinct = _distinct_count(feature, cleaned)
    small = feature.count <= 1000
    if feature.kind == "numeric" and distinct > 5:
        return "ks" if small else "wasserstein"
    if small:
        return "chisquare" if distinct > 2 else "z"
    return "jensenshannon"


def _distinct_count(feature: FeatureProfile, cleaned) -> int:
    """Distinct non-null values of reference and window together (enough to know whether it exceeds 5)."""
    if isinstance(feature, NumericFeature):
        if feature.unique > 5 or not feature.distinct:
            return feature.unique
        return len(set(feature.distinct) | set(np.unique(cleaned).tolist()))
    return len(set(feature.categories) | set(current_counts(feature, cleaned)))


def _corrected(results: list[DriftResult], correction: str | None) -> list[DriftResult]:
    """Results with p-value thresholds lowered for multiple testing (Bonferroni, or Benjamini–Hochberg 1995)."""
    tested = [i for i, r in enumerate(results) if r.p_value and not math.isnan(r.score)]
    if correction is None or not tested:
        return results
    k = len(tested)
    corrected = list(results)
    if correction == "bonferroni":
        for i in tested:
            threshold = results[i].threshold / k
            corrected[i] = replace(results[i], threshold=threshold, drifted=results[i].score <= threshold,
                                   note=f"bonferroni over {k} tests")
        return corrected
    order = sorted(tested, key=lambda i: results[i].score)
    passing = [rank for rank, i in enumerate(order, start=1) if results[i].score <= rank * results[i].threshold / k]
    cutoff_rank = max(passing, default=0)
    for rank, i in enumerate(order, start=1):
        threshold = max(cutoff_rank, 1) * results[i].threshold / k
        corrected[i] = replace(results[i], threshold=threshold, drifted=rank <= cutoff_rank,
                               note=f"benjamini-hochberg over {k} tests")
    return corrected
