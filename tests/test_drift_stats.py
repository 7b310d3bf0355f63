"""One contract suite over every statistic in the registry, then the window-level decision.

Cases are named `<statistic>[-<kind>]-<case>`, e.g. `ks-same-distribution`,
`psi-categorical-shift`. Count-based tests (chi-square, Z) are exercised on
categories; PSI and Jensen–Shannon on both kinds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftloop.drift.profile import CategoricalFeature, NumericFeature, ReferenceProfile
from driftloop.drift.results import DriftResult
from driftloop.drift.stats import KS, STATISTICS, ChiSquareEvidently, get_statistic
from driftloop.drift.stats._base import aligned_counts
from driftloop.drift.window import WindowDrift

LEVELS = np.array(["a", "b", "c", "d", "e", "f", "g"], dtype=object)
MIX = np.array([0.3, 0.2, 0.15, 0.12, 0.1, 0.08, 0.05])
SHIFTED_MIX = MIX[::-1]
REFERENCE_ROWS, WINDOW_ROWS, SEEDS = 20_000, 1_000, 200


def kinds_under_test(name: str) -> tuple[str, ...]:
    kinds = STATISTICS[name].kinds
    return ("categorical",) if kinds[0] == "categorical" else kinds


CASES = [(name, kind) for name in STATISTICS for kind in kinds_under_test(name)]


def case_id(name: str, kind: str, case: str) -> str:
    return f"{name}-{case}" if len(kinds_under_test(name)) == 1 else f"{name}-{kind}-{case}"


def parametrize(case: str):
    return pytest.mark.parametrize(("name", "kind"), CASES, ids=[case_id(n, k, case) for n, k in CASES])


def sample(name: str, kind: str, rows: int, rng: np.random.Generator, shifted: bool = False):
    if kind == "numeric":
        return rng.normal(1.0 if shifted else 0.0, 1.0, rows)
    if name == "z":
        return rng.choice(LEVELS[:2], rows, p=[0.6, 0.4] if shifted else [0.8, 0.2])
    return rng.choice(LEVELS, rows, p=SHIFTED_MIX if shifted else MIX)


def profile_of(name: str, kind: str, values) -> NumericFeature | CategoricalFeature:
    if kind == "numeric":
        return NumericFeature.from_values("x", values)
    return CategoricalFeature.from_values("x", pd.Series(values))


# The false-alarm contract: every statistic's default (calibrated) verdict alarms at rate alpha on windows
# without drift, whatever the two sizes. Reference sizes x window sizes, over references and windows (seeded);
# the benchmark (benchmarks/calibration.py) measures the same table for auto, evidently and Evidently itself.
CONTRACT_REFERENCES = {1_000: 20, 10_000: 5, 100_000: 3}  # references per size: the small ones' own noise matters
CONTRACT_WINDOWS = (30, 100, 1_000)
CONTRACT_DRAWS = 200  # windows per cell, spread over the references


@pytest.fixture(scope="module")
def contract_references() -> dict:
    """Per (kind, z-or-not, size): references, built once and shared by the statistics (and their precomputed nulls)."""
    cache: dict = {}

    def references(name: str, kind: str, n: int) -> list:
        key = (kind, name == "z", n)
        if key not in cache:
            rng = np.random.default_rng(n + (1 if name == "z" else 0))
            cache[key] = [profile_of(name, kind, sample(name, kind, n, rng)) for _ in range(CONTRACT_REFERENCES[n])]
        return cache[key]

    return references


@parametrize("false-alarm-rate-at-every-size")
def test_no_drift_false_alarm_rate_is_alpha_at_every_size(name, kind, contract_references):
    """Within [0.5, 1.5] x alpha over all cells together, and in each cell up to its sampling noise (3 sigma)."""
    statistic = get_statistic(name)
    alpha = statistic.alpha
    rates, outside, alarms_total, draws_total = {}, {}, 0, 0
    for n in CONTRACT_REFERENCES:
        references = contract_references(name, kind, n)
        rng = np.random.default_rng(7 * n)
        for m in CONTRACT_WINDOWS:
            per_reference = CONTRACT_DRAWS // len(references)
            alarms = sum(statistic.score(reference, sample(name, kind, m, rng)).drifted
                         for reference in references for _ in range(per_reference))
            draws = per_reference * len(references)
            rates[(n, m)] = rate = alarms / draws
            noise = 3 * math.sqrt(alpha * (1 - alpha) / draws)
            if not 0.5 * alpha - noise <= rate <= 1.5 * alpha + noise:
                outside[(n, m)] = rate
            alarms_total, draws_total = alarms_total + alarms, draws_total + draws
    assert outside == {}, rates
    assert 0.5 * alpha <= alarms_total / draws_total <= 1.5 * alpha, rates


def test_evidently_thresholds_alarm_on_small_windows_without_drift():
    """Why the default is calibrated: Evidently's fixed distance thresholds flag most small windows of the same data."""
    rng = np.random.default_rng(8)
    numeric = NumericFeature.from_values("x", rng.normal(size=5_000))
    categorical = CategoricalFeature.from_values("c", pd.Series(rng.choice(LEVELS, 5_000, p=MIX)))
    for statistic, reference, draw in (
        ("wasserstein", numeric, lambda: rng.normal(size=30)),
        ("jensenshannon", categorical, lambda: rng.choice(LEVELS, 30, p=MIX)),
    ):
        windows = [draw() for _ in range(200)]
        evidently = sum(STATISTICS[statistic].evidently().score(reference, w).drifted for w in windows)
        calibrated = sum(get_statistic(statistic).score(reference, w).drifted for w in windows)
        assert evidently >= 120 and calibrated <= 20, (statistic, evidently, calibrated)


