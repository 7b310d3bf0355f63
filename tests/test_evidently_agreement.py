"""driftloop's statistics agree with Evidently 0.7.23: same scores (1e-9), same decisions, same method choice.

Compared with what users see, the per-column values of `Report([DataDriftPreset()])`,
and, for methods the preset does not pick on these data, with Evidently's stat
test functions called directly.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.stats import STATISTICS, get_statistic
from driftloop.drift.window import WindowDrift

EVIDENTLY_NAMES = {
    "K-S p_value": "ks",
    "chi-square p_value": "chisquare_evidently",
    "Z-test p_value": "z",
    "Wasserstein distance (normed)": "wasserstein",
    "Jensen-Shannon distance": "jensenshannon",
    "PSI": "psi",
}


def frames(reference_rows: int, current_rows: int, shift: bool, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(rows: int, shifted: bool) -> pd.DataFrame:
        delta = 0.6 if shifted else 0.0
        mix = [0.4, 0.3, 0.2, 0.1] if not shifted else [0.2, 0.3, 0.3, 0.2]
        frame = pd.DataFrame({
            "income": rng.lognormal(3 + delta, 0.5, rows),
            "age": rng.normal(40 + 10 * delta, 12, rows).round(),  # float with many distinct values
            "rooms": rng.choice([1.0, 2.0, 3.0, 4.0], rows, p=mix),  # float, <= 5 distinct
            "flag": rng.choice([0.0, 1.0], rows, p=[0.7 - delta / 2, 0.3 + delta / 2]),  # float, binary
            "plan": rng.choice(["basic", "plus", "pro", "team"], rows, p=mix).astype(object),
            "churn": rng.choice(["no", "yes"], rows, p=[0.8 - delta / 3, 0.2 + delta / 3]).astype(object),
            "region": rng.integers(0, 6 + (2 if shifted else 0), rows),  # int, <= 10 distinct: categorical
        })
        frame.loc[rng.choice(rows, rows // 50, replace=False), "income"] = np.nan
        return frame

    return make(reference_rows, False), make(current_rows, shift)


CASES = {
    "small-reference-same": (600, 400, False),
    "small-reference-shifted": (600, 400, True),
    "large-reference-same": (5000, 3000, False),
    "large-reference-shifted": (5000, 3000, True),
}


@pytest.fixture(scope="module")
def evidently():
    from evidently import Report
    from evidently.legacy.calculations.stattests import registry  # noqa: F401  (registers the tests)
    from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
    from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test
    from evidently.legacy.calculations.stattests.psi import _psi
    from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
    from evidently.legacy.core import ColumnType
    from evidently.presets import DataDriftPreset

    return {
        "Report": Report, "DataDriftPreset": DataDriftPreset, "ColumnType": ColumnType,
        "ks": _ks_stat_test, "wasserstein": _wasserstein_distance_norm, "psi": _psi, "jensenshannon": _jensenshannon,
    }


def evidently_columns(evidently, reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, tuple[str, float, float]]:
    """{column: (driftloop method name, value, threshold)} from Evidently's DataDriftPreset report."""
    snapshot = evidently["Report"]([evidently["DataDriftPreset"]()]).run(current_data=current, reference_data=reference)
    columns = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            columns[config["column"]] = (EVIDENTLY_NAMES[config["method"]], float(metric["value"]), config["threshold"])
    return columns


def evidently_drifted(method: str, value: float, threshold: float) -> bool:
    if method == "ks":
        return value <= threshold
    if method in ("chisquare_evidently", "z"):
        return value < threshold
    return value >= threshold


@pytest.mark.parametrize("case", list(CASES))
def test_report_values_and_decisions_agree(evidently, case):
    reference, current = frames(*CASES[case], seed=len(case))
    theirs = evidently_columns(evidently, reference, current)
    ours = WindowDrift(method="evidently").score(ReferenceProfile.build(reference), current).by_feature
    assert set(theirs) == set(ours) == set(reference.columns)
    for column, (method, value, threshold) in theirs.items():
        result = ours[column]
        assert result.method == method, column
        assert result.threshold == threshold, column
        assert result.score == pytest.approx(value, rel=1e-9, abs=1e-12), (column, method)
        assert result.drifted == evidently_drifted(method, value, threshold), (column, method)
    if case.endswith("shifted"):
        assert sum(r.drifted for r in ours.values()) >= 5


