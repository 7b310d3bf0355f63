"""The gate's rule, without services: an always-valid test, guardrails, the watch, settings checked at start."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.retrain.gate import GateConfig, Latency, Pairs, decide, decide_watch
from driftloop.retrain.msprt import MixtureSPRT, PairCounts
from driftloop.settings import SettingsError, load_settings


def paired(rng, rows: int, champion: float, challenger_fixes: float, challenger_breaks: float, classes=("0", "1")):
    """Pairs where the champion is right with probability `champion`; the challenger fixes and breaks some."""
    truth = rng.choice(classes, size=rows)
    champion_right = rng.random(rows) < champion
    u = rng.random(rows)
    challenger_right = np.where(champion_right, u >= challenger_breaks / champion,
                                u < challenger_fixes / (1 - champion))
    wrong = np.where(truth == classes[0], classes[1], classes[0])
    return Pairs.from_labels(truth, np.where(champion_right, truth, wrong), np.where(challenger_right, truth, wrong))


def test_checked_after_every_label_the_test_rejects_a_true_null_at_most_alpha_of_the_time():
    rng = np.random.default_rng(7)
    test = MixtureSPRT(alpha=0.05)
    runs, labels = 400, 2000
    d = np.where(rng.random((runs, labels)) < 0.1, rng.choice([-1, 1], size=(runs, labels)), 0)  # equal models
    ever = np.mean([(test.log_evalue_path(stream) >= test.log_threshold).any() for stream in d])
    assert ever <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / runs), f"false rejections {ever:.3f} over {runs} runs"
    wins = PairCounts(wins=60, ties=500, losses=20)
    assert test.test(wins).rejected and not test.test(wins.flipped()).rejected


def test_a_margin_is_kept_exactly_and_concordant_pairs_count_against_it():
    counts = PairCounts(wins=60, ties=600, losses=20)  # +5.9 points
    assert MixtureSPRT(bound=0.0).test(counts).rejected
    assert not MixtureSPRT(bound=0.05).test(counts).rejected
    assert MixtureSPRT(bound=0.0).log_evalue(PairCounts(0, 1000, 0)) == pytest.approx(0.0, abs=1e-9)
    assert MixtureSPRT(bound=0.02).log_evalue(PairCounts(0, 1000, 0)) < -1, "ties are evidence against a margin"


def test_the_gate_refuses_an_equal_challenger_and_promotes_a_ten_point_one():
    rng = np.random.default_rng(1)
    config = GateConfig(min_pairs=100, max_pairs=3000)
    equal = paired(rng, 3000, champion=0.8, challenger_fixes=0.05, challenger_breaks=0.05)
    decision = decide(config, equal)
    assert decision.outcome == "reject" and "not shown better" in decision.reason
    better = paired(rng, 600, champion=0.8, challenger_fixes=0.12, challenger_breaks=0.02)
    decision = decide(config, better, Latency(baseline_p99_ms=1.0, candidate_p99_ms=1.2, rows=200))
    assert decision.outcome == "promote", decision.reason
    evidence = decision.evidence(baseline_version=1, candidate_version=2)
    assert evidence["champion"] == {"version": 1, "accuracy": pytest.approx(equal_accuracy(better, "baseline"))}
    assert evidence["challenger"]["version"] == 2 and evidence["statistic"] >= evidence["threshold"]
    assert {g["name"] for g in evidence["guardrails"]} == {"latency_p99_ms", "recall[0]", "recall[1]"}
    few = Pairs(better.true_labels[:50], better.baseline_labels[:50], better.candidate_labels[:50])
    assert decide(config, few).outcome == "continue"
    assert decide(config, few, expired=True).outcome == "reject"


def equal_accuracy(pairs: Pairs, side: str) -> float:
    return float(np.mean(getattr(pairs, f"{side}_right")))


def test_a_worse_challenger_is_rejected_early_by_the_futility_test():
    rng = np.random.default_rng(2)
    worse = paired(rng, 400, champion=0.8, challenger_fixes=0.02, challenger_breaks=0.15)
    decision = decide(GateConfig(min_pairs=100), worse)
    assert decision.outcome == "reject" and "shown not better" in decision.reason
    assert decide(GateConfig(min_pairs=100, futility=False), worse).outcome == "continue"


def test_guardrails_stop_a_better_challenger_that_is_slow_or_loses_a_class():
    rng = np.random.default_rng(3)
    config = GateConfig(min_pairs=100, latency_p99_factor=1.5, max_recall_drop=0.05, min_class_pairs=30)
    better = paired(rng, 800, champion=0.8, challenger_fixes=0.12, challenger_breaks=0.02)
    slow = decide(config, better, Latency(baseline_p99_ms=1.0, candidate_p99_ms=2.0, rows=200))
    assert slow.outcome == "reject" and "latency p99" in slow.reason
    # Better overall (+5 points), but class "1" falls from 80% to 70% recall: 400 pairs of each class.
    truth = np.array(["0"] * 400 + ["1"] * 400, dtype=object)
    champion_right = np.r_[np.arange(400) < 320, np.arange(400) < 320]
    challenger_right = np.r_[np.ones(400, dtype=bool), np.arange(400) < 280]
    lopsided = Pairs(truth, np.where(champion_right, truth, _other(truth)), np.where(challenger_right, truth,
                                                                                     _other(truth)))
    decision = decide(config, lopsided, Latency(1.0, 1.0, 200))
    assert decision.outcome == "reject" and "recall[1] fell from 0.800 to 0.700" in decision.reason, decision.reason
    assert decide(GateConfig(min_pairs=100, max_recall_drop=0.2), lopsided, Latency(1.0, 1.0, 200)).outcome == "promote"


def _other(labels: np.ndarray) -> np.ndarray:
    return np.where(labels == "0", "1", "0").astype(object)


def test_the_watch_rolls_back_a_worse_champion_and_keeps_an_equal_one():
    rng = np.random.default_rng(4)
    config = GateConfig(min_pairs=100, watch_pairs=1500)
    # In a watch the baseline is the previous champion, the candidate the new one.
    fallen = paired(rng, 500, champion=0.85, challenger_fixes=0.02, challenger_breaks=0.15)
    decision = decide_watch(config, fallen)
    assert decision.outcome == "rollback" and "worse than the previous one" in decision.reason
    assert decision.evidence(1, 2)["previous"]["version"] == 1 and decision.evidence(1, 2)["champion"]["version"] == 2
    steady = paired(rng, 1500, champion=0.85, challenger_fixes=0.05, challenger_breaks=0.05)
    assert decide_watch(config, steady).outcome == "keep"
    assert decide_watch(config, Pairs(*(a[:300] for a in (steady.true_labels, steady.baseline_labels,
                                                          steady.candidate_labels)))).outcome == "continue"


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("alpha", 0.7, "'alpha'"), ("margin", -0.1, "'margin'"), ("min_pairs", 0, "'min_pairs'"),
    ("latency_p99_factor", 0.5, "'latency_p99_factor'"), ("max_recall_drop", 2.0, "'max_recall_drop'"),
])
def test_a_gate_setting_out_of_range_is_named(setting, value, named):
    with pytest.raises(ValueError, match=named):
        GateConfig(**{setting: value})
    with pytest.raises(SettingsError, match=f"gate.{setting} \\(DRIFTLOOP_GATE__{setting.upper()}\\)"):
        load_settings(gate={setting: value})


def test_max_pairs_below_min_pairs_is_refused_with_both_names():
    with pytest.raises(ValueError, match="'max_pairs'.*at least min_pairs"):
        GateConfig(min_pairs=500, max_pairs=100)
    with pytest.raises(SettingsError, match=r"gate.max_pairs \(100\) must be at least gate.min_pairs \(500\)"):
        load_settings(gate={"min_pairs": 500, "max_pairs": 100})
