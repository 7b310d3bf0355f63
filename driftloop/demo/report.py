"""What a demo run showed, read back from where the loop wrote it: the store, the registry, the episode
table and Prometheus. The summary's figures, the timeline and the PNG come from here, never from the
demo's own bookkeeping (which only checks that nothing it sent was lost or doubled).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from driftloop.collector.store import Store
from driftloop.settings import Settings

DETECTION_ALERTS = ("DriftloopDatasetDrift", "DriftloopAccuracyDrop", "DriftloopEstimatedAccuracyBelowFloor")


def prometheus_range(settings: Settings, promql: str, start: datetime, end: datetime, step_s: float = 1.0) -> list:
    """Prometheus' answer to a range query: a list of {metric, values: [[t, "v"], ...]}."""
    query = urllib.parse.urlencode({"query": promql, "start": start.timestamp(), "end": end.timestamp(),
                                    "step": f"{step_s:g}s"})
    with urllib.request.urlopen(f"{settings.prometheus_url()}/api/v1/query_range?{query}", timeout=20) as response:
        return json.load(response)["data"]["result"]


def prometheus_value(settings: Settings, promql: str) -> float | None:
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{settings.prometheus_url()}/api/v1/query?{query}", timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def first_time(series: list, above: float = 0.0) -> datetime | None:
    """The first sample time above `above` over all series of a range answer."""
    times = [float(t) for s in series for t, v in s["values"] if float(v) > above]
    return datetime.fromtimestamp(min(times), UTC) if times else None


@dataclass
class Outcome:
    """A run's figures and timeline."""

    model: str
    started_at: datetime
    onset_at: datetime
    ended_at: datetime
    events: list[tuple[datetime, str]] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    def seconds(self, moment: datetime | None) -> float | None:
        return None if moment is None else round((moment - self.onset_at).total_seconds(), 1)


def user_labelled(store: Store, model: str, settings: Settings) -> pa.Table:
    """Predictions with a label from a user (a random share of the traffic: accuracy on it is unbiased)."""
    labelled = store.labelled(model, None, None, settings.label_horizon)
    if labelled.num_rows == 0:
        return labelled
    return labelled.filter(pc.equal(labelled["feedback_source"], "user"))


def accuracy(table: pa.Table) -> float | None:
    if table.num_rows == 0:
        return None
    correct = pc.equal(table["label"].cast(pa.string()), table["true_label"].cast(pa.string()))
    return round(float(pc.mean(correct.cast(pa.float64())).as_py()), 4)


def between(table: pa.Table, start: datetime | None, end: datetime | None, version: int | None = None) -> pa.Table:
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if start is not None:
        mask = pc.and_(mask, pc.greater_equal(table["timestamp"], pa.scalar(start, table.schema.field("timestamp").type)))
    if end is not None:
        mask = pc.and_(mask, pc.less(table["timestamp"], pa.scalar(end, table.schema.field("timestamp").type)))
    if version is not None:
        mask = pc.and_(mask, pc.equal(table["model_version"], str(version)))
    return table.filter(mask)


