"""The names of every metric our components export, for tests that check rules and panels name real ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftloop.collector.metrics import ApiMetrics, ProducerMetrics, StoreWriterMetrics
from driftloop.drift.checks import WindowChecksMetrics
from driftloop.drift.monitor import DriftMetrics
from driftloop.retrain.metrics import EpisodeGauges, RetrainMetrics
from driftloop.retrain.promotion import GateMetrics
from driftloop.retrain.serving import ServeMetrics
from driftloop.retrain.shadow import ShadowMetrics


def exported_names() -> set[str]:
    """Family and sample names (counters with `_total`, histograms with `_bucket`, ...), plus Prometheus's `up`."""
    registry = CollectorRegistry()
    for metrics in (StoreWriterMetrics, ProducerMetrics, ApiMetrics, RetrainMetrics, ServeMetrics, ShadowMetrics):
        metrics(registry)
    for collector in (DriftMetrics([]), WindowChecksMetrics([]), GateMetrics(), EpisodeGauges(list)):
        registry.register(collector)
    names = {"up"}
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names
