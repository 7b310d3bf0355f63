"""The promotion gate's rule: from labelled pairs to promote, reject or continue (and, after a promotion, to rollback).

A pair is one labelled request that both models answered: the baseline (the champion; in a
watch, the previous champion, still scoring in shadow) and the candidate (the challenger; in a
watch, the new champion). `decide` and `decide_watch` are pure: they take the pairs (and the
measured latencies) and return a `GateDecision` that says what to do and why, with the evidence
the registry keeps. The tests are `MixtureSPRT` (see `driftloop.retrain.msprt`), valid however
often the gate looks, so it decides as the labels arrive.

Promotion trial, D = challenger_right - champion_right:
- fewer than `min_pairs` pairs: continue (or reject at the deadline);
- H0 "E[D] <= margin" rejected: promote, unless a guardrail fails (latency p99 above
  `latency_p99_factor` x the champion's; a class whose recall fell by more than
  `max_recall_drop`, among classes with at least `min_class_pairs` pairs): then reject;
- with `futility`, H0 "E[D] >= margin" rejected (the challenger is shown *not* better by the
  margin): reject early;
- `max_pairs` pairs, or the deadline, without either: reject as "not shown better".

Watch, D = new_right - previous_right: H0 "E[D] >= -margin" rejected means the new champion is
worse than the previous one by more than the margin: rollback. `watch_pairs` pairs or the watch
deadline without that: keep.

The tests assume the labelled requests are a sample whose choice, and timing, do not depend on
which model was right (users who report only mistakes, or report them sooner, break that).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pyarrow as pa

from driftloop.retrain.msprt import MixtureSPRT, PairCounts

__all__ = [
    "GateConfig",
    "GateDecision",
    "Guardrail",
    "Latency",
    "PROMOTION_OUTCOMES",
    "Pairs",
    "TRIAL_KINDS",
    "WATCH_OUTCOMES",
    "decide",
    "decide_watch",
]

TRIAL_KINDS = ("promotion", "watch")
PROMOTION_OUTCOMES = ("continue", "promote", "reject")
WATCH_OUTCOMES = ("continue", "keep", "rollback")
ROLES = {"promotion": ("champion", "challenger"), "watch": ("previous", "champion")}  # (baseline, candidate)


@dataclass(frozen=True)
class GateConfig:
    """The gate's settings; each is checked here, and a bad one is named with what is allowed."""

    alpha: float = 0.05
    margin: float = 0.0
    min_pairs: int = 100
    max_pairs: int = 10_000
    deadline: timedelta = timedelta(days=3)
    latency_p99_factor: float = 1.5
    max_recall_drop: float = 0.05
    min_class_pairs: int = 30
    futility: bool = True
    watch_pairs: int = 2_000
    watch_deadline: timedelta = timedelta(days=1)
    prior_scale: float = 0.3

    def __post_init__(self) -> None:
        _check(0 < self.alpha < 0.5, "alpha", self.alpha, "a number between 0 and 0.5 (exclusive)")
        _check(0 <= self.margin < 0.5, "margin", self.margin, "an accuracy difference from 0 up to 0.5 (exclusive)")
        for name in ("min_pairs", "max_pairs", "min_class_pairs", "watch_pairs"):
            value = getattr(self, name)
            _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, name, value,
                   "an integer of at least 1")
        _check(self.max_pairs >= self.min_pairs, "max_pairs", self.max_pairs,
               f"at least min_pairs ({self.min_pairs})")
        _check(self.watch_pairs >= self.min_pairs, "watch_pairs", self.watch_pairs,
               f"at least min_pairs ({self.min_pairs})")
        for name in ("deadline", "watch_deadline"):
            value = getattr(self, name)
            _check(isinstance(value, timedelta) and value > timedelta(0), name, value, "a positive duration")
        _check(self.latency_p99_factor >= 1, "latency_p99_factor", self.latency_p99_factor, "a factor of at least 1")
        _check(0 <= self.max_recall_drop <= 1, "max_recall_drop", self.max_recall_drop, "a share from 0 to 1")
        _check(self.prior_scale > 0, "prior_scale", self.prior_scale, "a positive number")

    def promotion_test(self) -> MixtureSPRT:
        """H0: E[challenger_right - champion_right] <= margin."""
        return MixtureSPRT(self.alpha, bound=self.margin, prior_scale=self.prior_scale)

    def futility_test(self) -> MixtureSPRT:
        """On flipped pairs, H0: E[champion_right - challenger_right] <= -margin (the challenger beats it by the margin)."""
        return MixtureSPRT(self.alpha, bound=-self.margin, prior_scale=self.prior_scale)

    def rollback_test(self) -> MixtureSPRT:
        """On flipped pairs, H0: E[previous_right - new_right] <= margin (the new one is no worse than the margin)."""
        return MixtureSPRT(self.alpha, bound=self.margin, prior_scale=self.prior_scale)


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise ValueError(f"Invalid gate setting {name!r}: {value!r}. It must be {allowed}.")


