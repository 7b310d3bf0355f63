"""The promotion gate at work: trials opened as challengers appear, decided on the store's pairs, applied to the registry.

`PromotionGate(...).step()` does one round for one model:
1. reconciles its open trials with the aliases (a trial whose challenger or champion was moved by
   hand is `superseded`; an alias move this gate made before a crash is finished);
2. opens a promotion trial when the registry has a challenger without one (pairs count from
   the moment it became the challenger: it never learnt from that traffic);
3. decides each open trial on the pairs read from the store: the champion's logged predictions
   (or, in a watch, the new champion's) joined by request id to the shadow view's answers of
   the other model and to the labels (`Store.labelled`, with the settings' label horizon);
4. applies what it decided, each as one compare-and-swap in the registry with the decision's
   evidence in the alias history: promote (challenger -> champion, the old champion ->
   `previous`, and a watch trial opens), reject (challenger cleared), rollback (the champion's
   promotion undone), keep (the watch closes);
5. appends every decision taken on new evidence to `gate_decisions` (retrain/decisions.py).

Latency guardrail: when a challenger passes the test, both models predict the same labelled
rows one at a time, interleaved, in this process; the p99 of each is compared.

Only one process decides for a model at a time: each round holds the lease `gate:<model>`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from driftloop.collector.store import Store
from driftloop.retrain.decisions import DecisionRecord, GateLedger, Trial
from driftloop.retrain.gate import ROLES, GateConfig, GateDecision, Latency, Pairs, decide, decide_watch
from driftloop.retrain.leases import Leases
from driftloop.retrain.registry import ModelRegistry, StaleAlias, UnknownVersion

log = logging.getLogger(__name__)

__all__ = ["GateMetrics", "PairsRead", "PromotionGate", "measure_latency", "read_pairs"]

ACTOR = "gate"


@dataclass(frozen=True)
class PairsRead:
    """The pairs of a trial, and what could not be paired."""

    pairs: Pairs
    table: pa.Table                    # request_id, true_label, baseline_label, candidate_label, feature.*
    labelled_without_answer: int       # labelled predictions the other model has no shadow answer for (yet)
    labels_without_prediction: int     # labels, since the trial began, for a request no prediction has


def read_pairs(store: Store, model: str, trial: Trial, horizon: timedelta, until: datetime | None = None) -> PairsRead:
    """Labelled requests both models answered since the trial began.

    Promotion: the champion's logged predictions (version `baseline`) and the challenger's shadow
    answers (version `candidate`). Watch: the new champion's logged predictions (`candidate`) and
    the previous champion's shadow answers (`baseline`).
    """
    live, shadow = ((trial.baseline_version, trial.candidate_version) if trial.kind == "promotion"
                    else (trial.candidate_version, trial.baseline_version))
    labelled = store.labelled(model, trial.started_at, until, horizon)
    answers = store.shadow(model, trial.started_at, until, version=str(shadow))
    unknown = _labels_without_prediction(store, trial.started_at, horizon)
    empty = pa.table({name: pa.array([], pa.string()) for name in
                      ("request_id", "true_label", "baseline_label", "candidate_label")})
    if labelled.num_rows == 0 or answers.num_rows == 0:
        served = 0 if labelled.num_rows == 0 else _count_version(labelled, live)
        return PairsRead(Pairs.from_table(empty), empty, served, unknown)
    live_label, shadow_label = ("baseline_label", "candidate_label") if trial.kind == "promotion" else (
        "candidate_label", "baseline_label")
    features = [name for name in labelled.column_names if name.startswith("feature.")]
    with duckdb.connect() as connection:
        connection.register("labelled", labelled)
        connection.register("answers", answers)
        live_rows = f"""SELECT request_id, CAST(true_label AS VARCHAR) AS true_label, CAST(label AS VARCHAR) AS
                            {live_label}, {", ".join(f'"{name}"' for name in features) or "NULL AS no_features"}
                        FROM labelled WHERE model_version = ? AND true_label IS NOT NULL
                        QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY timestamp, event_id) = 1"""
        shadow_rows = f"""SELECT request_id, CAST(label AS VARCHAR) AS {shadow_label} FROM answers
                          QUALIFY row_number() OVER (PARTITION BY request_id ORDER BY timestamp, event_id) = 1"""
        table = connection.sql(
            f"""WITH l AS ({live_rows}), s AS ({shadow_rows})
                SELECT l.*, s.{shadow_label}, s.request_id IS NOT NULL AS paired FROM l LEFT JOIN s USING (request_id)
                ORDER BY l.request_id""", params=[str(live)]).to_arrow_table()
    paired = table.filter(table["paired"]).drop_columns(["paired"])
    return PairsRead(Pairs.from_table(paired), paired, table.num_rows - paired.num_rows, unknown)


def _count_version(table: pa.Table, version) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(pc.equal(table["model_version"], str(version))).as_py() or 0)


def _labels_without_prediction(store: Store, since: datetime, horizon: timedelta) -> int:
    """Labels given since `since` whose request id no stored prediction has (counted, then ignored)."""
    moment = since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    earliest = (since - horizon).astimezone(UTC).strftime("%Y-%m-%d")
    try:
        result = store.sql(
            f"""SELECT count(DISTINCT f.request_id) AS unknown FROM feedback f
                WHERE f.timestamp >= TIMESTAMPTZ '{moment}+00' AND NOT EXISTS (
                    SELECT 1 FROM predictions p WHERE p.date >= '{earliest}' AND p.request_id = f.request_id)""")
    except duckdb.CatalogException:  # no feedback, or no predictions, stored yet
        return 0
    return int(result["unknown"][0].as_py() or 0)


def measure_latency(baseline, candidate, table: pa.Table, rows: int = 200) -> Latency | None:
    """p99 of one-row predictions of two predictors on the same rows, interleaved (None without rows)."""
    count = min(rows, table.num_rows)
    if count == 0:
        return None
    columns = {name.removeprefix("feature."): table[name].slice(0, count).to_pylist()
               for name in table.column_names if name.startswith("feature.")}
    records = [{name: values[i] for name, values in columns.items()} for i in range(count)]
    own = [[{name: record.get(name) for name in predictor.feature_names} for record in records]
           for predictor in (baseline, candidate)]
    timings = np.zeros((2, count))
    for i in range(count):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):  # alternate who goes first
            predictor = (baseline, candidate)[side]
            began = time.perf_counter()
            predictor.predict_proba([own[side][i]])
            timings[side, i] = (time.perf_counter() - began) * 1000
    return Latency(float(np.percentile(timings[0], 99)), float(np.percentile(timings[1], 99)), count)


class GateMetrics:
    """`driftloop_gate_*`: a Prometheus collector over the latest decision of each trial decided in this process.

    One per metrics registry, shared by the gates of every model the process decides for.
    """

    def __init__(self) -> None:
        self.latest: dict[int, tuple[Trial, GateDecision, int]] = {}
        self.open: dict[tuple[str, str], int] = {}
        self.final: dict[tuple[str, str, str], int] = {}

    def decided(self, trial: Trial, decision: GateDecision, unknown_labels: int) -> None:
        self.latest[trial.id] = (trial, decision, unknown_labels)

    def applied(self, trial: Trial, outcome: str) -> None:
        key = (trial.model, trial.kind, outcome)
        self.final[key] = self.final.get(key, 0) + 1

    def describe(self):
        return []

    def collect(self):
        labels = ["model", "version", "trial"]
        pairs = GaugeMetricFamily("driftloop_gate_pairs", "Labelled pairs the latest decision of a trial rested on.",
                                  labels=labels)
        statistic = GaugeMetricFamily("driftloop_gate_statistic",
                                      "log e-value of the trial's test (promotion; in a watch, rollback).", labels=labels)
        threshold = GaugeMetricFamily("driftloop_gate_threshold",
                                      "log(1/alpha): the statistic at which the trial decides.", labels=labels)
        accuracy = GaugeMetricFamily("driftloop_gate_accuracy", "Accuracy on the trial's pairs, per model in it.",
                                     labels=[*labels, "role"])
        unknown = GaugeMetricFamily("driftloop_gate_unknown_labels",
                                    "Labels since the trial began for requests no prediction has (ignored).",
                                    labels=labels)
        open_trials = GaugeMetricFamily("driftloop_gate_open_trials", "Open trials.", labels=["model", "trial"])
        decisions = CounterMetricFamily("driftloop_gate_decisions", "Final gate decisions, by trial and outcome.",
                                        labels=["model", "trial", "outcome"])
        for trial, decision, unknown_labels in self.latest.values():
            values = [trial.model, str(trial.candidate_version), trial.kind]
            pairs.add_metric(values, decision.pairs)
            statistic.add_metric(values, decision.statistic)
            threshold.add_metric(values, decision.threshold)
            unknown.add_metric(values, unknown_labels)
            baseline_role, candidate_role = ROLES[trial.kind]
            if decision.baseline_accuracy is not None:
                accuracy.add_metric([*values, baseline_role], decision.baseline_accuracy)
                accuracy.add_metric([*values, candidate_role], decision.candidate_accuracy)
        for (model, kind), count in self.open.items():
            open_trials.add_metric([model, kind], count)
        for key, count in self.final.items():
            decisions.add_metric(list(key), count)
        yield from (pairs, statistic, threshold, accuracy, unknown, open_trials, decisions)


class PromotionGate:
    """Opens, decides and closes the trials of one model. See the module docstring."""

    def __init__(self, registry: ModelRegistry, ledger: GateLedger, store: Store, config: GateConfig, *, model: str,
                 horizon: timedelta, metrics: GateMetrics | None = None, latency_rows: int = 200,
                 lease_ttl_s: float = 120.0, clock=lambda: datetime.now(UTC)) -> None:
        if latency_rows < 1:
            raise ValueError(f"'latency_rows' must be at least 1, got {latency_rows}")
        self.registry = registry
        self.ledger = ledger
        self.store = store
        self.config = config
        self.model = model
        self.horizon = horizon
        self.latency_rows = latency_rows
        self.lease_ttl_s = lease_ttl_s
        self.clock = clock
        self.leases = Leases(registry.database)
        self.holder = f"gate-{id(self):x}-{time.time_ns()}"
        self.metrics = metrics if metrics is not None else GateMetrics()
        self._predictors: dict[int, object] = {}

    def run(self, stop: threading.Event | None = None, interval_s: float = 30.0) -> None:
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:  # noqa: BLE001 - a failed round (store being written, a locked database) is retried
                    log.exception("%s: gate round failed; retrying in %.0f s", self.model, interval_s)
                stop.wait(interval_s)
        finally:
            self.leases.release(f"gate:{self.model}", self.holder)

    def step(self) -> list[DecisionRecord]:
        """One round: reconcile, open, decide, apply. The decisions recorded in this round."""
        if self.leases.acquire(f"gate:{self.model}", self.holder, self.lease_ttl_s) is None:
            log.info("%s: another gate holds the lease; not deciding this round", self.model)
            return []
        recorded = []
        for trial in self.ledger.open_trials(self.model):
            trial = self._reconcile(trial)
            if trial.status == "open":
                recorded.extend(self._decide(trial))
        trial = self._open_promotion()
        if trial is not None:
            recorded.extend(self._decide(trial))
        for kind in ("promotion", "watch"):
            self.metrics.open[self.model, kind] = len(self.ledger.open_trials(self.model, kind))
        return recorded

    # -- trials -----------------------------------------------------------------------------------

    def _open_promotion(self) -> Trial | None:
        challenger = self.registry.alias(self.model, "challenger")
        if challenger is None or self.ledger.open_trials(self.model, "promotion"):
            return None
        champion = self.registry.alias(self.model, "champion")
        if champion is None:
            log.info("%s: challenger version %d has no champion to be compared with; promote one by hand",
                     self.model, challenger)
            return None
        moves = [c for c in self.registry.history(self.model, "challenger") if c.to_version == challenger]
        since = moves[-1].moved_at if moves else self.clock()
        if any(t.kind == "promotion" and t.candidate_version == challenger and t.started_at == since
               for t in self.ledger.trials(self.model)):
            return None  # decided already (a crash between the decision and the alias move is reconciled)
        version = self.registry.get(self.model, challenger)
        trial = self.ledger.open_trial(self.model, "promotion", candidate=challenger, baseline=champion,
                                       started_at=since, deadline_at=since + self.config.deadline,
                                       episode_id=version.episode_id)
        log.info("%s: trial %d opened: challenger version %d against champion version %d", self.model, trial.id,
                 challenger, champion)
        return trial

    def _reconcile(self, trial: Trial) -> Trial:
        """Close a trial whose aliases moved under it; finish the work of a crash after an alias move."""
        aliases = self.registry.aliases(self.model)
        ours = [c for c in self.registry.history(self.model) if c.evidence.get("trial_id") == trial.id]
        if trial.kind == "promotion":
            if aliases.get("challenger") == trial.candidate_version and aliases.get("champion") == trial.baseline_version:
                return trial
            if any(c.alias == "champion" and c.to_version == trial.candidate_version for c in ours):
                self.ledger.close_trial(trial.id, "promoted", ours[0].reason)
                self._open_watch(trial, ours[0].moved_at)
                return self.ledger.trial(trial.id)
            if any(c.alias == "challenger" and c.to_version is None for c in ours):
                return self.ledger.close_trial(trial.id, "rejected", ours[0].reason)
            return self.ledger.close_trial(trial.id, "superseded", f"aliases moved outside the gate: {aliases}")
        if aliases.get("champion") == trial.candidate_version:
            return trial
        if any(c.alias == "champion" and c.to_version == trial.baseline_version for c in ours):
            return self.ledger.close_trial(trial.id, "rolled_back", ours[0].reason)
        return self.ledger.close_trial(trial.id, "superseded", f"the champion moved outside the gate: {aliases}")

    def _open_watch(self, promoted: Trial, since: datetime) -> Trial | None:
        if promoted.baseline_version is None:
            return None
        return self.ledger.open_trial(self.model, "watch", candidate=promoted.candidate_version,
                                      baseline=promoted.baseline_version, started_at=since,
                                      deadline_at=since + self.config.watch_deadline, episode_id=promoted.episode_id)

    # -- decisions --------------------------------------------------------------------------------

    def _decide(self, trial: Trial) -> list[DecisionRecord]:
        refusal = self.ledger.refusal(self.model, trial.candidate_version) if trial.kind == "promotion" else None
        expired = self.clock() >= trial.deadline_at
        read = read_pairs(self.store, self.model, trial, self.horizon)
        if trial.kind == "watch":
            decision = decide_watch(self.config, read.pairs, expired)
        else:
            decision = decide(self.config, read.pairs, expired=expired)
            if decision.outcome == "promote":
                decision = decide(self.config, read.pairs, self._latency(trial, read.table), expired)
            if refusal is not None:
                decision = GateDecision("promotion", "reject", refusal, decision.counts, decision.baseline_accuracy,
                                        decision.candidate_accuracy, decision.statistic, decision.threshold)
        self.metrics.decided(trial, decision, read.labels_without_prediction)
        last = self.ledger.last_decision(trial.id)
        evidence = {**decision.evidence(trial.baseline_version, trial.candidate_version), "trial_id": trial.id,
                    "labelled_without_answer": read.labelled_without_answer,
                    "labels_without_prediction": read.labels_without_prediction}
        if not decision.final:
            if last is not None and last.evidence.get("pairs") == decision.pairs and (
                    last.evidence.get("wins"), last.evidence.get("losses")) == (decision.counts.wins,
                                                                                decision.counts.losses):
                return []  # no new evidence, no new decision
            return [self.ledger.record(trial, decision.outcome, decision.reason, decision.pairs, evidence)]
        return self._apply(trial, decision, evidence)

    def _apply(self, trial: Trial, decision: GateDecision, evidence: dict) -> list[DecisionRecord]:
        model, outcome = self.model, decision.outcome
        try:
            if outcome == "promote":
                changes = self.registry.promote(model, expected_champion=trial.baseline_version,
                                                expected_challenger=trial.candidate_version,
                                                reason=f"gate: {decision.reason}", evidence=evidence, actor=ACTOR)
                status = "promoted"
            elif outcome == "reject":
                changes = [self.registry.move_alias(model, "challenger", None, expected=trial.candidate_version,
                                                    reason=f"gate rejected it: {decision.reason}", evidence=evidence,
                                                    actor=ACTOR)]
                status = "rejected"
            elif outcome == "rollback":
                changes = [self.registry.rollback(model, reason=f"gate watch: {decision.reason}", evidence=evidence,
                                                  actor=ACTOR)]
                status = "rolled_back"
            else:  # keep: nothing moves
                changes, status = [], "kept"
        except (StaleAlias, UnknownVersion) as error:
            log.warning("%s: trial %d decided %s but the aliases moved meanwhile (%s); superseded", model, trial.id,
                        outcome, error)
            self.ledger.close_trial(trial.id, "superseded", f"decided {outcome}, but: {error}")
            return []
        record = self.ledger.record(trial, outcome, decision.reason, decision.pairs, evidence,
                                    changes[0].id if changes else None)
        self.ledger.close_trial(trial.id, status, decision.reason)
        self.metrics.applied(trial, outcome)
        log.info("%s: trial %d (%s, version %d against %s): %s: %s", model, trial.id, trial.kind,
                 trial.candidate_version, trial.baseline_version, outcome, decision.reason)
        if outcome == "promote":
            watch = self._open_watch(trial, changes[0].moved_at)
            if watch is not None:
                log.info("%s: watching version %d against the previous champion %d until %s", model,
                         watch.candidate_version, watch.baseline_version, watch.deadline_at.isoformat())
        return [record]

    def _latency(self, trial: Trial, table: pa.Table) -> Latency | None:
        return measure_latency(self._predictor(trial.baseline_version), self._predictor(trial.candidate_version),
                               table, self.latency_rows)

    def _predictor(self, version: int):
        if version not in self._predictors:
            self._predictors[version] = self.registry.load(self.model, version).predictor
        return self._predictors[version]
