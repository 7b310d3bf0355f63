"""Retrain episodes: the state table, the trigger policy, and every bad input ending `failed` with its reason.

Bad inputs are asserted on the registry and the episode table: the episode ends failed with the
reason, nothing is registered, and the champion is untouched.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
from events import prediction_documents, run_cli, write_to_store
from models import FEATURES, labelled_rows, register, write_reference
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from driftloop.curation_service import ledger
from driftloop.retrain import MODELS, ModelSpec
from driftloop.retrain.episodes import TRANSITIONS, EpisodeStore, IllegalTransition, Step, StepConflict
from driftloop.retrain.metrics import RetrainMetrics
from driftloop.retrain.triggers import Notification, Policy, alert_triggers, decide
from driftloop.retrain_service import RetrainService, open_registry
from driftloop.settings import load_settings
from driftloop.stack import free_port

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def notification(status="firing", model="churn", fingerprint="abc", action="retrain", starts=NOW, **extra) -> dict:
    """Alertmanager 0.25's webhook body (version 4), as it POSTs it."""
    alert = {"status": status, "labels": {"alertname": "DriftloopDatasetDrift", "model": model, "action": action,
                                          "severity": "warning"},
             "annotations": {"summary": f"Dataset drift on model {model}"}, "startsAt": starts.isoformat(),
             "endsAt": (NOW + timedelta(minutes=5)).isoformat() if status == "resolved" else "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}
    return {"receiver": "driftloop-webhook", "status": status, "alerts": [alert],
            "groupLabels": {"alertname": "DriftloopDatasetDrift", "model": model}, "commonLabels": alert["labels"],
            "commonAnnotations": alert["annotations"], "externalURL": "http://alertmanager", "version": "4",
            "groupKey": f'{{}}:{{alertname="DriftloopDatasetDrift", model="{model}"}}', "truncatedAlerts": 0, **extra}


def test_the_state_table_allows_only_its_moves_and_every_step_can_fail(tmp_path):
    assert all(Step.FAILED in TRANSITIONS[step] for step in TRANSITIONS if TRANSITIONS[step])
    assert {step for step, moves in TRANSITIONS.items() if not moves} == {
        Step.REGISTERED, Step.REJECTED, Step.KEPT, Step.ROLLED_BACK, Step.SUPERSEDED, Step.FAILED}
    service = RetrainService(load_settings(data_dir=tmp_path / "data"))
    _, episode = service.trigger("churn", "manual")
    assert episode.step == Step.SNAPSHOTTING
    store = service.episodes
    with pytest.raises(IllegalTransition, match="not to registered"):
        store.advance(episode.id, Step.SNAPSHOTTING, Step.REGISTERED)
    with pytest.raises(StepConflict):
        store.advance(episode.id, Step.TRAINING, Step.REGISTERING)
    moved = store.advance(episode.id, Step.SNAPSHOTTING, Step.TRAINING, {"snapshot_id": "snap-1"})
    assert moved.state["snapshot_id"] == "snap-1" and moved.outcome is None
    done = store.fail(episode.id, Step.TRAINING, "training: a reason")
    assert (done.outcome, done.reason, done.finished) == ("failed", "training: a reason", True)
    assert [(f, t) for f, t, _, _ in store.steps(episode.id)] == [
        (None, "snapshotting"), ("snapshotting", "training"), ("training", "failed")]


def test_the_policy_turns_one_alert_into_one_episode():
    policy = Policy(cooldown_s=600, min_new_labels=50)
    assert decide("alertmanager", NOW, policy, [], firing=False).decision == "skipped_resolved"
    started = decide("alertmanager", NOW, policy, [], instances=["abc@t"])
    assert (started.decision, started.start) == ("started", Step.SELECTING)
    assert decide("manual", NOW, policy, []).start == Step.SNAPSHOTTING
    assert decide("schedule", NOW, policy, [], new_labels=49).decision == "skipped_too_few_labels"
    assert decide("schedule", NOW, policy, [], new_labels=50).decision == "started"

    store_episodes = []

    class FakeEpisode:  # the fields decide() reads
        def __init__(self, id, created_at, finished):
            self.id, self.created_at, self.finished, self.step = id, created_at, finished, "labelling"

    store_episodes = [FakeEpisode("ep-1", NOW - timedelta(minutes=5), finished=False)]
    joined = decide("alertmanager", NOW, policy, store_episodes, instances=["xyz@t"])
    assert (joined.decision, joined.joined) == ("skipped_cooldown", "ep-1")
    assert decide("manual", NOW, policy, store_episodes).decision == "skipped_busy"
    finished_recently = [FakeEpisode("ep-1", NOW - timedelta(minutes=5), finished=True)]
    assert decide("alertmanager", NOW, policy, finished_recently, instances=["xyz@t"]).decision == "skipped_cooldown"
    assert decide("manual", NOW, policy, finished_recently).decision == "started", "a person is not held by cooldown"
    long_ago = [FakeEpisode("ep-1", NOW - timedelta(hours=2), finished=True)]
    repeated = decide("alertmanager", NOW, policy, long_ago, instances=["abc@t"], handled={"abc@t": "ep-1"})
    assert repeated.decision == "skipped_cooldown", "the same alert instance, still firing, starts nothing more"
    assert decide("alertmanager", NOW, policy, long_ago, instances=["new@t"], handled={"abc@t": "ep-1"}).decision == \
        "started"


def test_a_notification_is_read_as_alertmanager_sends_it_and_a_bad_one_names_its_field():
    parsed = Notification.model_validate(notification())
    (trigger,) = alert_triggers(parsed)
    assert (trigger.model, trigger.firing, trigger.instances) == ("churn", True, (f"abc@{NOW.isoformat()}",))
    assert alert_triggers(Notification.model_validate(notification(action="page"))) == [], "not a retrain alert"
    for broken, field in (({"version": "3"}, "version"), ({"alerts": []}, "alerts"),
                          ({"groupKey": ""}, "groupKey"), ({"status": "pending"}, "status")):
        with pytest.raises(ValidationError) as error:
            Notification.model_validate({**notification(), **broken})
        assert error.value.errors()[0]["loc"][0] == field


@pytest.fixture
def settings_for(tmp_path):
    """Settings of a retrain with a champion already registered for model 'churn'."""

    def make(**retrain):
        settings = load_settings(data_dir=tmp_path / "data", retrain={"min_new_labels": 0, **retrain},
                                 ray={"num_workers": 1, "train_timeout_s": 300})
        register(open_registry(settings), tmp_path, seed=1, features=FEATURES, alias="champion", reason="first")
        return settings

    return make


def ends_failed_leaving_the_registry_alone(settings, reason_part: str):
    service = RetrainService(settings)
    _, episode = service.trigger("churn", "manual")
    finished = service.run_episode(episode.id)
    assert finished.outcome == "failed", finished
    assert reason_part in finished.reason, finished.reason
    registry = open_registry(settings)
    assert [v.version for v in registry.versions("churn")] == [1], "nothing is registered"
    assert registry.aliases("churn") == {"champion": 1}, "the champion is untouched"
    assert service.episodes.get(episode.id).outcome == "failed"
    decision, again = service.trigger("churn", "manual")
    assert decision == "started" and again is not None, "the service goes on after a failed episode"
    return finished


def test_an_empty_snapshot_fails_the_episode(settings_for):
    ends_failed_leaving_the_registry_alone(settings_for(), "snapshotting: empty snapshot")


def test_a_snapshot_with_one_class_fails_the_episode(settings_for, tmp_path):
    reference = write_reference(tmp_path / "one-class.parquet", labelled_rows(300, seed=0, classes=1))
    ends_failed_leaving_the_registry_alone(settings_for(reference_files={"churn": str(reference)}),
                                           "training: the snapshot has one class only ('0', 300 rows)")


def test_a_feature_the_spec_needs_that_the_data_lacks_fails_the_episode(settings_for, tmp_path):
    reference = write_reference(tmp_path / "ref.parquet", labelled_rows(300, seed=0))
    settings = settings_for(reference_files={"churn": str(reference)}, features={"churn": [*FEATURES, "income"]})
    ends_failed_leaving_the_registry_alone(settings, "feature 'income': needed by the model but not in the data")


def test_a_spec_that_raises_fails_the_episode(settings_for, tmp_path, monkeypatch):
    def exploding(n_inputs, n_classes):
        raise RuntimeError("this layer needs a GPU")

    monkeypatch.setitem(MODELS, "exploding", ModelSpec(name="exploding", module=exploding))
    reference = write_reference(tmp_path / "ref.parquet", labelled_rows(300, seed=0))
    settings = settings_for(reference_files={"churn": str(reference)}, specs={"churn": "exploding"})
    ends_failed_leaving_the_registry_alone(settings, "model spec 'exploding': its module factory failed: "
                                                     "RuntimeError: this layer needs a GPU")


def test_a_nan_loss_fails_the_episode(settings_for, tmp_path, ray_local):
    reference = write_reference(tmp_path / "ref.parquet", labelled_rows(600, seed=0))
    settings = settings_for(reference_files={"churn": str(reference)}, training={"learning_rate": 1e30, "epochs": 3})
    ends_failed_leaving_the_registry_alone(settings, "FloatingPointError: the training loss is nan")


def test_a_ray_cluster_that_is_not_reachable_fails_the_episode(settings_for, tmp_path):
    reference = write_reference(tmp_path / "ref.parquet", labelled_rows(300, seed=0))
    settings = settings_for(reference_files={"churn": str(reference)})
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(settings.data_dir), "DRIFTLOOP_RAY__ADDRESS": address,
           "DRIFTLOOP_RETRAIN__REFERENCE_FILES": f'{{"churn": "{reference}"}}', "DRIFTLOOP_RETRAIN__MIN_NEW_LABELS": "0"}
    done = run_cli("retrain", "run", "--model", "churn", env=env, timeout=180)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"Ray at {address} is not reachable" in done.stderr.strip().splitlines()[-1]
    registry = open_registry(settings)
    (episode,) = EpisodeStore(registry.database).episodes("churn")
    assert episode.outcome == "failed" and f"training: Ray at {address} is not reachable" in episode.reason
    assert [v.version for v in registry.versions("churn")] == [1] and registry.aliases("churn") == {"champion": 1}


