"""Long-running services built from the settings: the store writer and the ingestion API."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import timedelta

from prometheus_client import CollectorRegistry, disable_created_metrics, start_http_server

from driftloop.collector.schemas import EventPolicy
from driftloop.collector.store_writer import StoreWriter, StoreWriterConfig
from driftloop.settings import Settings
from driftloop.stack import register_scrape_target, unregister_scrape_target

WILDCARD_HOSTS = ("0.0.0.0", "::", "")
_ANNOUNCED: dict[str, str] = {}  # name -> address this process registered with the local Prometheus

log = logging.getLogger(__name__)


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a service finishes its batch and exits cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def new_registry() -> CollectorRegistry:
    """The registry of one service. Counters carry no `_created` series (they would double every counter)."""
    disable_created_metrics()
    return CollectorRegistry()


def event_policy(settings: Settings) -> EventPolicy:
    """What ingestion accepts beyond the schema, the same for the API and the collector."""
    collector = settings.collector
    return EventPolicy(
        max_features=collector.max_features,
        model_names=tuple(collector.model_names),
        model_name_pattern=collector.model_name_pattern,
        max_age=timedelta(hours=collector.max_event_age_hours),
        max_ahead=timedelta(hours=collector.max_event_ahead_hours),
    )


def serve_metrics(settings: Settings, registry: CollectorRegistry, name: str, port: int) -> int:
    """Expose `registry` on `metrics.host` and, when the local stack runs Prometheus, register it there.

    A service withdraws its registration (`withdraw_from_prometheus`) when it is stopped on
    purpose, and only then: a crashed one stays registered, so Prometheus sees it down (`up == 0`).
    """
    host = settings.metrics.host
    server, _ = start_http_server(port, addr=host, registry=registry)
    announce_to_prometheus(settings, name, _reachable(host, server.server_port))
    log.info("%s metrics on http://%s/metrics", name, _reachable(host, server.server_port))
    return server.server_port


def announce_to_prometheus(settings: Settings, name: str, address: str) -> None:
    """When the local stack runs Prometheus, have it scrape `address` from now on."""
    targets = _targets_dir(settings)
    if not settings.stack.start_prometheus:
        return
    if not targets.parent.exists():
        log.info("the local Prometheus is not running (no %s): %s is not registered for scraping", targets.parent, name)
        return
    register_scrape_target(targets, name, address)
    _ANNOUNCED[name] = address


def withdraw_from_prometheus(settings: Settings, name: str) -> None:
    """Stop the local Prometheus scraping what this process announced as `name` (after a clean stop)."""
    address = _ANNOUNCED.pop(name, None)
    if address is not None:
        unregister_scrape_target(_targets_dir(settings), name, address)


def _targets_dir(settings: Settings):
    return settings.stack.state_dir / "prometheus" / "targets"


def _reachable(host: str, port: int) -> str:
    """host:port that the local Prometheus can scrape (a wildcard bind answers on loopback)."""
    host = "127.0.0.1" if host in WILDCARD_HOSTS else host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_store_writer(settings: Settings) -> None:
    registry = new_registry()
    serve_metrics(settings, registry, "collector", settings.collector.metrics_port)
    config = StoreWriterConfig(
        bootstrap_servers=settings.kafka_bootstrap(),
        topics=settings.kafka.topics(),
        store_dir=settings.store_dir,
        group_id=settings.collector.group_id,
        batch_events=settings.collector.batch_events,
        batch_seconds=settings.collector.batch_seconds,
        poll_records=settings.collector.poll_records,
        policy=event_policy(settings),
        compact_files=settings.collector.compact_files,
    )
    log.info("writing %s and %s into %s", config.topics.predictions, config.topics.feedback, config.store_dir)
    StoreWriter(config, registry).run(stop_on_signals())
    withdraw_from_prometheus(settings, "collector")


def run_api(settings: Settings, insecure: bool = False) -> None:
    from driftloop.collector.api import check_bind, create_app, serve
    from driftloop.collector.store import Store
    from driftloop.labelling_service import webhook_secret

    api = settings.api
    check_bind(api.host, api.api_key is not None, insecure)
    registry = new_registry()
    app = create_app(
        bootstrap_servers=settings.kafka_bootstrap(),
        topics=settings.kafka.topics(),
        registry=registry,
        api_key=api.api_key.get_secret_value() if api.api_key else None,
        max_body_bytes=api.max_body_bytes,
        body_timeout_s=api.body_timeout_s,
        ack_timeout_s=api.ack_timeout_s,
        policy=event_policy(settings),
        public_metrics=api.public_metrics,
        public_docs=api.public_docs,
        label_studio_secret=webhook_secret(settings),
        annotated_requests=Store(settings.store_dir).annotated_requests,
    )
    if api.api_key is None or api.public_metrics:
        announce_to_prometheus(settings, "api", _reachable(api.host, api.port))
    else:
        log.warning("/metrics needs the API key: the local Prometheus cannot scrape it (set api.public_metrics)")
    log.info("ingestion API on http://%s:%d (OpenAPI at /docs)", api.host, api.port)
    serve(app, api.host, api.port, log_level=settings.log_level.lower(), insecure=insecure)
    withdraw_from_prometheus(settings, "api")