@parametrize("shift")
def test_drift_on_a_shift(name, kind):
    """A 1 sigma shift (numeric) or a reversed category mix (categorical) is found every time."""
    statistic = get_statistic(name)
    rng = np.random.default_rng(1)
    reference = profile_of(name, kind, sample(name, kind, REFERENCE_ROWS, rng))
    for _ in range(10):
        assert statistic.score(reference, sample(name, kind, WINDOW_ROWS, rng, shifted=True)).drifted


def bad_window(kind: str, case: str):
    if case == "empty":
        return np.array([], dtype=float if kind == "numeric" else object)
    return np.full(50, np.nan) if kind == "numeric" else pd.Series([None] * 50, dtype=object)


@parametrize("empty")
def test_empty_window_gives_nan_with_a_note(name, kind):
    reference = profile_of(name, kind, sample(name, kind, 500, np.random.default_rng(2)))
    result = get_statistic(name).score(reference, bad_window(kind, "empty"))
    assert math.isnan(result.score) and not result.drifted and result.note == "current window has no values"


@parametrize("all-nan")
def test_all_nan_window_gives_nan_with_a_note(name, kind):
    reference = profile_of(name, kind, sample(name, kind, 500, np.random.default_rng(2)))
    result = get_statistic(name).score(reference, bad_window(kind, "all-nan"))
    assert math.isnan(result.score) and not result.drifted and result.note == "current window has no values"


@parametrize("all-nan-reference")
def test_all_nan_reference_gives_nan_with_a_note(name, kind):
    reference = profile_of(name, kind, bad_window(kind, "all-nan"))
    result = get_statistic(name).score(reference, sample(name, kind, 100, np.random.default_rng(2)))
    assert math.isnan(result.score) and not result.drifted and result.note == "reference has no values"


@parametrize("constant")
def test_constant_columns(name, kind):
    """Same constant on both sides: no drift; two different constants: drift (Wasserstein norms by 0.001)."""
    statistic = get_statistic(name)
    value, other = (3.0, 4.0) if kind == "numeric" else ("a", "b")
    reference = profile_of(name, kind, np.array([value] * 300, dtype=object if kind != "numeric" else float))
    same = statistic.score(reference, np.array([value] * 200, dtype=object if kind != "numeric" else float))
    assert not same.drifted and not math.isnan(same.score)
    moved = statistic.score(reference, np.array([other] * 200, dtype=object if kind != "numeric" else float))
    assert moved.drifted


@parametrize("tiny-window")
def test_a_one_row_window_is_scored(name, kind):
    reference = profile_of(name, kind, sample(name, kind, 500, np.random.default_rng(3)))
    result = get_statistic(name).score(reference, sample(name, kind, 1, np.random.default_rng(4)))
    assert isinstance(result.drifted, bool) and not math.isnan(result.score)


@parametrize("json-round-trip")
def test_result_json_round_trip(name, kind):
    rng = np.random.default_rng(5)
    reference = profile_of(name, kind, sample(name, kind, 500, rng))
    for current in (sample(name, kind, 100, rng), bad_window(kind, "empty")):
        result = get_statistic(name).score(reference, current)
        assert DriftResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result or math.isnan(result.score)
        again = DriftResult.from_dict(json.loads(json.dumps(result.to_dict())))
        assert again.to_dict() == result.to_dict()


@pytest.mark.parametrize(("levels", "rows", "reference_rows"), [(200, 30, 5_000), (50, 30, 1_000)],
                         ids=["200-levels-30-rows", "50-levels-30-rows"])
