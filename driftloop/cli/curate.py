"""`driftloop curate ...`: choose what to label within a budget, round-trip labels, snapshot training sets."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from driftloop.cli.common import (
    ConfigOption,
    JsonOption,
    ModelOption,
    console,
    duration,
    moment,
    print_json,
    require_model,
    setup,
)
from driftloop.settings import StrategyName

app = typer.Typer(
    help="Active learning: choose what to label within a budget, round-trip labels, snapshot training sets.",
    no_args_is_help=True,
)
BATCH_COLUMNS = ("batch_id", "model", "strategy", "size", "created_at")
ExportFormat = Literal["label-studio", "csv", "parquet"]  # curation.EXPORT_FORMATS (tests check they agree)


@app.command("select")
def select(
    model: ModelOption,
    config: ConfigOption = None,
    budget: Annotated[int | None, typer.Option(min=1, help="Most inputs to send for labelling (default: settings).")] = None,
    strategy: Annotated[StrategyName | None, typer.Option(help="Query strategy (default: curation.strategy).")] = None,
    window: Annotated[str | None, typer.Option(help="How far back from --end the pool reaches (90s, 30m, 2h, 7d).")] = None,
    end: Annotated[str | None, typer.Option(help="End of the pool's window, ISO 8601 (default: now).")] = None,
    reference_window: Annotated[str | None, typer.Option(
        help="drift_targeted: the reference is this long a window before --reference-end "
             "(default: the sample of the model's drift profile)."
    )] = None,
    reference_end: Annotated[str | None, typer.Option(help="End of the reference window, ISO 8601.")] = None,
    balanced: Annotated[bool | None, typer.Option(
        "--balanced/--unbalanced", help="Hold each predicted class to an equal share of the batch.")] = None,
    deduplicated: Annotated[bool | None, typer.Option(
        "--deduplicated/--with-duplicates", help="Drop picks that look like a better-ranked pick.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Choose the unlabelled predictions most worth labelling, within a budget, and record them as a batch.

    An input is never chosen twice: every batch is recorded, and later selections skip what it holds.
    """
    from rich.progress import Progress

    from driftloop.curation_service import batch_request, build_strategy
    from driftloop.curation_service import select as select_batch

    settings = setup(config)
    require_model(settings, model)
    defaults = settings.curation
    until = moment(end)
    reference = None
    if reference_window is not None:
        reference_until = moment(reference_end)
        reference = (reference_until - duration(reference_window), reference_until)
    window_length = duration(window) if window else timedelta(hours=defaults.window_hours)
    stages = ["reading", "scoring", "selecting", "recording"]
    chosen = build_strategy(settings, strategy or defaults.strategy,
                            defaults.balanced if balanced is None else balanced,
                            defaults.deduplicated if deduplicated is None else deduplicated)
    request = batch_request(settings, model, budget or defaults.budget, window_length, until)
    with Progress(console=console, transient=True, disable=as_json) as progress:
        task = progress.add_task("reading the pool", total=len(stages))

        def on_stage(stage: str) -> None:
            progress.update(task, completed=stages.index(stage), description=f"{stage} ({chosen.name})")

        batch = select_batch(settings, chosen, request, reference, on_stage)
    picks = [] if batch is None else batch.rows.select(["rank", "request_id", "selection_score", "reason"]).to_pylist()
    if as_json:
        print_json({"batch": None if batch is None else {**batch.describe(), "path": batch.path}, "picks": picks})
        return
    if batch is None:
        console.print(f"nothing to select: no unlabelled predictions of {model!r} in the window that were not sent before")
        return
    table = Table(title=f"batch {batch.batch_id}: {len(batch)} inputs by {batch.strategy}")
    for column in ("rank", "request_id", "score", "reason"):
        table.add_column(column)
    for row in picks[:10]:
        table.add_row(str(row["rank"]), row["request_id"], f"{row['selection_score']:.4g}", row["reason"])
    console.print(table)
    console.print(f"recorded: {batch.path}\nexport it: driftloop curate export {batch.batch_id} --out labels.json")


