"""The `driftloop` command line: one group per part, `--help` on every command.

An expected fault (a service not reachable, a bad setting, a missing file, an unknown model)
ends in one line on stderr that says what is wrong and what to do, and an exit code by kind:
0 done, 1 runtime error, 2 usage error, 3 configuration error, 130 interrupted.
`driftloop --debug ...` shows the traceback as well.
"""

from __future__ import annotations

import sys
import traceback
from importlib import metadata
from typing import Annotated

import typer

from driftloop.cli import collect, curate, dashboards, drift, gate, models, retrain, root, serve, shadow, stack
from driftloop.cli.common import CommandError, loaded
from driftloop.settings import SettingsError

EXIT_RUNTIME, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPTED = 1, 2, 3, 130

app = typer.Typer(
    help="driftloop: monitor ML models in production, detect drift, curate labels, retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(stack.app, name="stack")
app.add_typer(collect.collector_app, name="collector")
app.add_typer(collect.api_app, name="api")
app.add_typer(collect.store_app, name="store")
app.add_typer(drift.app, name="drift")
app.add_typer(curate.app, name="curate")
app.add_typer(models.app, name="models")
app.add_typer(retrain.app, name="retrain")
app.command("serve")(serve.serve)
app.add_typer(shadow.app, name="shadow")
app.add_typer(gate.app, name="gate")
app.add_typer(dashboards.app, name="dashboards")
app.command("config")(root.show_config)
app.command("demo")(root.demo)

_debug = False


def _version(value: bool) -> None:
    if value:
        print(f"driftloop {metadata.version('driftloop')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
) -> None:
    global _debug
    _debug = debug


def main() -> None:
    """The console script: run the command, and turn what it raised into one line and an exit code."""
    try:
        code = app(prog_name="driftloop", standalone_mode=False)
    except typer.TyperException as error:  # bad options or arguments: the usage and what is wrong
        error.show()
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # noqa: BLE001 - every fault ends as one line, the traceback on --debug
        code, message = explain(error)
        if _debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(code)
    sys.exit(code or 0)


def explain(error: Exception) -> tuple[int, str]:
    """The exit code and the one line a fault deserves."""
    if isinstance(error, CommandError):
        return error.exit_code, _one_line(error)
    if isinstance(error, SettingsError):
        return EXIT_CONFIG, _one_line(error)
    if isinstance(error, ModuleNotFoundError):
        return EXIT_RUNTIME, (f"this command needs the Python package {error.name!r}, which is not installed: "
                              "pip install 'driftloop[all]' (or the extra of the part you use)")
    kafka = _kafka_unreachable(error)
    if kafka:
        return EXIT_RUNTIME, kafka
    if type(error).__module__ in ("duckdb", "_duckdb"):
        return EXIT_RUNTIME, f"the store's SQL engine (DuckDB) refused the query: {_one_line(error)}"
    if isinstance(error, (ValueError, LookupError, OSError, TimeoutError, RuntimeError)):
        return EXIT_RUNTIME, _one_line(error)
    return EXIT_RUNTIME, f"unexpected {type(error).__name__}: {_one_line(error)} (rerun with --debug for the traceback)"


def _kafka_unreachable(error: Exception) -> str | None:
    from kafka.errors import KafkaConnectionError, KafkaTimeoutError

    if not isinstance(error, (KafkaConnectionError, KafkaTimeoutError)):
        return None
    where = loaded[-1].kafka_bootstrap() if loaded else "the configured bootstrap servers"
    return (f"Kafka at {where} did not answer ({type(error).__name__}): start the local stack with "
            "`driftloop stack up`, or point kafka.bootstrap_servers at your cluster")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


__all__ = ["EXIT_CONFIG", "EXIT_INTERRUPTED", "EXIT_RUNTIME", "EXIT_USAGE", "app", "main"]
