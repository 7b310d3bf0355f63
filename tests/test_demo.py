"""`driftloop demo --fast` as a user runs it, checked from what the loop wrote: the store, the registry, the
episode table and the run's Prometheus (left up with --keep-stack), never from the demo's log text.

Each test runs the whole demo (its own stack, every service its own process, Ray): minutes each.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from events import event_ids_in, run_cli

from driftloop.collector.store import Store
from driftloop.demo.report import prometheus_range, user_labelled
from driftloop.retrain.episodes import EpisodeStore
from driftloop.retrain_service import open_registry
from driftloop.settings import Settings, load_settings
from driftloop.stack import LocalStack

MODEL = "digits"


def demo(tmp_path: Path, **settings: str):
    """Run `driftloop demo --fast --keep-stack` in a subprocess; (run settings, summary, stack)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTLOOP_")}
    env["DRIFTLOOP_DEMO__DIR"] = str(tmp_path / "demo")
    env.update({f"DRIFTLOOP_DEMO__{name.upper()}": value for name, value in settings.items()})
    result = run_cli("demo", "--fast", "--keep-stack", env=env, timeout=1200)
    run_dir = (tmp_path / "demo" / "latest").resolve()
    run = load_settings(run_dir / "driftloop.toml")
    stack = LocalStack(run)
    if result.returncode != 0:
        stack.down()
        logs = run.stack.state_dir / "logs"
        tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(logs.glob("*.log")))
        pytest.fail(f"demo exited {result.returncode}: {result.stderr[-3000:]}\n{tails}")
    return run, json.loads((run_dir / "summary.json").read_text()), stack


def drift_flags(run: Settings, summary: dict) -> list[tuple[float, float]]:
    """(time, driftloop_drift_dataset_drift) over the run, from Prometheus."""
    series = prometheus_range(run, f'max(driftloop_drift_dataset_drift{{model="{MODEL}"}})',
                              datetime.fromisoformat(summary["started_at"]), datetime.fromisoformat(summary["ended_at"]))
    return [(float(t), float(v)) for s in series for t, v in s["values"]]


def test_a_run_settings_file_reads_back_as_the_settings_the_run_uses(tmp_path):
    from driftloop.demo.runs import PROFILES, run_settings, write_config

    base = load_settings(demo={"dir": tmp_path / "demo", "rate": 7.5}, retrain={"lease_s": 30})
    values = run_settings(base, tmp_path / "run", PROFILES["fast"])
    read = load_settings(write_config(values, tmp_path / "run.toml"))
    assert read == Settings(**values)
    assert read.demo.rate == 7.5 and read.retrain.lease_s == 30, "the user's settings go through"
    assert read.data_dir == tmp_path / "run" / "data" and read.stack.state_dir == tmp_path / "run" / "stack"
    assert read.retrain.min_new_labels == int(7.5 * (20 + 120) * read.demo.label_share) + read.demo.label_budget
    assert read.retrain.label_deadline_s == read.demo.annotator_delay_s + 10
    assert not read.stack.start_label_studio, "the fast profile runs without Label Studio"


def test_a_second_demo_while_one_runs_says_so_and_stops(tmp_path):
    from driftloop.demo.runs import RunLock

    env = {key: value for key, value in os.environ.items() if not key.startswith("DRIFTLOOP_")}
    env["DRIFTLOOP_DEMO__DIR"] = str(tmp_path / "demo")
    with RunLock(tmp_path / "demo") as lock:
        lock.write("pid 4242, run somewhere")
        result = run_cli("demo", "--fast", env=env, timeout=60)
    assert result.returncode == 1
    assert "another demo is running (pid 4242, run somewhere)" in result.stderr
    assert not (tmp_path / "demo" / "runs").exists(), "nothing was started"


def test_the_stack_loads_the_alert_rules_with_for_cut_and_leaves_the_shipped_files(tmp_path):
    import yaml

    from driftloop.dashboards import rule_files
    from driftloop.stack import Prometheus

    settings = load_settings(stack={"state_dir": tmp_path}, prometheus={"rule_for_max_s": 10})
    prometheus = Prometheus(settings.stack, settings.prometheus)
    shipped = {path.name: path.read_text() for path in rule_files()}
    prometheus.write_rules()
    loaded = prometheus.rule_paths()
    assert [path.name for path in loaded] == sorted(shipped) and all(path.parent == tmp_path / "prometheus" / "rules"
                                                                     for path in loaded)
    durations = [rule["for"] for path in loaded for group in yaml.safe_load(path.read_text())["groups"]
                 for rule in group["rules"] if "for" in rule]
    assert durations and set(durations) <= {"10s"}
    assert {path.name: path.read_text() for path in rule_files()} == shipped
    assert prometheus.config()["rule_files"] == [str(path) for path in loaded]


