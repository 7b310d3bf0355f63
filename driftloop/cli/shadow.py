"""`driftloop shadow run | status`: the challenger scores the champion's logged traffic, for the gate."""

from __future__ import annotations

import typer

from driftloop.cli.common import ConfigOption, JsonOption, ModelOption, console, print_json, setup

app = typer.Typer(help="Shadow scoring: the challenger answers the champion's logged traffic, for the gate.",
                  no_args_is_help=True)


@app.command("run")
def run(model: ModelOption, config: ConfigOption = None) -> None:
    """Score the model's logged predictions with its challenger (and, during a watch, the previous champion)
    and write the answers to the `shadow` topic. Waits while there is no challenger. Stops on Ctrl-C/SIGTERM."""
    from driftloop.promotion_service import run_shadow

    run_shadow(setup(config), model)


@app.command("status")
def status(model: ModelOption, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """What the shadow scorer of a model is doing (waiting, scoring, refused) and why."""
    from driftloop.promotion_service import open_ledger

    settings = setup(config)
    found = open_ledger(settings).shadow_status(model)
    if as_json:
        print_json(None if found is None else found.describe())
        return
    if found is None:
        console.print(f"no shadow scorer has run for {model!r}: `driftloop shadow run --model {model}` starts one")
        return
    versions = ", ".join(f"version {v}" for v in found.versions) or "nothing"
    console.print(f"{model}: {found.state} (scoring {versions}) since {found.updated_at:%Y-%m-%d %H:%M:%S} UTC"
                  + (f"\n  {found.reason}" if found.reason else ""))
