"""Evidently reports of a window: an HTML page for people and a JSON snapshot for machines.

`write_report` runs Evidently's `Report([DataDriftPreset()])` (plus
`ClassificationPreset()` when the window has both the prediction and the true
label; with two classes the positive one is the last in sorted order), and its
data-quality metrics: `DataSummaryPreset()`, and per column `MissingValueCount`,
`OutRangeValueCount` (outside the reference's [min, max]) or `OutListValueCount`
(categories the reference never had), the counterparts of `drift.quality`'s
checks, on the reference and window frames and saves `<name>.html` and
`<name>.json` under a folder; `list_reports` lists what a folder holds (for
the CLI). Evidently (~4 s to import) is imported inside these functions only.
Column kinds are driftloop's (`drift.profile.infer_kind`, Evidently's own rules)
and given to Evidently explicitly, so both see the same numeric/categorical split.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from driftloop.drift.profile import infer_kind, profiled_columns

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ReportFiles:
    """The two files of one report."""

    name: str
    html: Path
    json: Path


def write_report(
    reference: pa.Table | pd.DataFrame,
    current: pa.Table | pd.DataFrame,
    folder: str | Path,
    name: str | None = None,
    columns: Sequence[str] | None = None,
    kinds: Mapping[str, str] | None = None,
    prediction: str = "label",
    target: str = "true_label",
) -> ReportFiles:
    """Save an Evidently drift report (and classification quality when labels exist) of `current` against `reference`.

    `name` (default: `drift-<UTC time>`) is the files' stem: letters, digits, '.', '_' and '-'.
    Drift covers `columns` (default: `drift.profile.profiled_columns`) present in both frames.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset, DataSummaryPreset

    name = name or f"drift-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
    if not _NAME.match(name):
        raise ValueError(f"Invalid report name {name!r}: use letters, digits, '.', '_' and '-' (not first)")
    reference, current = _frame(reference), _frame(current)
    shared = [c for c in reference.columns if c in current.columns]
    drift_columns = [c for c in (columns or profiled_columns(shared, prediction)) if c in shared]
    kinds = {c: (kinds or {}).get(c) or infer_kind(reference[c]) for c in drift_columns}
    # Evidently refuses drift of a column that is empty on either side; such a column has no drift to report,
    # but its missing values are reported (a column that suddenly is all null is a data-quality failure).
    quality_columns = [c for c in drift_columns if kinds[c] is not None and reference[c].notna().any()]
    drift_columns = [c for c in quality_columns if current[c].notna().any()]
    current = current.assign(**{c: current[c].astype(reference[c].dtype) for c in quality_columns
                                if c not in drift_columns})
    labelled = (prediction in shared and target in shared
                and current[target].notna().any() and reference[target].notna().any())
    definition = DataDefinition(
        numerical_columns=[c for c in quality_columns if kinds[c] == "numeric"],
        categorical_columns=[c for c in quality_columns if kinds[c] == "categorical"]
        + ([target] if labelled and target not in drift_columns else []),
        classification=[_classification(reference, current, prediction, target, BinaryClassification,
                                        MulticlassClassification)] if labelled else None,
    )
    presets = [DataDriftPreset(columns=drift_columns), DataSummaryPreset(columns=drift_columns),
               *_quality_metrics(reference, quality_columns, drift_columns, kinds)]
    if labelled:
        presets.append(ClassificationPreset())
    keep = quality_columns + ([target] if labelled and target not in quality_columns else [])
    if labelled:
        reference, current = reference[reference[target].notna()], current[current[target].notna()]
    snapshot = Report(presets).run(
        current_data=Dataset.from_pandas(current[keep], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[keep], data_definition=definition),
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(name, folder / f"{name}.html", folder / f"{name}.json")
    snapshot.save_html(str(files.html))
    snapshot.save_json(str(files.json))
    return files


def list_reports(folder: str | Path) -> list[ReportFiles]:
    """Reports saved under `folder` (an HTML and a JSON file with the same stem), oldest name first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [ReportFiles(p.stem, p, p.with_suffix(".json"))
            for p in sorted(folder.glob("*.html")) if p.with_suffix(".json").is_file()]


def _quality_metrics(reference: pd.DataFrame, columns: Sequence[str], with_values: Sequence[str],
                     kinds: Mapping[str, str | None]) -> list:
    """Evidently's own metrics for what `drift.quality` checks: missing values (every column), values outside
    the reference's range and categories the reference never had (columns with values in the window)."""
    from evidently.metrics import MissingValueCount, OutListValueCount, OutRangeValueCount

    metrics = []
    for column in columns:
        metrics.append(MissingValueCount(column=column))
        if column not in with_values:
            continue
        if kinds[column] == "numeric":
            values = pd.to_numeric(reference[column], errors="coerce")
            metrics.append(OutRangeValueCount(column=column, left=float(values.min()), right=float(values.max())))
        else:
            metrics.append(OutListValueCount(column=column, values=reference[column].dropna().unique().tolist()))
    return metrics


def _classification(reference, current, prediction, target, binary, multiclass):
    """Binary (positive label: the last in sorted order, e.g. 'yes' or 1) with two classes, else multiclass."""
    classes = sorted(set(pd.concat([reference[target], current[target], reference[prediction], current[prediction]])
                         .dropna().tolist()), key=str)
    if len(classes) == 2:
        return binary(target=target, prediction_labels=prediction, pos_label=classes[-1])
    return multiclass(target=target, prediction_labels=prediction)


def _frame(table: pa.Table | pd.DataFrame) -> pd.DataFrame:
    return table.to_pandas() if isinstance(table, pa.Table) else table


__all__ = ["ReportFiles", "list_reports", "write_report"]
