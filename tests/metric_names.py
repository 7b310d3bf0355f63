"""The names of every metric our components export, for tests that check rules and panels name real ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from driftloop.collector.metrics import ApiMetrics, ProducerMetrics, StoreWriterMetrics
from driftloop.drift.monitor import DriftMetrics


def exported_names() -> set[str]:
    """Family and sample names (counters with `_total`, histograms with `_bucket`, ...), plus Prometheus's `up`."""
    registry = CollectorRegistry()
    StoreWriterMetrics(registry), ProducerMetrics(registry), ApiMetrics(registry)
    registry.register(DriftMetrics([]))
    names = {"up"}
    for family in registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names
