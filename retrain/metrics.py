"""Prometheus metrics of the retrain service, registered on a registry the caller injects."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RetrainMetrics"]

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)


class RetrainMetrics:
    """Triggers and their decisions, episodes running and finished, and how long they took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.triggers = Counter("driftloop_retrain_triggers", "Retrain triggers, by source and decision.",
                                ["model", "source", "decision"], registry=registry)
        self.running = Gauge("driftloop_retrain_running", "Retrain episodes running in this service.", ["model"],
                             registry=registry)
        self.duration = Histogram("driftloop_retrain_duration_seconds",
                                  "Seconds from an episode's trigger to its end, by outcome.", ["model", "outcome"],
                                  buckets=DURATION_BUCKETS, registry=registry)
        self.episodes = Counter("driftloop_retrain_episodes", "Finished retrain episodes, by outcome.",
                                ["model", "outcome"], registry=registry)
        self.notifications = Counter("driftloop_retrain_notifications",
                                     "Alertmanager notifications received, by whether they were accepted.",
                                     ["result"], registry=registry)
