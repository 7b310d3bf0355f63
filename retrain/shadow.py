"""The shadow scorer: the challenger answers the champion's own logged traffic, and nobody sees its answers but the gate.

`ShadowScorer` consumes the `predictions` topic (its own consumer group per model), keeps the
events of its model, scores their logged inputs with each *subject* and writes each answer to
`shadow` as a prediction event: the same request id and time, the subject's version, its
output, a deterministic event id (a hash of the original event id and the version). Subjects
are the `challenger` and, while a promotion is being watched, the previous champion (so the
watch can compare the new champion with it on the same requests). With no subject it pauses
its partitions and says `waiting` in its status.

Exactly once in the shadow view: after each poll it scores the batch, waits until Kafka
acknowledged every shadow event (acks=all), and only then commits the offsets. A restart
resumes from the commit, so nothing is skipped; a crash between the acknowledgement and the
commit scores that batch again, with the same event ids, and the store keeps one of each.

When a subject appears, partitions are moved forward to the first offset logged at or after
the time it became a subject (less `skew`): the gate compares only traffic after that, so an
older backlog is not scored for nothing.

A subject whose inputs differ from the traffic's (a feature the champion's traffic does not
carry, or carries as another kind) or whose artifact fails to load is refused: the reason goes
to the registry database (the gate rejects it), nothing is scored with it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pyarrow.compute as pc
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import CommitFailedError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from driftloop.collector.columnar import parse_batch
from driftloop.collector.durable import durable_producer
from driftloop.collector.topics import Topics
from driftloop.retrain.decisions import SHADOW_STATES, GateLedger
from driftloop.retrain.preprocessing import InputError
from driftloop.retrain.registry import ModelRegistry

log = logging.getLogger(__name__)

__all__ = ["ShadowConfig", "ShadowMetrics", "ShadowScorer", "shadow_event_id", "traffic_mismatch"]

START_FROM = ("earliest", "latest")


@dataclass(frozen=True)
class ShadowConfig:
    """What to read and where; `start_from` is where a consumer group with no commits starts."""

    bootstrap_servers: str
    topics: Topics
    model: str
    group_id: str = ""
    poll_records: int = 10_000
    poll_timeout_ms: int = 500
    refresh_s: float = 2.0
    start_from: str = "latest"
    skew: timedelta = timedelta(minutes=5)
    ack_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("the shadow scorer needs a model name")
        if not self.group_id:
            object.__setattr__(self, "group_id", f"driftloop-shadow-{self.model}")
        if self.start_from not in START_FROM:
            raise ValueError(f"Invalid 'start_from' {self.start_from!r}. Valid values are: {list(START_FROM)}")
        if self.poll_records < 1 or self.poll_timeout_ms < 1 or self.refresh_s <= 0 or self.ack_timeout_s <= 0:
            raise ValueError("poll_records and poll_timeout_ms must be >= 1; refresh_s and ack_timeout_s > 0")


class ShadowMetrics:
    """The scorer's metrics, labelled by model (and version where one model is meant)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.scored = Counter("driftloop_shadow_scored", "Events scored in shadow and acknowledged on the shadow topic.",
                              ["model", "version"], registry=registry)
        self.skipped = Counter("driftloop_shadow_skipped", "Logged predictions not scored, by reason.",
                               ["model", "reason"], registry=registry)
        self.lag = Gauge("driftloop_shadow_lag", "Predictions of the topic not yet scored (all partitions).",
                         ["model"], registry=registry)
        self.state = Gauge("driftloop_shadow_state", "1 for the scorer's current state (waiting, scoring, refused).",
                           ["model", "state"], registry=registry)
        self.subject = Gauge("driftloop_shadow_subject", "1 for each version scored in shadow now.",
                             ["model", "version"], registry=registry)
        self.refused = Counter("driftloop_shadow_refused", "Versions the scorer refused to score.",
                               ["model", "version"], registry=registry)
        self.batch_seconds = Histogram("driftloop_shadow_batch_seconds", "Time to score and write one polled batch.",
                                       ["model"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                       registry=registry)


@dataclass
class _Subject:
    version: int
    since: datetime
    predictor: object = field(repr=False)


def shadow_event_id(event_id: str, version: int | str) -> str:
    """The shadow event's id: the same for the same prediction and version, so a replay is stored once."""
    return hashlib.blake2b(f"{event_id}\x00{version}".encode(), digest_size=16).hexdigest()


def traffic_mismatch(subject, traffic) -> str | None:
    """Why a subject cannot score the traffic (None if it can): both are Preprocessors."""
    carried = {spec.name: spec.kind for spec in traffic.inputs}
    missing = [spec.name for spec in subject.inputs if spec.name not in carried]
    if missing:
        return f"it reads features {missing} that the traffic does not carry (the traffic has {sorted(carried)})"
    for spec in subject.inputs:
        if carried[spec.name] != spec.kind:
            return f"it reads feature {spec.name!r} as {spec.kind} where the traffic carries it as {carried[spec.name]}"
    return None


class ShadowScorer:
    """Scores `config.model`'s logged predictions with its challenger (and the watched previous champion)."""

    def __init__(self, config: ShadowConfig, registry: ModelRegistry, ledger: GateLedger,
                 metrics_registry: CollectorRegistry, clock=lambda: datetime.now(UTC)) -> None:
        self.config = config
        self.registry = registry
        self.ledger = ledger
        self.metrics = ShadowMetrics(metrics_registry)
        self.clock = clock
        self.subjects: dict[int, _Subject] = {}
        self.state = ""
        self._loaded: dict[int, object] = {}
        self._refused: dict[int, str] = {}
        self._traffic: tuple[int | None, object | None] = (None, None)
        self._seen_change = -1
        self._wanted: set[int] = set()
        self._counted: dict[int, int] = {}
        self._sent: list = []  # this batch's send futures, checked after the flush
        self._next_refresh = 0.0
        self._sought: set[TopicPartition] = set()
        self._partitions_out: list[int] | None = None
        self.consumer = KafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset=config.start_from,
            max_poll_records=config.poll_records,
            fetch_min_bytes=65536,
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            metadata_max_age_ms=5000,
        )
        self.consumer.subscribe([config.topics.predictions])
        self.consumer.partitions_for_topic(config.topics.predictions)  # known before the first join (see StoreWriter)
        self.producer = durable_producer(config.bootstrap_servers, compression_type="lz4", linger_ms=20,
                                         batch_size=256 * 1024, max_in_flight_requests_per_connection=5,
                                         allow_auto_create_topics=False)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> int:
        """Refresh the subjects when due, poll once, score, write, commit. Returns the events scored."""
        if time.monotonic() >= self._next_refresh:
            self.refresh()
        assignment = self.consumer.assignment()
        if not self.subjects:
            if assignment:
                self.consumer.pause(*assignment)
            polled = self.consumer.poll(timeout_ms=min(self.config.poll_timeout_ms, 200))  # keeps the membership
            for partition, records in polled.items():  # fetched before the pause took hold: not skipped
                self.consumer.seek(partition, records[0].offset)
            self._update_lag()
            return 0
        if self.consumer.paused():
            self.consumer.resume(*self.consumer.paused())
        self._seek_forward(assignment)
        polled = self.consumer.poll(timeout_ms=self.config.poll_timeout_ms, max_records=self.config.poll_records)
        if not polled:
            self._update_lag()
            return 0
        began = time.perf_counter()
        self._counted, self._sent = {}, []
        scored = sum(self._score(partition, records) for partition, records in polled.items())
        self.producer.flush(timeout=self.config.ack_timeout_s)  # every shadow event acknowledged before the commit
        failed = [future.exception for future in self._sent if future.failed()]
        if failed:
            log.error("%d shadow events not acknowledged (%s); scoring the batch again", len(failed), failed[0])
            for partition, records in polled.items():
                self.consumer.seek(partition, records[0].offset)
            time.sleep(1.0)
            return 0
        offsets = {partition: OffsetAndMetadata(records[-1].offset + 1, "", -1) for partition, records in polled.items()}
        try:
            self.consumer.commit(offsets)
        except CommitFailedError:
            log.warning("commit refused after a rebalance; the partitions' next owner scores them again "
                        "(the same shadow event ids: the store keeps one of each)")
        for version, count in self._counted.items():
            self.metrics.scored.labels(self.config.model, str(version)).inc(count)
        self.metrics.batch_seconds.labels(self.config.model).observe(time.perf_counter() - began)
        self._update_lag()
        return scored

    def close(self) -> None:
        try:
            self.producer.close(timeout=self.config.ack_timeout_s)
        finally:
            self.consumer.close()

    # -- subjects ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read which versions to score now from the registry: the challenger, and a watched previous champion."""
        self._next_refresh = time.monotonic() + self.config.refresh_s
        model = self.config.model
        change = self.registry.last_change_id(model)
        watches = self.ledger.open_trials(model, "watch")
        wanted: dict[int, datetime] = {}
        challenger = self.registry.alias(model, "challenger")
        if challenger is not None:
            wanted[challenger] = self._subject_since(challenger)
        for trial in watches:
            if trial.baseline_version is not None:
                wanted.setdefault(trial.baseline_version, trial.started_at)
        if change == self._seen_change and set(wanted) == self._wanted:
            return
        self._seen_change, self._wanted = change, set(wanted)
        subjects = {}
        for version, since in wanted.items():
            predictor = self._load(version)
            if predictor is not None:
                subjects[version] = _Subject(version, since, predictor)
        if set(subjects) != set(self.subjects):
            self._sought.clear()  # a new subject: move forward to its start again
            log.info("%s: scoring in shadow with %s", model, [f"version {v}" for v in sorted(subjects)] or "nothing")
        for version in self.subjects:
            if version not in subjects:
                self.metrics.subject.labels(model, str(version)).set(0)
        for version in subjects:
            self.metrics.subject.labels(model, str(version)).set(1)
        self.subjects = subjects
        if subjects:
            self._set_state("scoring", sorted(subjects), "")
        elif wanted:
            reasons = "; ".join(f"version {v}: {self._refused[v]}" for v in sorted(wanted) if v in self._refused)
            self._set_state("refused", [], reasons)
        else:
            self._set_state("waiting", [], f"no challenger for {model} yet: waiting for one to be registered")

    def _subject_since(self, version: int) -> datetime:
        """When `version` became the challenger (the latest move of the alias to it), or now."""
        moves = [c for c in self.registry.history(self.config.model, "challenger") if c.to_version == version]
        return moves[-1].moved_at if moves else self.clock()

    def _load(self, version: int):
        if version in self._loaded:
            return self._loaded[version]
        if version in self._refused:
            return None
        model = self.config.model
        try:
            loaded = self.registry.load(model, version)
            reason = self._mismatch(loaded.predictor.preprocessor)
        except Exception as error:  # noqa: BLE001 - any failure to load is a refusal with its reason, never a crash
            reason = f"it failed to load: {type(error).__name__}: {error}"
        if reason is not None:
            reason = f"{model} version {version} refused for shadow scoring: {reason}"
            log.error("%s", reason)
            self._refused[version] = reason
            self.ledger.refuse(model, version, reason)
            self.metrics.refused.labels(model, str(version)).inc()
            return None
        _warm_up(loaded.predictor)
        self._loaded[version] = loaded.predictor
        return loaded.predictor

    def _mismatch(self, preprocessor) -> str | None:
        """Compare a subject's inputs with the traffic's: the champion's inputs (None: no champion to compare)."""
        champion = self.registry.alias(self.config.model, "champion")
        if champion is None:
            return None
        if self._traffic[0] != champion:
            self._traffic = (champion, self.registry.load(self.config.model, champion).predictor.preprocessor)
        mismatch = traffic_mismatch(preprocessor, self._traffic[1])
        return None if mismatch is None else f"{mismatch} (champion version {champion}'s inputs)"

    def _set_state(self, state: str, versions: list[int], reason: str) -> None:
        if state != self.state:
            log.info("%s shadow scorer: %s%s", self.config.model, state, f" ({reason})" if reason else "")
        self.state = state
        for known in SHADOW_STATES:
            self.metrics.state.labels(self.config.model, known).set(1 if known == state else 0)
        self.ledger.set_shadow_status(self.config.model, state, versions, reason)

    def _seek_forward(self, assignment: set[TopicPartition]) -> None:
        """Partitions not yet moved for the current subjects: to the first offset at or after their start."""
        todo = [partition for partition in assignment if partition not in self._sought]
        if not todo:
            return
        since = min(subject.since for subject in self.subjects.values()) - self.config.skew
        found = self.consumer.offsets_for_times({partition: int(since.timestamp() * 1000) for partition in todo})
        for partition in todo:
            target = found.get(partition)
            if target is None:  # nothing logged since: start at the end
                target_offset = self.consumer.end_offsets([partition])[partition]
            else:
                target_offset = target.offset
            if target_offset > self.consumer.position(partition):
                log.info("%s: skipping %s to offset %d (logged before %s, older than the subjects)",
                         self.config.model, partition, target_offset, since.isoformat())
                self.consumer.seek(partition, target_offset)
            self._sought.add(partition)

    # -- scoring ----------------------------------------------------------------------------------

    def _score(self, partition: TopicPartition, records: list) -> int:
        model = self.config.model
        values = [record.value for record in records]
        offsets = np.fromiter((record.offset for record in records), dtype=np.int64, count=len(records))
        parsed = parse_batch("prediction", values, partition.partition, offsets.tolist())
        if parsed.rejected:
            self.metrics.skipped.labels(model, "invalid_event").inc(len(parsed.rejected))
        table = parsed.table
        if table.num_rows and "model_name" in table.column_names:
            table = table.filter(pc.equal(table["model_name"], model))
        if not table.num_rows:
            return 0
        rows = np.searchsorted(offsets, table["kafka_offset"].to_numpy())
        documents = [orjson.loads(values[row]) for row in rows]
        topic = self.config.topics.shadow
        out_partition = partition.partition % len(self._shadow_partitions())
        for version, subject in self.subjects.items():
            began = time.perf_counter()
            try:
                probabilities = subject.predictor.predict_proba(table)
            except InputError as error:
                log.warning("%s version %d cannot score %d events of %s: %s", model, version, table.num_rows,
                            partition, error)
                self.metrics.skipped.labels(model, "unscorable").inc(table.num_rows)
                continue
            per_row_ms = (time.perf_counter() - began) * 1000 / table.num_rows
            classes = [str(c) for c in subject.predictor.classes_]
            labels = np.asarray(classes, dtype=object)[np.argmax(probabilities, axis=1)]
            text_version = str(version)
            for document, label, row in zip(documents, labels, probabilities.tolist(), strict=True):
                shadow = dict(document)
                shadow["event_id"] = shadow_event_id(document["event_id"], version)
                shadow["model_version"] = text_version
                shadow["output"] = {"label": label, "probabilities": dict(zip(classes, row, strict=True))}
                shadow["latency_ms"] = per_row_ms
                self._sent.append(self.producer.send(topic, key=document["request_id"].encode(),
                                                     value=orjson.dumps(shadow), partition=out_partition))
            self._counted[version] = self._counted.get(version, 0) + len(documents)
        return len(documents) * len(self.subjects)

    def _shadow_partitions(self) -> list[int]:
        if self._partitions_out is None:
            found = self.producer.partitions_for(self.config.topics.shadow)
            if not found:
                raise RuntimeError(f"Kafka at {self.config.bootstrap_servers} has no topic "
                                   f"{self.config.topics.shadow!r}; create it first (`driftloop stack up` does)")
            self._partitions_out = sorted(found)
        return self._partitions_out

    def _update_lag(self) -> None:
        lag = 0
        for partition in self.consumer.assignment():
            highwater = self.consumer.highwater(partition)
            if highwater is not None:
                lag += max(0, highwater - self.consumer.position(partition))
        self.metrics.lag.labels(self.config.model).set(lag)


def _warm_up(predictor) -> None:
    """One prediction on zeros, so the first real batch does not pay torch's first-call costs."""
    try:
        predictor.predict_proba({name: [None] for name in predictor.feature_names})
    except Exception:  # noqa: BLE001 - a warm-up that fails says nothing the real batch would not
        pass