@app.command("batches")
def batches(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the batches sent for labelling."""
    from driftloop.curation_service import ledger

    rows = [batch.describe() for batch in ledger(setup(config)).batches()]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} batches")
    for column in BATCH_COLUMNS:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[column]) for column in BATCH_COLUMNS))
    console.print(table)


@app.command("export")
def export(
    batch_id: Annotated[str, typer.Argument(help="The batch, as `driftloop curate batches` lists it.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    config: ConfigOption = None,
    fmt: Annotated[ExportFormat, typer.Option(
        "--format", "-f", help="label-studio (JSON tasks with pre-annotations), csv or parquet.")] = "label-studio",
) -> None:
    """Write a batch for annotators: Label Studio tasks with the model's answer as a pre-annotation, CSV or Parquet."""
    from driftloop.curation import export_batch
    from driftloop.curation_service import ledger

    paths = export_batch(ledger(setup(config)).load(batch_id), out, fmt)
    console.print("\n".join(f"wrote {path}" for path in paths))
    if fmt == "label-studio":
        console.print("In Label Studio: create a project with the labelling config above, then import the tasks file.")


@app.command("push")
def push(
    batch_id: Annotated[str, typer.Argument(help="The batch, as `driftloop curate batches` lists it.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a batch to Label Studio as tasks (features, and the model's answer as a pre-annotation).

    One project per model, made the first time; its webhook brings the labels back into the feedback
    topic by itself. Pushing a batch again imports nothing twice.
    """
    from driftloop.labelling_service import push as push_batch

    settings = setup(config)
    with console.status(f"pushing {batch_id} to Label Studio at {settings.label_studio_url()}"):
        result = push_batch(settings, batch_id)
    if as_json:
        print_json({"batch_id": batch_id, "project_id": result.project_id, "project_created": result.project_created,
                    "imported": result.imported, "already_there": result.already_there, "tasks": result.tasks})
        return
    console.print(f"batch {batch_id}: {result.imported} tasks imported, {result.already_there} there already, in "
                  f"project {result.project_id}{' (new)' if result.project_created else ''}: "
                  f"{settings.label_studio_url()}/projects/{result.project_id}")


@app.command("sync")
def sync(
    batch_id: Annotated[str, typer.Argument(help="A batch pushed with `driftloop curate push`.")],
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pull a pushed batch's annotations from Label Studio: what the webhook missed, nothing twice.

    Labels the store lacks go to the feedback topic; labels of annotations deleted since are withdrawn.
    """
    from driftloop.labelling_service import sync as sync_batch

    settings = setup(config)
    with console.status(f"reading the annotations of {batch_id} from Label Studio"):
        result = sync_batch(settings, batch_id)
    if as_json:
        print_json({"batch_id": batch_id, "labels": result.labels, "sent": result.sent, "withdrawn": result.withdrawn})
        return
    console.print(f"batch {batch_id}: {result.labels} labels in Label Studio, {result.sent} new sent to "
                  f"{settings.kafka.topic('feedback')}, {result.withdrawn} withdrawn")


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="A Label Studio JSON export, or a CSV with request_id and label columns.")],
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file; send nothing.")] = False,
) -> None:
    """Send annotators' labels to the feedback topic (source: annotator). A bad row stops it: nothing is sent."""
    from driftloop.curation_service import import_labels

    settings = setup(config)
    with console.status("checking the file and sending its labels"):
        labels, sent = import_labels(settings, path, dry_run)
    console.print(f"{labels.count} labels checked, {sent} sent to {settings.kafka.topic('feedback')}; "
                  f"{labels.unlabelled_rows} rows not labelled yet")


@app.command("snapshot")
def snapshot(
    model: ModelOption,
    config: ConfigOption = None,
    reference: Annotated[Path | None, typer.Option(
        help="Parquet file of the original training data: a label column and feature.<name> columns.")] = None,
    since: Annotated[str | None, typer.Option(help="Take labelled predictions this recent (90s, 30m, 2h, 7d); default all.")] = None,
    end: Annotated[str | None, typer.Option(help="...up to this time, ISO 8601 (default: now).")] = None,
    balance: Annotated[Literal["none", "undersample"] | None, typer.Option(
        help="none, or undersample to the rarest class (default: curation.snapshot_balance).")] = None,
    max_per_class: Annotated[int | None, typer.Option(min=1, help="Cap on rows of any one class.")] = None,
) -> None:
    """Write the training set of a retrain as a versioned snapshot: reference data plus labelled feedback."""
    from driftloop.curation_service import snapshot as build

    settings = setup(config)
    until = moment(end)
    with console.status("building the snapshot"):
        built = build(settings, model, until - duration(since) if since else None, until, reference,
                      balance or settings.curation.snapshot_balance, max_per_class)
    manifest = built.manifest
    console.print(f"snapshot {built.snapshot_id}: {manifest['rows']} rows, per class {manifest['rows_per_class']}, "
                  f"per source {manifest['rows_per_source']}\n-> {built.folder}")