def test_calibrated_chisquare_holds_alpha_on_sparse_tables(levels, rows, reference_rows):
    """Expected counts below 1: chi2_contingency's asymptotic p-value alarmed 9-21 % here; the permutation test holds.

    A two-sample test holds alpha over references and windows both: given one reference, a sparse table's
    rate can lie anywhere between 0.02 and 0.13 (the reference's own noise), so many references are drawn.
    """
    from scipy.stats import chi2_contingency

    rng = np.random.default_rng(levels)
    mix = rng.dirichlet(np.ones(levels))  # uneven shares, as real categories are
    codes = np.arange(levels)
    calibrated = asymptotic = draws = 0
    for _ in range(200):
        reference = CategoricalFeature.from_values("c", pd.Series(rng.choice(codes, reference_rows, p=mix)))
        for _ in range(5):
            window = rng.choice(codes, rows, p=mix)
            calibrated += get_statistic("chisquare").score(reference, window).drifted
            _, ref, cur = aligned_counts(reference, get_statistic("chisquare").prepare(reference, window))
            asymptotic += chi2_contingency(np.vstack([ref, cur])).pvalue < 0.05
            draws += 1
    noise = 3 * math.sqrt(0.05 * 0.95 / draws)
    assert 0.025 - noise <= calibrated / draws <= 0.075 + noise
    assert asymptotic / draws >= 0.08  # what the calibrated test replaces


def test_default_chisquare_holds_alpha_where_evidently_formula_over_alarms():
    rng = np.random.default_rng(11)
    calibrated, evidently = get_statistic("chisquare"), ChiSquareEvidently.evidently()
    alarms = {"chisquare": 0, "chisquare_evidently": 0}
    for _ in range(SEEDS):
        reference = CategoricalFeature.from_values("x", pd.Series(rng.choice(LEVELS, 10_000, p=MIX)))
        current = rng.choice(LEVELS, 10_000, p=MIX)
        alarms["chisquare"] += calibrated.score(reference, current).drifted
        alarms["chisquare_evidently"] += evidently.score(reference, current).drifted
    assert alarms["chisquare"] / SEEDS <= 0.09
    assert alarms["chisquare_evidently"] / SEEDS >= 0.25


def test_new_and_missing_categories():
    reference = CategoricalFeature("plan", ("a", "b", "c"), (500, 300, 200), 0)
    new = ["a"] * 500 + ["b"] * 300 + ["c"] * 199 + ["z"]
    missing = ["a"] * 60 + ["b"] * 40
    assert get_statistic("chisquare").score(reference, new).score > 0.05  # one new row in 1000 is not drift
    assert get_statistic("chisquare_evidently").score(reference, new).score == 0.0  # f_exp = 0: Evidently's p
    assert not get_statistic("chisquare_evidently").score(reference, new).drifted  # its calibrated verdict: no drift
    assert get_statistic("chisquare").score(reference, missing).drifted


def test_registry_errors_list_the_valid_values():
    with pytest.raises(ValueError, match=r"Valid values are: \['ks', 'wasserstein'"):
        get_statistic("kolmogorov")
    with pytest.raises(ValueError, match=r"threshold.*\(0, 1\)"):
        get_statistic("ks", threshold=1.5)
    with pytest.raises(ValueError, match=r"alpha.*\(0, 1\)"):
        get_statistic("wasserstein", alpha=0.0)
    with pytest.raises(ValueError, match="not both"):
        get_statistic("psi", threshold=0.1, alpha=0.05)
    with pytest.raises(ValueError, match="accepts: \\('numeric',\\)"):
        get_statistic("ks").score(CategoricalFeature("c", ("a",), (3,), 0), ["a"])


@pytest.mark.parametrize(("n", "m"), [(30, 20), (1000, 1000), (5000, 300), (10_000, 7), (10_001, 50), (700, 1)],
                         ids=lambda v: str(v))
@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
def test_ks_p_value_is_scipy_ks_2samp_to_the_last_digit(n, m, ties):
    """Exact (both sides up to 10,000) and asymptotic sizes, with and without ties, drift and no drift."""
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(n + m)
    for shift in (0.0, 0.3):
        reference, current = rng.normal(size=n), rng.normal(shift, size=m)
        if ties:
            reference, current = reference.round(1), current.round(1)
        ours = KS.evidently().score(NumericFeature.from_values("x", reference), current).score
        assert ours == ks_2samp(reference, current).pvalue


