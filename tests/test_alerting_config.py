"""The shipped alert rules pass promtool; Alertmanager accepts and runs its generated config."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import yaml

from driftloop.dashboards import alertmanager_config, rule_files, rule_test_file


def test_promtool_accepts_the_rules():
    for path in rule_files():
        check = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_promtool_rule_unit_tests_pass():
    for path in rule_files():
        run = subprocess.run(["promtool", "test", "rules", str(rule_test_file(path))], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_stays_quiet():
    assert {path.name for path in rule_files()} >= {"drift.yml", "monitor.yml", "collector.yml", "components.yml",
                                                 "retrain.yml", "serving.yml"}
    for path in rule_files():
        alerts = {rule["alert"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
                  if "alert" in rule}
        tests = yaml.safe_load(rule_test_file(path).read_text())
        assert tests["rule_files"] == [path.name], f"{rule_test_file(path).name} tests {path.name}"
        cases = [case for test in tests["tests"] for case in test.get("alert_rule_test", [])]
        fires = {case["alertname"] for case in cases if case.get("exp_alerts")}
        quiet = {case["alertname"] for case in cases if not case.get("exp_alerts")}
        assert alerts <= fires, f"{path.name}: no case where {sorted(alerts - fires)} fire"
        assert alerts <= quiet, f"{path.name}: no case where {sorted(alerts - quiet)} stay quiet"


def test_alerts_that_start_a_retrain_name_their_model_and_severity():
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                labels = rule.get("labels", {})
                assert labels.get("severity") in ("info", "warning", "critical"), rule["alert"]
                if labels.get("action") == "retrain":
                    assert "by (model" in rule["expr"], f"{rule['alert']} keeps the model label"


def test_promtool_rejects_a_broken_rule(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: Bad\n        expr: rate(foo[5m]\n")
    check = subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True, text=True)
    assert check.returncode == 1


def test_amtool_accepts_the_generated_config(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config("http://127.0.0.1:9/v1/alerts")))
    check = subprocess.run(["amtool", "check-config", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_running_alertmanager_routes_to_the_webhook(alertmanager, stack_settings):
    with urllib.request.urlopen(f"{alertmanager.url}/api/v2/status", timeout=5) as response:
        status = json.load(response)
    loaded = yaml.safe_load(status["config"]["original"])
    webhooks = [hook["url"] for receiver in loaded["receivers"] for hook in receiver.get("webhook_configs", [])]
    assert webhooks == [stack_settings.alertmanager.webhook_url]
    assert loaded["route"]["receiver"] == "driftloop-webhook"


def test_the_alerts_the_issue_asks_for_are_shipped_with_a_runbook():
    rules = {rule["alert"]: rule for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"]
             for rule in group["rules"] if "alert" in rule}
    asked = {"DriftloopDatasetDrift", "DriftloopManyFeaturesDrifted", "DriftloopFeedbackAccuracyDropped",
             "DriftloopAccuracyDrop",  # a sequential-detector alarm
             "DriftloopConsumerLag", "DriftloopIngestionStalled", "DriftloopDeadLetters", "DriftloopComponentDown",
             "DriftloopMonitorDown", "DriftloopMonitorStale", "DriftloopRetrainFailed", "DriftloopShadowLagging",
             "DriftloopRollback"}
    assert asked <= set(rules), sorted(asked - set(rules))
    for name, rule in rules.items():
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
