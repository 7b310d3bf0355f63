"""`driftloop gate run | check | trials | decisions`: the promotion gate and the watch after a promotion."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from driftloop.cli.common import ConfigOption, JsonOption, ModelOption, console, print_json, setup

app = typer.Typer(help="The promotion gate: promote, reject or roll back on labelled traffic.", no_args_is_help=True)


@app.command("run")
def run(model: ModelOption, config: ConfigOption = None) -> None:
    """Decide the model's trials every gate.check_interval_s: promote or reject its challenger on labelled
    pairs, then watch the new champion and roll back if it is worse. Stops on Ctrl-C/SIGTERM."""
    from driftloop.promotion_service import run_gate

    run_gate(setup(config), model)


@app.command("check")
def check(model: ModelOption, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """One round of the gate now: open a trial for a new challenger, decide open trials, apply the decisions."""
    from driftloop.promotion_service import build_gate

    recorded = build_gate(setup(config), model).step()
    if as_json:
        print_json([record.describe() for record in recorded])
        return
    if not recorded:
        console.print(f"{model}: nothing new to decide (no open trial, or no new labelled pairs)")
    for record in recorded:
        console.print(f"trial {record.trial_id}: {record.outcome} on {record.pairs} pairs: {record.reason}")


@app.command("trials")
def trials(
    model: ModelOption,
    config: ConfigOption = None,
    limit: Annotated[int, typer.Option(min=1, help="The latest this many trials.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """The model's trials (promotion and watch), oldest first."""
    from driftloop.promotion_service import open_ledger

    found = open_ledger(setup(config)).trials(model, limit)
    if as_json:
        print_json([trial.describe() for trial in found])
        return
    table = Table(title=f"{model}: gate trials")
    for name in ("id", "kind", "candidate", "against", "started", "status", "reason"):
        table.add_column(name, overflow="fold")
    for trial in found:
        table.add_row(str(trial.id), trial.kind, str(trial.candidate_version), str(trial.baseline_version),
                      f"{trial.started_at:%Y-%m-%d %H:%M}", trial.status, trial.reason)
    console.print(table)


@app.command("decisions")
def decisions(
    model: ModelOption,
    config: ConfigOption = None,
    trial: Annotated[int | None, typer.Option(help="Only this trial's decisions.")] = None,
    final: Annotated[bool, typer.Option("--final", help="Only promote, reject, keep and rollback.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="The latest this many decisions.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The gate's decisions with their evidence (pairs, accuracies, statistic, threshold, guardrails)."""
    from driftloop.promotion_service import open_ledger

    found = open_ledger(setup(config)).decisions(model, trial, final, limit)
    if as_json:
        print_json([record.describe() for record in found])
        return
    table = Table(title=f"{model}: gate decisions")
    for name in ("id", "trial", "decided", "outcome", "pairs", "statistic", "threshold", "reason"):
        table.add_column(name, overflow="fold")
    for record in found:
        evidence = record.evidence
        table.add_row(str(record.id), str(record.trial_id), f"{record.decided_at:%Y-%m-%d %H:%M:%S}", record.outcome,
                      str(record.pairs), f"{evidence.get('statistic', 0):.3f}", f"{evidence.get('threshold', 0):.3f}",
                      record.reason)
    console.print(table)
