"""Curation and retraining: what was sent for labelling, what came back and how late, what retrained and how."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from driftloop.dashboards.boards.common import board
from driftloop.dashboards.panels import (
    BY_MODEL,
    ENVIRONMENT,
    RATE,
    model_variable,
    query,
    stat,
    status_history,
    table,
    thresholds,
    timeseries,
)

RANGE = "[$__range]"
ENV = "{" + ENVIRONMENT + "}"


def build() -> Dashboard:
    return (
        board("retraining", "driftloop / Curation and retraining",
              "Retrain triggers and their decisions, the labelling batches episodes ask for, the labels that come "
              "back and their delay, the episodes' steps and outcomes, and how long training and whole episodes take.",
              model_variable("driftloop_retrain_triggers_total"))
        .with_row(Row("Triggers"))
        .with_panel(timeseries(
            "Retrain triggers by decision", "Triggers per second, by source (alertmanager, schedule, quality, "
            "manual) and decision: started, or skipped (cooldown, resolved, too few labels, busy) or failed.",
            query(f"sum by (model, source, decision) (rate(driftloop_retrain_triggers_total{BY_MODEL}{RATE}))",
                  "{{model}} {{source}}: {{decision}}"),
            unit="ops", span=16, limits=(0, None)))
        .with_panel(stat(
            "Alertmanager notifications", "Notifications the retrain service's webhook received in the time range, "
            "by result (recorded; invalid: refused with a 4xx; failed: a 503, Alertmanager sends it again).",
            query(f"sum by (result) (increase(driftloop_retrain_notifications_total{ENV}{RANGE}))", "{{result}}"),
            unit="short", span=8))
        .with_row(Row("Labelling"))
        .with_panel(timeseries(
            "Labelling batches", "Batches per second the episodes chose for labelling (sent), and selections that "
            "found nothing new to label (empty), by model.",
            query(f"sum by (model, result) (rate(driftloop_retrain_labelling_batches_total{BY_MODEL}{RATE}))",
                  "{{model}} {{result}}"),
            unit="ops", span=8, limits=(0, None)))
        .with_panel(stat(
            "Sent for labelling", "Predictions the episodes' batches sent for labelling in the time range.",
            query(f"sum by (model) (increase(driftloop_retrain_labelling_rows_total{BY_MODEL}{RANGE}))", "{{model}}"),
            unit="short", span=4))
        .with_panel(timeseries(
            "Labels received", "Feedback events per second written to the store (all models), and labels per "
            "second the drift monitor matched to a prediction of the model and fed to its detectors.",
            query(f'sum by (topic) (rate(driftloop_collector_events_ingested_total{{topic=~".*feedback", '
                  f'{ENVIRONMENT}}}{RATE}))', "stored {{topic}}"),
            query(f"sum by (model) (rate(driftloop_drift_labels_total{BY_MODEL}{RATE}))", "matched {{model}}"),
            unit="ops", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "Label delay", "Median time from a labelled prediction of the drift monitor's window to its label. "
            "A long delay means drift shows in labelled accuracy late: lean on the label-free panels.",
            query(f"max by (model) (driftloop_drift_label_delay_seconds{BY_MODEL})", "{{model}}"),
            unit="s", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "New labels an episode waits for", "New labels counted by each episode waiting in `labelling`; it goes "
            "on to the snapshot at retrain.min_new_labels, or at retrain.label_deadline_s.",
            query(f"max by (model) (driftloop_retrain_episode_new_labels{BY_MODEL})", "{{model}}"),
            unit="short", span=12, limits=(0, None)))
        .with_row(Row("Episodes"))
        .with_panel(status_history(
            "Episode steps", "The step each unfinished episode is in (selecting, labelling, snapshotting, "
            "training, registering, shadowing, watching), from the episode store.",
            query(f"sum by (model, step) (driftloop_retrain_episode_step{BY_MODEL})", "{{model}} {{step}}"), span=12,
            steps=thresholds((None, "transparent"), (1, "blue"))))
        .with_panel(timeseries(
            "Episodes running", "Episodes this retrain service runs now, by model (at most one per model).",
            query(f"sum by (model) (driftloop_retrain_running{BY_MODEL})", "{{model}}"),
            unit="short", span=12, limits=(0, None)))
        .with_panel(table(
            "Episode outcomes in the time range", "Episodes that ended in the time range, by outcome: kept, "
            "rolled_back, rejected, registered, superseded or failed.",
            query(f"sum by (model, outcome) (increase(driftloop_retrain_episodes_total{BY_MODEL}{RANGE}))"), span=12))
        .with_panel(timeseries(
            "Failed episodes", "Episodes per second that ended failed (the episode's reason names the step and the "
            "cause: `driftloop retrain episodes --model <model>`).",
            query(f'sum by (model) (rate(driftloop_retrain_episodes_total{{outcome="failed", {ENVIRONMENT}, '
                  f'model=~"$model"}}{RATE}))', "{{model}}"),
            unit="ops", span=12, limits=(0, None), steps=thresholds((None, "green"), (1e-9, "red"))))
        .with_row(Row("Time"))
        .with_panel(timeseries(
            "Training time", "Seconds the Ray Train run (its fit) of a finished episode took: the mean over the "
            "episodes since the retrain service started, and the slowest in the time range (episodes are rare, "
            "so no rate of them is shown).",
            query(f"max by (model) (driftloop_retrain_training_seconds_sum{BY_MODEL} / "
                  f"driftloop_retrain_training_seconds_count{BY_MODEL})", "mean {{model}}"),
            query("histogram_quantile(1, sum by (le, model) "
                  f"(increase(driftloop_retrain_training_seconds_bucket{BY_MODEL}{RANGE})))", "slowest {{model}}"),
            unit="s", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "Episode duration", "Mean seconds from an episode's trigger to its end (labels, training, shadow and "
            "gate included), by outcome, over the episodes since the retrain service started.",
            query(f"sum by (model, outcome) (driftloop_retrain_duration_seconds_sum{BY_MODEL}) / "
                  f"sum by (model, outcome) (driftloop_retrain_duration_seconds_count{BY_MODEL})",
                  "{{model}} {{outcome}}"),
            unit="s", span=12, limits=(0, None)))
    )
