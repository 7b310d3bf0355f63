"""The shipped alert rules pass promtool; Alertmanager accepts and runs its generated config."""

from __future__ import annotations

import json
import subprocess
import urllib.request

import yaml

from driftloop.dashboards import alert_log_url, alertmanager_config, rule_files, rule_test_file
from driftloop.settings import load_settings


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


def routes_test(config, *labels: str, receivers: str) -> subprocess.CompletedProcess:
    """`amtool config routes test`: exits 1 unless the alert with `labels` reaches exactly `receivers`."""
    return subprocess.run(["amtool", "config", "routes", "test", f"--config.file={config}",
                           f"--verify.receivers={receivers}", *labels], capture_output=True, text=True)


ROUTES = [  # (alert labels, the receivers it must reach)
    (("alertname=DriftloopDatasetDrift", "model=churn", "action=retrain", "severity=warning"),
     "driftloop-retrain,driftloop-log"),
    (("alertname=DriftloopAccuracyDrop", "model=churn", "action=retrain", "detector=adwin", "severity=critical"),
     "driftloop-retrain,driftloop-log"),
    (("alertname=DriftloopFeatureMostlyMissing", "model=churn", "action=investigate"), "driftloop-log"),
    (("alertname=DriftloopComponentDown", "service=collector", "severity=critical"), "driftloop-log"),
    (("alertname=DriftloopDatasetDrift", "action=retrain"), "driftloop-log"),  # no model: nothing to retrain
]


def test_amtool_routes_retrain_alerts_to_the_webhook_and_every_alert_to_the_log(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config("http://127.0.0.1:9/v1/alerts")))
    for labels, receivers in ROUTES:
        routed = routes_test(config, *labels, receivers=receivers)
        assert routed.returncode == 0, f"{labels}: {routed.stdout}{routed.stderr}"
    wrong = routes_test(config, "alertname=DriftloopComponentDown", "service=api", receivers="driftloop-retrain")
    assert wrong.returncode == 1, "amtool's check can fail"


def test_one_drift_episode_makes_one_retrain_notification():
    """Grouped by model only; an alert joining the group waits the retrain cooldown; a repeat outlasts a cycle."""
    settings = load_settings()
    config = alertmanager_config("http://127.0.0.1:9/v1/alerts", repeat_interval_s=settings.alertmanager.repeat_interval_s,
                                 retrain_group_interval_s=settings.retrain.cooldown_s)
    retrain = next(route for route in config["route"]["routes"] if route["receiver"] == "driftloop-retrain")
    assert retrain["group_by"] == ["model"] and retrain["continue"] is True

    def seconds(duration: str) -> float:
        assert duration.endswith("s"), duration
        return float(duration[:-1])

    assert seconds(retrain["group_interval"]) >= settings.retrain.cooldown_s
    cycle_s = settings.retrain.label_deadline_s + settings.ray.train_timeout_s + settings.gate.deadline_hours * 3600
    assert seconds(config["route"]["repeat_interval"]) >= cycle_s, "a repeat never meets a running episode"
    assert seconds(config["route"]["group_wait"]) >= 10, "alerts of one model that fire together go out together"


def test_running_alertmanager_routes_to_the_webhook(alertmanager, stack_settings):
    with urllib.request.urlopen(f"{alertmanager.url}/api/v2/status", timeout=5) as response:
        status = json.load(response)
    loaded = yaml.safe_load(status["config"]["original"])
    webhooks = [hook["url"] for receiver in loaded["receivers"] for hook in receiver.get("webhook_configs", [])]
    webhook = stack_settings.alertmanager.webhook_url
    assert webhooks == [webhook, alert_log_url(webhook)]
    assert loaded["route"]["receiver"] == "driftloop-log"
    assert [route["receiver"] for route in loaded["route"]["routes"]] == ["driftloop-retrain", "driftloop-log"]


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
