"""Metrics endpoints: the host they bind is a setting; their scrape registration is withdrawn on a clean stop only."""

from __future__ import annotations

import json
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Gauge

from driftloop.services import serve_metrics, withdraw_from_prometheus
from driftloop.settings import load_settings


def listening_address(port: int) -> str:
    """The local address a TCP socket of this machine listens on at `port` (from /proc/net/tcp)."""
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # LISTEN
            return ".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    raise AssertionError(f"nothing listens on port {port}")


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_metrics_bind_the_configured_host_and_register_an_address_prometheus_reaches(tmp_path, host):
    settings = load_settings(stack={"state_dir": tmp_path}, metrics={"host": host})
    (tmp_path / "prometheus").mkdir()  # the local Prometheus's folder: the stack runs one
    registry = CollectorRegistry()
    Gauge("driftloop_test_up", "A gauge.", registry=registry).set(1)
    port = serve_metrics(settings, registry, f"svc-{host}", 0)
    assert listening_address(port) == host
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert b"driftloop_test_up 1.0" in response.read()
    target = tmp_path / "prometheus" / "targets" / f"svc-{host}.json"
    assert json.loads(target.read_text())[0]["targets"] == [f"127.0.0.1:{port}"]
    withdraw_from_prometheus(settings, f"svc-{host}")
    assert not target.exists()


def test_withdrawing_leaves_a_target_another_process_took_over(tmp_path):
    settings = load_settings(stack={"state_dir": tmp_path})
    (tmp_path / "prometheus").mkdir()
    serve_metrics(settings, CollectorRegistry(), "shared", 0)
    target = tmp_path / "prometheus" / "targets" / "shared.json"
    target.write_text(json.dumps([{"targets": ["127.0.0.1:1"], "labels": {"service": "shared"}}]))  # a restart elsewhere
    withdraw_from_prometheus(settings, "shared")
    assert target.exists()


def test_without_the_local_prometheus_nothing_is_registered_and_metrics_are_served(tmp_path):
    settings = load_settings(stack={"state_dir": tmp_path / "no-stack"})
    port = serve_metrics(settings, CollectorRegistry(), "alone", 0)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
    assert not (tmp_path / "no-stack").exists()
