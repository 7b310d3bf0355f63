"""Data-quality checks of a window against its reference profile: is the data still what the model was fed?

A broken upstream pipeline (a column suddenly null, a unit changed, a new
category, a renamed field) looks to drift statistics like any other drift. These
checks name it. Each compares one column of the window with what the reference
profile (`drift.profile.ReferenceProfile`) says to expect:

=================  ==============================================================  ====================
check              fails when                                                      setting
=================  ==============================================================  ====================
missing            the share of null / NaN / inf rows exceeds the reference's      max_missing_increase
                   share by more than the setting
out_of_range       the share of finite values below the reference's lower          max_out_of_range
                   quantile or above its upper one (default: its minimum and
                   maximum) exceeds the share the reference itself predicts by
                   more than the setting
unseen_category    the share of values the reference never had exceeds the         max_unseen
                   share of new values the reference predicts by more than the
                   setting
type_mismatch      more than the setting's share of values have another type      max_type_mismatch
                   than the reference's (text in a numeric column, numbers
                   where there were strings)
disappeared        a profiled column is not in the window                          (on when in `checks`)
appeared           the window has a column the profile does not know               (on when in `checks`)
=================  ==============================================================  ====================

The three share checks also need the excess to be significant at `alpha`, so a
small window cannot fail on a few rows by chance; their false-alarm rate on a
clean window is at most `alpha` per check and column, whatever the window's size.
The p-values are exact under "the window comes from the reference's distribution"
(exchangeable values; beta-binomial laws): the window's count beyond the
reference's r-th smallest and s-th largest values is BetaBinomial(n, r + s,
m + 1 - r - s) for m reference values; a share of missing rows is compared with
the reference's by the beta-binomial predictive of its count; the mass of
categories unseen in m values is Good–Turing's (singletons + 1) / (m + 1)
(Good 1953). Values of a discrete numeric column that tie with the bounds are not
"beyond", so that check is conservative there.

>>> import pandas as pd
>>> from driftloop.drift.profile import ReferenceProfile
>>> rng = np.random.default_rng(0)
>>> reference = pd.DataFrame({"amount": rng.lognormal(3, 1, 5000), "plan": rng.choice(["basic", "pro"], 5000)})
>>> profile = ReferenceProfile.build(reference)
>>> window = pd.DataFrame({"amount": rng.lognormal(3, 1, 1000) * 1000, "plan": rng.choice(["basic", "max"], 1000)})
>>> [(r.feature, r.check, round(r.share, 2)) for r in DataQuality().check(profile, window).failures]
[('amount', 'out_of_range', 1.0), ('plan', 'unseen_category', 0.51)]
>>> DataQuality().check(profile, reference.sample(1000, random_state=1)).failed
False
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import betabinom

from driftloop.drift.profile import (
    CategoricalFeature,
    FeatureProfile,
    NumericFeature,
    ReferenceProfile,
    _column,
    _column_names,
    profiled_columns,
)

CHECKS = ("missing", "out_of_range", "unseen_category", "type_mismatch", "disappeared", "appeared")


@dataclass(frozen=True)
class QualityResult:
    """One check of one column.

    `share`: the window's share of rows (or values) with the problem, `count` their number;
    `expected`: the share the reference predicts; `threshold`: how much above `expected`
    the share may go; `p_value`: of the excess (NaN for the structural checks).
    `failed` is share > expected + threshold and p_value < alpha (share checks), or the
    structural condition itself. Nothing to check (no values) gives NaN and a `note`.
    """

    feature: str
    check: str
    failed: bool
    share: float
    expected: float
    threshold: float
    p_value: float
    count: int
    note: str = ""

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, document: dict) -> QualityResult:
        floats = ("share", "expected", "threshold", "p_value")
        return cls(**{k: (math.nan if v is None else float(v)) if k in floats else v for k, v in document.items()})


@dataclass(frozen=True)
class QualityReport:
    """Every check of one window. `failures` lists the failed ones."""

    rows: int
    results: tuple[QualityResult, ...]
    alpha: float

    @property
    def failures(self) -> tuple[QualityResult, ...]:
        return tuple(r for r in self.results if r.failed)

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    def by_check(self, check: str) -> dict[str, QualityResult]:
        """{column: result} of one check."""
        return {r.feature: r for r in self.results if r.check == check}

    def to_dict(self) -> dict:
        return {"rows": self.rows, "alpha": self.alpha, "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, document: dict) -> QualityReport:
        return cls(document["rows"], tuple(QualityResult.from_dict(r) for r in document["results"]), document["alpha"])


class DataQuality:
    """Checks windows against a profile. Parameters here, data in `check`.

    max_missing_increase: how far the share of missing rows may exceed the reference's (0.1: ten points).
    max_out_of_range: share of values beyond the reference's bounds allowed above what the reference predicts.
    quantiles: (lower, upper) quantiles of the reference that bound its range; (0, 1) is its minimum and maximum.
    max_unseen: share of values of categories the reference never had, above what the reference predicts.
    max_type_mismatch: share of values of the wrong type allowed (0: any one fails).
    alpha: significance the share checks also need (their false-alarm rate per check and column).
    checks: which checks to run (default: all of CHECKS).
    """

    def __init__(
        self,
        max_missing_increase: float = 0.1,
        max_out_of_range: float = 0.05,
        quantiles: tuple[float, float] = (0.0, 1.0),
        max_unseen: float = 0.05,
        max_type_mismatch: float = 0.0,
        alpha: float = 1e-3,
        checks: Sequence[str] = CHECKS,
    ) -> None:
        for name, value in (("max_missing_increase", max_missing_increase), ("max_out_of_range", max_out_of_range),
                            ("max_unseen", max_unseen), ("max_type_mismatch", max_type_mismatch)):
            if not 0 <= value < 1:
                raise ValueError(f"'{name}' must be a float in [0, 1). Got {value!r} instead.")
        if not 0 < alpha < 1:
            raise ValueError(f"'alpha' must be a float in (0, 1). Got {alpha!r} instead.")
        low, high = quantiles
        if not 0 <= low < high <= 1 or low >= 0.5 or high <= 0.5:
            raise ValueError(f"'quantiles' must be (lower, upper) with 0 <= lower < 0.5 < upper <= 1. Got {quantiles!r}")
        unknown = [c for c in checks if c not in CHECKS]
        if unknown:
            raise ValueError(f"Invalid checks {unknown}. Valid values are: {list(CHECKS)}")
        self.max_missing_increase = max_missing_increase
        self.max_out_of_range = max_out_of_range
        self.quantiles = (float(low), float(high))
        self.max_unseen = max_unseen
        self.max_type_mismatch = max_type_mismatch
        self.alpha = alpha
        self.checks = tuple(checks)

    def check(self, profile: ReferenceProfile, window: pa.Table | pd.DataFrame) -> QualityReport:
        """Run every check on every profiled column of `window` (a pyarrow Table or pandas DataFrame)."""
        names = _column_names(window)
        rows = len(window)
        results: list[QualityResult] = []
        for name, feature in profile.features.items():
            if name not in names:
                if "disappeared" in self.checks:
                    results.append(QualityResult(name, "disappeared", True, math.nan, math.nan, math.nan, math.nan,
                                                 rows, "column missing from the window"))
                continue
            results.extend(self.check_column(feature, _column(window, name)))
        if "appeared" in self.checks:
            for name in profiled_columns(names):
                if name not in profile.features:
                    results.append(QualityResult(name, "appeared", True, math.nan, math.nan, math.nan, math.nan,
                                                 rows, "column not in the reference profile"))
        return QualityReport(rows, tuple(results), self.alpha)

    def check_column(self, feature: FeatureProfile, column) -> list[QualityResult]:
        """The checks of one column present in the window."""
        values, wrong, present, family = _typed(feature, column)
        results = []
        if "type_mismatch" in self.checks:
            share = wrong / present if present else math.nan
            note = f"holds {family} values, the reference {_family(feature)} ones" if wrong else ""
            results.append(QualityResult(feature.name, "type_mismatch", bool(present) and share > self.max_type_mismatch,
                                         share, 0.0, self.max_type_mismatch, math.nan, wrong,
                                         note or ("" if present else "current window has no values")))
        rows = len(column)
        if "missing" in self.checks:
            # null, NaN and inf are missing (as in the profile); wrongly typed values are type mismatches instead
            missing = rows - present if values is None else rows - len(values) - wrong
            results.append(self._share_check(feature.name, "missing", missing, rows, feature.missing + 1,
                                             feature.count + 1, self.max_missing_increase))
        if values is None:
            return results
        if isinstance(feature, NumericFeature) and "out_of_range" in self.checks:
            results.append(self._out_of_range(feature, values))
        if isinstance(feature, CategoricalFeature) and "unseen_category" in self.checks:
            unseen = int((~pd.Series(values, dtype=object).isin(list(feature.categories))).sum())
            singletons = sum(1 for c in feature.counts if c == 1)
            m = feature.count
            results.append(self._share_check(feature.name, "unseen_category", unseen, len(values), singletons + 1,
                                             max(m - singletons, 1), self.max_unseen))
        return results

    def _out_of_range(self, feature: NumericFeature, values: np.ndarray) -> QualityResult:
        m = feature.count
        if m == 0:
            return QualityResult(feature.name, "out_of_range", False, math.nan, math.nan, self.max_out_of_range,
                                 math.nan, 0, "reference has no values")
        low_rank = max(1, math.ceil(self.quantiles[0] * m))
        high_rank = max(1, math.ceil((1 - self.quantiles[1]) * m))
        if low_rank + high_rank > m:
            low_rank = high_rank = max(1, m // 2)
        low, high = _order_statistic(feature, low_rank), _order_statistic(feature, m + 1 - high_rank)
        beyond = int(np.count_nonzero((values < low) | (values > high)))
        note = f"range [{low:.6g}, {high:.6g}]"
        return self._share_check(feature.name, "out_of_range", beyond, len(values), low_rank + high_rank,
                                 m + 1 - low_rank - high_rank, self.max_out_of_range, note)

    def _share_check(self, name: str, check: str, count: int, n: int, a: float, b: float, threshold: float,
                     note: str = "") -> QualityResult:
        """A count of n against BetaBinomial(n, a, b): fails when its share exceeds the expected one by more than
        `threshold` and the excess is significant at alpha."""
        expected = a / (a + b)
        if n == 0:
            return QualityResult(name, check, False, math.nan, expected, threshold, math.nan, 0,
                                 "current window has no values")
        share = count / n
        p_value = float(betabinom.sf(count - 1, n, a, max(b, 1e-9))) if count else 1.0
        failed = share > expected + threshold and p_value < self.alpha
        return QualityResult(name, check, failed, share, expected, threshold, p_value, count, note)


def _order_statistic(feature: NumericFeature, rank: int) -> float:
    """The reference's `rank`-th smallest finite value (1-based); from the quantile sketch when sketched."""
    if rank <= 1:
        return feature.minimum
    if rank >= feature.count:
        return feature.maximum
    if not feature.sketched:
        return float(feature.values[rank - 1])
    k = len(feature.values)  # the sketch holds the order statistics at ranks floor((i + 1/2) m / k)
    return float(feature.values[min(k - 1, max(0, round(rank * k / feature.count - 0.5)))])


