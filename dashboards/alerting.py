"""Prometheus alert rules and the Alertmanager routing that sends them to the retrain webhook.

The rules live in `alerts/`, one file per part watched (`drift.yml`, `monitor.yml`,
`collector.yml`, ...), each beside its promtool unit tests (`<name>_test.yml`, with cases that
fire and cases that stay quiet for every alert; a test checks both exist). Adding rules is adding
a file pair, or a group to a file: every `*.yml` there that is not a test is loaded.
Alerts that should start a retrain carry `action: retrain` and keep the `model` label.
"""

from __future__ import annotations

import urllib.parse
from importlib import resources
from pathlib import Path

TEST_SUFFIX = "_test.yml"


def rule_files() -> list[Path]:
    """Paths of the shipped alert rule files (for `rule_files` in a Prometheus config), sorted."""
    folder = Path(str(resources.files("driftloop.dashboards") / "alerts"))
    return sorted(path for path in folder.glob("*.yml") if not path.name.endswith(TEST_SUFFIX))


def rule_test_file(rules: Path) -> Path:
    """The promtool unit tests of one rule file."""
    return rules.with_name(rules.stem + TEST_SUFFIX)


RETRAIN_RECEIVER = "driftloop-retrain"
LOG_RECEIVER = "driftloop-log"
LOG_PATH = "/v1/alert-log"


def alert_log_url(webhook_url: str) -> str:
    """The log receiver beside the retrain webhook: the same service, path `/v1/alert-log`."""
    parts = urllib.parse.urlsplit(webhook_url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, LOG_PATH, "", ""))


def alertmanager_config(webhook_url: str, group_wait_s: float = 30, group_interval_s: float = 300,
                        repeat_interval_s: float = 4 * 86400, retrain_group_interval_s: float | None = None,
                        log_url: str | None = None) -> dict:
    """Alertmanager config: alerts with `action: retrain` go to `webhook_url` (the retrain trigger), and
    every alert, those included, to the log receiver (`log_url`; by default the retrain service's
    `/v1/alert-log`).

    One drift episode gives one trigger: the retrain route groups by model only, so the alerts of
    one model that fire together (dataset drift, many features, an accuracy alarm) make one
    notification after `group_wait_s`; an alert that joins the group later is sent no sooner than
    `retrain_group_interval_s` (default `group_interval_s`; the stack uses the retrain cooldown);
    and a group still firing is sent again only after `repeat_interval_s`, which must outlast a
    retrain-plus-shadow cycle (labels, training, the gate), so a repeat never meets a model whose
    episode is still running. The log receiver groups by alert name and model, and hears of
    resolutions.
    """
    retrain_interval = group_interval_s if retrain_group_interval_s is None else retrain_group_interval_s
    return {
        "route": {
            "receiver": LOG_RECEIVER,
            "group_by": ["alertname", "model"],
            "group_wait": _duration(group_wait_s),
            "group_interval": _duration(group_interval_s),
            "repeat_interval": _duration(repeat_interval_s),
            "routes": [
                {"receiver": RETRAIN_RECEIVER, "matchers": ['action="retrain"', 'model=~".+"'], "group_by": ["model"],
                 "group_interval": _duration(retrain_interval), "continue": True},
                {"receiver": LOG_RECEIVER},
            ],
        },
        "receivers": [
            {"name": RETRAIN_RECEIVER, "webhook_configs": [{"url": webhook_url, "send_resolved": True}]},
            {"name": LOG_RECEIVER, "webhook_configs": [{"url": log_url or alert_log_url(webhook_url),
                                                        "send_resolved": True}]},
        ],
    }


def _duration(seconds: float) -> str:
    """Alertmanager's duration: whole seconds (its parser takes no fractions)."""
    return f"{max(1, round(seconds))}s"
