"""Prometheus alert rules and the Alertmanager routing that sends them to the retrain webhook."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

RULE_FILES = ("driftloop-rules.yml",)


def rule_files() -> list[Path]:
    """Paths of the shipped alert rule files (for `rule_files` in a Prometheus config)."""
    folder = resources.files("driftloop.dashboards") / "alerts"
    return [Path(str(folder / name)) for name in RULE_FILES]


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
