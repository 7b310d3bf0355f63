"""What every driftloop dashboard shares: uid and tags, time range, template variables, links."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, DashboardLink
from grafana_foundation_sdk.models import dashboard as model

from driftloop.dashboards.panels import datasource_variable, environment_variable

TAG = "driftloop"


def board(uid: str, title: str, description: str, *variables) -> Dashboard:
    """A dashboard with driftloop's defaults: the last 6 hours, refreshed every 30 s, linked to the others.

    Every board has the Prometheus and Environment variables; `variables` come after them.
    """
    built = (
        Dashboard(title).uid(f"driftloop-{uid}").description(description).tags([TAG])
        .time("now-6h", "now").refresh("30s").timezone("browser").editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(DashboardLink("driftloop").type(model.DashboardLinkType.DASHBOARDS).tags([TAG]).as_dropdown(True)
              .keep_time(True).include_vars(True))
        .with_variable(datasource_variable())
        .with_variable(environment_variable())
    )
    for variable in variables:
        built = built.with_variable(variable)
    return built