def test_the_metrics_show_each_episode_step_its_labels_and_its_labelling_batch(tmp_path):
    metrics = CollectorRegistry()
    service = RetrainService(load_settings(data_dir=tmp_path / "data"), RetrainMetrics(metrics))

    def sample(name, **labels):
        return metrics.get_sample_value(name, labels)

    _, episode = service.trigger("churn", "manual", start=Step.SELECTING)
    assert sample("driftloop_retrain_episode_step", model="churn", step="selecting") == 1
    service.runner.config = dataclasses.replace(service.runner.config, selection_wait_s=0)
    labelling = service.runner.step(episode, threading.Event())  # an empty store: nothing to send
    assert labelling.step == Step.LABELLING
    assert sample("driftloop_retrain_labelling_batches_total", model="churn", result="empty") == 1
    assert sample("driftloop_retrain_episode_step", model="churn", step="selecting") is None
    service.episodes.update_state(episode.id, Step.LABELLING, {"new_labels": 7})
    assert sample("driftloop_retrain_episode_new_labels", model="churn") == 7
    service.episodes.fail(episode.id, Step.LABELLING, "labelling: given up")
    assert sample("driftloop_retrain_episode_step", model="churn", step="labelling") is None
    assert sample("driftloop_retrain_episode_new_labels", model="churn") is None, "a finished episode waits for nothing"