def read_outcome(settings: Settings, model: str, started_at: datetime, onset_at: datetime, ended_at: datetime,
                 extra_events: list[tuple[datetime, str]]) -> Outcome:
    from driftloop.retrain.decisions import GateLedger
    from driftloop.retrain.episodes import EpisodeStore
    from driftloop.retrain_service import open_registry

    outcome = Outcome(model, started_at, onset_at, ended_at)
    registry = open_registry(settings)
    episodes = EpisodeStore(registry.database)
    events = [(onset_at, "drift onset"), *extra_events]

    detected = alert = None
    try:
        drift = prometheus_range(settings, f'max(driftloop_drift_dataset_drift{{model="{model}"}})', started_at, ended_at)
        detected = first_time(drift)
        before = [float(v) for s in drift for t, v in s["values"] if float(t) < onset_at.timestamp()]
        outcome.figures["dataset_drift_before_onset"] = max(before, default=0.0)
        names = "|".join(DETECTION_ALERTS)
        alerts = prometheus_range(settings, f'ALERTS{{alertstate="firing",model="{model}",alertname=~"{names}"}}',
                                  started_at, ended_at)
        alert = first_time(alerts)
        if alert is not None:
            fired = sorted({s["metric"]["alertname"] for s in alerts})
            events.append((alert, f"alert firing in Prometheus: {', '.join(fired)}"))
        outcome.figures["alerts_fired"] = sorted({s["metric"]["alertname"] for s in alerts})
    except OSError as error:
        outcome.figures["prometheus_error"] = str(error)
    if detected is not None:
        events.append((detected, "drift monitor: dataset drift"))

    triggers = [t for t in episodes.triggers(model) if t.decision == "started"]
    trigger = min(triggers, key=lambda t: t.received_at) if triggers else None
    all_episodes = episodes.episodes(model)
    for episode in reversed(all_episodes):
        events.append((episode.created_at, f"episode {episode.id} opened by {episode.source}"))
        for _, to_step, at, note in episodes.steps(episode.id):
            if to_step != "selecting":
                events.append((at, f"episode → {to_step}" + (f": {note}" if note else "")))
    promotion = None
    for change in registry.history(model, "champion"):
        if change.actor == "gate" or (change.from_version is not None and change.to_version is not None):
            events.append((change.moved_at, f"champion {change.from_version} → {change.to_version} ({change.actor})"))
            if promotion is None and change.to_version is not None and change.from_version is not None:
                promotion = change
    ledger = GateLedger(registry.database)
    for trial in ledger.trials(model):
        if trial.status != "open":
            last = ledger.last_decision(trial.id)
            if last is not None:
                events.append((last.decided_at, f"gate {trial.kind} trial of version {trial.candidate_version}: "
                                                 f"{trial.status} on {last.pairs} pairs"))
    outcome.events = sorted(events, key=lambda event: event[0])

    store = Store(settings.store_dir)
    users = user_labelled(store, model, settings)
    promoted_at = promotion.moved_at if promotion else None
    first = registry.alias(model, "previous") if promotion else registry.alias(model, "champion")
    outcome.figures.update({
        "accuracy_before_drift": accuracy(between(users, None, onset_at)),
        "accuracy_during_drift": accuracy(between(users, onset_at, promoted_at, promotion.from_version
                                                  if promotion else first)),
        "accuracy_after_promotion": accuracy(between(users, promoted_at, None, promotion.to_version))
        if promotion else None,
        "rows_after_promotion": between(users, promoted_at, None, promotion.to_version).num_rows if promotion else 0,
        "seconds_onset_to_detection": outcome.seconds(detected),
        "seconds_onset_to_alert": outcome.seconds(alert),
        "seconds_onset_to_trigger": outcome.seconds(trigger.received_at if trigger else None),
        "seconds_onset_to_promotion": outcome.seconds(promoted_at),
        "promoted_version": promotion.to_version if promotion else None,
        "episodes": [{"id": e.id, "source": e.source, "step": str(e.step), "outcome": e.outcome, "reason": e.reason}
                     for e in all_episodes],
    })
    outcome.figures.update(labels_used(settings, onset_at, all_episodes))
    return outcome


def labels_used(settings: Settings, onset_at: datetime, episodes) -> dict:
    """Labels of post-drift traffic the retrain learnt from: the rows of its snapshot logged after the onset."""
    from driftloop.curation import load_snapshot
    from driftloop.layout import snapshots_dir

    alert_episodes = [e for e in episodes if e.source == "alertmanager" and e.state.get("snapshot_id")]
    if not alert_episodes:
        return {"labels_used": 0, "labels_used_by_source": {}, "snapshot_rows": 0}
    table = load_snapshot(snapshots_dir(settings), alert_episodes[-1].state["snapshot_id"]).read()
    after = table.filter(pc.greater_equal(table["timestamp"], pa.scalar(onset_at, table.schema.field("timestamp").type)))
    sources = after["source"].to_pylist()
    return {"labels_used": after.num_rows, "labels_used_by_source": {s: sources.count(s) for s in sorted(set(sources))},
            "snapshot_rows": table.num_rows}


