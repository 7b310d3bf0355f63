"""Grafana dashboards as code: built by the SDK, committed as generated, valid PromQL on a real
Prometheus, and published through the real grafana-api client over real HTTP.

No Grafana runs here (none is installable from our registries): publishing goes to
tests/grafana_server.py, which holds to Grafana's documented dashboard API.
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import urllib.request

import pytest
import yaml
from events import run_cli
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel
from grafana_server import GrafanaServer
from metric_names import exported_names

from driftloop.dashboards import rule_files
from driftloop.dashboards.export import default_folder, queries, render_all, write
from driftloop.dashboards.publish import PublishError, connect, publish
from driftloop.stack import free_port


def test_the_committed_files_are_what_the_code_builds(tmp_path):
    written = write(tmp_path)
    committed = default_folder()
    for path in written:
        relative = path.relative_to(tmp_path)
        assert (committed / relative).read_text() == path.read_text(), \
            f"{relative} differs from a rebuild: run `driftloop dashboards build` and commit the result"
    on_disk = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
    assert on_disk == {p.relative_to(tmp_path) for p in written}, "no stale generated file is left behind"


def test_every_dashboard_round_trips_through_the_sdk_models():
    register_default_plugins()
    for name, document in render_all().items():
        model = DashboardModel.from_json(document)
        assert json.loads(JSONEncoder(sort_keys=True).encode(model)) == document, name


def test_every_panel_is_described_has_a_unit_and_reads_the_chosen_datasource():
    for name, document in render_all().items():
        assert document["uid"].startswith("driftloop-") and "driftloop" in document["tags"], name
        variables = {v["name"] for v in document["templating"]["list"]}
        assert {"datasource", "environment"} <= variables, name
        for panel in document["panels"]:
            if panel["type"] == "row":
                continue
            assert len(panel.get("description", "")) > 20, f"{name}: {panel['title']} has no description"
            if panel["type"] == "text":
                continue
            assert panel["datasource"]["uid"] == "${datasource}", f"{name}: {panel['title']}"
            if panel["type"] in ("timeseries", "stat", "status-history"):
                assert panel["fieldConfig"]["defaults"].get("unit"), f"{name}: {panel['title']} has no unit"


def test_every_query_follows_the_boards_variables():
    for name, document in render_all().items():
        per_model = "model" in {v["name"] for v in document["templating"]["list"]}
        assert per_model or name == "overview", f"{name} has a Model variable"
        for q in queries(document):
            for selector in re.findall(r"\bdriftloop_[a-z_]+(\{[^}]*\})?", q.expr) + re.findall(r"\bup(\{[^}]*\})", q.expr):
                assert '$environment' in selector, f"{q.dashboard} / {q.panel}: {q.expr}"
                if per_model and "service=" not in selector and "notifications" not in q.expr \
                        and "collector" not in q.expr:
                    assert '$model' in selector, f"{q.dashboard} / {q.panel}: {q.expr}"


def test_the_boards_the_issue_asks_for_are_there():
    titles = {name: {panel["title"] for panel in document["panels"]} for name, document in render_all().items()}
    assert set(titles) == {"overview", "drift", "quality", "retraining"}
    assert {"Model server latency", "Ingestion API latency", "Services up", "Dead letters by reason"} <= titles["overview"]
    assert {"Drift statistic by feature", "Drift flag by feature", "Drifted features", "Dataset drift",
            "Multivariate AUC", "Sequential-detector alarms", "Drifted features now, with their reports"} <= titles["drift"]
    assert {"Accuracy on labelled feedback", "Champion and challenger accuracy", "Gate evidence",
            "Gate decisions in the time range"} <= titles["quality"]
    assert {"Labelling batches", "Labels received", "Label delay", "Episode outcomes in the time range",
            "Training time"} <= titles["retraining"]
    marked = {a["name"] for a in render_all()["quality"]["annotations"]["list"] if a.get("expr")}
    assert {"Promotions", "Rollbacks"} <= marked, "promotions and rollbacks come from a Prometheus query"


def test_every_panel_names_metrics_our_components_export():
    named = {name: q for document in render_all().values() for q in queries(document)
             for name in re.findall(r"\bdriftloop_[a-z_]+|\bup\b", q.expr)}
    unknown = {name: f"{q.dashboard} / {q.panel}" for name, q in named.items() if name not in exported_names()}
    assert not unknown, f"panels name metrics nothing exports: {unknown}"


def as_promql(expr: str) -> str:
    """A panel's expression as Prometheus runs it once Grafana filled in its variables."""
    return (expr.replace("$__rate_interval", "1m").replace("$__range", "1h").replace("$model", ".*")
            .replace("$environment", ".*"))


