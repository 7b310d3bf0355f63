"""Curation: active-learning strategies, budgeted selection, the labelling round trip, snapshots."""

from driftloop.curation.batches import Batch, BatchLedger
from driftloop.curation.budgeted import BatchRequest, select_batch
from driftloop.curation.labelling import (
    EXPORT_FORMATS,
    ImportedLabels,
    LabelFileError,
    export_batch,
    label_studio_config,
    read_labels,
    send_labels,
)
from driftloop.curation.pool import Pool
from driftloop.curation.predictor import Predictor, TorchPredictor
from driftloop.curation.selection import Selection
from driftloop.curation.snapshot import BALANCE_MODES, Snapshot, SnapshotSpec, build_snapshot, load_snapshot
from driftloop.curation.strategies import STRATEGIES, DomainScorer, Strategy, make_strategy

__all__ = [
    "BALANCE_MODES",
    "EXPORT_FORMATS",
    "STRATEGIES",
    "Batch",
    "BatchLedger",
    "BatchRequest",
    "DomainScorer",
    "ImportedLabels",
    "LabelFileError",
    "Pool",
    "Predictor",
    "Selection",
    "Snapshot",
    "SnapshotSpec",
    "Strategy",
    "TorchPredictor",
    "build_snapshot",
    "export_batch",
    "label_studio_config",
    "load_snapshot",
    "make_strategy",
    "read_labels",
    "select_batch",
    "send_labels",
]
