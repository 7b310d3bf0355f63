"""What every command shares: settings and logs, option types, time parsing, JSON output, errors."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler

from driftloop.settings import Settings, load_settings

# Tables go to stdout; a pipe gets a fixed width rather than 80 columns. Errors never go through Rich.
console = Console(width=140) if not Console().is_terminal else Console()

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (also DRIFTLOOP_CONFIG).", show_default=False),
]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Model name, as in the prediction events.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for programs instead of a table.")]


class CommandError(Exception):
    """An expected fault: one line for the person at the terminal, and the exit code it deserves."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def setup(config: Path | None) -> Settings:
    """Load the settings (SettingsError is the caller's exit code 3) and configure readable logs on stderr."""
    settings = load_settings(config)
    logging.basicConfig(
        level=settings.log_level,
        format="%(message)s",
        datefmt="%H:%M:%S",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        force=True,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    loaded.append(settings)
    return settings


# The settings of this invocation, once read: an error message can then name the address it tried.
loaded: list[Settings] = []


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


def print_json(document: Any) -> None:
    """JSON on stdout: times as ISO 8601, paths as strings."""
    sys.stdout.write(json.dumps(document, indent=2, default=_plain) + "\n")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def require_model(settings: Settings, model: str) -> None:
    """A CommandError naming the models the store knows, unless `model` is one of them."""
    from driftloop.collector.store import Store

    known = Store(settings.store_dir).models()
    if model not in known:
        raise CommandError(f"no predictions of model {model!r} in the store {settings.store_dir}; "
                           f"models there: {known or 'none yet'}")
