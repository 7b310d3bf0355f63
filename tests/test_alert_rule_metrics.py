"""Every metric the shipped alert rules name is one our services really export."""

from __future__ import annotations

import re

import yaml
from metric_names import exported_names

from driftloop.dashboards import rule_files


def test_alert_rules_name_only_exported_metrics():
    named = set()
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                named.update(re.findall(r"\bdriftloop_[a-z_]+", rule["expr"]))
    assert named, "the rules name driftloop metrics"
    assert named <= exported_names(), f"named in alert rules but exported by nothing: {named - exported_names()}"


def test_the_check_sees_an_unknown_name():
    assert "driftloop_drift_dataset_drift" in exported_names()
    assert "driftloop_drift_datset_drift" not in exported_names()