@pytest.mark.parametrize("method", ["ks", "wasserstein", "psi", "jensenshannon"])
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_stattest_functions_agree(evidently, method, size, shift):
    rng = np.random.default_rng(7)
    rows = 800 if size == "small" else 20_000
    reference = pd.DataFrame({"x": rng.normal(0, 2, rows), "k": rng.choice(["a", "b", "c", "d", "e"], rows)})
    current = pd.DataFrame({"x": rng.normal(shift, 2, rows // 2),
                            "k": rng.choice(["a", "b", "c", "d", "e", "f"], rows // 2, p=[.3, .2, .2, .1, .1 + shift / 3, .1 - shift / 3])})
    profile = ReferenceProfile.build(reference)
    column_types = {"x": evidently["ColumnType"].Numerical, "k": evidently["ColumnType"].Categorical}
    for column, column_type in column_types.items():
        if method in ("ks", "wasserstein") and column == "k":
            continue
        statistic = get_statistic(method, threshold=STATISTICS[method].default_threshold)
        value, drifted = evidently[method](reference[column], current[column], column_type, statistic.threshold)
        result = statistic.score(profile.features[column], current[column])
        assert result.score == pytest.approx(float(value), rel=1e-9, abs=1e-12), column
        assert result.drifted == bool(drifted), column


def test_sketched_profile_decides_like_evidently_on_a_large_reference(evidently):
    reference, current = frames(50_000, 5000, True, seed=3)
    theirs = evidently_columns(evidently, reference, current)
    ours = WindowDrift(method="evidently").score(ReferenceProfile.build(reference, sketch_size=10_000), current).by_feature
    for column, (method, value, threshold) in theirs.items():
        assert ours[column].method == method
        assert ours[column].drifted == evidently_drifted(method, value, threshold), column
        assert math.isclose(ours[column].score, value, rel_tol=0.05, abs_tol=0.01), column


def frames_of_every_kind(reference_rows: int, current_rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Column kinds where Evidently's choice is easy to miss: nullable and unsigned dtypes, integer columns
    whose kind flips between the reference and the window (Evidently takes it from the window)."""
    rng = np.random.default_rng(seed)

    def make(rows: int, shifted: bool) -> pd.DataFrame:
        delta = 0.5 if shifted else 0.0
        return pd.DataFrame({
            "income": rng.normal(delta, 1, rows),
            "plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]).astype(object),
            "visits_nullable": pd.array(rng.integers(0, 50, rows), dtype="Int64"),
            "spend_nullable": pd.array(rng.normal(delta, 1, rows), dtype="Float64"),
            "active_nullable": pd.array(rng.random(rows) < 0.3 + delta / 2, dtype="boolean"),
            "age_uint8": rng.integers(18, 90, rows).astype("uint8"),
            "grade": rng.integers(0, 14 if shifted else 8, rows),  # categorical in the reference, numeric in the window
            "tier": rng.integers(0, 8 if shifted else 14, rows),  # numeric in the reference, categorical in the window
        })

    return make(reference_rows, False), make(current_rows, True)


@pytest.mark.parametrize("reference_rows", [600, 3000], ids=["small-reference", "large-reference"])
def test_evidently_mode_scores_the_columns_evidently_scores_as_it_scores_them(evidently, reference_rows):
    """Nullable/unsigned columns left out as Evidently leaves them out; kinds taken from the window; same share."""
    reference, current = frames_of_every_kind(reference_rows, 400, seed=reference_rows)
    snapshot = evidently["Report"]([evidently["DataDriftPreset"]()]).run(current_data=current, reference_data=reference)
    theirs, share = {}, None
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            theirs[config["column"]] = (EVIDENTLY_NAMES[config["method"]], float(metric["value"]), config["threshold"])
        elif config["type"].endswith("DriftedColumnsCount"):
            share = metric["value"]["share"]
    verdict = WindowDrift(method="evidently").score(ReferenceProfile.build(reference), current)
    ours = verdict.by_feature
    assert set(theirs) == {"income", "plan", "grade", "tier"}  # what Evidently's type inference keeps
    assert {name for name, result in ours.items() if not math.isnan(result.score)} == set(theirs)
    for column in ("visits_nullable", "spend_nullable", "active_nullable", "age_uint8"):
        assert "Evidently leaves out this column" in ours[column].note and not ours[column].drifted
    for column, (method, value, threshold) in theirs.items():
        assert ours[column].method == method, column
        assert ours[column].threshold == threshold, column
        assert ours[column].score == pytest.approx(value, rel=1e-9, abs=1e-12), (column, method)
        assert ours[column].drifted == evidently_drifted(method, value, threshold), column
    assert verdict.share == pytest.approx(share)
    auto = WindowDrift().score(ReferenceProfile.build(reference), current).by_feature
    assert all(not math.isnan(result.score) for result in auto.values())  # the default scores every column


def test_evidently_mode_refuses_a_text_column_and_says_why(evidently):
    """Evidently scores strings with more distinct values than half the rows by a text classifier: not reproduced."""
    rng = np.random.default_rng(9)
    reference = pd.DataFrame({"x": rng.normal(size=2000), "comment": [f"order {i}" for i in rng.integers(0, 10**6, 2000)]})
    current = pd.DataFrame({"x": rng.normal(size=300), "comment": [f"order {i}" for i in rng.integers(0, 10**6, 300)]})
    snapshot = evidently["Report"]([evidently["DataDriftPreset"]()]).run(current_data=current, reference_data=reference)
    methods = {m["config"]["column"]: m["config"]["method"] for m in snapshot.dict()["metrics"]
               if m["config"]["type"].endswith("ValueDrift")}
    assert "text content drift" in methods["comment"]  # Evidently does score it, as text
    profile = ReferenceProfile.build(reference)
    with pytest.raises(ValueError, match=r"column 'comment'.*text.*300 distinct strings in 300 rows.*method='auto'"):
        WindowDrift(method="evidently").score(profile, current)
    assert WindowDrift().score(profile, current).by_feature["comment"].method == "jensenshannon"
