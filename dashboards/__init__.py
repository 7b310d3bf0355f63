"""Grafana dashboards as code, Prometheus alert rules and Alertmanager config."""

from driftloop.dashboards.alerting import alertmanager_config, rule_files, rule_test_file

__all__ = ["alertmanager_config", "rule_files", "rule_test_file"]
