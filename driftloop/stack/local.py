"""`driftloop stack up | down | status`: Kafka, Prometheus, Alertmanager and Label Studio on 127.0.0.1.

The same class serves the test fixtures, with free ports and a temporary state dir.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from driftloop.settings import Settings
from driftloop.stack.kafka import KafkaBroker, create_topics
from driftloop.stack.label_studio import LabelStudioServer
from driftloop.stack.monitoring import Alertmanager, Prometheus, http_ready
from driftloop.stack.process import port_open

log = logging.getLogger(__name__)


class PortTaken(RuntimeError):
    """A stack port is held by a program the stack did not start."""


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    answers: bool
    log_file: str
    started_now: bool = False
    seconds_to_ready: float | None = None


class LocalStack:
    """The local stack's services, each started only when its settings ask for it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        stack = settings.stack
        self.kafka = KafkaBroker(stack)
        self.prometheus = Prometheus(stack, settings.prometheus)
        self.alertmanager = Alertmanager(stack, settings.alertmanager, settings.retrain.cooldown_s)
        self.label_studio = LabelStudioServer(stack, settings.label_studio.username)

    def _enabled(self) -> list[tuple[str, object, int]]:
        stack = self.settings.stack
        services = []
        if stack.start_kafka:
            services.append(("kafka", self.kafka, stack.kafka_port))
        if stack.start_alertmanager:
            services.append(("alertmanager", self.alertmanager, stack.alertmanager_port))
        if stack.start_prometheus:
            services.append(("prometheus", self.prometheus, stack.prometheus_port))
        if self.starts_label_studio:
            services.append(("label-studio", self.label_studio, stack.label_studio_port))
        return services

    @property
    def starts_label_studio(self) -> bool:
        """The stack runs Label Studio unless it is turned off, or the team points at its own (`label_studio.url`)."""
        settings = self.settings
        return settings.stack.start_label_studio and settings.label_studio.enabled and not settings.label_studio.url

    def up(self) -> list[ServiceStatus]:
        """Start what is not running yet, wait until each answers, create the topics. Idempotent."""
        self.settings.stack.state_dir.mkdir(parents=True, exist_ok=True)
        launched = {}
        for name, service, port in self._enabled():
            if service.process.pid() is not None:
                log.info("%s already running (pid %s)", name, service.process.pid())
                continue
            if port_open(port):
                raise PortTaken(
                    f"port {port} for {name} is in use by a program the stack did not start; "
                    f"stop it or set DRIFTLOOP_STACK__{name.upper().replace('-', '_')}_PORT"
                )
            log.info("starting %s on 127.0.0.1:%d", name, port)
            service.start()
            launched[name] = time.monotonic()
        ready_after = {}
        for name, service, _ in self._enabled():
            service.wait_ready()
            if name in launched:
                ready_after[name] = time.monotonic() - launched[name]
                log.info("%s ready after %.1f s", name, ready_after[name])
        if self.settings.stack.start_kafka:
            create_topics(self.kafka.bootstrap, self.settings.kafka)
        return [
            replace(status, started_now=True, seconds_to_ready=ready_after[status.name])
            if status.name in launched
            else status
            for status in self.status()
        ]

    def down(self) -> list[str]:
        """Stop, in reverse order, the services this stack started; return their names."""
        stopped = []
        for name, service, _ in reversed(self._enabled()):
            if service.process.stop():
                stopped.append(name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                name=name,
                address=f"127.0.0.1:{port}" if name == "kafka" else f"http://127.0.0.1:{port}",
                pid=service.process.pid(),
                answers=_answers(name, service),
                log_file=str(service.process.log_file),
            )
            for name, service, port in self._enabled()
        ]


def _answers(name: str, service) -> bool:
    try:
        return service.ready() if name in ("kafka", "label-studio") else http_ready(f"{service.url}/-/ready")
    except Exception:
        return False
