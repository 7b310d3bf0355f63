"""Evidently reports: HTML and JSON files are written, and the JSON's per-column drift and data-quality
shares match driftloop's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from driftloop.drift.profile import ReferenceProfile
from driftloop.drift.quality import DataQuality
from driftloop.drift.report import list_reports, write_report
from driftloop.drift.window import WindowDrift

EVIDENTLY_NAMES = {"K-S p_value": "ks", "chi-square p_value": "chisquare_evidently", "Z-test p_value": "z",
                   "Wasserstein distance (normed)": "wasserstein", "Jensen-Shannon distance": "jensenshannon"}


def window(rows: int, seed: int, shift: float) -> pa.Table:
    rng = np.random.default_rng(seed)
    label = rng.choice(["no", "yes"], rows, p=[0.7 - shift / 3, 0.3 + shift / 3])
    return pa.table({
        "event_id": [f"e{i}" for i in range(rows)],
        "feature.age": rng.normal(40 + 8 * shift, 10, rows),
        "feature.income": rng.lognormal(3, 0.5, rows),
        "feature.plan": rng.choice(["basic", "plus", "pro"], rows, p=[0.5 - shift / 3, 0.3, 0.2 + shift / 3]),
        "label": label,
        "proba.yes": rng.beta(2, 4, rows) + shift / 5,
        "true_label": np.where(rng.random(rows) < 0.85, label, np.where(label == "yes", "no", "yes")),
    })


@pytest.mark.parametrize("reference_rows", [800, 4000], ids=["small-reference", "large-reference"])
def test_report_files_and_drift_agree(tmp_path, reference_rows):
    reference, current = window(reference_rows, 1, 0.0), window(600, 2, 0.8)
    files = write_report(reference, current, tmp_path / "reports", name=f"w-{reference_rows}")
    assert files.html.is_file() and files.html.stat().st_size > 10_000
    document = json.loads(files.json.read_text())
    verdict = WindowDrift(method="evidently").score(ReferenceProfile.build(reference), current).by_feature
    seen = set()
    for metric in document["metrics"]:
        config = metric["config"]
        if not config["type"].endswith("ValueDrift"):
            continue
        column, method, value, threshold = config["column"], EVIDENTLY_NAMES[config["method"]], metric["value"], config["threshold"]
        theirs = value <= threshold if method == "ks" else value < threshold if method in ("z", "chisquare_evidently") \
            else value >= threshold
        assert verdict[column].method == method and verdict[column].drifted == theirs, column
        assert verdict[column].score == pytest.approx(value, rel=1e-9, abs=1e-12), column
        seen.add(column)
    assert seen == {"feature.age", "feature.income", "feature.plan", "label", "proba.yes"}
    assert any("Accuracy" in metric["metric_name"] for metric in document["metrics"])  # labels: classification quality
    assert list_reports(tmp_path / "reports") == [files]


def test_report_without_labels_shows_evidently_quality_metrics_that_agree_with_ours(tmp_path):
    """A broken window (a column nulled, a unit x1000, a new category): Evidently's own MissingValueCount,
    OutRangeValueCount and OutListValueCount are in the report, with the shares drift.quality computes."""
    reference = window(500, 3, 0.0).drop_columns(["true_label"]).to_pandas()
    current = window(400, 4, 0.0).drop_columns(["true_label"]).to_pandas()
    current["feature.age"] = None
    current["feature.income"] *= 1000
    current["feature.plan"] = np.where(np.arange(400) % 4 == 0, "enterprise", current["feature.plan"])
    files = write_report(reference, current, tmp_path)
    metrics = json.loads(files.json.read_text())["metrics"]
    assert files.json.is_file() and not any("Accuracy" in m["metric_name"] for m in metrics)
    theirs = {(m["config"]["type"].rsplit(":", 1)[1], m["config"]["column"]): m["value"]["share"]
              for m in metrics if m["config"]["type"].endswith(("MissingValueCount", "OutRangeValueCount",
                                                                 "OutListValueCount")) and "column" in m["config"]}
    ours = DataQuality().check(ReferenceProfile.build(reference), current)
    check = {"MissingValueCount": "missing", "OutRangeValueCount": "out_of_range", "OutListValueCount": "unseen_category"}
    assert {key for key, share in theirs.items() if share > 0.2} == {
        ("MissingValueCount", "feature.age"), ("OutRangeValueCount", "feature.income"),
        ("OutListValueCount", "feature.plan")}
    for (metric, column), share in theirs.items():
        assert ours.by_check(check[metric])[column].share == pytest.approx(share), (metric, column)
    assert {(r.feature, r.check) for r in ours.failures} == {
        ("feature.age", "missing"), ("feature.income", "out_of_range"), ("feature.plan", "unseen_category")}
    with pytest.raises(ValueError, match="Invalid report name"):
        write_report(reference, current, tmp_path, name="../escape")
    assert list_reports(tmp_path / "nowhere") == []
