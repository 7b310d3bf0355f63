"""Prometheus alert rules and the Alertmanager routing that sends them to the retrain webhook.

The rules live in `alerts/`, one file per part watched (`drift.yml`, `monitor.yml`,
`collector.yml`, ...), each beside its promtool unit tests (`<name>_test.yml`, with cases that
fire and cases that stay quiet for every alert; a test checks both exist). Adding rules is adding
a file pair, or a group to a file: every `*.yml` there that is not a test is loaded.
Alerts that should start a retrain carry `action: retrain` and keep the `model` label.
"""

from __future__ import annotations

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


def alertmanager_config(webhook_url: str, group_wait_s: float = 30, group_interval_s: float = 300) -> dict:
    """Alertmanager config: every driftloop alert goes to `webhook_url` (the retrain trigger).

    Alerts are grouped per model, so one drifting model makes one notification.
    Short waits suit tests; the defaults suit production.
    """
    return {
        "route": {
            "receiver": "driftloop-webhook",
            "group_by": ["alertname", "model"],
            "group_wait": f"{group_wait_s:g}s",
            "group_interval": f"{group_interval_s:g}s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "driftloop-webhook",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }
