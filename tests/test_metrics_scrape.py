"""The real Prometheus scrapes a metrics endpoint of ours and has our alert rules loaded."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from driftloop.stack import register_scrape_target


def query(prometheus_url: str, promql: str) -> list[dict]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def test_prometheus_scrapes_a_registered_endpoint(prometheus):
    registry = CollectorRegistry()
    gauge = Gauge("driftloop_test_share_drifted", "A gauge for the scrape test.", ["model"], registry=registry)
    gauge.labels(model="digits").set(0.25)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        register_scrape_target(prometheus.targets_dir, "scrape-test", f"127.0.0.1:{server.server_port}")
        deadline, result = time.monotonic() + 30, []
        while not result and time.monotonic() < deadline:
            result = query(prometheus.url, 'driftloop_test_share_drifted{model="digits"}')
            time.sleep(0.5)
        assert result, "Prometheus never scraped the endpoint"
        assert float(result[0]["value"][1]) == 0.25
        assert result[0]["metric"]["service"] == "scrape-test"
    finally:
        server.shutdown()
        thread.join()


def test_prometheus_loaded_the_shipped_alert_rules(prometheus):
    groups = get_json(f"{prometheus.url}/api/v1/rules")["data"]["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"DriftloopDatasetDrift", "DriftloopAccuracyDrop", "DriftloopDeadLetters",
            "DriftloopEstimatedAccuracyBelowFloor", "DriftloopFeatureMostlyMissing"} <= alerts


def test_service_registries_carry_no_created_series():
    from prometheus_client import Counter, generate_latest

    from driftloop.services import new_registry

    registry = new_registry()
    Counter("driftloop_test_events", "A counter of a service.", registry=registry).inc()
    text = generate_latest(registry).decode()
    assert "driftloop_test_events_total 1.0" in text and "_created" not in text
