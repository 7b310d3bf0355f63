"""`driftloop serve --model M`: the registry's champion behind an HTTP API, logged to Kafka, hot-swapped."""

from __future__ import annotations

from typing import Annotated

import typer

from driftloop.cli.common import ConfigOption, ModelOption, setup


def serve(
    model: ModelOption,
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: serve.host).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: serve.port).")] = None,
) -> None:
    """Serve the model's champion: POST /v1/predict, GET /v1/model, /healthz, /metrics; OpenAPI at /docs.

    Every prediction is logged to Kafka off the request path. When the registry's champion alias
    moves (the gate promoted, or `driftloop models rollback`), the new version is loaded beside
    the old one and takes over without a failed request. Stops on Ctrl-C/SIGTERM.
    """
    from driftloop.promotion_service import run_server

    settings = setup(config)
    overrides = {key: value for key, value in (("host", host), ("port", port)) if value is not None}
    if overrides:
        settings = settings.model_copy(update={"serve": settings.serve.model_copy(update=overrides)})
    run_server(settings, model)
