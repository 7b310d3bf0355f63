"""Grafana dashboards as code, Prometheus alert rules and Alertmanager config."""

from driftloop.dashboards.alerting import alert_log_url, alertmanager_config, rule_files, rule_test_file

__all__ = ["alert_log_url", "alertmanager_config", "rule_files", "rule_test_file"]
