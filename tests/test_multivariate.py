"""The domain-classifier drift test: calibration, power, attribution, JSON, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftloop.drift.multivariate import DomainClassifierTest, MultivariateResult

SHIFTED = (4, 11, 17)  # not the first columns, so a bias toward low indices cannot pass the attribution test


def windows(
    seed: int, rows: int = 2000, features: int = 20, shift: float = 0.0, shifted: tuple[int, ...] = SHIFTED
) -> tuple[np.ndarray, np.ndarray]:
    """Two windows of standard normal rows; the current one shifted by `shift` sigma in the `shifted` columns."""
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(rows, features))
    current = rng.normal(size=(rows, features))
    current[:, list(shifted)] += shift
    return reference, current


@pytest.mark.parametrize("seed", range(5))
def test_no_drift_on_one_distribution(seed: int) -> None:
    reference, current = windows(seed)
    result = DomainClassifierTest(alpha=0.01, seed=seed).test(reference, current)
    assert not result.drifted
    assert abs(result.auc - 0.5) < 0.03
    assert result.p_value >= 0.01


@pytest.mark.parametrize("seed", range(3))
def test_detects_half_sigma_shift_in_three_of_twenty_and_names_them(seed: int) -> None:
    reference, current = windows(seed, shift=0.5)
    result = DomainClassifierTest(seed=seed).test(reference, current)
    assert result.drifted
    assert result.p_value < 1e-6
    assert result.auc > 0.6
    top = {name for name, _ in result.feature_importance[:3]}
    assert top == {f"x{j}" for j in SHIFTED}
    importances = [value for _, value in result.feature_importance]
    assert importances == sorted(importances, reverse=True)
    assert (result.n_reference, result.n_current) == (2000, 2000)


def test_detects_a_change_of_correlation_that_no_marginal_shows() -> None:
    reference, current = windows(0, rows=2000, features=8, shifted=())
    current[:, 5] = 0.7 * current[:, 2] + np.sqrt(1 - 0.7**2) * current[:, 5]  # still N(0, 1) alone
    result = DomainClassifierTest(seed=0).test(reference, current)
    assert result.drifted
    assert {name for name, _ in result.feature_importance[:2]} == {"x2", "x5"}


def test_same_seed_same_result_and_input_untouched() -> None:
    reference, current = windows(0, rows=300, features=5, shift=0.3, shifted=(1,))
    before = reference.copy()
    first = DomainClassifierTest(seed=7).test(reference, current)
    assert DomainClassifierTest(seed=7).test(reference, current) == first
    np.testing.assert_array_equal(reference, before)


def test_json_round_trip() -> None:
    reference, current = windows(1, rows=300, features=4, shift=0.5, shifted=(2,))
    result = DomainClassifierTest(seed=0).test(reference, current)
    document = json.loads(json.dumps(result.to_dict()))
    assert MultivariateResult.from_dict(document) == result

    too_few = DomainClassifierTest().test(reference[:10], current)
    document = json.loads(json.dumps(too_few.to_dict()))  # NaN travels as null
    assert document["auc"] is None and document["p_value"] is None
    back = MultivariateResult.from_dict(document)
    assert math.isnan(back.auc) and math.isnan(back.p_value) and back.note == too_few.note


def test_named_tables_matched_by_name() -> None:
    reference, current = windows(2, rows=1000, features=6, shift=0.6, shifted=(4,))
    names = ["age", "income", "tenure", "clicks", "spend", "visits"]
    frame = pd.DataFrame(reference, columns=names)
    table = pa.table({name: current[:, j] for j, name in reversed(list(enumerate(names)))})  # other column order
    result = DomainClassifierTest(seed=0).test(frame, table)
    assert result.drifted
    assert result.feature_importance[0][0] == "spend"
    assert {name for name, _ in result.feature_importance} == set(names)


def test_too_few_rows_gives_a_note_not_an_alarm() -> None:
    reference, current = windows(0, rows=200, features=3, shifted=())
    result = DomainClassifierTest(min_rows=50).test(reference, current[:49])
    assert not result.drifted
    assert math.isnan(result.auc) and math.isnan(result.p_value)
    assert result.feature_importance == ()
    assert (result.n_reference, result.n_current) == (200, 49)
    assert "too few rows" in result.note and "50" in result.note
    assert DomainClassifierTest().test(np.empty((0, 3)), current).note.startswith("too few rows")


def test_constant_columns() -> None:
    rng = np.random.default_rng(3)
    reference = np.column_stack([np.ones(500), rng.normal(size=500)])
    current = np.column_stack([np.ones(500), rng.normal(size=500)])
    result = DomainClassifierTest(seed=0).test(reference, current)
    assert not result.drifted
    assert dict(result.feature_importance)["x0"] == 0.0

    all_constant = DomainClassifierTest(seed=0).test(np.zeros((500, 3)), np.zeros((500, 3)))
    assert (all_constant.auc, all_constant.p_value, all_constant.drifted) == (0.5, 1.0, False)
    assert "alike" in all_constant.note

    moved_constant = DomainClassifierTest(seed=0).test(np.zeros((500, 2)), np.ones((500, 2)))
    assert moved_constant.drifted and moved_constant.auc == 1.0


def test_nan_is_missing_and_more_missing_is_drift() -> None:
    reference, current = windows(4, rows=1000, features=4, shifted=())
    reference[::10, 0] = np.nan  # 10 % missing on both sides: no drift
    current[::10, 0] = np.nan
    reference[:, 3] = np.nan  # an all-NaN column is allowed
    current[:, 3] = np.nan
    same = DomainClassifierTest(seed=0).test(reference, current)
    assert not same.drifted
    assert dict(same.feature_importance)["x3"] == 0.0
    assert same.note == "all values missing in both windows: ['x3']"

    current[::2, 1] = np.nan  # 50 % missing in the current window only
    result = DomainClassifierTest(seed=0).test(reference, current)
    assert result.drifted
    assert result.feature_importance[0][0] == "x1"


def test_mismatched_columns_are_named() -> None:
    reference = pd.DataFrame({"a": [1.0] * 60, "b": [2.0] * 60, "c": [3.0] * 60})
    current = pd.DataFrame({"a": [1.0] * 60, "b": [2.0] * 60, "d": [3.0] * 60})
    with pytest.raises(ValueError, match=r"missing from current: \['c'\]; not in reference: \['d'\]"):
        DomainClassifierTest().test(reference, current)
    with pytest.raises(ValueError, match="reference has 3, current has 2"):
        DomainClassifierTest().test(np.zeros((60, 3)), np.zeros((60, 2)))


@pytest.mark.parametrize(
    ("reference", "current", "message"),
    [
        (np.zeros(60), np.zeros(60), "must be 2-D"),
        (np.zeros((60, 0)), np.zeros((60, 0)), "no columns"),
        (
            pd.DataFrame({"a": np.zeros(60), "city": ["x"] * 60}),
            pd.DataFrame({"a": np.zeros(60), "city": ["y"] * 60}),
            "column 'city' is not numeric.*encode categorical",
        ),
        (np.zeros((60, 2)), np.where(np.eye(60, 2) > 0, np.inf, 0.0), r"infinite values in columns \['x0', 'x1'\]"),
    ],
    ids=["one-dimensional", "no-columns", "text-column", "infinite"],
)
def test_bad_input_raises(reference: object, current: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DomainClassifierTest().test(reference, current)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"alpha": 1.5}, "'alpha' parameter .* must be in \\(0, 1\\)"),
        ({"test_fraction": 1.0}, "'test_fraction' parameter .* must be in \\(0, 1\\)"),
        ({"min_rows": 4}, "'min_rows' parameter .* int >= 10"),
        ({"n_threads": 0}, "'n_threads' parameter .* int >= 1"),
    ],
    ids=["alpha", "test_fraction", "min_rows", "n_threads"],
)
def test_parameters_are_validated(parameters: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DomainClassifierTest(**parameters)


def test_large_window_is_subsampled() -> None:
    reference, current = windows(5, rows=1500, features=3, shifted=())
    result = DomainClassifierTest(max_rows=1000, seed=0).test(reference, current[:800])
    assert (result.n_reference, result.n_current) == (1000, 800)
    assert result.note == "reference subsampled from 1500 to 1000 rows"