def _family(feature: FeatureProfile) -> str:
    """'numeric', 'string', 'boolean' or 'mixed': what the reference column held."""
    if isinstance(feature, NumericFeature):
        return "numeric"
    kinds = {_value_family(v) for v in feature.categories}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none")


def _value_family(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "boolean"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return "numeric"
    return "string" if isinstance(value, str) else type(value).__name__


def _typed(feature: FeatureProfile, column) -> tuple[np.ndarray | list | None, int, int, str]:
    """(usable values, count of wrongly typed values, count of non-null values, the window's family).

    Usable values: finite floats for a numeric reference, non-null values for a categorical one; None when the
    column cannot be read as the reference's type at all (then only type_mismatch and missing are checked).
    """
    expected = _family(feature)
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        present = len(column) - column.null_count
        family = _arrow_family(kind)
        if family == "none" or present == 0:
            return (np.array([]) if isinstance(feature, NumericFeature) else []), 0, 0, "none"
        if family != "mixed" and family != expected and expected != "mixed":
            return None, present, present, family
        if isinstance(feature, NumericFeature):
            raw = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
            return raw[np.isfinite(raw)], 0, present, family
        return [v for v in column.to_pylist() if v is not None], 0, present, family
    series = column if isinstance(column, pd.Series) else pd.Series(column)
    present_values = series.dropna()
    present = len(present_values)
    if present == 0:
        return (np.array([]) if isinstance(feature, NumericFeature) else []), 0, 0, "none"
    family = _PANDAS_FAMILIES.get(pd.api.types.infer_dtype(present_values, skipna=True), "mixed")
    if family == "mixed":  # an object column of several types: sort its values one by one
        families = np.array([_value_family(v) for v in present_values.tolist()], dtype=object)
        right = families == expected if expected != "mixed" else np.ones(present, dtype=bool)
        kept = present_values[right]
        if isinstance(feature, NumericFeature):
            numeric = pd.to_numeric(kept, errors="coerce").to_numpy(dtype=np.float64)
            return numeric[np.isfinite(numeric)], int((~right).sum()), present, "mixed"
        return kept.tolist(), int((~right).sum()), present, "mixed"
    if family != expected and expected != "mixed":
        return None, present, present, family
    if isinstance(feature, NumericFeature):
        raw = pd.to_numeric(present_values).to_numpy(dtype=np.float64)
        return raw[np.isfinite(raw)], 0, present, family
    return present_values.tolist(), 0, present, family


# pandas.api.types.infer_dtype's answers, as families
_PANDAS_FAMILIES = {
    "string": "string", "unicode": "string", "empty": "none", "boolean": "boolean",
    "integer": "numeric", "floating": "numeric", "mixed-integer-float": "numeric", "decimal": "numeric",
    "integer-na": "numeric",
}


def _arrow_family(kind: pa.DataType) -> str:
    if pa.types.is_null(kind):
        return "none"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    return str(kind)


__all__ = ["CHECKS", "DataQuality", "QualityReport", "QualityResult"]
