"""One demo run on disk: its folder, its lock, its settings (a TOML file every service reads) and its processes.

A run is `<demo.dir>/runs/<UTC time>/`: `driftloop.toml` (the run's whole settings: free ports,
the fast or default profile), `stack/` (Kafka, Prometheus and Alertmanager state, pid files and
logs of every process), `data/` (the store, registry, snapshots, reports). `<demo.dir>/latest`
points at the newest. `<demo.dir>/demo.lock` is held (flock) while a run is going: a second
`driftloop demo` says which run holds it and stops.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import signal
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from driftloop.settings import Settings
from driftloop.stack.process import ServiceProcess, _alive

CONFIG_FILE = "driftloop.toml"


class DemoRunning(RuntimeError):
    """Another demo holds the lock."""


@dataclass(frozen=True)
class Profile:
    """How a run is paced: the fast one finishes in under 5 minutes on 2 cores, the default in under 8."""

    name: str
    onset_s: float
    duration_s: float
    window_minutes: float
    drift_interval_s: float
    rule_for_max_s: float
    group_wait_s: float
    group_interval_s: float
    label_wait_s: float  # the labelling step's deadline beyond the annotator's delay
    pool_factor: float  # the episode selects once the traffic since the alert began holds this x the budget
    selection_wait_s: float  # the longest it waits for that
    gate_interval_s: float
    min_pairs: int
    watch_pairs: int
    gate_deadline_s: float
    num_workers: int
    label_studio: bool  # the stack starts one, and batches are pushed to it (the annotator answers by file either way)


PROFILES = {
    "fast": Profile("fast", onset_s=20, duration_s=600, window_minutes=0.75, drift_interval_s=3, rule_for_max_s=10,
                    group_wait_s=1, group_interval_s=5, label_wait_s=10, pool_factor=1.5, selection_wait_s=60,
                    gate_interval_s=2, min_pairs=40, watch_pairs=40, gate_deadline_s=120, num_workers=1,
                    label_studio=False),
    "default": Profile("default", onset_s=60, duration_s=900, window_minutes=1.5, drift_interval_s=5,
                       rule_for_max_s=30, group_wait_s=2, group_interval_s=10, label_wait_s=40, pool_factor=2.0,
                       selection_wait_s=120, gate_interval_s=3, min_pairs=100, watch_pairs=100, gate_deadline_s=240,
                       num_workers=2, label_studio=True),
}


class RunLock:
    """`<demo.dir>/demo.lock`, held with flock while a run goes on (the kernel drops it if the process dies)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "demo.lock"
        self._handle = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise DemoRunning(f"another demo is running ({holder}); wait for it to end, or stop it with Ctrl-C "
                              "in its terminal") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        handle.flush()
        self._handle = handle
        return self

    def write(self, text: str) -> None:
        self._handle.seek(0)
        self._handle.truncate(0)
        self._handle.write(text)
        self._handle.flush()

    def __exit__(self, *_) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def new_run_dir(demo_dir: Path) -> Path:
    runs = demo_dir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    folder, n = runs / stamp, 1
    while folder.exists():
        n += 1
        folder = runs / f"{stamp}-{n}"
    folder.mkdir()
    latest = demo_dir / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(folder.relative_to(demo_dir))
    return folder


