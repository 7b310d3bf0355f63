"""The model server, the shadow scorer and the promotion gate, built from the settings."""

from __future__ import annotations

import logging
from datetime import timedelta

from prometheus_client import CollectorRegistry

from driftloop.collector.store import Store
from driftloop.retrain.decisions import GateLedger
from driftloop.retrain.gate import GateConfig
from driftloop.retrain_service import open_registry
from driftloop.services import announce_to_prometheus, serve_metrics, stop_on_signals
from driftloop.settings import GateSettings, Settings

log = logging.getLogger(__name__)


def gate_config(gate: GateSettings) -> GateConfig:
    """The gate's settings as the retrain package's GateConfig (which checks them again)."""
    return GateConfig(
        alpha=gate.alpha, margin=gate.margin, min_pairs=gate.min_pairs, max_pairs=gate.max_pairs,
        deadline=timedelta(hours=gate.deadline_hours), latency_p99_factor=gate.latency_p99_factor,
        max_recall_drop=gate.max_recall_drop, min_class_pairs=gate.min_class_pairs, futility=gate.futility,
        watch_pairs=gate.watch_pairs, watch_deadline=timedelta(hours=gate.watch_hours),
    )


def open_ledger(settings: Settings) -> GateLedger:
    """The gate's trials and decisions, in the registry's database."""
    return GateLedger(open_registry(settings).database)


def build_gate(settings: Settings, model: str, metrics_registry: CollectorRegistry | None = None, metrics=None):
    """The gate of one model, reporting to `metrics` (a GateMetrics), or to a new one registered on
    `metrics_registry` when given."""
    from driftloop.retrain.promotion import GateMetrics, PromotionGate

    registry = open_registry(settings)
    if metrics is None:
        metrics = GateMetrics()
        if metrics_registry is not None:
            metrics_registry.register(metrics)
    return PromotionGate(registry, GateLedger(registry.database), Store(settings.store_dir), gate_config(settings.gate),
                         model=model, horizon=settings.label_horizon, metrics=metrics,
                         latency_rows=settings.gate.latency_rows)


def run_gate(settings: Settings, model: str) -> None:
    """Decide `model`'s trials every gate.check_interval_s until SIGTERM."""
    metrics = CollectorRegistry()
    gate = build_gate(settings, model, metrics)
    serve_metrics(settings, metrics, f"gate-{model}", settings.gate.metrics_port)
    log.info("gate for %s: alpha %g, margin %g, min %d / max %d pairs, every %g s", model, settings.gate.alpha,
             settings.gate.margin, settings.gate.min_pairs, settings.gate.max_pairs, settings.gate.check_interval_s)
    gate.run(stop_on_signals(), settings.gate.check_interval_s)


def run_shadow(settings: Settings, model: str) -> None:
    """Score `model`'s traffic with its challenger (and a watched previous champion) until SIGTERM."""
    import torch

    from driftloop.retrain.shadow import ShadowConfig, ShadowScorer

    torch.set_num_threads(settings.shadow.torch_threads)
    registry = open_registry(settings)
    metrics = CollectorRegistry()
    config = ShadowConfig(
        bootstrap_servers=settings.kafka_bootstrap(), topics=settings.kafka.topics(), model=model,
        group_id=settings.shadow.group_id, poll_records=settings.shadow.poll_records,
        refresh_s=settings.shadow.refresh_s, start_from=settings.shadow.start_from,
    )
    scorer = ShadowScorer(config, registry, GateLedger(registry.database), metrics)
    serve_metrics(settings, metrics, f"shadow-{model}", settings.shadow.metrics_port)
    log.info("shadow scorer for %s: %s -> %s (group %s)", model, config.topics.predictions, config.topics.shadow,
             config.group_id)
    scorer.run(stop_on_signals())


def build_server(settings: Settings, model: str):
    """The model server's app, its champion loaded, and the EventLogger it logs through."""
    import torch

    from driftloop.collector.producer import EventLogger
    from driftloop.retrain.serving import create_server

    torch.set_num_threads(settings.serve.torch_threads)
    metrics = CollectorRegistry()
    logger = EventLogger(settings.kafka_bootstrap(), settings.kafka.topics(), metrics,
                         buffer_events=settings.serve.log_buffer_events, overflow="drop",
                         client_id=f"driftloop-serve-{model}")
    try:
        return create_server(registry=open_registry(settings), model=model, logger=logger, metrics_registry=metrics,
                             reload_interval_s=settings.serve.reload_interval_s)
    except BaseException:
        logger.close(timeout_s=1)
        raise


def run_server(settings: Settings, model: str) -> None:
    from driftloop.collector.api import serve

    app = build_server(settings, model)
    announce_to_prometheus(settings, f"serve-{model}", f"{settings.serve.host}:{settings.serve.port}")
    log.info("serving %s version %d on http://%s:%d (OpenAPI at /docs)", model, app.state.watcher.current.version,
             settings.serve.host, settings.serve.port)
    serve(app, settings.serve.host, settings.serve.port, log_level=settings.log_level.lower())
