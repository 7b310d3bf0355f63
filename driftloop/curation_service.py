"""The curate commands, built from the settings: select a batch, export it, import labels, snapshot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from driftloop.collector.store import Store
from driftloop.curation import (
    Batch,
    BatchLedger,
    BatchRequest,
    ImportedLabels,
    Snapshot,
    SnapshotSpec,
    Strategy,
    build_snapshot,
    make_strategy,
    read_labels,
    select_batch,
    send_labels,
)
from driftloop.layout import SAMPLE_FILE, batches_dir, profile_dir, snapshots_dir
from driftloop.settings import Settings

SEEDED = ("random", "k_center", "cluster_margin", "badge", "hybrid")


def ledger(settings: Settings) -> BatchLedger:
    return BatchLedger(batches_dir(settings))


def build_strategy(settings: Settings, name: str, balanced: bool, deduplicated: bool) -> Strategy:
    """The named strategy; drift-targeted selection gets the drift package's domain classifier."""
    params = {}
    if name in SEEDED:
        params["seed"] = settings.curation.seed
    if name == "drift_targeted":
        from driftloop.drift.multivariate import DomainClassifierTest  # scikit-learn: only when it is used

        params["domain_scorer"] = DomainClassifierTest(seed=settings.curation.seed)
    return make_strategy(name, balanced=balanced, deduplicated=deduplicated, **params)


def reference_rows(settings: Settings, model: str, window: tuple[datetime, datetime] | None) -> pa.Table | None:
    """The reference to compare a pool against: a window of the store, else the sample of the model's profile."""
    if window is not None:
        return Store(settings.store_dir).predictions(model, *window)
    sample = profile_dir(settings, model) / SAMPLE_FILE
    return pq.read_table(sample) if sample.is_file() else None


def select(
    settings: Settings,
    strategy: Strategy,
    request: BatchRequest,
    reference_window: tuple[datetime, datetime] | None = None,
    on_stage: Callable[[str], None] = lambda _stage: None,
) -> Batch | None:
    reference = reference_rows(settings, request.model, reference_window)
    if strategy.name.startswith("drift_targeted") and reference is None:
        raise ValueError(
            f"drift-targeted selection needs reference rows: pass --reference-window, or profile the model first "
            f"(driftloop drift profile --model {request.model})"
        )
    return select_batch(Store(settings.store_dir), ledger(settings), strategy, request, reference=reference,
                        on_stage=on_stage)


def import_labels(settings: Settings, path: Path, dry_run: bool = False) -> tuple[ImportedLabels, int]:
    """Check a label file whole, then send its labels to the feedback topic; (what it holds, how many were sent)."""
    labels = read_labels(path, ledger(settings))
    if dry_run or not labels.count:
        return labels, 0
    return labels, send_labels(settings.kafka_bootstrap(), settings.kafka.topic("feedback"), labels.iter_events())


def snapshot(
    settings: Settings,
    model: str,
    since: datetime | None,
    until: datetime | None,
    reference: Path | None,
    balance: str,
    max_per_class: int | None,
) -> Snapshot:
    spec = SnapshotSpec(
        model=model, since=since, until=until, label_horizon_hours=settings.label_horizon_hours,
        balance=balance, max_per_class=max_per_class, seed=settings.curation.seed,
    )
    table = pq.read_table(reference) if reference is not None else None
    return build_snapshot(Store(settings.store_dir), spec, snapshots_dir(settings), reference=table)


def batch_request(settings: Settings, model: str, budget: int, window: timedelta, end: datetime) -> BatchRequest:
    return BatchRequest(model=model, budget=budget, start=end - window, end=end,
                        label_horizon=settings.label_horizon)