def quiet_port(low: int = 20000, high: int = 32000) -> int:
    """A free port below the kernel's ephemeral range (32768+), so no service's "any free port" takes it
    between this choice and the moment the service binds it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(low, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def run_settings(base: Settings, run_dir: Path, profile: Profile) -> dict:
    """The run's settings as a plain dict: the user's, with a stack, ports and pace of the run's own."""
    demo = base.demo
    onset = demo.drift_onset_s or profile.onset_s
    # The labelling step gives the annotator `annotator_delay_s` and some: it waits for the batch's labels
    # on top of every label the users give from the champion's registration to two minutes past the onset
    # (labels since the champion count), or, as it normally ends, until the deadline.
    users_labels = int(demo.rate * (onset + 120) * demo.label_share)
    webhook_port = quiet_port()
    update = {
        "data_dir": run_dir / "data",
        "kafka": {"bootstrap_servers": "", "topic_prefix": "driftloop."},
        "stack": {"state_dir": run_dir / "stack", "kafka_port": quiet_port(), "kafka_controller_port": quiet_port(),
                  "prometheus_port": quiet_port(), "alertmanager_port": quiet_port(), "start_kafka": True,
                  "start_prometheus": True, "start_alertmanager": True, "kafka_heap": "512m",
                  "start_label_studio": profile.label_studio},
        "prometheus": {"url": "", "scrape_interval_s": 1.0, "scrape_targets": [],
                       "rule_for_max_s": profile.rule_for_max_s},
        "alertmanager": {"url": "", "webhook_url": f"http://127.0.0.1:{webhook_port}/v1/alerts",
                         "group_wait_s": profile.group_wait_s, "group_interval_s": profile.group_interval_s},
        "ray": {"address": "", "num_workers": profile.num_workers, "num_cpus": 2, "storage_path": None,
                "connect_at_start": True},
        "registry": {"dir": None},
        "collector": {"batch_seconds": 1.0, "metrics_port": 0},
        "api": {"host": "127.0.0.1", "port": quiet_port(), "api_key": None},
        "metrics": {"host": "127.0.0.1"},
        "drift": {"window_minutes": profile.window_minutes, "interval_s": profile.drift_interval_s, "min_rows": 50,
                  "metrics_port": 0},
        "curation": {"strategy": demo.strategy, "budget": demo.label_budget, "seed": demo.seed},
        "retrain": {"cooldown_s": 3600.0, "min_new_labels": users_labels + demo.label_budget,
                    "label_deadline_s": demo.annotator_delay_s + profile.label_wait_s,
                    "selection_window_minutes": profile.window_minutes, "selection_pool_factor": profile.pool_factor,
                    "selection_wait_s": profile.selection_wait_s,
                    "strategy": demo.strategy, "budget": demo.label_budget, "poll_s": 1.0,
                    "reference_files": {demo.model: run_dir / "data" / "reference.parquet"},
                    "schedule_interval_s": None, "quality_floor": None},
        "serve": {"host": "127.0.0.1", "port": quiet_port(), "reload_interval_s": 0.5},
        "shadow": {"refresh_s": 1.0, "start_from": "earliest", "metrics_port": 0},
        "gate": {"check_interval_s": profile.gate_interval_s, "min_pairs": profile.min_pairs,
                 "max_pairs": max(2000, profile.min_pairs), "watch_pairs": profile.watch_pairs,
                 "deadline_hours": profile.gate_deadline_s / 3600, "watch_hours": profile.gate_deadline_s / 3600,
                 "latency_p99_factor": 10.0, "min_class_pairs": 10, "latency_rows": 50, "metrics_port": 0},
        "demo": {"drift_onset_s": onset, "duration_s": demo.duration_s or profile.duration_s},
    }
    return _merge(_plain(base.model_dump()), _plain(update))


def write_config(values: dict, path: Path) -> Path:
    path.write_text(to_toml(values))
    return path


def to_toml(values: dict) -> str:
    """TOML for the settings' plain dict: top-level scalars, then one table per section (None left out)."""
    lines = [f"{key} = {_value(value)}" for key, value in values.items()
             if not isinstance(value, dict) and value is not None]
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"\n[{key}]")
            lines += [f"{_key(name)} = {_value(item)}" for name, item in value.items() if item is not None]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if name.replace("_", "").isalnum() else json.dumps(name)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _plain(value):
    """Paths as strings, secrets revealed (the run's file is the run's own), tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    return value


def _merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("reference_files",):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Services:
    """The run's service processes, each a real `driftloop` command with the run's settings, pid recorded."""

    def __init__(self, state_dir: Path, config_file: Path) -> None:
        self.state_dir = state_dir
        self.config_file = config_file
        self.started: list[ServiceProcess] = []
        # Children read only the run's file: the caller's DRIFTLOOP_* variables are already merged into it.
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTLOOP_")}
        self.env["DRIFTLOOP_CONFIG"] = str(config_file)
        self.env.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")

    def start(self, name: str, *args: str) -> int:
        """Start `driftloop ARGS --config <the run's file>` as the service `name`; its pid."""
        process = ServiceProcess(name, self.state_dir)
        if process.pid() is not None:
            raise RuntimeError(f"{name} of this run is already running (pid {process.pid()})")
        command = [sys.executable, "-m", "driftloop.cli", *args, "--config", str(self.config_file)]
        pid = process.start(command, marker=" ".join([*args, "--config", str(self.config_file)]), env=self.env)
        self.started.append(process)
        return pid

    def failed(self) -> list[str]:
        """Names of started services that are no longer running."""
        return [process.name for process in self.started if not _alive(_recorded_pid(process) or 0)]

    def stop(self) -> list[str]:
        """SIGTERM every running service at once (they shut down side by side), then wait for each, newest
        first, SIGKILL what is left after its grace; then its process group."""
        services = [(process, process.pid(), _recorded_pid(process)) for process in reversed(self.started)]
        for _, running, _ in services:
            if running is not None:
                os.kill(running, signal.SIGTERM)
        stopped = []
        for process, running, recorded in services:
            process.stop(timeout_s=30)
            if running is not None:
                stopped.append(process.name)
            if recorded is not None:
                _stop_group(recorded)  # what the service started itself (Ray's local processes) goes with it
        self.started.clear()
        return stopped


def _recorded_pid(process: ServiceProcess) -> int | None:
    try:
        return int(process.pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _stop_group(pid: int) -> None:
    """The process group `pid` led (a service is started as a session leader): whatever is left of it."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
