"""The `driftloop` command line. Every command and group has --help."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from driftloop.settings import Settings, SettingsError, load_settings
from driftloop.stack import LocalStack, ServiceStatus

app = typer.Typer(
    help="driftloop: monitor ML models in production, detect drift, curate labels, retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local stack: Kafka, Prometheus and Alertmanager on 127.0.0.1.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
collector_app = typer.Typer(help="The consumer that writes Kafka's events into the Parquet store.", no_args_is_help=True)
app.add_typer(collector_app, name="collector")
api_app = typer.Typer(help="The ingestion HTTP API: predictions and feedback into Kafka.", no_args_is_help=True)
app.add_typer(api_app, name="api")
store_app = typer.Typer(help="A quick look at what is stored.", no_args_is_help=True)
app.add_typer(store_app, name="store")
drift_app = typer.Typer(help="Reference profiles, the drift monitor, Evidently reports.", no_args_is_help=True)
app.add_typer(drift_app, name="drift")
curate_app = typer.Typer(
    help="Active learning: choose what to label within a budget, round-trip labels, snapshot training sets.",
    no_args_is_help=True,
)
app.add_typer(curate_app, name="curate")

ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name, as in the prediction events.")]


def duration(text: str) -> timedelta:
    """'90s', '30m', '2h', '7d' as a timedelta."""
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    try:
        value, unit = float(text[:-1]), units[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 30m, 2h or 7d") from None
    return timedelta(**{unit: value})


def moment(text: str | None) -> datetime:
    """An ISO 8601 time (UTC when no zone is given), or now."""
    if text is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time like 2026-11-23T09:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
console = Console(width=140) if not Console().is_terminal else Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also DRIFTLOOP_CONFIG).", show_default=False),
]


def setup(config: Path | None) -> Settings:
    """Load settings and configure readable logs; exit with a one-line error on bad settings."""
    try:
        settings = load_settings(config)
    except SettingsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    logging.basicConfig(
        level=settings.log_level,
        format="%(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    return settings


def fail(error: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {error}")
    return typer.Exit(1)


def print_services(rows: list[ServiceStatus]) -> None:
    table = Table(title="driftloop stack")
    for column in ("service", "address", "pid", "answers", "log"):
        table.add_column(column, overflow="fold")
    for row in rows:
        answers = "[green]yes[/green]" if row.answers else "[red]no[/red]"
        if row.seconds_to_ready is not None:
            answers += f" (ready {row.seconds_to_ready:.1f} s after start)"
        table.add_row(row.name, row.address, str(row.pid or "-"), answers, row.log_file)
    console.print(table)


@stack_app.command("up")
def stack_up(config: ConfigOption = None) -> None:
    """Start whatever of the stack is not running, wait until it answers, create the topics."""
    settings = setup(config)
    try:
        rows = LocalStack(settings).up()
    except (RuntimeError, TimeoutError, OSError) as error:
        raise fail(error) from None
    print_services(rows)
    console.print(f"state and logs: {settings.stack.state_dir}")


@stack_app.command("down")
def stack_down(config: ConfigOption = None) -> None:
    """Stop the services `stack up` started (by recorded pid); leave anything else alone."""
    settings = setup(config)
    stopped = LocalStack(settings).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status(config: ConfigOption = None) -> None:
    """Say what runs where, and whether it answers. Exits 1 if any service does not answer."""
    settings = setup(config)
    rows = LocalStack(settings).status()
    print_services(rows)
    if not all(row.answers for row in rows):
        raise typer.Exit(1)


@collector_app.command("run")
def collector_run(config: ConfigOption = None) -> None:
    """Consume `predictions` and `feedback`, write them exactly once into the store, until Ctrl-C/SIGTERM.

    Run more processes with the same group id to split the partitions between them.
    """
    from driftloop.services import run_store_writer

    run_store_writer(setup(config))


@api_app.command("run")
def api_run(config: ConfigOption = None) -> None:
    """Serve POST /v1/predictions, POST /v1/feedback, /healthz, /metrics; OpenAPI at /docs."""
    from driftloop.services import run_api

    run_api(setup(config))


@store_app.command("query")
def store_query(
    sql: Annotated[str, typer.Argument(help="SQL over the views `predictions` and `feedback`.")] = (
        "SELECT model_name, count(*) AS events, min(timestamp) AS first, max(timestamp) AS last "
        "FROM predictions GROUP BY ALL ORDER BY 1"
    ),
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to print at most.")] = 50,
) -> None:
    """Run SQL over the store (DuckDB); without SQL, count predictions per model."""
    import duckdb

    from collector.store import Store

    settings = setup(config)
    try:
        result = Store(settings.store_dir).sql(sql)
    except duckdb.Error as error:
        raise fail(error) from None
    table = Table(title=f"{result.num_rows} rows" + (f", first {limit}" if result.num_rows > limit else ""))
    for name in result.column_names:
        table.add_column(name, overflow="fold")
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)


@drift_app.command("profile")
def drift_profile(
    model: ModelOption,
    config: ConfigOption = None,
    window: Annotated[str, typer.Option(help="How far back from --end the reference reaches (90s, 30m, 2h, 7d).")] = "1d",
    end: Annotated[str | None, typer.Option(help="End of the reference window, ISO 8601 (default: now).")] = None,
) -> None:
    """Build the reference profile of a model from a window of the store (e.g. the training period)."""
    from driftloop.drift_service import build_profile

    settings = setup(config)
    until = moment(end)
    try:
        with console.status("profiling the reference window"):
            folder, profile = build_profile(settings, model, until - duration(window), until)
    except ValueError as error:
        raise fail(error) from None
    console.print(f"profiled {profile.rows} rows, {len(profile.features)} columns -> {folder}")


@drift_app.command("run")
def drift_run(model: ModelOption, config: ConfigOption = None) -> None:
    """Monitor a model: every interval, the latest window against its profile; gauges on /metrics,
    state changes to the `drift-events` topic. Stops on Ctrl-C/SIGTERM."""
    from driftloop.drift_service import run_monitor

    try:
        run_monitor(setup(config), model)
    except FileNotFoundError as error:
        raise fail(error) from None


@drift_app.command("report")
def drift_report(
    model: ModelOption,
    config: ConfigOption = None,
    window: Annotated[str, typer.Option(help="The window before --end to report on (90s, 30m, 2h, 7d).")] = "1h",
    end: Annotated[str | None, typer.Option(help="End of the window, ISO 8601 (default: now).")] = None,
) -> None:
    """Make an Evidently report (HTML for people, JSON snapshot) of a window against the reference."""
    from driftloop.drift_service import make_report

    settings = setup(config)
    try:
        with console.status("running Evidently"):
            files = make_report(settings, model, duration(window), moment(end))
    except (FileNotFoundError, ValueError) as error:
        raise fail(error) from None
    console.print(f"report: {files.html}\nsnapshot: {files.json}")


@drift_app.command("reports")
def drift_reports(model: ModelOption, config: ConfigOption = None) -> None:
    """List the Evidently reports saved for a model."""
    from drift.report import list_reports
    from driftloop.drift_service import reports_dir

    for files in list_reports(reports_dir(setup(config), model)):
        console.print(f"{files.name}  {files.html}")


@curate_app.command("select")
def curate_select(
    model: ModelOption,
    config: ConfigOption = None,
    budget: Annotated[int | None, typer.Option(min=1, help="Most inputs to send for labelling (default: settings).")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="margin, least_confidence, entropy, k_center, cluster_margin, drift_targeted or random (default: settings)."
    )] = None,
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
) -> None:
    """Choose the unlabelled predictions most worth labelling, within a budget, and record them as a batch.

    An input is never chosen twice: every batch is recorded, and later selections skip what it holds.
    """
    from rich.progress import Progress

    from driftloop.curation_service import batch_request, build_strategy, select

    settings = setup(config)
    defaults = settings.curation
    until = moment(end)
    reference = None
    if reference_window is not None:
        reference_until = moment(reference_end)
        reference = (reference_until - duration(reference_window), reference_until)
    window_length = duration(window) if window else timedelta(hours=defaults.window_hours)
    stages = ["reading", "scoring", "selecting", "recording"]
    try:
        chosen = build_strategy(settings, strategy or defaults.strategy,
                                defaults.balanced if balanced is None else balanced,
                                defaults.deduplicated if deduplicated is None else deduplicated)
        request = batch_request(settings, model, budget or defaults.budget, window_length, until)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("reading the pool", total=len(stages))

            def on_stage(stage: str) -> None:
                progress.update(task, completed=stages.index(stage), description=f"{stage} ({chosen.name})")

            batch = select(settings, chosen, request, reference, on_stage)
    except ValueError as error:
        raise fail(error) from None
    if batch is None:
        console.print(f"nothing to select: no unlabelled predictions of {model!r} in the window that were not sent before")
        return
    table = Table(title=f"batch {batch.batch_id}: {len(batch)} inputs by {batch.strategy}")
    for column in ("rank", "request_id", "score", "reason"):
        table.add_column(column)
    for row in batch.rows.select(["rank", "request_id", "selection_score", "reason"]).slice(0, 10).to_pylist():
        table.add_row(str(row["rank"]), row["request_id"], f"{row['selection_score']:.4g}", row["reason"])
    console.print(table)
    console.print(f"recorded: {batch.path}\nexport it: driftloop curate export {batch.batch_id} --out labels.json")


@curate_app.command("batches")
def curate_batches(config: ConfigOption = None) -> None:
    """List the batches sent for labelling."""
    from driftloop.curation_service import ledger

    rows = [batch.describe() for batch in ledger(setup(config)).batches()]
    table = Table(title=f"{len(rows)} batches")
    for column in ("batch_id", "model", "strategy", "size", "created_at"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[column]) for column in ("batch_id", "model", "strategy", "size", "created_at")))
    console.print(table)


@curate_app.command("export")
def curate_export(
    batch_id: Annotated[str, typer.Argument(help="The batch, as `driftloop curate batches` lists it.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    config: ConfigOption = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="label-studio (JSON tasks), csv or parquet.")] = "label-studio",
) -> None:
    """Write a batch for annotators: Label Studio tasks with the model's answer as a pre-annotation, CSV or Parquet."""
    from curation import export_batch
    from driftloop.curation_service import ledger

    try:
        paths = export_batch(ledger(setup(config)).load(batch_id), out, fmt)
    except ValueError as error:
        raise fail(error) from None
    console.print("\n".join(f"wrote {path}" for path in paths))
    if fmt == "label-studio":
        console.print("In Label Studio: create a project with the labelling config above, then import the tasks file.")