def draw(settings: Settings, outcome: Outcome, path: Path) -> Path:
    """Accuracy on labelled traffic (served and shadow) and the drift share over time, events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = Store(settings.store_dir)
    users = user_labelled(store, outcome.model, settings)
    start = outcome.started_at
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    bin_s = 10.0
    if users.num_rows:
        seconds = np.array([(t - start).total_seconds() for t in users["timestamp"].to_pylist()])
        correct = np.array(pc.equal(users["label"].cast(pa.string()), users["true_label"].cast(pa.string())).to_pylist())
        versions = np.array(users["model_version"].to_pylist())
        for version in sorted(set(versions.tolist()), key=int):
            mine = versions == version
            _binned(top, seconds[mine], correct[mine], bin_s, f"served by version {version}", "-o")
        shadow = store.shadow(outcome.model)
        if shadow.num_rows:
            truth = dict(zip(users["request_id"].to_pylist(), users["true_label"].cast(pa.string()).to_pylist(),
                             strict=True))
            rows = [(t, label == truth[r], v) for r, t, label, v in zip(
                shadow["request_id"].to_pylist(), shadow["timestamp"].to_pylist(),
                shadow["label"].cast(pa.string()).to_pylist(), shadow["model_version"].to_pylist(), strict=True)
                if r in truth]
            from driftloop.retrain_service import open_registry

            registry = open_registry(settings)
            for version in sorted({v for _, _, v in rows}, key=int):
                # From when it became a subject: the scorer also answers a few minutes of older traffic
                since = registry.get(outcome.model, int(version)).created_at
                mine = [(t, c) for t, c, v in rows if v == version and t >= since]
                _binned(top, np.array([(t - start).total_seconds() for t, _ in mine]), np.array([c for _, c in mine]),
                        bin_s, f"version {version} in shadow", "--")
    top.set_ylabel(f"accuracy on users' labels\n({bin_s:g} s bins, 5+ labels)")
    top.set_ylim(0, 1.05)
    top.legend(loc="lower left", fontsize=8)
    top.grid(alpha=0.3)
    try:
        share = prometheus_range(settings, f'max(driftloop_drift_share{{model="{outcome.model}"}})', start,
                                 outcome.ended_at)
        for series in share:
            t = [float(x) - start.timestamp() for x, _ in series["values"]]
            bottom.plot(t, [float(v) for _, v in series["values"]], color="tab:red", label="share of drifted features")
        threshold = settings.drift.drift_share
        bottom.axhline(threshold, color="tab:red", linestyle=":", linewidth=1, label=f"dataset drift at {threshold:g}")
    except OSError:
        pass
    bottom.set_ylabel("drift share (Prometheus)")
    bottom.set_ylim(0, 1.05)
    bottom.set_xlabel(f"seconds since the traffic started ({start:%Y-%m-%d %H:%M:%S} UTC)")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="upper left", fontsize=8)
    marks = _marks(outcome)
    for number, (moment, _label) in enumerate(marks, start=1):
        x = (moment - start).total_seconds()
        for axis in (top, bottom):
            axis.axvline(x, color="grey", linewidth=0.8, linestyle="--")
        top.annotate(str(number), (x, 1.02), ha="center", fontsize=8, color="dimgrey")
    legend = "\n".join(f"{n}. {label} (+{(m - start).total_seconds():.0f} s)" for n, (m, label) in enumerate(marks, 1))
    figure.text(0.01, 0.005, legend, fontsize=7, va="bottom", family="monospace")
    figure.suptitle(f"driftloop demo: {outcome.model}, accuracy and drift over time")
    figure.tight_layout(rect=(0, 0.03 + 0.018 * len(marks), 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _binned(axis, seconds: np.ndarray, correct: np.ndarray, bin_s: float, label: str, style: str,
            min_rows: int = 5) -> None:
    if len(seconds) == 0:
        return
    bins = np.floor(seconds / bin_s).astype(int)
    keys = [k for k in sorted(set(bins.tolist())) if (bins == k).sum() >= min_rows]  # no 1-label bins
    if not keys:
        return
    means = [correct[bins == k].mean() for k in keys]
    axis.plot([(k + 0.5) * bin_s for k in keys], means, style, markersize=3, label=label)


def _marks(outcome: Outcome) -> list[tuple[datetime, str]]:
    """The events worth a line on the plot: onset, first alert, the episode's steps, gate decisions."""
    keep = ("drift onset", "alert firing", "annotator", "episode ", "champion ", "gate ")
    marks = [(m, label.split(":")[0]) for m, label in outcome.events if label.startswith(keep)]
    return [(m, label) for m, label in marks if m >= outcome.started_at - timedelta(seconds=5)][:14]
