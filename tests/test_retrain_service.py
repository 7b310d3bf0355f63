"""The retrain service as it runs: real Prometheus rules and Alertmanager POST to it; it survives SIGKILL.

Each test starts `driftloop retrain serve` as a user would, in a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml
from events import wait_until
from models import labelled_rows, write_reference
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from test_retrain_episodes import notification

from driftloop.dashboards import alertmanager_config, rule_files
from driftloop.retrain.episodes import EpisodeStore
from driftloop.retrain_service import open_registry
from driftloop.settings import load_settings
from driftloop.stack import free_port
from driftloop.stack.process import ServiceProcess


def post(url: str, body) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def retrain_service(tmp_path, port: int, extra_env: dict, log_name: str = "retrain"):
    """`driftloop retrain serve` in its own process; yields (process, base URL); SIGTERM (then SIGKILL) at the end."""
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(tmp_path / "data"), "DRIFTLOOP_STACK__STATE_DIR": str(tmp_path / "stack"),
           "DRIFTLOOP_ALERTMANAGER__WEBHOOK_URL": f"http://127.0.0.1:{port}/v1/alerts",
           "DRIFTLOOP_RETRAIN__POLL_S": "0.5", "DRIFTLOOP_LOG_LEVEL": "INFO",
           "DRIFTLOOP_RETRAIN__SELECTION_WAIT_S": "0",  # no traffic comes after these tests' alerts: select at once
           **extra_env}
    log = open(tmp_path / f"{log_name}.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "driftloop.cli", "retrain", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: ready(f"{base}/readyz") or process.poll() is not None, 120), "service not ready"
        assert process.poll() is None, (tmp_path / f"{log_name}.log").read_text()[-3000:]
        yield process, base
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


def episodes_of(data_dir, model: str | None = None):
    settings = load_settings(data_dir=data_dir)
    return EpisodeStore(open_registry(settings).database).episodes(model)


def triggers_of(data_dir, model: str):
    settings = load_settings(data_dir=data_dir)
    return EpisodeStore(open_registry(settings).database).triggers(model)


def prometheus_query(url: str, promql: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}), timeout=5) as r:
        return json.load(r)["data"]["result"]


@contextlib.contextmanager
def alerting_pair(tmp_path, webhook_url: str, scrape: list[str], repeat_interval_s: float | None = 5):
    """A Prometheus with the shipped dataset-drift alert rule (its `for` shortened to 2 s) and an Alertmanager
    with the shipped routing to `webhook_url` (and its alert log), waiting 1 s to group; a firing group is
    repeated every `repeat_interval_s` (None: the shipped interval, days). Yields (Prometheus URL, Alertmanager URL)."""
    rules = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if rule.get("labels", {}).get("action") == "retrain" and "driftloop_drift_dataset_drift" in rule["expr"]:
                    rules.append({**rule, "for": "2s"})
    assert rules, "the shipped rules have a dataset-drift alert that asks for a retrain"
    home = tmp_path / "alerting"
    home.mkdir()
    (home / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "retrain-test", "interval": "1s", "rules": rules}]}))
    am_port, prom_port = free_port(), free_port()
    am_config = alertmanager_config(webhook_url, group_wait_s=1, group_interval_s=1, **(
        {} if repeat_interval_s is None else {"repeat_interval_s": repeat_interval_s}))
    (home / "alertmanager.yml").write_text(yaml.safe_dump(am_config))
    (home / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(home / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        "scrape_configs": [{"job_name": "retrain-test", "static_configs": [{"targets": scrape}]}],
    }))
    alertmanager, prometheus = ServiceProcess("alertmanager", home), ServiceProcess("prometheus", home)
    try:
        alertmanager.start(["prometheus-alertmanager", f"--config.file={home / 'alertmanager.yml'}",
                            f"--storage.path={home / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
                            "--cluster.listen-address="], marker=str(home / "alertmanager.yml"))
        prometheus.start(["prometheus", f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'prom'}",
                          f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"],
                         marker=str(home / "prometheus.yml"))
        url = f"http://127.0.0.1:{prom_port}"
        assert wait_until(lambda: ready(f"{url}/-/ready") and ready(f"http://127.0.0.1:{am_port}/-/ready"), 60)
        yield url, f"http://127.0.0.1:{am_port}"
    finally:
        prometheus.stop()
        alertmanager.stop()


def test_alertmanager_driven_by_real_rules_starts_one_episode_per_model(tmp_path):
    gauges = CollectorRegistry()
    drift = Gauge("driftloop_drift_dataset_drift", "1 when the window drifted.", ["model"], registry=gauges)
    for model in ("model-a", "model-b"):
        drift.labels(model).set(0)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=gauges)
    port = free_port()
    waiting = {"DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "1000000", "DRIFTLOOP_RETRAIN__LABEL_DEADLINE_S": "3600"}
    data = tmp_path / "data"
    try:
        with retrain_service(tmp_path, port, waiting), \
                alerting_pair(tmp_path, f"http://127.0.0.1:{port}/v1/alerts",
                              [f"127.0.0.1:{server.server_port}", f"127.0.0.1:{port}"]) as (prometheus, _):
            drift.labels("model-a").set(1)
            assert wait_until(lambda: episodes_of(data, "model-a"), 90), "the drift alert started an episode"
            # The alert keeps firing; Alertmanager repeats the group every 5 s.
            assert wait_until(lambda: len(triggers_of(data, "model-a")) >= 4, 90), triggers_of(data, "model-a")
            drift.labels("model-b").set(1)
            assert wait_until(lambda: episodes_of(data, "model-b"), 90), "the second model's alert starts its own"
            drift.labels("model-a").set(0)
            assert wait_until(lambda: any(t.decision == "skipped_resolved" for t in triggers_of(data, "model-a")), 90)
            (episode_a,) = episodes_of(data, "model-a")
            (episode_b,) = episodes_of(data, "model-b")
            assert episode_a.source == "alertmanager" and episode_a.step == "labelling", "waiting for its labels"
            decisions = [t.decision for t in reversed(triggers_of(data, "model-a"))]
            assert decisions[0] == "started" and decisions.count("started") == 1, decisions
            assert set(decisions[1:]) <= {"skipped_cooldown", "skipped_resolved"}, decisions
            a_triggers = triggers_of(data, "model-a")
            assert all(t.episode_id == episode_a.id for t in a_triggers if t.decision != "skipped_resolved")
            assert all(t.group_key and t.fingerprints for t in a_triggers if t.decision != "skipped_resolved")

            def scraped(promql):
                result = prometheus_query(prometheus, promql)
                return float(result[0]["value"][1]) if result else None

            assert wait_until(lambda: scraped('driftloop_retrain_triggers_total{model="model-a",source="alertmanager",'
                                              'decision="skipped_resolved"}'), 30)
            assert scraped('driftloop_retrain_triggers_total{model="model-a",decision="started"}') == 1
            assert scraped('driftloop_retrain_triggers_total{model="model-b",decision="started"}') == 1
            assert scraped('driftloop_retrain_triggers_total{model="model-a",decision="skipped_cooldown"}') >= 2
            assert scraped("sum(driftloop_retrain_running)") == 2
            assert episode_b.id != episode_a.id
            logged = [json.loads(line) for line in (data / "alerts" / "log.jsonl").read_text().splitlines()]
            seen = {(entry["labels"]["model"], entry["status"]) for entry in logged}
            assert {("model-a", "firing"), ("model-a", "resolved"), ("model-b", "firing")} <= seen, \
                "the log receiver hears of every alert, resolutions too"
            assert scraped('sum(driftloop_retrain_alerts_logged_total{alertname="DriftloopDatasetDrift"})') >= 3
    finally:
        server.shutdown()
        thread.join()


def test_the_webhook_refuses_a_bad_notification_and_records_nothing(tmp_path):
    port = free_port()
    with retrain_service(tmp_path, port, {"DRIFTLOOP_RETRAIN__LABEL_DEADLINE_S": "3600",
                                          "DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "1000000"}) as (_, base):
        status, body = post(f"{base}/v1/alerts", {**notification(), "alerts": [{"status": "firing"}]})
        assert status == 422
        assert {"alerts.0.labels", "alerts.0.startsAt", "alerts.0.fingerprint"} <= {e["field"] for e in body["errors"]}
        status, body = post(f"{base}/v1/alerts", {**notification(), "version": "3"})
        assert status == 422 and body["errors"][0]["field"] == "version"
        settings = load_settings(data_dir=tmp_path / "data")
        database = open_registry(settings).database
        assert database.connection().execute("SELECT count(*) FROM notifications").fetchone()[0] == 0
        status, body = post(f"{base}/v1/alerts", notification(model="churn"))
        assert status == 200
        recorded = database.connection().execute("SELECT id, group_key FROM notifications").fetchall()
        assert [tuple(row) for row in recorded] == [(body["recorded"], notification()["groupKey"])], \
            "recorded before the answer"


@pytest.mark.usefixtures("ray_local")
def test_a_service_killed_mid_episode_resumes_it_and_never_runs_it_twice(tmp_path, ray_local):
    reference = write_reference(tmp_path / "ref.parquet", labelled_rows(6000, seed=0))
    env = {"DRIFTLOOP_RAY__ADDRESS": ray_local.get_runtime_context().gcs_address, "DRIFTLOOP_RAY__NUM_WORKERS": "1",
           "DRIFTLOOP_RETRAIN__REFERENCE_FILES": json.dumps({"churn": str(reference)}),
           "DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "0", "DRIFTLOOP_RETRAIN__LEASE_S": "5",
           "DRIFTLOOP_RETRAIN__TRAINING": json.dumps({"epochs": 6, "batch_size": 32, "patience": 0})}
    port = free_port()
    data = tmp_path / "data"
    with retrain_service(tmp_path, port, env, "first") as (process, base):
        status, _ = post(f"{base}/v1/alerts", notification(model="churn"))
        assert status == 200
        assert wait_until(lambda: any(e.step == "training" for e in episodes_of(data, "churn")), 120)
        progress = data / "ray"
        assert wait_until(lambda: list(progress.glob("*/progress/rank-0.json")), 240), "training started"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    (interrupted,) = episodes_of(data, "churn")
    assert interrupted.step == "training" and interrupted.outcome is None
    assert open_registry(load_settings(data_dir=data)).versions("churn") == []

    with retrain_service(tmp_path, port, env, "second"):
        assert wait_until(lambda: episodes_of(data, "churn")[0].outcome is not None, 600, interval_s=2)
    (episode,) = episodes_of(data, "churn")
    assert episode.outcome == "registered", episode.reason
    registry = open_registry(load_settings(data_dir=data))
    (version,) = registry.versions("churn")
    assert version.episode_id == episode.id and registry.aliases("churn") == {"challenger": version.version}
    assert version.training.run_path.endswith(f"{episode.id}-2"), "the second attempt of the training step"
    steps = EpisodeStore(registry.database).steps(episode.id)
    assert [to for _, to, _, _ in steps].count("training") == 1 and steps[-1][1] == "registered"
    assert [t.decision for t in triggers_of(data, "churn")] == ["started"]