@dataclass(frozen=True)
class Pairs:
    """Labelled requests both models answered: the true label and each model's label, as strings."""

    true_labels: np.ndarray
    baseline_labels: np.ndarray
    candidate_labels: np.ndarray

    def __post_init__(self) -> None:
        lengths = {len(self.true_labels), len(self.baseline_labels), len(self.candidate_labels)}
        if len(lengths) != 1:
            raise ValueError(f"pairs need one true, baseline and candidate label each; got lengths {sorted(lengths)}")

    @classmethod
    def from_labels(cls, true_labels: Sequence, baseline_labels: Sequence, candidate_labels: Sequence) -> Pairs:
        return cls(*(np.asarray([None if v is None else str(v) for v in values], dtype=object)
                     for values in (true_labels, baseline_labels, candidate_labels)))

    @classmethod
    def from_table(cls, table: pa.Table) -> Pairs:
        """Columns `true_label`, `baseline_label`, `candidate_label`."""
        return cls.from_labels(*(table[name].to_pylist() for name in ("true_label", "baseline_label", "candidate_label")))

    def __len__(self) -> int:
        return len(self.true_labels)

    @property
    def baseline_right(self) -> np.ndarray:
        return self.baseline_labels == self.true_labels

    @property
    def candidate_right(self) -> np.ndarray:
        return self.candidate_labels == self.true_labels

    def counts(self) -> PairCounts:
        return PairCounts.from_outcomes(self.baseline_right, self.candidate_right)

    def accuracies(self) -> tuple[float | None, float | None]:
        if not len(self):
            return None, None
        return float(np.mean(self.baseline_right)), float(np.mean(self.candidate_right))

    def recalls(self) -> list[tuple[str, int, float, float]]:
        """(class, pairs of that true class, baseline recall, candidate recall) for each true class."""
        out = []
        for label in sorted({str(v) for v in self.true_labels}):
            rows = self.true_labels == label
            out.append((label, int(rows.sum()), float(np.mean(self.baseline_right[rows])),
                        float(np.mean(self.candidate_right[rows]))))
        return out


@dataclass(frozen=True)
class Latency:
    """p99 latency of one-row predictions of each model, measured head to head on the same rows."""

    baseline_p99_ms: float
    candidate_p99_ms: float
    rows: int


