"""`driftloop collector | api | store`: ingestion, the store writer, and a look at the store."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from driftloop.cli.common import CommandError, ConfigOption, JsonOption, console, print_json, setup

collector_app = typer.Typer(help="The consumer that writes Kafka's events into the Parquet store.", no_args_is_help=True)
api_app = typer.Typer(help="The ingestion HTTP API: predictions and feedback into Kafka.", no_args_is_help=True)
store_app = typer.Typer(help="A quick look at what is stored.", no_args_is_help=True)


@collector_app.command("run")
def collector_run(config: ConfigOption = None) -> None:
    """Consume `predictions` and `feedback`, write them exactly once into the store, until Ctrl-C/SIGTERM.

    Run more processes with the same group id to split the partitions between them.
    """
    from driftloop.services import run_store_writer

    run_store_writer(setup(config))


@api_app.command("run")
def api_run(
    config: ConfigOption = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", help="Serve beyond loopback without an API key (anyone who reaches it can write events).")] = False,
) -> None:
    """Serve POST /v1/predictions, POST /v1/feedback, /healthz, /readyz, /metrics; OpenAPI at /docs.

    Beyond 127.0.0.1 it needs an API key (DRIFTLOOP_API__API_KEY) unless --insecure.
    """
    from driftloop.services import run_api

    run_api(setup(config), insecure=insecure)


@store_app.command("query")
def store_query(
    sql: Annotated[str, typer.Argument(help="SQL over the views `predictions` and `feedback`.")] = (
        "SELECT model_name, count(*) AS events, min(timestamp) AS first, max(timestamp) AS last "
        "FROM predictions GROUP BY ALL ORDER BY 1"
    ),
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to print at most.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Run SQL over the store (DuckDB); without SQL, count predictions per model."""
    from driftloop.collector.store import Store

    store = Store(setup(config).store_dir)
    if not store.models() and not store.has_feedback():
        raise CommandError(f"the store {store.store_dir} is empty: nothing was collected yet "
                           "(`driftloop collector run` writes it)")
    result = store.sql(sql)
    rows = result.slice(0, limit).to_pylist()
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{result.num_rows} rows" + (f", first {limit}" if result.num_rows > limit else ""))
    for name in result.column_names:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(str(value) for value in row.values()))
    console.print(table)
