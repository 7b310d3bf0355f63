"""Prometheus metrics of the retrain service, registered on a registry the caller injects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["EpisodeGauges", "RetrainMetrics"]

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)
TRAINING_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class RetrainMetrics:
    """Triggers and their decisions, labelling batches, episodes running and finished, and how long they took."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
        self.alerts_logged = Counter("driftloop_retrain_alerts_logged", "Alerts the log receiver wrote to the "
                                     "alert log, by alert name and status.", ["alertname", "status"], registry=registry)
        self.batches = Counter("driftloop_retrain_labelling_batches",
                               "Labelling batches episodes asked for, by result (sent; empty: nothing new to label).",
                               ["model", "result"], registry=registry)
        self.batch_rows = Counter("driftloop_retrain_labelling_rows", "Predictions sent for labelling in episodes' "
                                  "batches.", ["model"], registry=registry)
        self.training = Histogram("driftloop_retrain_training_seconds", "Seconds the Ray Train run of a finished "
                                  "episode took (its fit).", ["model"], buckets=TRAINING_BUCKETS, registry=registry)


class EpisodeGauges(Collector):
    """`driftloop_retrain_episode_*`: where each unfinished episode stands, read from the episode store at scrape.

    `active` returns the unfinished episodes (`EpisodeStore.episodes(active=True)`); an episode of
    another retrain service on the same database counts too, since the store is the truth.
    """

    def __init__(self, active: Callable[[], Iterable]) -> None:
        self.active = active

    def describe(self):
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        step = GaugeMetricFamily("driftloop_retrain_episode_step", "Unfinished retrain episodes, by the step they are "
                                 "in (selecting, labelling, ..., shadowing, watching).", labels=["model", "step"])
        labels = GaugeMetricFamily("driftloop_retrain_episode_new_labels", "New labels an episode waiting in "
                                   "`labelling` has counted so far (it goes on at retrain.min_new_labels).",
                                   labels=["model"])
        counts: dict[tuple[str, str], int] = {}
        for episode in self.active():
            key = (episode.model, str(episode.step))
            counts[key] = counts.get(key, 0) + 1
            if str(episode.step) == "labelling":
                labels.add_metric([episode.model], float(episode.state.get("new_labels", 0)))
        for (model, name), count in sorted(counts.items()):
            step.add_metric([model, name], count)
        yield from (step, labels)
