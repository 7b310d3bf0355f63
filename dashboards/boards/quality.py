"""Model quality: is the model right, is the challenger better, what did the gate decide, what moved."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from driftloop.dashboards.boards.common import board
from driftloop.dashboards.panels import (
    BY_MODEL,
    ENVIRONMENT,
    MODEL,
    RATE,
    annotation,
    model_variable,
    query,
    stat,
    status_history,
    table,
    thresholds,
    timeseries,
)

SEL = ENVIRONMENT + ", " + MODEL

# A gate decision is one step of a counter that exists only once the gate decided. The first part sees
# a step; the second a counter born since (so the first decision of a process is marked too).
DECIDED = ("(increase(driftloop_gate_decisions_total{{outcome=\"{outcome}\", {sel}}}[2m]) > 0) or "
           "(driftloop_gate_decisions_total{{outcome=\"{outcome}\", {sel}}} "
           "unless driftloop_gate_decisions_total{{outcome=\"{outcome}\", {sel}}} offset 2m)")


def decided(outcome: str) -> str:
    return DECIDED.format(outcome=outcome, sel=SEL)


def build() -> Dashboard:
    return (
        board("quality", "driftloop / Model quality",
              "Accuracy on labelled feedback and as estimated without labels, the champion against the challenger "
              "in shadow, the promotion gate's evidence and decisions; promotions, rollbacks and every change of "
              "the served version are marked on the time axis.",
              model_variable("driftloop_serve_model_version"))
        .annotation(annotation(
            "Promotions", decided("promote"), "promoted: {{model}}",
            "The promotion gate found the challenger of {{model}} better and made it the champion.", "green"))
        .annotation(annotation(
            "Rollbacks", decided("rollback"), "rolled back: {{model}}",
            "The gate's watch found the new champion of {{model}} worse than the previous one and rolled it back.",
            "red"))
        .annotation(annotation(
            "Served version changed", f"changes(driftloop_serve_model_version{{{SEL}}}[2m]) > 0",
            "{{model}} now serves another version", "The model server loaded a new champion (a promotion, a "
            "rollback, or an alias moved by hand).", "blue"))
        .with_row(Row("Accuracy"))
        .with_panel(timeseries(
            "Accuracy on labelled feedback", "Share of the window's predictions whose label agreed with the "
            "feedback's label (the drift monitor's window), against the accuracy the model kept on its "
            "reference and its floor (reference less 3 sigmas).",
            query(f"max by (model) (driftloop_drift_accuracy{BY_MODEL})", "labelled {{model}}"),
            query(f'max by (model) (driftloop_drift_reference_performance{{metric="accuracy", {SEL}}})',
                  "reference {{model}}"),
            query(f'max by (model) (driftloop_drift_performance_floor{{metric="accuracy", {SEL}}})',
                  "floor {{model}}"),
            unit="percentunit", span=12, limits=(0, 1), steps=thresholds((None, "red"), (0.8, "green"))))
        .with_panel(timeseries(
            "Accuracy estimated without labels", "Accuracy estimated from the model's calibrated probabilities "
            "(CBPE) with its confidence band, before any label arrives: it sees a covariate shift that hurts.",
            query(f'max by (model) (driftloop_drift_estimated_performance{{metric="accuracy", {SEL}}})',
                  "estimated {{model}}"),
            query(f'max by (model) (driftloop_drift_estimated_performance_lower{{metric="accuracy", {SEL}}})',
                  "lower {{model}}"),
            query(f'max by (model) (driftloop_drift_estimated_performance_upper{{metric="accuracy", {SEL}}})',
                  "upper {{model}}"),
            unit="percentunit", span=12, limits=(0, 1)))
        .with_row(Row("Champion and challenger in shadow"))
        .with_panel(stat(
            "Serving now", "The registry version the model server answers with (its champion).",
            query(f"max by (model) (driftloop_serve_model_version{BY_MODEL})", "{{model}}"), unit="none", span=6))
        .with_panel(stat(
            "Scored in shadow", "The version the shadow scorer scores the champion's traffic with (the challenger).",
            query(f"max by (model, version) (driftloop_shadow_subject{BY_MODEL}) == 1", "{{model}} v{{version}}"),
            unit="none", span=6))
        .with_panel(timeseries(
            "Champion and challenger accuracy", "Accuracy of each side on the promotion trial's labelled pairs: "
            "the same requests, answered by the champion live and by the challenger in shadow.",
            query(f'max by (model, version, role) (driftloop_gate_accuracy{{trial="promotion", {SEL}}})',
                  "{{role}} ({{model}} v{{version}} trial)"),
            unit="percentunit", span=12, limits=(0, 1)))
        .with_panel(timeseries(
            "Champion and challenger traffic", "Predictions per second the champion answered (the model server) "
            "and the challenger scored in shadow; the challenger should follow the champion.",
            query(f"sum by (model, version) (rate(driftloop_serve_predictions_total{BY_MODEL}{RATE}))",
                  "champion {{model}} v{{version}}"),
            query(f"sum by (model, version) (rate(driftloop_shadow_scored_total{BY_MODEL}{RATE}))",
                  "shadow {{model}} v{{version}}"),
            unit="ops", span=12, limits=(0, None)))
        .with_panel(timeseries(
            "Shadow lag and skipped predictions", "Logged predictions the shadow scorer has not scored yet, and "
            "those it skipped per second, by reason (no challenger, another version's traffic, ...).",
            query(f"max by (model) (driftloop_shadow_lag{BY_MODEL})", "lag {{model}}"),
            query(f"sum by (model, reason) (rate(driftloop_shadow_skipped_total{BY_MODEL}{RATE}))",
                  "skipped {{model}} {{reason}}"),
            unit="short", span=12, limits=(0, None), steps=thresholds((None, "green"), (10_000, "red"))))
        .with_panel(status_history(
            "Shadow scorer state", "What the shadow scorer does: waiting (no challenger), scoring, or refused (a "
            "challenger it cannot score: another preprocessor or feature set).",
            query(f"max by (model, state) (driftloop_shadow_state{BY_MODEL})", "{{model}} {{state}}"), span=12,
            steps=thresholds((None, "transparent"), (1, "blue"))))
        .with_row(Row("Promotion gate"))
        .with_panel(timeseries(
            "Gate evidence", "The log e-value of each open trial's sequential test against the threshold "
            "log(1/alpha) at which it decides (promotion: the challenger is better; watch: the new champion is "
            "worse).",
            query(f"max by (model, trial, version) (driftloop_gate_statistic{BY_MODEL})",
                  "statistic {{model}} {{trial}} v{{version}}"),
            query(f"max by (model, trial, version) (driftloop_gate_threshold{BY_MODEL})",
                  "threshold {{model}} {{trial}} v{{version}}"),
            unit="short", span=12))
        .with_panel(timeseries(
            "Labelled pairs and open trials", "Labelled pairs each trial's latest decision rested on (gate.min_pairs "
            "before it may decide), and how many trials are open.",
            query(f"max by (model, trial, version) (driftloop_gate_pairs{BY_MODEL})",
                  "pairs {{model}} {{trial}} v{{version}}"),
            query(f"sum by (model, trial) (driftloop_gate_open_trials{BY_MODEL})", "open {{model}} {{trial}}"),
            unit="short", span=12, limits=(0, None)))
        .with_panel(table(
            "Gate decisions in the time range", "Final decisions of the gate in the dashboard's time range, by "
            "trial (promotion, watch) and outcome (promote, reject, rollback, keep).",
            query(f"sum by (model, trial, outcome) (increase(driftloop_gate_decisions_total{BY_MODEL}[$__range]))"),
            span=12))
        .with_panel(timeseries(
            "Labels without a prediction", "Labels since a trial began whose request no logged prediction has; "
            "the gate ignores them. Many mean the model server's logging or the request ids are wrong.",
            query(f"max by (model, trial) (driftloop_gate_unknown_labels{BY_MODEL})", "{{model}} {{trial}}"),
            unit="short", span=12, limits=(0, None)))
    )
