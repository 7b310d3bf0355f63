"""The promotion gate on pairs read from the real store: decisions applied to the registry, recorded, and counted."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from events import produce, wait_until
from prometheus_client import CollectorRegistry
from test_shadow import Writing
from world import FEATURES, feedback_event, prediction_event, register, world

from driftloop.collector import Store
from driftloop.retrain import ModelRegistry
from driftloop.retrain.decisions import GateLedger
from driftloop.retrain.episodes import EpisodeStore, Step
from driftloop.retrain.gate import GateConfig
from driftloop.retrain.gating import GateSteps
from driftloop.retrain.promotion import GateMetrics, PromotionGate

HORIZON = timedelta(days=1)


def versions(registry: ModelRegistry, tmp_path, model: str):
    """A champion (1) and a challenger (2) of `model`; what they answer is written below, not computed."""
    features, labels = world(200, "a", seed=0)
    register(registry, tmp_path, features, labels, model=model, alias="champion", reason="first champion")
    register(registry, tmp_path, features, labels, model=model, seed=1, alias="challenger", reason="episode ep-x")


def log_pairs(kafka, settings, model: str, rows: int, champion: float, fixes: float, breaks: float, seed: int,
              live: int = 1, shadowed: int = 2):
    """Predictions of version `live` (right `champion` of the time), shadow answers of version `shadowed`
    (fixing `fixes` and breaking `breaks` of them) and labels of `rows` requests, through Kafka."""
    rng = np.random.default_rng(seed)
    features, _ = world(rows, "a", seed)
    truth = rng.choice(["0", "1"], size=rows).tolist()
    champion_right = rng.random(rows) < champion
    u = rng.random(rows)
    challenger_right = np.where(champion_right, u >= breaks / champion, u < fixes / (1 - champion))
    predictions, shadow, labels = [], [], []
    for i in range(rows):
        request = f"{model}-{seed}-{i}"
        row = {name: float(features[name][i]) for name in FEATURES}
        wrong = "1" if truth[i] == "0" else "0"
        predictions.append(prediction_event(request, row, truth[i] if champion_right[i] else wrong, live, model=model))
        shadow.append(prediction_event(request, row, truth[i] if challenger_right[i] else wrong, shadowed,
                                       model=model))
        labels.append(feedback_event(request, truth[i]))
    produce(kafka, settings.topic("predictions"), predictions)
    produce(kafka, settings.topic("shadow"), shadow)
    produce(kafka, settings.topic("feedback"), labels)
    return float(np.mean(champion_right)), float(np.mean(challenger_right))


def gate_for(registry, data_dir, model, metrics=None, **config) -> PromotionGate:
    settings = {"min_pairs": 100, "max_pairs": 600, "latency_p99_factor": 20.0, **config}
    return PromotionGate(registry, GateLedger(registry.database), Store(data_dir / "store"), GateConfig(**settings),
                         model=model, horizon=HORIZON, metrics=metrics, latency_rows=50)


def test_the_gate_refuses_an_equal_challenger_and_promotes_a_ten_point_one_on_pairs_from_the_store(
        kafka, kafka_settings, data_dir, tmp_path):
    registry = ModelRegistry.open(data_dir / "registry")
    versions(registry, tmp_path, "equal")
    versions(registry, tmp_path, "better")
    log_pairs(kafka, kafka_settings, "equal", 600, champion=0.8, fixes=0.05, breaks=0.05, seed=1)
    champion_accuracy, challenger_accuracy = log_pairs(kafka, kafka_settings, "better", 600, champion=0.8,
                                                       fixes=0.12, breaks=0.02, seed=2)
    unknown = [feedback_event(f"nobody-{i}", "1") for i in range(7)]  # labels for requests no model served
    produce(kafka, kafka_settings.topic("feedback"), unknown)
    store = Store(data_dir / "store")
    with Writing(kafka, kafka_settings, data_dir):
        assert wait_until(lambda: all(store.shadow(m).num_rows == 600 and store.labelled(m, horizon=HORIZON).num_rows
                                      == 600 for m in ("equal", "better")) and store.feedback().num_rows == 1207,
                          timeout_s=120)

    metrics, shared = CollectorRegistry(), GateMetrics()
    metrics.register(shared)  # one collector for the gates of both models, as in a retrain service
    equal = gate_for(registry, data_dir, "equal", shared)
    [decision] = equal.step()
    assert decision.outcome == "reject" and "not shown better" in decision.reason
    assert registry.aliases("equal") == {"champion": 1}, "challenger cleared, champion untouched"
    cleared = registry.history("equal", "challenger")[-1]
    assert cleared.to_version is None and cleared.actor == "gate" and cleared.evidence["pairs"] == 600
    assert decision.alias_change_id == cleared.id

    better = gate_for(registry, data_dir, "better", shared)
    [decision] = better.step()
    assert decision.outcome == "promote", decision.reason
    assert registry.aliases("better") == {"champion": 2, "previous": 1}
    move = registry.history("better", "champion")[-1]
    evidence = move.evidence
    assert (move.from_version, move.to_version, move.actor) == (1, 2, "gate")
    assert evidence["champion"] == {"version": 1, "accuracy": pytest.approx(champion_accuracy, abs=1e-6)}
    assert evidence["challenger"] == {"version": 2, "accuracy": pytest.approx(challenger_accuracy, abs=1e-6)}
    assert evidence["statistic"] >= evidence["threshold"] and evidence["pairs"] <= 600
    assert {g["name"] for g in evidence["guardrails"]} >= {"latency_p99_ms", "recall[0]", "recall[1]"}
    assert evidence["labels_without_prediction"] == 7, "labels for unknown requests are counted and ignored"
    ledger = GateLedger(registry.database)
    [watch] = ledger.open_trials("better", "watch")
    assert (watch.candidate_version, watch.baseline_version) == (2, 1)
    assert [d.outcome for d in ledger.decisions("better", final_only=True)] == ["promote"]

    def sample(name, **labels):
        return metrics.get_sample_value(name, labels)

    assert sample("driftloop_gate_decisions_total", model="better", trial="promotion", outcome="promote") == 1
    assert sample("driftloop_gate_decisions_total", model="equal", trial="promotion", outcome="reject") == 1
    assert sample("driftloop_gate_pairs", model="equal", version="2", trial="promotion") == 600
    assert sample("driftloop_gate_unknown_labels", model="better", version="2", trial="promotion") == 7
    assert sample("driftloop_gate_accuracy", model="better", version="2", trial="promotion",
                  role="challenger") == pytest.approx(evidence["challenger"]["accuracy"], abs=1e-6)
    [watching] = better.step()  # the watch's first look: no pairs yet (no shadow answers of version 1)
    assert (watching.trial_id, watching.outcome, watching.pairs) == (watch.id, "continue", 0)
    assert better.step() == [], "no new evidence, no new decision"


def test_a_challenger_the_shadow_scorer_refused_is_rejected_with_its_reason(data_dir, tmp_path):
    registry = ModelRegistry.open(data_dir / "registry")
    versions(registry, tmp_path, "churn")
    ledger = GateLedger(registry.database)
    ledger.refuse("churn", 2, "churn version 2 refused for shadow scoring: it reads features ['tenure'] ...")
    [decision] = gate_for(registry, data_dir, "churn").step()
    assert decision.outcome == "reject" and "['tenure']" in decision.reason
    assert registry.alias("churn", "challenger") is None
    assert ledger.trials("churn")[-1].status == "rejected"


def test_aliases_moved_by_hand_supersede_the_open_trial(data_dir, tmp_path):
    registry = ModelRegistry.open(data_dir / "registry")
    versions(registry, tmp_path, "churn")
    gate = gate_for(registry, data_dir, "churn")
    [decision] = gate.step()
    assert decision.outcome == "continue" and "0 of at least 100" in decision.reason
    registry.set_champion("churn", 2, expected=1, reason="by hand: an emergency fix")
    assert gate.step() == []
    [trial] = GateLedger(registry.database).trials("churn")
    assert trial.status == "superseded" and registry.aliases("churn") == {"champion": 2, "previous": 1}


def test_an_episode_ends_with_the_gates_decisions_promoted_then_rolled_back(kafka, kafka_settings, data_dir, tmp_path):
    registry = ModelRegistry.open(data_dir / "registry")
    episodes = EpisodeStore(registry.database)
    with registry.database.transaction() as db:
        episode = episodes.create_episode(db, "churn", "manual", Step.SNAPSHOTTING)
    for before, after in ((Step.SNAPSHOTTING, Step.TRAINING), (Step.TRAINING, Step.REGISTERING)):
        episodes.advance(episode.id, before, after)
    features, labels = world(200, "a", seed=0)
    register(registry, tmp_path, features, labels, alias="champion", reason="first champion")
    challenger = registry.register(  # what the episode's registering step does, with its episode id
        "churn", _folder(tmp_path, features, labels), spec=registry.get("churn", 1).spec, features=FEATURES,
        classes=["0", "1"], training=registry.get("churn", 1).training, metrics={}, origin="episode",
        episode_id=episode.id, alias="challenger", reason=f"episode {episode.id}")
    episodes.advance(episode.id, Step.REGISTERING, Step.SHADOWING, {"version": challenger.version})
    gate = gate_for(registry, data_dir, "churn")
    steps = GateSteps(episodes, registry, GateLedger(registry.database), lambda model: gate, poll_s=0.5)
    store = Store(data_dir / "store")
    stop = threading.Event()
    with Writing(kafka, kafka_settings, data_dir):
        log_pairs(kafka, kafka_settings, "churn", 400, champion=0.7, fixes=0.2, breaks=0.02, seed=3)
        assert wait_until(lambda: store.shadow("churn").num_rows == 400 and store.labelled(
            "churn", horizon=HORIZON).num_rows == 400, timeout_s=120)
        watching = steps.shadowing(episodes.get(episode.id), stop)
        assert watching.step == Step.WATCHING and watching.state["promotion_outcome"] == "promoted"
        assert registry.aliases("churn") == {"champion": 2, "previous": 1}
        # Then the world turns: the new champion (2) is right far less often than the previous one (1).
        log_pairs(kafka, kafka_settings, "churn", 400, champion=0.6, fixes=0.3, breaks=0.02, seed=4, live=2,
                  shadowed=1)
        assert wait_until(lambda: store.shadow("churn", version="1").num_rows == 400, timeout_s=120)
        ended = steps.watching(watching, stop)
    assert (ended.step, ended.outcome) == (Step.ROLLED_BACK, "rolled_back"), ended.reason
    assert registry.alias("churn", "champion") == 1
    back = registry.history("churn", "champion")[-1]
    assert (back.from_version, back.to_version, back.actor) == (2, 1, "gate")
    assert back.evidence["trial"] == "watch" and back.evidence["previous"]["accuracy"] > back.evidence["champion"][
        "accuracy"]
    assert [to for _, to, _, _ in episodes.steps(episode.id)][-3:] == ["shadowing", "watching", "rolled_back"]


def _folder(tmp_path, features, labels):
    from world import train

    from driftloop.retrain import save_model_files

    state, preprocessor, classes, spec = train(features, labels, seed=5)
    return save_model_files(tmp_path / "episode-model", state, spec.name, spec.module_params, preprocessor.width,
                            classes, preprocessor)
