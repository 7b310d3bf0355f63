"""Drift: what moved in a model's inputs, how much, since when, and whether its labelled error rose."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import dashboard as model

from driftloop.dashboards.boards.common import board
from driftloop.dashboards.panels import (
    BY_MODEL,
    ENVIRONMENT,
    RATE,
    link,
    model_variable,
    query,
    stat,
    status_history,
    table,
    text,
    textbox_variable,
    thresholds,
    timeseries,
    up_down,
)

REPORTS = "${reports}/${__field.labels.model}/"


def drifted_or_not() -> list:
    return [model.ValueMap(options={
        "0": model.ValueMappingResult(text="no drift", color="green", index=0),
        "1": model.ValueMappingResult(text="drift", color="red", index=1),
    })]


def build() -> Dashboard:
    reports = [link("Evidently reports of ${__field.labels.model}", REPORTS)]
    return (
        board("drift", "driftloop / Drift",
              "Per-feature drift of each model's inputs against its reference profile, the dataset verdict, the "
              "multivariate domain classifier, the sequential detectors on labelled feedback, and the monitor's health.",
              model_variable("driftloop_drift_runs_total"),
              textbox_variable("reports", "Reports URL", "http://127.0.0.1:8000",
                               "Where <data_dir>/reports is served over HTTP (one folder per model)."))
        .with_row(Row("Dataset"))
        .with_panel(stat(
            "Dataset drift", "The drift monitor's verdict on its last judged window: drift when the share of "
            "drifted features reached drift.drift_share. It starts a retrain when it holds for 5 minutes.",
            query(f"max by (model) (driftloop_drift_dataset_drift{BY_MODEL})", "{{model}}"), span=6,
            mappings=drifted_or_not(), steps=thresholds((None, "green"), (1, "red"))))
        .with_panel(stat(
            "Drifted features", "Share of the model's features whose test found drift in the last judged window.",
            query(f"max by (model) (driftloop_drift_share{BY_MODEL})", "{{model}}"), unit="percentunit", span=6,
            steps=thresholds((None, "green"), (0.25, "orange"), (0.5, "red"))))
        .with_panel(stat(
            "Multivariate AUC", "Held-out AUC of a classifier told to separate the reference from the window: 0.5 "
            "means it cannot, so the joint distribution did not move; 1 means the windows are told apart.",
            query(f"max by (model) (driftloop_drift_multivariate_auc{BY_MODEL})", "{{model}}"), unit="percentunit",
            span=6, steps=thresholds((None, "green"), (0.6, "orange"), (0.75, "red"))))
        .with_panel(stat(
            "Predictions in the window", "Predictions the last run read: a window smaller than drift.min_rows is "
            "not judged, and the drift panels keep their last judged values.",
            query(f"max by (model) (driftloop_drift_window_rows{BY_MODEL})", "{{model}}"), span=6,
            steps=thresholds((None, "orange"), (100, "green"))))
        .with_panel(timeseries(
            "Share of drifted features and dataset drift", "The share of drifted features over time, and the "
            "dataset verdict (1: drift). The red line is the default drift.drift_share of 0.5.",
            query(f"max by (model) (driftloop_drift_share{BY_MODEL})", "share {{model}}"),
            query(f"max by (model) (driftloop_drift_dataset_drift{BY_MODEL})", "dataset drift {{model}}"),
            unit="percentunit", span=12, limits=(0, 1), steps=thresholds((None, "green"), (0.5, "red"))))
        .with_panel(timeseries(
            "Multivariate AUC over time", "The domain classifier's AUC of each judged window; it sees shifts in "
            "the joint distribution that no single feature's test shows.",
            query(f"max by (model) (driftloop_drift_multivariate_auc{BY_MODEL})", "{{model}}"),
            unit="percentunit", span=12, limits=(0.4, 1), steps=thresholds((None, "green"), (0.75, "red"))))
        .with_row(Row("Per feature"))
        .with_panel(timeseries(
            "Drift statistic by feature", "Each feature's drift statistic against its reference: for the distance "
            "methods (PSI, Wasserstein, Jensen-Shannon, ...) the distance, large means drift; for the p-value "
            "methods (KS, chi-squared, ...) the p-value, small means drift (below drift.threshold, 0.05 by "
            "default). drift.method picks one per feature. Click a line for the model's Evidently reports.",
            query(f"max by (model, feature) (driftloop_drift_feature_distance{BY_MODEL})",
                  "distance {{model}} {{feature}}"),
            query(f"min by (model, feature) (driftloop_drift_feature_p_value{BY_MODEL})",
                  "p-value {{model}} {{feature}}"),
            unit="short", span=24, limits=(0, None)).data_links(reports))
        .with_panel(status_history(
            "Drift flag by feature", "Red while a feature's test found drift, green while it did not: when each "
            "feature started and stopped drifting.",
            query(f"max by (model, feature) (driftloop_drift_feature_drifted{BY_MODEL})", "{{model}} {{feature}}"),
            mappings=drifted_or_not(), steps=thresholds((None, "green"), (1, "red"))))
        .with_panel(table(
            "Drifted features now, with their reports", "Every feature flagged in the last judged window. The "
            "link opens the model's Evidently reports (set the Reports URL variable).",
            query(f"max by (model, feature) (driftloop_drift_feature_drifted{BY_MODEL}) == 1"), span=12,
            links=reports))
        .with_panel(text(
            "Evidently reports", "Where the full Evidently report of a window is, and how to make one.",
            "`driftloop drift report --model <model> --window 1h` writes the Evidently report of a window (HTML "
            "and its JSON snapshot) into `<data_dir>/reports/<model>/`; `driftloop drift reports --model <model>` "
            "lists them. Serve that folder (`python -m http.server -d <data_dir>/reports 8000`) and set the "
            "**Reports URL** variable: the per-feature panels and the table link to the model's reports.",
            span=12, height=8))
        .with_row(Row("Labelled feedback and sequential detectors"))
        .with_panel(timeseries(
            "Sequential-detector alarms", "Alarms of the detectors (ADWIN, DDM, Page-Hinkley, ...) fed the "
            "error bit of every labelled prediction, per detector. An alarm starts a retrain.",
            query(f"sum by (model, detector) (increase(driftloop_drift_sequential_alarms_total{BY_MODEL}{RATE}))",
                  "{{model}} {{detector}}"),
            unit="short", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "Labels fed to the detectors", "Labels per second that reached the store and were fed to the "
            "sequential detectors; without labels they cannot alarm.",
            query(f"sum by (model) (rate(driftloop_drift_labels_total{BY_MODEL}{RATE}))", "{{model}}"),
            unit="ops", span=12, limits=(0, None)))
        .with_row(Row("The monitor itself"))
        .with_panel(timeseries(
            "Runs and failed runs", "Drift runs per second, and those that failed (an unreadable store, a "
            "computation that raised); a failed run leaves the drift panels as they were.",
            query(f"sum by (model) (rate(driftloop_drift_runs_total{BY_MODEL}{RATE}))", "runs {{model}}"),
            query(f"sum by (model) (rate(driftloop_drift_run_failures_total{BY_MODEL}{RATE}))", "failed {{model}}"),
            unit="ops", span=8, limits=(0, None)))
        .with_panel(timeseries(
            "Since the last good run", "Seconds since the monitor last finished a run that did not fail; above "
            "15 minutes DriftloopMonitorStale fires.",
            query(f"time() - max by (model) (driftloop_drift_last_success_timestamp_seconds{BY_MODEL})", "{{model}}"),
            unit="s", span=8, limits=(0, None), steps=thresholds((None, "green"), (900, "red"))))
        .with_panel(timeseries(
            "Drift events owed and data-quality failures", "Drift events waiting in the monitor's outbox for Kafka, "
            "and the failed data-quality checks (missing values, out-of-range, new categories) of the last window.",
            query(f"max by (model) (driftloop_drift_events_owed{BY_MODEL})", "owed {{model}}"),
            query(f"max by (model) (driftloop_drift_quality_failures{BY_MODEL})", "quality failures {{model}}"),
            unit="short", span=8, limits=(0, None)))
        .with_panel(stat(
            "Drift monitors up", "1 when Prometheus scraped the monitor's /metrics at its last scrape (target "
            "drift-<model>).",
            query(f'up{{job="driftloop", service=~"drift-.+", {ENVIRONMENT}}}', "{{service}}"), span=24,
            mappings=up_down(), steps=thresholds((None, "red"), (1, "green"))))
    )

