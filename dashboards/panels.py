"""Small builders over grafana-foundation-sdk, so that every panel of ours is made the same way.

Every panel names its data source through the `datasource` template variable (a user picks
their own Prometheus), carries a description (Grafana shows it as the panel's help), and sets
its unit. Queries use `$__rate_interval` for rates, as Grafana recommends.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import (
    AnnotationQuery,
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    TextBoxVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.statushistory import Panel as StatusHistory
from grafana_foundation_sdk.builders.table import Panel as Table
from grafana_foundation_sdk.builders.text import Panel as Text
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import DataSourceRef, VisibilityMode
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.text import TextMode

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
REF_IDS = "ABCDEFGH"
# The label matchers of the template variables, for the selectors of every query.
ENVIRONMENT = 'environment=~"$environment"'
MODEL = 'model=~"$model"'
BY_MODEL = "{" + f"{ENVIRONMENT}, {MODEL}" + "}"
RATE = "[$__rate_interval]"  # the range of every rate() and increase(): Grafana's, at least 4 scrapes


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


def status_history(title: str, description: str, built: Dataquery, span: int = 24,
                   mappings: list | None = None, steps: ThresholdsConfig | None = None) -> StatusHistory:
    """One row per series, coloured by its value over time (a flag per feature, a state per scorer)."""
    panel = (StatusHistory().title(title).description(description).datasource(DATASOURCE).unit("short").span(span)
             .height(8).show_value(VisibilityMode.NEVER))
    if steps is not None:
        panel = panel.thresholds(steps)
    if mappings:
        panel = panel.mappings(mappings)
    return _with_queries(panel, (built,))


def stat(title: str, description: str, built: Dataquery, unit: str = "short", span: int = 6,
         steps: ThresholdsConfig | None = None, mappings: list | None = None) -> Stat:
    """A single-number panel of an instant query."""
    panel = Stat().title(title).description(description).datasource(DATASOURCE).unit(unit).span(span).height(5)
    if steps is not None:
        panel = panel.thresholds(steps)
    if mappings:
        panel = panel.mappings(mappings)
    return _with_queries(panel, (built.instant(),))


def table(title: str, description: str, built: Dataquery, span: int = 24, links: list | None = None) -> Table:
    """A table of an instant query, one row per series."""
    panel = Table().title(title).description(description).datasource(DATASOURCE).span(span).height(8)
    if links:
        panel = panel.data_links(links)
    return _with_queries(panel, (built.instant().format(PromQueryFormat.TABLE),))


def text(title: str, description: str, markdown: str, span: int = 24, height: int = 4) -> Text:
    """A markdown note: what a board cannot show itself, and where to look instead."""
    return (Text().title(title).description(description).mode(TextMode.MARKDOWN).content(markdown)
            .span(span).height(height))


def link(title: str, url: str) -> DashboardLink:
    """A data link (a click on a value opens `url`; `${__field.labels.model}` names the series' model)."""
    return DashboardLink(title).type(model.DashboardLinkType.LINK).url(url).target_blank(True)


def annotation(name: str, expr: str, title: str, text: str, color: str, tags: str = "model") -> AnnotationQuery:
    """Marks on every panel's time axis where a Prometheus query has a sample (no Grafana API call needed).

    `title` and `text` are Grafana's formats (`{{model}}`); `tags` the labels shown as tags.
    """
    return (AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(color).expr(expr)
            .step("60s").title_format(title).text_format(text).tag_keys(tags))


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


def environment_variable() -> QueryVariable:
    """The `environment` label Prometheus puts on every target (the local stack's: prometheus.environment)."""
    return label_variable("environment", "Environment", 'up{job="driftloop"}')


def model_variable(metric: str) -> QueryVariable:
    """The models that `metric` has series of, in the chosen environments."""
    return label_variable("model", "Model", f"{metric}{{{ENVIRONMENT}}}")


def textbox_variable(name: str, label: str, default: str, description: str) -> TextBoxVariable:
    """A free-text variable a user sets once (a URL), kept in the dashboard's URL."""
    chosen = model.VariableOption(text=default, value=default, selected=True)
    return TextBoxVariable(name).label(label).description(description).default_value(default).current(chosen)
