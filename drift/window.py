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

Two ways to decide with that choice:

* `method="auto"` (the default): each column's verdict is a calibrated test
  at `alpha` (its p-value under "no drift" at these two sizes, see
  `drift.stats`), so a column without drift alarms with probability alpha
  whether the window has 30 rows or a million; `chisquare` is the two-sample
  test. The score stays Evidently's number (the distance: the effect size).
* `method="evidently"`: Evidently's verdicts, number for number: fixed
  thresholds (Wasserstein and Jensen–Shannon >= 0.1, whatever the sizes), its
  one-sample chi-square, and its choice of column kinds, which it takes from
  the *window* (an integer column with at most 10 distinct values there is
  categorical); columns its type inference does not know (pandas nullable
  `Int64`, `Float64`, `boolean`, unsigned integers) are left out as Evidently
  leaves them out, and a text column (strings, more distinct values than
  half the rows), which Evidently scores with a text classifier driftloop does
  not reproduce, is refused with a ValueError that names it.

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
    INTEGER_CARDINALITY_LIMIT,
    CategoricalFeature,
    FeatureProfile,
    NumericFeature,
    ReferenceProfile,
    _column,
    _column_names,
    profiled_columns,
)
from driftloop.drift.results import DriftResult
from driftloop.drift.stats import STATISTICS, Statistic, get_statistic
from driftloop.drift.stats._base import DEFAULT_ALPHA, current_counts, reference_counts

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

    method: "auto" (Evidently's choice of statistic, each decided by a
      calibrated test at `alpha`), "evidently" (Evidently's verdicts: its
      choice, kinds, thresholds and chi-square formula), or a statistic name
      for every column it accepts, calibrated (others fall back to "auto").
    methods: per-column overrides {column: statistic name}.
    thresholds: per-column fixed thresholds on the score {column: value}
      (Evidently's rule for that column instead of a calibrated test).
    drift_share: share of drifted columns at which the window drifts, in (0, 1].
    correction: None, "bonferroni" or "bh" (Benjamini–Hochberg), applied to the
      p-values of the window's columns together.
    alpha: the false-alarm rate of each calibrated column test, in (0, 1).
    """

    def __init__(
        self,
        method: str = "auto",
        methods: Mapping[str, str] | None = None,
        thresholds: Mapping[str, float] | None = None,
        drift_share: float = 0.5,
        correction: str | None = None,
        alpha: float = DEFAULT_ALPHA,
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
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
            raise ValueError(f"'alpha' must be a float in (0, 1). Got {alpha!r} instead.")
        for column, threshold in (thresholds or {}).items():
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
                raise ValueError(f"Invalid threshold {threshold!r} for column {column!r}: it must be a float > 0.")
        self.method = method
        self.methods = dict(methods or {})
        self.thresholds = dict(thresholds or {})
        self.drift_share = drift_share
        self.correction = correction
        self.alpha = alpha

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
        """One column's result; bad input (missing, wrong type, empty) gives a NaN score with a note.

        Under method="evidently", a column Evidently would score as text raises ValueError.
        """
        if column is None:
            name = self.methods.get(feature.name) or ("ks" if feature.kind == "numeric" else "chisquare")
            return self._unscored(feature, name, "column missing from the window")
        if self.method == "evidently":
            kind = evidently_kind(column)
            if kind is None:
                return self._unscored(feature, self.methods.get(feature.name) or _placeholder(feature.kind),
                                      f"Evidently leaves out this column: its type inference does not know dtype "
                                      f"{_pandas_dtype(column)!r} (pandas nullable and unsigned dtypes among them)")
            if kind == "text":
                raise ValueError(_text_refusal(feature.name, column))
            try:
                feature = as_kind(feature, kind)
            except ValueError as error:
                return self._unscored(feature, self.methods.get(feature.name) or _placeholder(kind), str(error))
        statistic = get_statistic(_placeholder(feature.kind))
        try:
            cleaned = statistic.prepare(feature, column)
        except ValueError as error:
            return self._unscored(feature, self.methods.get(feature.name) or statistic.name, str(error))
        name = self.methods.get(feature.name) or self._choose(feature, cleaned)
        return self.statistic(name, feature.name).score_prepared(feature, cleaned)

    def statistic(self, name: str, column: str) -> Statistic:
        """The statistic `name` as this scorer decides with it on `column`."""
        if column in self.thresholds:
            return get_statistic(name, threshold=self.thresholds[column])
        if self.method == "evidently":
            return STATISTICS[name].evidently()
        return get_statistic(name, alpha=self.alpha)

    def _unscored(self, feature: FeatureProfile, name: str, note: str) -> DriftResult:
        statistic = self.statistic(name, feature.name)
        threshold = statistic.alpha if statistic.calibrated else statistic.threshold
        return DriftResult(feature.name, name, math.nan, float(threshold), False, STATISTICS[name].p_value, note)

    def _choose(self, feature: FeatureProfile, cleaned) -> str:
        if self.method not in ("auto", "evidently") and feature.kind in STATISTICS[self.method].kinds:
            return self.method
        chosen = evidently_choice(feature, cleaned)
        if chosen == "chisquare" and self.method == "evidently":
            return "chisquare_evidently"
        return chosen


def _placeholder(kind: str) -> str:
    return "ks" if kind == "numeric" else "chisquare"


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
    """Results with p-value thresholds lowered for multiple testing (Bonferroni, or Benjamini–Hochberg 1995).

    Every result with a p-value takes part (under method="auto", all of them; under
    "evidently", the p-value statistics); a distance under a fixed threshold keeps its verdict.
    """
    tested = [i for i, r in enumerate(results) if not math.isnan(r.p)]
    if correction is None or not tested:
        return results
    k = len(tested)
    corrected = list(results)
    if correction == "bonferroni":
        for i in tested:
            threshold = results[i].threshold / k
            corrected[i] = replace(results[i], threshold=threshold, drifted=results[i].p <= threshold,
                                   note=f"bonferroni over {k} tests")
        return corrected
    order = sorted(tested, key=lambda i: results[i].p)
    passing = [rank for rank, i in enumerate(order, start=1) if results[i].p <= rank * results[i].threshold / k]
    cutoff_rank = max(passing, default=0)
    for rank, i in enumerate(order, start=1):
        threshold = max(cutoff_rank, 1) * results[i].threshold / k
        corrected[i] = replace(results[i], threshold=threshold, drifted=rank <= cutoff_rank,
                               note=f"benjamini-hochberg over {k} tests")
    return corrected


# Evidently's column kinds (method="evidently"): taken from the window, as Evidently's type inference takes them.


def evidently_kind(column) -> str | None:
    """'numeric', 'categorical', 'text' or None (left out): Evidently 0.7's `infer_column_type` of the window column.

    Evidently reads a pandas frame: an Arrow column is judged as `to_pandas()` turns it (an integer column
    with nulls becomes float; a boolean one with nulls, objects).

    >>> import pandas as pd
    >>> evidently_kind(pd.Series([1, 2, 3])), evidently_kind(pd.Series([1, 2], dtype="Int64"))
    ('categorical', None)
    >>> evidently_kind(pd.Series(["a", "b", "c"])), evidently_kind(pd.Series(["a", "a", "a", "b"]))
    ('text', 'categorical')
    """
    series = _as_pandas(column)
    dtype = series.dtype.name
    if dtype.startswith("float"):
        return "numeric"
    if dtype.startswith("int"):
        return "categorical" if series.nunique() <= INTEGER_CARDINALITY_LIMIT else "numeric"
    if dtype in ("string", "str", "object"):
        if dtype == "object":
            present = series.dropna()
            if len(present) == 0 or not (isinstance(present.iloc[0], str) and isinstance(present.iloc[-1], str)):
                return None
        return "text" if series.nunique() > series.count() * 0.5 else "categorical"
    if dtype in ("bool", "category"):
        return "categorical"
    return None


def as_kind(feature: FeatureProfile, kind: str) -> FeatureProfile:
    """The reference column seen as `kind` (Evidently may see a column otherwise than its profile); kept once made."""
    if feature.kind == kind:
        return feature
    cached = getattr(feature, "_as_other_kind", None)
    if cached is None:
        if kind == "numeric":
            try:
                values = np.repeat(np.asarray(feature.categories, dtype=np.float64), feature.counts)
            except (TypeError, ValueError):
                raise ValueError(f"column {feature.name!r} is numeric in the window but holds "
                                 f"{type(feature.categories[0]).__name__} values in the reference") from None
            cached = NumericFeature.from_values(feature.name, values, role=feature.role)
        else:
            counts = reference_counts(feature)
            categories = [int(v) if feature.integer else v for v in counts]
            cached = CategoricalFeature(feature.name, tuple(categories), tuple(counts.values()), feature.missing,
                                        role=feature.role)
        object.__setattr__(feature, "_as_other_kind", cached)
    return cached


def _as_pandas(column) -> pd.Series:
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        return column.to_pandas()
    return column if isinstance(column, pd.Series) else pd.Series(column)


def _pandas_dtype(column) -> str:
    return _as_pandas(column).dtype.name


def _text_refusal(name: str, column) -> str:
    series = _as_pandas(column)
    return (
        f"method='evidently' cannot reproduce Evidently on column {name!r}: Evidently reads it as text "
        f"({series.nunique()} distinct strings in {series.count()} rows, more than half) and scores it with its "
        "text-content drift test (a classifier on the words), which driftloop does not implement. Leave the column "
        "out of the profile (ReferenceProfile.build(columns=...)) or use method='auto', which tests it as categorical."
    )
