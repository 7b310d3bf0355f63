"""Data-quality checks: each fires on its own broken input, and stays quiet on clean windows of the same size."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.quality import CHECKS, DataQuality, QualityReport

PLANS = np.array(["basic", "pro", "team"], dtype=object)


def frame(rows: int, seed: int) -> pd.DataFrame:
    """A store-like window: positive amounts, a normal score with 5 % missing, a category, a count."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "feature.amount": rng.lognormal(3, 0.8, rows),
        "feature.score": np.where(rng.random(rows) < 0.05, np.nan, rng.normal(0, 1, rows)),
        "feature.plan": PLANS[rng.choice(3, rows, p=[0.6, 0.3, 0.1])],
        "feature.visits": rng.poisson(20, rows),
    })


BROKEN = {
    "column nulled": (lambda w: w.assign(**{"feature.score": None}), {("feature.score", "missing")}),
    "unit scaled x1000": (lambda w: w.assign(**{"feature.amount": w["feature.amount"] * 1000}),
                          {("feature.amount", "out_of_range")}),
    "new category": (lambda w: w.assign(**{"feature.plan": np.where(np.arange(len(w)) % 5 == 0, "enterprise",
                                                                      w["feature.plan"])}),
                     {("feature.plan", "unseen_category")}),
    "dropped column": (lambda w: w.drop(columns="feature.visits"), {("feature.visits", "disappeared")}),
    "new column": (lambda w: w.assign(**{"feature.region": "eu"}), {("feature.region", "appeared")}),
    "numbers as text": (lambda w: w.assign(**{"feature.amount": w["feature.amount"].round(2).astype(str)}),
                        {("feature.amount", "type_mismatch")}),
    "text as numbers": (lambda w: w.assign(**{"feature.plan": np.arange(len(w)) % 3}),
                        {("feature.plan", "type_mismatch")}),
}


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return ReferenceProfile.build(frame(5000, 0))


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_check_fires_on_its_own_broken_input(profile, case):
    breaking, expected = BROKEN[case]
    window = breaking(frame(1000, 1))
    for table in (window, pa.Table.from_pandas(window, preserve_index=False)):
        report = DataQuality().check(profile, table)
        assert {(r.feature, r.check) for r in report.failures} == expected, case
    clean = DataQuality().check(profile, frame(1000, 1))
    assert not clean.failed, clean.failures


def test_a_failed_share_check_says_how_much_and_against_what(profile):
    window = frame(1000, 2)
    window.loc[:399, "feature.score"] = np.nan
    result = DataQuality().check(profile, window).by_check("missing")["feature.score"]
    assert result.failed and result.count == pytest.approx(400 + 0.05 * 600, abs=25)
    assert result.expected == pytest.approx(0.05, abs=0.01) and result.threshold == 0.1 and result.p_value < 1e-10
    assert not DataQuality(max_missing_increase=0.5).check(profile, window).failed


def test_clean_windows_stay_quiet_at_the_default_settings():
    """No check fails on 100 clean windows of 1000 rows against freshly drawn references (alpha = 1e-3 per check
    and column, and each share must also exceed its expectation by the setting)."""
    failures = 0
    for seed in range(100):
        reference = ReferenceProfile.build(frame(2000, 2 * seed))
        failures += len(DataQuality().check(reference, frame(1000, 2 * seed + 1)).failures)
    assert failures == 0


@pytest.mark.parametrize("rows", [100, 2000])
def test_the_share_checks_false_alarm_rate_is_at_most_alpha(rows):
    """With no tolerance the share checks are bare tests at alpha: over 300 seeds (fresh reference and window each)
    the false-alarm rate of each stays within alpha (0.05) plus sampling noise, at a small and a large window."""
    alpha, seeds = 0.05, 300
    quality = DataQuality(max_missing_increase=0, max_out_of_range=0, max_unseen=0, alpha=alpha)
    alarms = Counter()
    for seed in range(seeds):
        reference = ReferenceProfile.build(frame(1000, 10_000 + 2 * seed))
        report = quality.check(reference, frame(rows, 10_001 + 2 * seed))
        alarms.update((result.feature, result.check) for result in report.results if result.failed)
        checked = {(r.feature, r.check) for r in report.results if not np.isnan(r.p_value)}
    assert len(checked) == 8  # missing x 4, out_of_range x 3 (amount, score, visits), unseen_category x 1
    bound = alpha + 2.5 * np.sqrt(alpha * (1 - alpha) / seeds)  # ~0.082
    rates = {key: count / seeds for key, count in alarms.items()}
    assert all(rate <= bound for rate in rates.values()), rates


def test_a_small_window_does_not_fail_on_a_few_rows(profile):
    window = frame(12, 3)
    window.loc[:2, "feature.score"] = np.nan  # 25 % missing against 5 %: not significant on 12 rows
    window.loc[3, "feature.plan"] = "enterprise"
    assert not DataQuality().check(profile, window).failed


def test_quantile_bounds_and_a_sketched_profile():
    reference = frame(20_000, 4)
    window = frame(2000, 5)
    window["feature.amount"] *= 3  # inside the reference's [min, max] for all but a few rows, not its [1 %, 99 %]
    full, sketch = ReferenceProfile.build(reference), ReferenceProfile.build(reference, sketch_size=1000)
    assert not DataQuality().check(full, window).by_check("out_of_range")["feature.amount"].failed
    for profile in (full, sketch):
        result = DataQuality(quantiles=(0.01, 0.99)).check(profile, window).by_check("out_of_range")["feature.amount"]
        assert result.failed and result.expected == pytest.approx(0.02, abs=0.001) and result.share > 0.1
    assert not DataQuality(quantiles=(0.01, 0.99)).check(sketch, frame(2000, 6)).failed


def test_empty_and_all_null_windows():
    profile = ReferenceProfile.build(frame(1000, 7))
    empty = DataQuality().check(profile, frame(0, 8))
    assert empty.rows == 0 and not empty.failed
    assert all(np.isnan(r.share) and r.note for r in empty.results)
    nulled = pa.table({name: pa.nulls(50) for name in frame(1, 0).columns})
    failed = {(r.feature, r.check) for r in DataQuality().check(profile, nulled).failures}
    assert failed == {(name, "missing") for name in frame(1, 0).columns}


def test_report_round_trips_through_json(profile):
    window = BROKEN["unit scaled x1000"][0](frame(500, 9)).drop(columns="feature.visits")
    report = DataQuality().check(profile, window)
    assert QualityReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_invalid_settings_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"Valid values are: \['missing', 'out_of_range'"):
        DataQuality(checks=["missing", "nulls"])
    with pytest.raises(ValueError, match="'max_unseen' must be a float in"):
        DataQuality(max_unseen=1.5)
    with pytest.raises(ValueError, match="'quantiles'"):
        DataQuality(quantiles=(0.6, 0.9))
    assert DataQuality(checks=["missing"]).checks == ("missing",) and len(CHECKS) == 6
