"""`driftloop drift profile | run | report | reports`: reference profiles, the monitor, Evidently reports."""

from __future__ import annotations

from typing import Annotated

import typer

from driftloop.cli.common import (
    ConfigOption,
    JsonOption,
    ModelOption,
    console,
    duration,
    moment,
    print_json,
    require_model,
    setup,
)
from driftloop.layout import ESTIMATOR_FILE

app = typer.Typer(help="Reference profiles, the drift monitor, Evidently reports.", no_args_is_help=True)


@app.command("profile")
def profile(
    model: ModelOption,
    config: ConfigOption = None,
    window: Annotated[str, typer.Option(help="How far back from --end the reference reaches (90s, 30m, 2h, 7d).")] = "1d",
    end: Annotated[str | None, typer.Option(help="End of the reference window, ISO 8601 (default: now).")] = None,
) -> None:
    """Build the reference profile of a model from a window of the store (e.g. the training period)."""
    from driftloop.drift_service import build_profile

    settings = setup(config)
    require_model(settings, model)
    until = moment(end)
    with console.status("profiling the reference window"):
        folder, built = build_profile(settings, model, until - duration(window), until)
    console.print(f"profiled {built.rows} rows, {len(built.features)} columns -> {folder}")
    if (folder / ESTIMATOR_FILE).is_file():
        console.print(f"performance estimator fitted on its labelled rows -> {folder / ESTIMATOR_FILE}")
    else:
        console.print("no performance estimator: the reference needs labelled rows with probabilities (see the log)")


@app.command("run")
def run(model: ModelOption, config: ConfigOption = None) -> None:
    """Monitor a model: every interval, the latest window against its profile; gauges on /metrics,
    state changes to the `drift-events` topic. Stops on Ctrl-C/SIGTERM."""
    from driftloop.drift_service import run_monitor

    run_monitor(setup(config), model)


@app.command("report")
def report(
    model: ModelOption,
    config: ConfigOption = None,
    window: Annotated[str, typer.Option(help="The window before --end to report on (90s, 30m, 2h, 7d).")] = "1h",
    end: Annotated[str | None, typer.Option(help="End of the window, ISO 8601 (default: now).")] = None,
) -> None:
    """Make an Evidently report (HTML for people, JSON snapshot) of a window against the reference."""
    from driftloop.drift_service import make_report

    settings = setup(config)
    require_model(settings, model)
    with console.status("running Evidently"):
        files = make_report(settings, model, duration(window), moment(end))
    console.print(f"report: {files.html}\nsnapshot: {files.json}")


@app.command("reports")
def reports(model: ModelOption, config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the Evidently reports saved for a model."""
    from driftloop.drift.report import list_reports
    from driftloop.drift_service import reports_dir

    settings = setup(config)
    require_model(settings, model)
    found = list_reports(reports_dir(settings, model))
    if as_json:
        print_json([{"name": files.name, "html": files.html, "json": files.json} for files in found])
        return
    if not found:
        console.print(f"no reports of {model!r} yet: `driftloop drift report --model {model}` makes one")
    for files in found:
        console.print(f"{files.name}  {files.html}")
