"""Reference profiles: built once, saved without pickle, loaded identical, scoring windows on their own."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats

from driftloop.drift.profile import CategoricalFeature, NumericFeature, ReferenceProfile
from driftloop.drift.stats import get_statistic
from driftloop.drift.stats.ks import ks_statistic
from driftloop.drift.window import WindowDrift


def store_table(rows: int, seed: int, shift: float = 0.0) -> pa.Table:
    """A table shaped like `collector.store.Store.labelled(...)`: feature.*, label, proba.*, true_label."""
    rng = np.random.default_rng(seed)
    proba = rng.beta(2, 5, rows) + shift / 4
    label = np.where(proba > 0.3, "yes", "no")
    return pa.table({
        "event_id": [f"e{i}" for i in range(rows)],
        "feature.age": pa.array(np.where(rng.random(rows) < 0.05, np.nan, rng.normal(40 + 10 * shift, 12, rows)), from_pandas=True),
        "feature.visits": rng.integers(0, 50, rows),
        "feature.plan": pa.array(rng.choice(["basic", "pro", None], rows, p=[0.6, 0.3, 0.1])),
        "feature.country": pa.array(rng.choice(["fr", "de", "it"], rows)).dictionary_encode(),
        "feature.active": rng.random(rows) < 0.7,
        "feature.empty": pa.array([None] * rows, pa.float64()),
        "label": label,
        "proba.yes": proba,
        "true_label": np.where(rng.random(rows) < 0.8, label, np.where(label == "yes", "no", "yes")),
    })


def test_build_detects_kinds_roles_and_performance():
    profile = ReferenceProfile.build(store_table(2000, 0))
    kinds = {name: (feature.kind, feature.role) for name, feature in profile.features.items()}
    assert kinds == {
        "feature.age": ("numeric", "feature"), "feature.visits": ("numeric", "feature"),
        "feature.plan": ("categorical", "feature"), "feature.country": ("categorical", "feature"),
        "feature.active": ("categorical", "feature"), "feature.empty": ("numeric", "feature"),
        "label": ("categorical", "prediction"), "proba.yes": ("numeric", "probability"),
    }
    assert profile.features["feature.plan"].missing == pytest.approx(200, abs=60)
    assert profile.features["feature.empty"].count == 0
    assert profile.performance.accuracy == pytest.approx(0.8, abs=0.03) and profile.performance.labelled == 2000
    with pytest.raises(ValueError, match=r"Valid values are: \('numeric', 'categorical'\)"):
        ReferenceProfile.build(store_table(10, 0), kinds={"feature.age": "ordinal"})


def test_save_load_round_trip_is_identical(tmp_path):
    profile = ReferenceProfile.build(store_table(3000, 1), kinds={"feature.visits": "categorical"})
    folder = profile.save(tmp_path / "profile")
    # values of age, empty and proba.yes; the precomputed Wasserstein null of the two continuous ones
    assert sorted(p.name for p in folder.iterdir()) == [
        "null_0000.npy", "null_0007.npy", "numeric_0000.npy", "numeric_0005.npy", "numeric_0007.npy", "profile.json"]
    json.loads((folder / "profile.json").read_text())  # plain JSON
    loaded = ReferenceProfile.load(folder)
    assert loaded == profile
    assert all(type(loaded.features[n].categories[0]) is type(f.categories[0])
               for n, f in profile.features.items() if isinstance(f, CategoricalFeature))
    assert np.array_equal(loaded.features["feature.age"].null_.table, profile.features["feature.age"].null().table)
    window = store_table(800, 2, shift=1.0)
    assert WindowDrift().score(loaded, window) == WindowDrift().score(profile, window)


def test_a_version_1_profile_still_loads_and_scores_alike(tmp_path):
    """Written before the nulls were kept: it loads, and its first calibrated score computes the same null."""
    profile = ReferenceProfile.build(store_table(3000, 1))
    folder = profile.save(tmp_path / "profile")
    manifest = json.loads((folder / "profile.json").read_text())
    manifest["format_version"] = 1
    for document in manifest["features"]:
        if "null_file" in document:
            (folder / document.pop("null_file")).unlink()
            document.pop("null_sizes")
    (folder / "profile.json").write_text(json.dumps(manifest))
    old = ReferenceProfile.load(folder)
    assert old.features["feature.age"].null_ is None
    window = store_table(500, 2)
    assert WindowDrift().score(old, window) == WindowDrift().score(profile, window)
    manifest["format_version"] = 99
    (folder / "profile.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"format_version 99 .* reads versions \[1, 2\]. Build the profile again"):
        ReferenceProfile.load(folder)


def test_a_save_that_fails_midway_leaves_the_previous_profile_whole(tmp_path, monkeypatch):
    """A crash while the second column is written (disk full, say): the folder still loads the old profile."""
    old = ReferenceProfile.build(store_table(1000, 1))
    new = ReferenceProfile.build(store_table(1500, 2, shift=1.0))
    folder = old.save(tmp_path / "profile")
    real_save, calls = np.save, []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        new.save(folder)
    monkeypatch.undo()
    assert ReferenceProfile.load(folder) == old
    assert [p.name for p in tmp_path.iterdir()] == ["profile"]  # nothing half-written left beside it
    with pytest.raises(OSError):
        monkeypatch.setattr(np, "save", failing_save)
        calls.clear()
        new.save(tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    monkeypatch.undo()
    assert ReferenceProfile.load(new.save(folder)) == new


def test_window_scoring_reads_only_the_profile():
    """The statistics see the stored sorted values, never the reference frame, and match scipy on the raw data."""
    rng = np.random.default_rng(3)
    raw = rng.normal(size=50_000)
    feature = NumericFeature.from_values("x", raw)
    assert np.all(np.diff(feature.values) >= 0) and feature.count == 50_000
    del raw  # the profile stands alone
    current = rng.normal(0.05, 1, 2000)
    expected = stats.ks_2samp(feature.values, current)
    result = get_statistic("ks", threshold=0.05).score(feature, current)  # Evidently's K-S: scipy's p-value
    assert result.score == pytest.approx(expected.pvalue, rel=1e-9)
    expected_w = stats.wasserstein_distance(feature.values, current) / feature.std
    assert get_statistic("wasserstein").score(feature, current).score == pytest.approx(expected_w, rel=1e-9)


def test_quantile_sketch_stays_within_its_stated_error():
    """Sketch of k quantiles: CDF within 1/k (so K-S's D within 1/k), normed Wasserstein within (max-min)/(k std)."""
    rng = np.random.default_rng(4)
    raw = rng.lognormal(0, 1, 400_000)
    k = 10_000
    full = NumericFeature.from_values("x", raw)
    sketch = NumericFeature.from_values("x", raw, sketch_size=k)
    assert sketch.sketched and len(sketch.values) == k and sketch.count == full.count
    assert (sketch.minimum, sketch.maximum, sketch.std, sketch.unique) == (full.minimum, full.maximum, full.std, full.unique)
    grid = np.quantile(raw, np.linspace(0, 1, 2001))
    cdf_full = np.searchsorted(full.values, grid, side="right") / full.count
    cdf_sketch = np.searchsorted(sketch.values, grid, side="right") / k
    assert np.max(np.abs(cdf_full - cdf_sketch)) <= 1 / k
    for shift in (0.0, 0.2):
        current = np.sort(rng.lognormal(shift, 1, 5000))
        assert abs(ks_statistic(full.values, current) - ks_statistic(sketch.values, current)) <= 1 / k
        wasserstein = get_statistic("wasserstein")
        bound = (full.maximum - full.minimum) / (k * full.std)
        assert abs(wasserstein.score(full, current).score - wasserstein.score(sketch, current).score) <= bound
        assert wasserstein.score(full, current).drifted == wasserstein.score(sketch, current).drifted


def test_bad_tables_are_clear_errors():
    with pytest.raises(ValueError, match="are not in the table"):
        ReferenceProfile.build(pd.DataFrame({"a": [1.0]}), columns=["b"])
    with pytest.raises(ValueError, match="sketch_size"):
        ReferenceProfile.build(pd.DataFrame({"a": [1.0]}), sketch_size=1)
    with pytest.raises(ValueError, match="should be numeric"):
        ReferenceProfile.build(pd.DataFrame({"a": ["x", "y"]}), kinds={"a": "numeric"})
