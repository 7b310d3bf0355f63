"""`driftloop retrain serve | run | episodes | triggers`: the retrain service, a retrain by hand, what happened."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Annotated

import typer
from rich.table import Table

from driftloop.cli.common import CommandError, ConfigOption, JsonOption, ModelOption, console, print_json, setup

app = typer.Typer(help="Retraining: the service that turns alerts into retrains, a retrain by hand, episodes.",
                  no_args_is_help=True)
ModelFilter = Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")]


@app.command("serve")
def serve(config: ConfigOption = None) -> None:
    """Run the retrain service: Alertmanager's webhook at alertmanager.webhook_url, the schedule and quality
    floor, and the episodes they start (resuming unfinished ones). Stops on Ctrl-C/SIGTERM."""
    from driftloop.retrain_service import run_retrain_service

    run_retrain_service(setup(config))


@app.command("run")
def run(
    model: ModelOption,
    config: ConfigOption = None,
    select: Annotated[bool, typer.Option(
        "--select/--no-select", help="Send a batch for labelling first and wait for labels, as an alert does.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Retrain a model now, in this process: snapshot, train on Ray, register the result as challenger."""
    from driftloop.retrain_service import run_manual

    settings = setup(config)
    busy = nullcontext() if as_json else console.status(f"retraining {model} (snapshot, Ray Train, registry)")
    with busy:
        episode = run_manual(settings, model, select)
    if as_json:
        print_json(episode.describe())
    elif episode.outcome == "registered":
        console.print(f"episode {episode.id}: registered {model} version {episode.state['version']} as challenger "
                      f"(validation accuracy {episode.state['metrics']['val_accuracy']:.3f}, snapshot "
                      f"{episode.state['snapshot_id']})")
    elif episode.step == "shadowing":
        console.print(f"episode {episode.id}: registered {model} version {episode.state['version']} as challenger; "
                      f"the promotion gate decides on labelled traffic (`driftloop retrain serve` carries the episode "
                      f"on; `driftloop gate trials --model {model}` shows the trial)")
    if episode.outcome == "failed":
        raise CommandError(f"episode {episode.id} failed at {episode.reason}")


@app.command("episodes")
def episodes(config: ConfigOption = None, model: ModelFilter = None, as_json: JsonOption = False) -> None:
    """List retrain episodes, newest first: step, outcome and reason."""
    from driftloop.retrain.episodes import EpisodeStore
    from driftloop.retrain_service import open_registry

    found = EpisodeStore(open_registry(setup(config)).database).episodes(model)
    if as_json:
        print_json([episode.describe() for episode in found])
        return
    table = Table(title=f"{len(found)} episodes")
    for column in ("id", "model", "source", "step", "outcome", "created_at", "version", "reason"):
        table.add_column(column)
    for episode in found:
        table.add_row(episode.id, episode.model, episode.source, str(episode.step), episode.outcome or "running",
                      episode.created_at.isoformat()[:19], str(episode.state.get("version", "")), episode.reason)
    console.print(table)


@app.command("triggers")
def triggers(config: ConfigOption = None, model: ModelFilter = None, as_json: JsonOption = False) -> None:
    """List triggers, newest first, with their decisions (started, skipped_cooldown, ...) and why."""
    from driftloop.retrain.episodes import EpisodeStore
    from driftloop.retrain_service import open_registry

    found = EpisodeStore(open_registry(setup(config)).database).triggers(model)
    if as_json:
        print_json([trigger.describe() for trigger in found])
        return
    table = Table(title=f"{len(found)} triggers")
    for column in ("id", "received_at", "model", "source", "decision", "episode", "reason"):
        table.add_column(column)
    for trigger in found:
        table.add_row(str(trigger.id), trigger.received_at.isoformat()[:19], trigger.model, trigger.source,
                      trigger.decision, trigger.episode_id or "", trigger.reason)
    console.print(table)