@dataclass(frozen=True)
class Guardrail:
    """One guardrail: the candidate's value, the baseline's, the limit, and whether it held."""

    name: str
    candidate: float
    baseline: float
    limit: float
    passed: bool

    def describe(self) -> dict:
        return {"name": self.name, "candidate": _round(self.candidate), "baseline": _round(self.baseline),
                "limit": _round(self.limit), "passed": self.passed}


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided on the pairs it had, and the evidence for it."""

    trial: str
    outcome: str
    reason: str
    counts: PairCounts
    baseline_accuracy: float | None
    candidate_accuracy: float | None
    statistic: float
    threshold: float
    futility_statistic: float | None = None
    guardrails: tuple[Guardrail, ...] = field(default_factory=tuple)

    @property
    def pairs(self) -> int:
        return self.counts.pairs

    @property
    def final(self) -> bool:
        return self.outcome != "continue"

    def evidence(self, baseline_version: int | None = None, candidate_version: int | None = None) -> dict:
        """The decision as the JSON the registry keeps beside the alias move."""
        baseline, candidate = ROLES[self.trial]
        return {
            "trial": self.trial,
            "outcome": self.outcome,
            "reason": self.reason,
            "pairs": self.pairs,
            "wins": self.counts.wins,
            "ties": self.counts.ties,
            "losses": self.counts.losses,
            baseline: {"version": baseline_version, "accuracy": _round(self.baseline_accuracy)},
            candidate: {"version": candidate_version, "accuracy": _round(self.candidate_accuracy)},
            "statistic": _round(self.statistic),
            "threshold": _round(self.threshold),
            "futility_statistic": _round(self.futility_statistic),
            "guardrails": [guardrail.describe() for guardrail in self.guardrails],
        }


def decide(config: GateConfig, pairs: Pairs, latency: Latency | None = None, expired: bool = False) -> GateDecision:
    """The promotion trial's decision on `pairs` (baseline: champion; candidate: challenger)."""
    counts = pairs.counts()
    promotion = config.promotion_test().test(counts)
    futility = config.futility_test().test(counts.flipped()) if config.futility else None
    guardrails = _guardrails(config, pairs, latency)

    def decision(outcome: str, reason: str) -> GateDecision:
        return GateDecision("promotion", outcome, reason, counts, *pairs.accuracies(), promotion.log_evalue,
                            promotion.log_threshold, None if futility is None else futility.log_evalue, guardrails)

    shown = _shown(counts, promotion.log_evalue, promotion.log_threshold)
    if counts.pairs < config.min_pairs:
        if expired:
            return decision("reject", f"deadline passed with {counts.pairs} labelled pairs, fewer than the "
                                      f"{config.min_pairs} needed: not shown better")
        return decision("continue", f"{counts.pairs} of at least {config.min_pairs} labelled pairs")
    if promotion.rejected:
        failed = [guardrail for guardrail in guardrails if not guardrail.passed]
        if failed:
            return decision("reject", f"better than the champion ({shown}) but guardrails failed: "
                                      + "; ".join(_failure(guardrail) for guardrail in failed))
        return decision("promote", f"better than the champion by more than {config.margin:g} ({shown})")
    if futility is not None and futility.rejected:
        return decision("reject", f"shown not better than the champion by {config.margin:g} "
                                  f"(futility e-value {math.exp(futility.log_evalue):.3g} >= {1 / config.alpha:g})")
    if counts.pairs >= config.max_pairs:
        return decision("reject", f"not shown better after {counts.pairs} labelled pairs (max_pairs "
                                  f"{config.max_pairs}; {shown})")
    if expired:
        return decision("reject", f"not shown better by the deadline ({shown})")
    return decision("continue", f"not decided yet ({shown})")


def decide_watch(config: GateConfig, pairs: Pairs, expired: bool = False) -> GateDecision:
    """The watch's decision on `pairs` (baseline: previous champion; candidate: new champion)."""
    counts = pairs.counts()
    rollback = config.rollback_test().test(counts.flipped())

    def decision(outcome: str, reason: str) -> GateDecision:
        return GateDecision("watch", outcome, reason, counts, *pairs.accuracies(), rollback.log_evalue,
                            rollback.log_threshold)

    shown = _shown(counts, rollback.log_evalue, rollback.log_threshold)
    if counts.pairs >= config.min_pairs and rollback.rejected:
        return decision("rollback", f"the new champion is worse than the previous one by more than "
                                    f"{config.margin:g} ({shown})")
    if counts.pairs >= config.watch_pairs:
        return decision("keep", f"not shown worse after {counts.pairs} labelled pairs ({shown})")
    if expired:
        return decision("keep", f"not shown worse by the end of the watch ({shown})")
    return decision("continue", f"{counts.pairs} labelled pairs, not shown worse ({shown})")


def _guardrails(config: GateConfig, pairs: Pairs, latency: Latency | None) -> tuple[Guardrail, ...]:
    found = []
    if latency is not None:
        limit = config.latency_p99_factor * latency.baseline_p99_ms
        found.append(Guardrail("latency_p99_ms", latency.candidate_p99_ms, latency.baseline_p99_ms, limit,
                               latency.candidate_p99_ms <= limit))
    for label, support, baseline, candidate in pairs.recalls():
        if support >= config.min_class_pairs:
            limit = baseline - config.max_recall_drop
            found.append(Guardrail(f"recall[{label}]", candidate, baseline, limit, candidate >= limit - 1e-12))
    return tuple(found)


def _failure(guardrail: Guardrail) -> str:
    if guardrail.name == "latency_p99_ms":
        return (f"latency p99 {guardrail.candidate:.3g} ms above {guardrail.limit:.3g} ms "
                f"(the champion's {guardrail.baseline:.3g} ms x the allowed factor)")
    return (f"{guardrail.name} fell from {guardrail.baseline:.3f} to {guardrail.candidate:.3f}, "
            f"below the allowed {guardrail.limit:.3f}")


def _shown(counts: PairCounts, log_evalue: float, log_threshold: float) -> str:
    return (f"{counts.pairs} pairs, accuracy difference {counts.difference:+.3f}, e-value {math.exp(min(log_evalue, 700)):.3g} "
            f"vs threshold {math.exp(log_threshold):.3g}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