@curate_app.command("import")
def curate_import(
    path: Annotated[Path, typer.Argument(help="A Label Studio JSON export, or a CSV with request_id and label columns.")],
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check the file; send nothing.")] = False,
) -> None:
    """Send annotators' labels to the feedback topic (source: annotator). A bad row stops it: nothing is sent."""
    from curation import LabelFileError
    from driftloop.curation_service import import_labels

    settings = setup(config)
    try:
        with console.status("checking the file and sending its labels"):
            labels, sent = import_labels(settings, path, dry_run)
    except LabelFileError as error:
        raise fail(error) from None
    console.print(f"{len(labels.events)} labels checked, {sent} sent to {settings.kafka.topic('feedback')}; "
                  f"{labels.unlabelled_rows} rows not labelled yet")


@curate_app.command("snapshot")
def curate_snapshot(
    model: ModelOption,
    config: ConfigOption = None,
    reference: Annotated[Path | None, typer.Option(
        help="Parquet file of the original training data: a label column and feature.<name> columns.")] = None,
    since: Annotated[str | None, typer.Option(help="Take labelled predictions this recent (90s, 30m, 2h, 7d); default all.")] = None,
    end: Annotated[str | None, typer.Option(help="...up to this time, ISO 8601 (default: now).")] = None,
    balance: Annotated[str | None, typer.Option(help="none, or undersample to the rarest class (default: settings).")] = None,
    max_per_class: Annotated[int | None, typer.Option(min=1, help="Cap on rows of any one class.")] = None,
) -> None:
    """Write the training set of a retrain as a versioned snapshot: reference data plus labelled feedback."""
    from driftloop.curation_service import snapshot

    settings = setup(config)
    until = moment(end)
    try:
        with console.status("building the snapshot"):
            built = snapshot(settings, model, until - duration(since) if since else None, until, reference,
                             balance or settings.curation.snapshot_balance, max_per_class)
    except ValueError as error:
        raise fail(error) from None
    manifest = built.manifest
    console.print(f"snapshot {built.snapshot_id}: {manifest['rows']} rows, per class {manifest['rows_per_class']}, "
                  f"per source {manifest['rows_per_source']}\n-> {built.folder}")


@app.command("config")
def show_config(config: ConfigOption = None) -> None:
    """Print the effective settings (defaults, TOML file and DRIFTLOOP_* variables merged)."""
    settings = setup(config)
    console.print_json(settings.model_dump_json())


@app.command("demo")
def demo(
    config: ConfigOption = None,
    events: Annotated[int, typer.Option(min=1, help="Prediction events to send (each gets one feedback).")] = 2000,
) -> None:
    """The main job: bring the stack up, send events through Kafka, read them back, show where all runs."""
    from driftloop.demo import run_demo

    settings = setup(config)
    try:
        run_demo(settings, events, console)
    except (RuntimeError, TimeoutError, OSError) as error:
        raise fail(error) from None
    print_services(LocalStack(settings).status())


if __name__ == "__main__":
    app()
