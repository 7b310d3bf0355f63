"""Episodes on the real store: an alert's episode asks for labels, waits for them, trains and registers;
the quality floor and the schedule read the store's labelled predictions."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from events import feedback_for, prediction_documents, produce, stored_counts, wait_until
from models import register
from test_retrain_episodes import notification

from driftloop.curation_service import ledger
from driftloop.retrain_service import RetrainService, open_registry
from driftloop.settings import load_settings


@pytest.fixture
def store(writer):
    return writer


def settings_for(kafka, kafka_settings, data_dir, **retrain):
    return load_settings(data_dir=data_dir, kafka={"bootstrap_servers": kafka, "topic_prefix": kafka_settings.topic_prefix},
                         retrain={"poll_s": 0.3, **retrain}, ray={"num_workers": 1, "train_timeout_s": 600})


def test_an_alert_episode_asks_for_labels_waits_for_them_trains_and_registers(store, kafka, kafka_settings, data_dir,
                                                                               ray_local):
    predictions = prediction_documents(400, start=datetime.now(UTC) - timedelta(minutes=30))
    produce(kafka, kafka_settings.topic("predictions"), predictions)
    produce(kafka, kafka_settings.topic("feedback"), feedback_for(predictions[:200]))
    assert wait_until(lambda: stored_counts(store) == (400, 400) and stored_counts(store, "feedback")[0] == 200, 60)
    settings = settings_for(kafka, kafka_settings, data_dir, min_new_labels=250, label_deadline_s=600, budget=50,
                            strategy="margin", selection_window_minutes=120, training={"epochs": 3})
    service = RetrainService(settings)
    service.accept_notification(notification(model="churn"))
    service.process_notifications()
    (episode,) = service.episodes.episodes("churn")
    outcome: dict = {}
    running = threading.Thread(target=lambda: outcome.update(done=service.run_episode(episode.id)), daemon=True)
    running.start()

    assert wait_until(lambda: service.episodes.get(episode.id).step == "labelling", 60)
    waiting = service.episodes.get(episode.id)
    batch = ledger(settings).load(waiting.state["batch_id"])
    asked = batch.rows["request_id"].to_pylist()
    assert len(asked) == 50, "the episode sent its budget for labelling"
    time.sleep(2 * settings.retrain.poll_s)
    assert service.episodes.get(episode.id).step == "labelling", "200 labels are fewer than min_new_labels=250"
    by_request = {p["request_id"]: p for p in predictions}
    labels = feedback_for([by_request[request_id] for request_id in asked], delay=timedelta(minutes=1))
    produce(kafka, kafka_settings.topic("feedback"), [{**label, "source": "annotator"} for label in labels])

    running.join(timeout=900)
    assert not running.is_alive()
    done = outcome["done"]
    assert done.outcome == "registered", done.reason
    assert done.state["new_labels"] >= 250 and done.state["snapshot_rows"] == 250
    version = open_registry(settings).get("churn", "challenger")
    assert version.episode_id == episode.id and version.snapshot_id == done.state["snapshot_id"]
    assert [to for _, to, _, _ in service.episodes.steps(episode.id)] == [
        "selecting", "labelling", "snapshotting", "training", "registering", "registered"]


def test_the_quality_floor_and_the_schedule_read_the_store(store, kafka, kafka_settings, data_dir, tmp_path):
    predictions = prediction_documents(300, start=datetime.now(UTC) - timedelta(minutes=30))
    produce(kafka, kafka_settings.topic("predictions"), predictions)
    feedback = feedback_for(predictions)
    for index, event in enumerate(feedback):  # the champion is right on 40% of them
        if index % 5 >= 2:
            event["label"] = 1 - event["label"]
    produce(kafka, kafka_settings.topic("feedback"), feedback)
    assert wait_until(lambda: stored_counts(store, "feedback")[0] == 300, 60)
    settings = settings_for(kafka, kafka_settings, data_dir, quality_floor=0.8, quality_labels=200,
                            quality_interval_s=0.01, schedule_interval_s=0.01, schedule_models=["churn"],
                            min_new_labels=1000)
    register(open_registry(settings), tmp_path, 1, alias="champion", reason="serving")  # version 1 logs as "1"
    service = RetrainService(settings)
    time.sleep(0.05)
    service.check_schedule()
    assert [t.decision for t in service.episodes.triggers("churn")] == ["skipped_too_few_labels"]
    assert service.champion_accuracy("churn") == (pytest.approx(0.4), 200)
    service.check_quality()
    quality = service.episodes.triggers("churn")[0]
    assert (quality.source, quality.decision) == ("quality", "started")
    assert quality.detail["accuracy"] == pytest.approx(0.4) and quality.detail["floor"] == 0.8
    (episode,) = service.episodes.episodes("churn")
    assert (episode.source, episode.step) == ("quality", "selecting")
    time.sleep(0.05)
    service.check_schedule()
    assert service.episodes.triggers("churn")[0].decision == "skipped_cooldown"
