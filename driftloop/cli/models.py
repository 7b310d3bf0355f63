"""`driftloop models list | show | history | promote | rollback | specs`: the model registry."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from driftloop.cli.common import CommandError, ConfigOption, JsonOption, ModelOption, console, print_json, setup

app = typer.Typer(help="The model registry: versions, the champion and challenger aliases, their history.",
                  no_args_is_help=True)
VersionArgument = Annotated[str, typer.Option("--version", "-v", help="A version number, an alias (champion, "
                                                                      "challenger, previous) or latest.")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the alias history).")]


def _registry(config):
    from driftloop.retrain_service import open_registry

    return open_registry(setup(config))


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@app.command("list")
def list_(config: ConfigOption = None, model: Annotated[str | None, typer.Option(
        "--model", "-m", help="Only this model.")] = None, as_json: JsonOption = False) -> None:
    """List the registered versions, newest last, with the aliases that point at them."""
    registry = _registry(config)
    rows = []
    for name in ([model] if model else registry.models()):
        aliases = registry.aliases(name)
        for version in registry.versions(name):
            rows.append({
                "model": name, "version": version.version, "aliases": [a for a, v in aliases.items() if v == version.version],
                "created_at": version.created_at.isoformat(), "spec": version.spec_name,
                "val_accuracy": version.metrics.get("val_accuracy"), "snapshot_id": version.snapshot_id,
                "origin": version.origin,
            })
    if model and not rows:
        raise CommandError(f"no versions of model {model!r} in the registry; models there: {registry.models() or 'none yet'}")
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} versions")
    for column in ("model", "version", "aliases", "created_at", "spec", "val_accuracy", "snapshot_id", "origin"):
        table.add_column(column)
    for row in rows:
        accuracy = "" if row["val_accuracy"] is None else f"{row['val_accuracy']:.3f}"
        table.add_row(row["model"], str(row["version"]), ", ".join(row["aliases"]), row["created_at"][:19],
                      row["spec"], accuracy, row["snapshot_id"] or "", row["origin"])
    console.print(table)


@app.command("show")
def show(model: ModelOption, version: VersionArgument = "champion", config: ConfigOption = None,
         as_json: JsonOption = False) -> None:
    """Show one version: spec, training run, per-epoch metrics, validation metrics, artifact."""
    registry = _registry(config)
    found = registry.get(model, version)
    document = {**found.describe(), "aliases": [a for a, v in registry.aliases(model).items() if v == found.version],
                "artifact_path": str(registry.artifacts.path(found.artifact_sha256))}
    if as_json:
        print_json(document)
        return
    training = found.training
    console.print(f"[bold]{model} version {found.version}[/bold] ({', '.join(document['aliases']) or 'no alias'}), "
                  f"spec {found.spec_name}, created {found.created_at:%Y-%m-%d %H:%M:%S} UTC by {found.origin}")
    console.print(f"snapshot {found.snapshot_id}; parent version {found.parent_version}; "
                  f"features {len(found.features)}; classes {list(found.classes)}")
    console.print(f"training: {training.workers} workers{' (GPU)' if training.use_gpu else ''}, {training.wall_s:.1f} s, "
                  f"best epoch {training.best_epoch}{', stopped early' if training.stopped_early else ''}; "
                  f"run {training.run_path}")
    table = Table()
    for column in ("epoch", "train_loss", "val_loss", "val_accuracy", "seconds"):
        table.add_column(column)
    for epoch in training.epochs:
        table.add_row(str(epoch.epoch), f"{epoch.train_loss:.4f}", f"{epoch.val_loss:.4f}", f"{epoch.val_accuracy:.4f}",
                      f"{epoch.seconds:.1f}")
    console.print(table)
    console.print(f"validation: {dict(found.metrics)}\nartifact sha256 {found.artifact_sha256}: {document['artifact_path']}")


@app.command("history")
def history(model: ModelOption, config: ConfigOption = None, alias: Annotated[str | None, typer.Option(
        help="Only this alias (champion, challenger, previous).")] = None, as_json: JsonOption = False) -> None:
    """The alias history of a model, oldest first: every move with from, to, when, why, evidence and who."""
    changes = [change.describe() for change in _registry(config).history(model, alias)]
    if as_json:
        print_json(changes)
        return
    table = Table(title=f"{len(changes)} alias moves of {model}")
    for column in ("id", "moved_at", "alias", "from", "to", "reason", "actor"):
        table.add_column(column)
    for change in changes:
        table.add_row(str(change["id"]), change["moved_at"][:19], change["alias"], _v(change["from_version"]),
                      _v(change["to_version"]), change["reason"], change["actor"])
    console.print(table)


@app.command("promote")
def promote(
    model: ModelOption,
    reason: ReasonOption,
    version: VersionArgument = "challenger",
    config: ConfigOption = None,
    expected: Annotated[int | None, typer.Option(help="The champion you expect now (compare-and-swap); "
                                                      "default: the one the registry shows as you run this.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a version the champion by hand (the old champion becomes previous), as one alias move."""
    registry = _registry(config)
    target = registry.get(model, version)
    current = registry.alias(model, "champion") if expected is None else expected
    moves = registry.set_champion(model, target.version, expected=current, reason=reason, actor=_actor())
    _report(moves, as_json)


@app.command("rollback")
def rollback(model: ModelOption, reason: ReasonOption, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Undo the champion's last move: it goes back to the version it named before."""
    _report([_registry(config).rollback(model, reason=reason, actor=_actor())], as_json)


@app.command("specs")
def specs(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The model specs there are: built in, and installed through the `driftloop.models` entry points."""
    from driftloop.retrain import available_specs

    setup(config)
    found = available_specs()
    if as_json:
        print_json(found)
        return
    for name, origin in found.items():
        console.print(f"{name}  {origin}")


def _report(moves, as_json: bool) -> None:
    if as_json:
        print_json([move.describe() for move in moves])
        return
    for move in moves:
        console.print(f"{move.model}: {move.alias} {_v(move.from_version)} -> {_v(move.to_version)} "
                      f"(history id {move.id})")


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)
