"""Small builders over grafana-foundation-sdk, so that every panel of ours is made the same way.

Every panel names its data source through the `datasource` template variable (a user picks
their own Prometheus), carries a description (Grafana shows it as the panel's help), and sets
its unit. Queries use `$__rate_interval` for rates, as Grafana recommends.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import DatasourceVariable, QueryVariable, ThresholdsConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.table import Panel as Table
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import DataSourceRef
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
REF_IDS = "ABCDEFGH"


def query(expr: str, legend: str = "") -> Dataquery:
    """A PromQL query of a panel; `legend` is Grafana's legend format ("{{model}}")."""
    built = Dataquery().expr(expr).datasource(DATASOURCE)
    return built.legend_format(legend) if legend else built


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    """Absolute thresholds, e.g. ((None, "green"), (0.5, "red")): the first step is the base colour."""
    return ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=value, color=color) for value, color in steps])


def _with_queries(panel, queries: tuple[Dataquery, ...]):
    for ref_id, built in zip(REF_IDS, queries, strict=False):
        panel = panel.with_target(built.ref_id(ref_id))
    return panel


def timeseries(title: str, description: str, *queries: Dataquery, unit: str = "short", span: int = 12,
               limits: tuple[float | None, float | None] = (None, None),
               steps: ThresholdsConfig | None = None) -> Timeseries:
    """A time series panel of one or more queries."""
    panel = Timeseries().title(title).description(description).datasource(DATASOURCE).unit(unit).span(span).height(8)
    low, high = limits
    if low is not None:
        panel = panel.min(low)
    if high is not None:
        panel = panel.max(high)
    if steps is not None:
        panel = panel.thresholds(steps)
    return _with_queries(panel, queries)


def stat(title: str, description: str, built: Dataquery, unit: str = "short", span: int = 6,
         steps: ThresholdsConfig | None = None, mappings: list | None = None) -> Stat:
    """A single-number panel of an instant query."""
    panel = Stat().title(title).description(description).datasource(DATASOURCE).unit(unit).span(span).height(5)
    if steps is not None:
        panel = panel.thresholds(steps)
    if mappings:
        panel = panel.mappings(mappings)
    return _with_queries(panel, (built.instant(),))


def table(title: str, description: str, built: Dataquery, span: int = 24) -> Table:
    """A table of an instant query, one row per series."""
    panel = Table().title(title).description(description).datasource(DATASOURCE).span(span).height(8)
    return _with_queries(panel, (built.instant().format(PromQueryFormat.TABLE),))


def up_down() -> list:
    """Value mappings that show 0 as 'down' (red) and 1 as 'up' (green)."""
    return [model.ValueMap(options={
        "0": model.ValueMappingResult(text="down", color="red", index=0),
        "1": model.ValueMappingResult(text="up", color="green", index=1),
    })]


def datasource_variable() -> DatasourceVariable:
    """Which Prometheus the panels read: by default the one the provisioning file adds."""
    chosen = model.VariableOption(text="driftloop Prometheus", value="driftloop-prometheus", selected=True)
    return DatasourceVariable("datasource").label("Prometheus").type("prometheus").current(chosen)


def label_variable(name: str, label: str, metric: str) -> QueryVariable:
    """A multi-value template variable over one label's values in one metric, with 'All'."""
    return (QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(f"label_values({metric}, {name})").multi(True).include_all(True).all_value(".*")
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED))
