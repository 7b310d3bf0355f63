"""Overview: is traffic flowing, is ingestion keeping up, is anything failing or down."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from driftloop.dashboards.boards.common import board
from driftloop.dashboards.panels import ENVIRONMENT, RATE, query, stat, thresholds, timeseries, up_down

ENV = "{" + ENVIRONMENT + "}"


def build() -> Dashboard:
    return (
        board("overview", "driftloop / Overview",
              "Traffic, ingestion, dead letters, latency and errors, and which driftloop services are up.")
        .with_row(Row("Traffic and ingestion"))
        .with_panel(timeseries(
            "Events written to the store", "Events per second the collector wrote durably into the Parquet store, "
            "by topic (predictions, feedback, shadow).",
            query(f"sum by (topic) (rate(driftloop_collector_events_ingested_total{ENV}{RATE}))", "{{topic}}"),
            unit="ops", span=8, limits=(0, None)))
        .with_panel(timeseries(
            "Consumer lag", "Events in Kafka not yet committed to the store, by topic. Rising lag means the "
            "collector cannot keep up: start another `driftloop collector run` in the same group.",
            query(f"sum by (topic) (driftloop_collector_consumer_lag{ENV})", "{{topic}}"),
            unit="short", span=8, limits=(0, None), steps=thresholds((None, "green"), (100_000, "red"))))
        .with_panel(timeseries(
            "Dead letters by reason", "Events per second sent to the dlq topic, by source topic and reason "
            "(invalid_json, not_an_object, unknown_schema_version, invalid_field, ...).",
            query(f"sum by (topic, reason) (rate(driftloop_collector_dlq_total{ENV}{RATE}))", "{{topic}}: {{reason}}"),
            unit="ops", span=8, limits=(0, None)))
        .with_panel(timeseries(
            "Events accepted by the ingestion API", "Events per second the API answered 202 for (Kafka "
            "acknowledged them), by topic.",
            query(f"sum by (topic) (rate(driftloop_api_events_accepted_total{ENV}{RATE}))", "{{topic}}"),
            unit="ops", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "Events logged by model servers", "Events per second the model servers' EventLogger had "
            "acknowledged by Kafka, and those it dropped or failed to deliver.",
            query(f"sum by (topic) (rate(driftloop_producer_events_sent_total{ENV}{RATE}))", "sent {{topic}}"),
            query(f"sum(rate(driftloop_producer_events_dropped_total{ENV}{RATE}))", "dropped"),
            query(f"sum by (topic) (rate(driftloop_producer_events_failed_total{ENV}{RATE}))", "failed {{topic}}"),
            unit="ops", span=12, limits=(0, None)))
        .with_row(Row("Latency and errors"))
        .with_panel(timeseries(
            "Ingestion API latency", "p50 and p99 of request latency, by route; a request is answered once "
            "Kafka acknowledged all its events.",
            query("histogram_quantile(0.5, sum by (le, route) "
                  f"(rate(driftloop_api_request_duration_seconds_bucket{ENV}{RATE})))", "p50 {{route}}"),
            query("histogram_quantile(0.99, sum by (le, route) "
                  f"(rate(driftloop_api_request_duration_seconds_bucket{ENV}{RATE})))", "p99 {{route}}"),
            unit="s", span=12, limits=(0, None), steps=thresholds((None, "green"), (0.05, "red"))))
        .with_panel(timeseries(
            "Ingestion API errors", "Responses per second with a 4xx or 5xx status, by route and code "
            "(422: a bad body; 503: Kafka did not acknowledge in time).",
            query(f'sum by (route, code) (rate(driftloop_api_responses_total{{code=~"4..|5..", {ENVIRONMENT}}}{RATE}))',
                  "{{route}} {{code}}"),
            unit="reqps", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "Model server latency", "p50 and p99 of the time `driftloop serve` took to answer a prediction "
            "request, by model and the version that answered (logging to Kafka is not waited for).",
            query("histogram_quantile(0.5, sum by (le, model, version) "
                  f"(rate(driftloop_serve_request_seconds_bucket{ENV}{RATE})))", "p50 {{model}} v{{version}}"),
            query("histogram_quantile(0.99, sum by (le, model, version) "
                  f"(rate(driftloop_serve_request_seconds_bucket{ENV}{RATE})))", "p99 {{model}} v{{version}}"),
            unit="s", span=12, limits=(0, None), steps=thresholds((None, "green"), (0.1, "red"))))
        .with_panel(timeseries(
            "Model server errors", "Prediction responses per second with a 4xx or 5xx status, by model and code "
            "(422: a body or features that do not fit the model, the field named; 5xx: the server failed).",
            query(f'sum by (model, code) (rate(driftloop_serve_responses_total{{code=~"4..|5..", {ENVIRONMENT}}}{RATE}))',
                  "{{model}} {{code}}"),
            unit="reqps", span=12, limits=(0, None)))
        .with_row(Row("Components"))
        .with_panel(stat(
            "Services up", "1 when Prometheus could scrape the service's /metrics at its last scrape, by "
            "service (collector, api, drift monitor, ...).",
            query(f'up{{job="driftloop", {ENVIRONMENT}}}', "{{service}}"), span=24, mappings=up_down(),
            steps=thresholds((None, "red"), (1, "green"))))
    )