def test_statistics_use_only_public_scipy_api():
    """A private scipy name (scipy.x._y, or _name) may move in any release: the drift package imports none."""
    import ast
    from pathlib import Path

    private = []
    for path in (Path(__file__).resolve().parents[1] / "drift").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("scipy"):
                if any(part.startswith("_") for part in node.module.split(".")) \
                        or any(alias.name.startswith("_") for alias in node.names):
                    private.append(f"{path.name}: from {node.module} import {[a.name for a in node.names]}")
            elif isinstance(node, ast.Import):
                private += [f"{path.name}: import {a.name}" for a in node.names
                            if a.name.startswith("scipy") and any(p.startswith("_") for p in a.name.split("."))]
    assert private == []


def test_numeric_column_with_strings_is_a_clear_error():
    with pytest.raises(ValueError, match="should be numeric"):
        get_statistic("ks").score(NumericFeature.from_values("x", [1.0, 2.0]), np.array(["a", "b"], dtype=object))


# The window-level decision


@pytest.fixture(scope="module")
def reference_frame() -> pd.DataFrame:
    rng = np.random.default_rng(20)
    return pd.DataFrame({f"x{i}": rng.normal(size=3000) for i in range(4)} | {"c": rng.choice(LEVELS, 3000, p=MIX)})


def test_window_share_and_verdict(reference_frame):
    profile = ReferenceProfile.build(reference_frame)
    rng = np.random.default_rng(21)
    window = pd.DataFrame({f"x{i}": rng.normal(1.0 if i < 2 else 0.0, size=800) for i in range(4)}
                          | {"c": rng.choice(LEVELS, 800, p=MIX)})
    verdict = WindowDrift(alpha=0.001).score(profile, window)  # no false alarm among the unshifted columns here
    assert [r.feature for r in verdict.results if r.drifted] == ["x0", "x1"]
    assert verdict.share == pytest.approx(2 / 5) and not verdict.drifted
    assert WindowDrift(drift_share=0.4, alpha=0.001).score(profile, window).drifted
    assert WindowResult_round_trip(verdict)


def WindowResult_round_trip(verdict) -> bool:
    from driftloop.drift.window import WindowResult

    return WindowResult.from_dict(json.loads(json.dumps(verdict.to_dict()))).to_dict() == verdict.to_dict()


def test_window_missing_new_and_mistyped_columns(reference_frame):
    profile = ReferenceProfile.build(reference_frame)
    rng = np.random.default_rng(22)
    window = pa.table({"x0": rng.normal(size=100), "x1": ["a"] * 100, "c": rng.choice(LEVELS, 100), "extra": [1.0] * 100})
    verdict = WindowDrift().score(profile, window)
    by = verdict.by_feature
    assert by["x2"].note == "column missing from the window" and math.isnan(by["x2"].score)
    assert "should be numeric" in by["x1"].note and not by["x1"].drifted
    assert verdict.new_columns == ("extra",) and verdict.scored_count == 2
    empty = WindowDrift().score(profile, reference_frame.iloc[:0])
    assert empty.scored_count == 0 and math.isnan(empty.share) and not empty.drifted


def test_auto_uses_calibrated_chisquare_and_evidently_mode_its_formula(reference_frame):
    profile = ReferenceProfile.build(reference_frame.iloc[:800])
    window = reference_frame.iloc[800:1200]
    assert WindowDrift().score(profile, window).by_feature["c"].method == "chisquare"
    assert WindowDrift(method="evidently").score(profile, window).by_feature["c"].method == "chisquare_evidently"
    assert WindowDrift().score(profile, window).by_feature["x0"].method == "ks"
    forced = WindowDrift(method="psi", methods={"x1": "ks"}).score(profile, window).by_feature
    assert (forced["x0"].method, forced["x1"].method, forced["c"].method) == ("psi", "ks", "psi")


def test_corrections_lower_p_value_thresholds():
    rng = np.random.default_rng(23)
    reference = pd.DataFrame({f"x{i}": rng.normal(size=500) for i in range(10)})
    window = pd.DataFrame({f"x{i}": rng.normal(0.25 if i == 0 else 0.0, size=300) for i in range(10)})
    profile = ReferenceProfile.build(reference)
    plain = WindowDrift().score(profile, window).by_feature
    bonferroni = WindowDrift(correction="bonferroni").score(profile, window).by_feature
    bh = WindowDrift(correction="bh").score(profile, window).by_feature
    assert all(r.threshold == pytest.approx(0.005) for r in bonferroni.values())
    for name in plain:
        assert bonferroni[name].drifted <= plain[name].drifted and bh[name].drifted <= plain[name].drifted
        assert bonferroni[name].drifted <= bh[name].drifted
    with pytest.raises(ValueError, match=r"Valid values are: \[None, 'bonferroni', 'bh'\]"):
        WindowDrift(correction="holm")