def test_fast_demo_detects_retrains_and_promotes_a_model_that_recovers_from_the_drift(tmp_path):
    """The loop closes untouched and the promoted model, on post-drift traffic, is within 5 points of
    the first champion's accuracy before the drift (the issue's target)."""
    run, summary, stack = demo(tmp_path)
    try:
        onset = datetime.fromisoformat(summary["onset_at"])
        flags = drift_flags(run, summary)
        assert flags, "Prometheus scraped the drift monitor"
        assert all(v == 0 for t, v in flags if t < onset.timestamp()), "no dataset drift before the onset"
        assert any(v == 1 for t, v in flags if t >= onset.timestamp()), "dataset drift after the onset"

        registry = open_registry(run)
        episodes = EpisodeStore(registry.database)
        opened = [e for e in episodes.episodes(MODEL)]
        assert [e.source for e in opened] == ["alertmanager"], "exactly one episode, opened by the alert"
        assert opened[0].created_at > onset
        started = [t for t in episodes.triggers(MODEL) if t.decision == "started"]
        assert len(started) == 1 and started[0].episode_id == opened[0].id

        moves = [c for c in registry.history(MODEL, "champion") if c.from_version is not None]
        assert moves and moves[0].actor == "gate" and moves[0].to_version == opened[0].state["version"]
        promoted, promoted_at = moves[0].to_version, moves[0].moved_at
        labelled = user_labelled(Store(run.store_dir), MODEL, run)
        ts = labelled.schema.field("timestamp").type
        before = labelled.filter(pc.less(labelled["timestamp"], pa.scalar(onset, ts)))
        after = labelled.filter(pc.and_(pc.greater_equal(labelled["timestamp"], pa.scalar(promoted_at, ts)),
                                        pc.equal(labelled["model_version"], str(promoted))))
        stale = labelled.filter(pc.and_(pc.greater_equal(labelled["timestamp"], pa.scalar(onset, ts)),
                                        pc.less(labelled["timestamp"], pa.scalar(promoted_at, ts))))
        stale = stale.filter(pc.equal(stale["model_version"], str(moves[0].from_version)))
        _stored_exactly_once(run, summary)
        assert before.num_rows >= 50 and stale.num_rows >= 30 and after.num_rows >= 30, \
            (before.num_rows, stale.num_rows, after.num_rows)
        accuracies = _accuracy(before), _accuracy(stale), _accuracy(after)
        assert _accuracy(stale) < _accuracy(before) - 0.3, f"the drift hurt the stale champion: {accuracies}"
        assert _accuracy(after) >= _accuracy(before) - 0.05, f"recovered to within 5 points: {accuracies}"
    finally:
        stack.down()


def test_fast_demo_with_labels_withheld_promotes_nothing_and_says_why(tmp_path):
    run, summary, stack = demo(tmp_path, withhold_labels="true")
    try:
        onset = datetime.fromisoformat(summary["onset_at"])
        store = Store(run.store_dir)
        # a request sent just before the onset is logged a moment after it: one second of grace
        labelled = store.labelled(MODEL, onset + timedelta(seconds=1), None, run.label_horizon)
        assert labelled.num_rows == 0, "no label of post-drift traffic arrived"
        assert any(v == 1 for _, v in drift_flags(run, summary)), "the drift was seen"

        registry = open_registry(run)
        assert [c.actor for c in registry.history(MODEL, "champion")] == ["demo"], "the champion never moved"
        episodes = EpisodeStore(registry.database).episodes(MODEL)
        assert [e.source for e in episodes] == ["alertmanager"]
        episode = episodes[0]
        assert episode.finished and episode.outcome not in ("kept", "rolled_back"), episode
        assert episode.reason, "the episode's end has its reason recorded"
        _stored_exactly_once(run, summary)
    finally:
        stack.down()


def _accuracy(table: pa.Table) -> float:
    correct = pc.equal(table["label"].cast(pa.string()), table["true_label"].cast(pa.string()))
    return float(pc.mean(correct.cast(pa.float64())).as_py())


def _stored_exactly_once(run: Settings, summary: dict) -> None:
    """Every prediction and label Kafka acknowledged is in the store once; every answered request too."""
    store = Store(run.store_dir)
    bootstrap = run.kafka_bootstrap()
    deadline = time.monotonic() + 60
    for kind, view, topic in (("prediction", "predictions", "predictions"), ("feedback", "feedback", "feedback")):
        in_kafka = event_ids_in(bootstrap, run.kafka.topic(topic), kind)
        while True:
            records = Counter(store.sql(f"SELECT event_id FROM {view}_records")["event_id"].to_pylist())
            if records == in_kafka or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert in_kafka, f"nothing in {topic}"
        assert records == in_kafka, f"{view}: {len(in_kafka - records)} records not stored, {len(records - in_kafka)} extra"
        assert len(store.sql(f"SELECT event_id FROM {view}")) == len(in_kafka), f"{view}: each event once"
    requests = Counter(store.predictions(MODEL)["request_id"].to_pylist())
    assert len(requests) == summary["predictions_answered"] and max(requests.values()) == 1
