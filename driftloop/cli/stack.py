"""`driftloop stack up | down | status`: the local stack."""

from __future__ import annotations

import dataclasses

import typer
from rich.table import Table

from driftloop.cli.common import CommandError, ConfigOption, JsonOption, console, print_json, setup
from driftloop.stack import LocalStack, ServiceStatus

app = typer.Typer(help="The local stack: Kafka, Prometheus, Alertmanager and Label Studio on 127.0.0.1.", no_args_is_help=True)


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


@app.command("up")
def up(config: ConfigOption = None) -> None:
    """Start whatever of the stack is not running, wait until it answers, create the topics."""
    settings = setup(config)
    print_services(LocalStack(settings).up())
    console.print(f"state and logs: {settings.stack.state_dir}")


@app.command("down")
def down(config: ConfigOption = None) -> None:
    """Stop the services `stack up` started (by recorded pid); leave anything else alone."""
    stopped = LocalStack(setup(config)).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


@app.command("status")
def status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Say what runs where, and whether it answers. Exits 1 if any service does not answer."""
    rows = LocalStack(setup(config)).status()
    if as_json:
        print_json([dataclasses.asdict(row) for row in rows])
    else:
        print_services(rows)
    silent = [row.name for row in rows if not row.answers]
    if silent:
        raise CommandError(f"not answering: {', '.join(silent)}; `driftloop stack up` starts what is down")
