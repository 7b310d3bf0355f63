"""Prometheus and Alertmanager from Debian's packages, configured for the local stack."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import yaml

from driftloop.dashboards import alertmanager_config, rule_files
from driftloop.settings import AlertmanagerSettings, PrometheusSettings, StackSettings
from driftloop.stack.process import ServiceExited, ServiceProcess, require_tool, wait_until

APT_HINT = "install it with: apt-get install prometheus prometheus-alertmanager"


def http_ready(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


class _HttpService:
    """A Debian-packaged server with a `/-/ready` endpoint, run under the stack's state dir."""

    name: str

    def __init__(self, stack: StackSettings, port: int) -> None:
        self.stack = stack
        self.port = port
        self.home = stack.state_dir / self.name
        self.process = ServiceProcess(self.name, stack.state_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        def check() -> bool:
            if self.process.exited_early():
                raise ServiceExited(f"{self.name} exited during start; log:\n{self.process.log_tail()}")
            return http_ready(f"{self.url}/-/ready")

        return wait_until(check, timeout_s, f"{self.name} on {self.url}")


class Prometheus(_HttpService):
    """Scrapes the targets in settings plus any a service registers in `targets/`; loads the alert rules."""

    name = "prometheus"

    def __init__(self, stack: StackSettings, prometheus: PrometheusSettings) -> None:
        super().__init__(stack, stack.prometheus_port)
        self.settings = prometheus

    @property
    def targets_dir(self) -> Path:
        return self.home / "targets"

    def config(self) -> dict:
        interval = f"{self.settings.scrape_interval_s:g}s"
        scrape = {
            "job_name": "driftloop",
            "file_sd_configs": [{"files": [str(self.targets_dir / "*.json")], "refresh_interval": "5s"}],
            # every series gets `environment` (the dashboards' Environment variable), unless its target has one
            "relabel_configs": [{"source_labels": ["environment"], "regex": "", "target_label": "environment",
                                 "replacement": self.settings.environment}],
        }
        if self.settings.scrape_targets:
            scrape["static_configs"] = [{"targets": list(self.settings.scrape_targets)}]
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": [str(path) for path in self.rule_paths()],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [f"127.0.0.1:{self.stack.alertmanager_port}"]}]}
                ]
            },
            "scrape_configs": [scrape],
        }

    def rule_paths(self) -> list[Path]:
        """The alert rule files to load: the shipped ones, or copies with `for:` cut to `rule_for_max_s`."""
        if self.settings.rule_for_max_s is None:
            return rule_files()
        return [self.home / "rules" / path.name for path in rule_files()]

    def write_rules(self) -> None:
        """Write the copies `rule_paths` names when `rule_for_max_s` is set (the shipped files stay as they are)."""
        limit = self.settings.rule_for_max_s
        if limit is None:
            return
        folder = self.home / "rules"
        folder.mkdir(parents=True, exist_ok=True)
        for path in rule_files():
            rules = yaml.safe_load(path.read_text())
            for group in rules.get("groups", []):
                for rule in group.get("rules", []):
                    if "for" in rule and _seconds(rule["for"]) > limit:
                        rule["for"] = f"{limit:g}s"
            (folder / path.name).write_text(yaml.safe_dump(rules, sort_keys=False))

    def start(self) -> None:
        binary = require_tool("prometheus", APT_HINT)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        self.write_rules()
        config_file = self.home / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.process.start(
            [binary, f"--config.file={config_file}", f"--storage.tsdb.path={self.home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             f"--web.external-url={self.url}/", "--storage.tsdb.retention.time=1d"],
            marker=str(config_file),
        )


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str) -> float:
    """A Prometheus duration ('5m', '1h30m', '90s') in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)", str(text))
    if not parts or "".join(f"{n}{u}" for n, u in parts) != str(text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def register_scrape_target(targets_dir: Path, name: str, address: str, labels: dict[str, str] | None = None) -> Path:
    """Tell the local Prometheus to scrape `address` (host:port) from now on (file-based discovery)."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{name}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps([{"targets": [address], "labels": {"service": name, **(labels or {})}}]))
    temporary.rename(path)  # Prometheus must never read half a file
    return path


def unregister_scrape_target(targets_dir: Path, name: str, address: str) -> bool:
    """Stop scraping `name` if it still points at `address` (a process of the same name may have taken it over)."""
    path = targets_dir / f"{name}.json"
    try:
        registered = json.loads(path.read_text())[0]["targets"]
    except (OSError, ValueError, LookupError, TypeError):
        return False
    if registered != [address]:
        return False
    path.unlink(missing_ok=True)
    return True


class Alertmanager(_HttpService):
    """Routes the retrain alerts to the retrain webhook and every alert to the alert log.

    `retrain_cooldown_s`: the retrain service's cooldown, the default of the retrain route's group interval.
    """

    name = "alertmanager"

    def __init__(self, stack: StackSettings, alertmanager: AlertmanagerSettings,
                 retrain_cooldown_s: float = 3600.0) -> None:
        super().__init__(stack, stack.alertmanager_port)
        self.settings = alertmanager
        self.retrain_cooldown_s = retrain_cooldown_s

    def config_file(self) -> Path:
        return self.home / "alertmanager.yml"

    def start(self) -> None:
        binary = require_tool("prometheus-alertmanager", APT_HINT)
        self.home.mkdir(parents=True, exist_ok=True)
        config = alertmanager_config(
            self.settings.webhook_url, self.settings.group_wait_s, self.settings.group_interval_s,
            repeat_interval_s=self.settings.repeat_interval_s,
            retrain_group_interval_s=self.settings.retrain_group_interval_s or self.retrain_cooldown_s,
        )
        self.config_file().write_text(yaml.safe_dump(config, sort_keys=False))
        self.process.start(
            [binary, f"--config.file={self.config_file()}", f"--storage.path={self.home / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             f"--web.external-url={self.url}/"],
            marker=str(self.config_file()),
        )
