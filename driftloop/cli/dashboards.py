"""`driftloop dashboards build | publish`: Grafana dashboards as code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from driftloop.cli.common import CommandError, ConfigOption, console, setup

app = typer.Typer(help="Grafana dashboards as code: build the JSON and provisioning files, publish them.",
                  no_args_is_help=True)


@app.command("build")
def build(
    config: ConfigOption = None,
    out: Annotated[Path | None, typer.Option(
        help="Folder to write (default: the package's own grafana/ folder, the committed copy).")] = None,
    prometheus_url: Annotated[str | None, typer.Option(
        help="The Prometheus URL the provisioned data source points at (default: the local stack's).")] = None,
    dashboards_path: Annotated[str, typer.Option(
        help="Where the dashboards' JSON lies on the Grafana host, for the provisioning file.")]
        = "/var/lib/grafana/dashboards/driftloop",
) -> None:
    """Render every dashboard to Grafana JSON and write the data-source and dashboard provisioning files."""
    from driftloop.dashboards.export import LOCAL_PROMETHEUS, default_folder, write

    setup(config)
    written = write(out or default_folder(), prometheus_url or LOCAL_PROMETHEUS, dashboards_path)
    console.print("\n".join(f"wrote {path}" for path in written))


@app.command("publish")
def publish(
    config: ConfigOption = None,
    url: Annotated[str | None, typer.Option(help="Grafana's URL, e.g. http://grafana:3000 (default: grafana.url).")] = None,
    token: Annotated[str | None, typer.Option(
        help="A service-account token (default: grafana.token, DRIFTLOOP_GRAFANA__TOKEN).")] = None,
    user: Annotated[str | None, typer.Option(help="Basic auth instead of a token: the user.")] = None,
    password: Annotated[str | None, typer.Option(help="Basic auth: the password.")] = None,
    folder: Annotated[str | None, typer.Option(help="Folder uid to publish into (default: grafana.folder).")] = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite/--no-overwrite", help="Replace Grafana's copies whatever their version (the code is the "
        "truth), or create only and refuse to touch a dashboard that exists.")] = True,
) -> None:
    """Create or overwrite the driftloop dashboards in a Grafana folder through Grafana's HTTP API."""
    from driftloop.dashboards.export import render_all
    from driftloop.dashboards.publish import connect
    from driftloop.dashboards.publish import publish as send

    settings = setup(config).grafana
    url = url or settings.url
    if not url:
        raise CommandError("no Grafana URL: pass --url or set grafana.url (DRIFTLOOP_GRAFANA__URL)", exit_code=2)
    if user is not None or password is not None:
        if user is None or password is None:
            raise CommandError("basic auth needs both --user and --password", exit_code=2)
        grafana = connect(url, basic_auth=(user, password))
    else:
        token = token or (settings.token.get_secret_value() if settings.token else None)
        if not token:
            raise CommandError("no credentials: pass --token (or --user and --password), or set grafana.token",
                               exit_code=2)
        grafana = connect(url, token=token)
    folder_uid = folder or settings.folder
    for done in send(grafana, list(render_all().values()), folder_uid, folder_uid, overwrite):
        console.print(f"published {done.title} (version {done.version}): {url.rstrip('/')}{done.url}")