def test_every_query_parses_on_the_real_prometheus(prometheus):
    refused = {}
    for document in render_all().values():
        for q in queries(document):
            url = f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": as_promql(q.expr)})
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    assert json.load(response)["status"] == "success"
            except urllib.error.HTTPError as error:
                refused[f"{q.dashboard} / {q.panel}"] = json.load(error).get("error")
    assert not refused, f"Prometheus refused these panel queries: {refused}"


def test_the_provisioning_files_name_the_datasource_the_panels_default_to(tmp_path):
    write(tmp_path, prometheus_url="http://prometheus.internal:9090", dashboards_path="/srv/driftloop")
    datasource = yaml.safe_load((tmp_path / "provisioning/datasources/driftloop.yml").read_text())["datasources"][0]
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/driftloop.yml").read_text())["providers"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus.internal:9090"
    assert provider["options"]["path"] == "/srv/driftloop" and provider["type"] == "file"
    for document in render_all().values():
        chosen = next(v for v in document["templating"]["list"] if v["name"] == "datasource")
        assert chosen["current"]["value"] == datasource["uid"]


@pytest.fixture
def grafana():
    server = GrafanaServer().start()
    yield server
    server.stop()


def test_publish_creates_then_overwrites_into_one_folder(grafana):
    client = connect(grafana.url, token=grafana.state.editor_token)
    dashboards = list(render_all().values())
    first = publish(client, dashboards, folder_uid="ml-monitoring")
    assert [p.version for p in first] == [1] * len(dashboards)
    assert set(grafana.state.dashboards) == {d["uid"] for d in dashboards}
    assert {stored["folderUid"] for stored in grafana.state.dashboards.values()} == {"ml-monitoring"}
    stored = grafana.state.dashboards[dashboards[0]["uid"]]["dashboard"]
    assert stored["panels"] == dashboards[0]["panels"], "Grafana holds what the code built"
    again = publish(client, dashboards, folder_uid="ml-monitoring")
    assert [p.version for p in again] == [2] * len(dashboards), "the code's version replaced Grafana's"


def test_publish_without_overwrite_refuses_a_dashboard_changed_in_grafana(grafana):
    client = connect(grafana.url, token=grafana.state.editor_token)
    dashboards = list(render_all().values())
    publish(client, dashboards)
    with pytest.raises(PublishError, match="version-mismatch.*--overwrite"):
        publish(client, dashboards, overwrite=False)
    grafana.state.dashboards.clear()
    grafana.state.dashboards["someone-elses"] = {"dashboard": {**dashboards[0], "uid": "someone-elses", "version": 3},
                                                 "folderUid": "driftloop"}
    with pytest.raises(PublishError, match="name-exists"):
        publish(client, dashboards, overwrite=False)


def test_publish_says_what_is_wrong_with_credentials_and_reachability(grafana):
    dashboards = list(render_all().values())
    with pytest.raises(PublishError, match="401"):
        publish(connect(grafana.url, token="wrong"), dashboards)
    with pytest.raises(PublishError, match="403.*Editor"):
        publish(connect(grafana.url, token=grafana.state.viewer_token), dashboards)
    assert publish(connect(grafana.url, basic_auth=grafana.state.basic_user), dashboards), "basic auth works too"
    with pytest.raises(PublishError, match="not reachable"):
        publish(connect(f"http://127.0.0.1:{free_port()}", token="t", timeout_s=2), dashboards)


def test_the_publish_command_end_to_end(grafana, tmp_path):
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(tmp_path / "data")}
    done = run_cli("dashboards", "publish", "--url", grafana.url, "--token", grafana.state.editor_token, env=env)
    assert done.returncode == 0, done.stderr
    assert set(grafana.state.dashboards) == {d["uid"] for d in render_all().values()}
    refused = run_cli("dashboards", "publish", "--url", grafana.url, "--token", "wrong", env=env)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "401" in refused.stderr


def test_the_docs_list_every_panel_and_every_alert():
    docs = (default_folder().parents[1] / "docs" / "dashboards.md").read_text()
    missing = [f"{d['title']} / {p['title']}" for d in render_all().values() for p in d["panels"]
               if f"| {p['title']} |" not in docs and f"| **{p['title']}** |" not in docs]
    alerts = [r["alert"] for path in rule_files() for g in yaml.safe_load(path.read_text())["groups"]
              for r in g["rules"] if f"`{r['alert']}`" not in docs]
    assert not missing and not alerts, f"docs/dashboards.md lacks panels {missing} and alerts {alerts}"