def test_an_alert_episode_chooses_from_the_traffic_since_the_alert_began_once_there_is_enough_of_it(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", retrain={
        "budget": 10, "strategy": "random", "selection_window_minutes": 60, "selection_pool_factor": 3,
        "selection_wait_s": 120, "poll_s": 0.1}, label_studio={"enabled": False})
    now = datetime.now(UTC)
    offset = write_to_store(settings.store_dir, "prediction", prediction_documents(100, start=now - timedelta(minutes=20)),
                            "t.predictions")
    offset = write_to_store(settings.store_dir, "prediction", prediction_documents(20, start=now - timedelta(minutes=4)),
                            "t.predictions", first_offset=offset)
    service = RetrainService(settings)
    service.accept_notification(notification(starts=now - timedelta(minutes=5)))
    service.process_notifications()
    (episode,) = service.episodes.episodes("churn")
    assert episode.step == Step.SELECTING
    selected = threading.Thread(target=service.runner.step, args=(episode, threading.Event()), daemon=True)
    selected.start()
    selected.join(timeout=1.5)
    assert selected.is_alive(), "20 inputs since the alert began are fewer than 3 x the budget: the episode waits"
    write_to_store(settings.store_dir, "prediction", prediction_documents(20, start=now - timedelta(minutes=2)),
                   "t.predictions", first_offset=offset)
    selected.join(timeout=30)
    done = service.episodes.get(episode.id)
    assert done.step == Step.LABELLING and done.state["selection_pool"] == 40
    times = ledger(settings).load(done.state["batch_id"]).rows["timestamp"].to_pylist()
    assert len(times) == 10 and min(times) >= now - timedelta(minutes=5), "none of the 100 inputs from before the alert"


def test_an_episode_whose_pool_stays_small_selects_from_it_at_the_wait_s_end(tmp_path):
    settings = load_settings(data_dir=tmp_path / "data", retrain={
        "budget": 10, "strategy": "random", "selection_pool_factor": 3, "selection_wait_s": 1, "poll_s": 0.1},
        label_studio={"enabled": False})
    now = datetime.now(UTC)
    write_to_store(settings.store_dir, "prediction", prediction_documents(15, start=now - timedelta(minutes=1)),
                   "t.predictions")
    service = RetrainService(settings)
    service.accept_notification(notification(starts=now - timedelta(minutes=2)))
    service.process_notifications()
    (episode,) = service.episodes.episodes("churn")
    began = datetime.now(UTC)
    done = service.runner.step(episode, threading.Event())
    assert done.step == Step.LABELLING and datetime.now(UTC) - began >= timedelta(seconds=0.9), "it waited first"
    assert done.state["selection_pool"] == 15 and len(ledger(settings).load(done.state["batch_id"])) == 10
