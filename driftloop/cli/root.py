"""The commands at the top: `driftloop config` and `driftloop demo`."""

from __future__ import annotations

from typing import Annotated

import typer

from driftloop.cli.common import ConfigOption, console, setup


def show_config(config: ConfigOption = None) -> None:
    """Print the effective settings (defaults, TOML file and DRIFTLOOP_* variables merged); secrets masked."""
    console.print_json(setup(config).model_dump_json())


def demo(
    config: ConfigOption = None,
    events: Annotated[int, typer.Option(min=1, help="Prediction events to send (each gets one feedback).")] = 2000,
) -> None:
    """The main job: bring the stack up, send events through Kafka, read them back, show where all runs."""
    from driftloop.cli.stack import print_services
    from driftloop.demo import run_demo
    from driftloop.stack import LocalStack

    settings = setup(config)
    run_demo(settings, events, console)
    print_services(LocalStack(settings).status())
