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
    fast: Annotated[bool, typer.Option("--fast", help="Short windows, waits and alert durations: done in < 5 min.")] = False,
    strategy: Annotated[str | None, typer.Option(help="Selection strategy for the labelling batch (demo.strategy).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the world, the users and selection (demo.seed).")] = None,
    keep_stack: Annotated[bool, typer.Option("--keep-stack", help="Leave Kafka, Prometheus and Alertmanager up "
                                             "at the end, to look at them (stop: driftloop -c RUN/driftloop.toml "
                                             "stack down).")] = False,
) -> None:
    """The main job, live: the stack and every service as its own process, a champion serving traffic, a drift,
    the alert, curation, a retrain on Ray, the shadow test and the gate's decision, untouched by hand.

    Each run keeps its folder under demo.dir (settings, logs, store, registry, summary, plot); Ctrl-C stops
    every process it started. Settings: the [demo] section (rate, drift kind and onset, label budget and delay,
    strategy, ...).
    """
    from driftloop.cli.common import CommandError
    from driftloop.demo import DemoRunning, run_demo
    from driftloop.settings import StrategyName

    settings = setup(config)
    changes = {key: value for key, value in (("strategy", strategy), ("seed", seed)) if value is not None}
    if strategy is not None and strategy not in StrategyName.__args__:
        raise CommandError(f"unknown strategy {strategy!r}; choose one of {', '.join(StrategyName.__args__)}", 2)
    if changes:
        settings = settings.model_copy(update={"demo": settings.demo.model_copy(update=changes)})
    try:
        run_demo(settings, fast, console, keep_stack=keep_stack)
    except DemoRunning as error:
        raise CommandError(str(error)) from None
