"""Running an episode step by step: each step reads what the last one stored, does its work, moves on.

The runner owns the flow and its failures; the work of each step that touches the outside
(choosing a labelling batch, building a snapshot, training on Ray) comes in as a callable, so
the composition root wires curation, the store and Ray to it. Any error of a step ends the
episode `failed` with that step and the cause as its reason; nothing is registered and the
champion is untouched. A step interrupted by a crash runs again when the episode is resumed,
at most `max_step_attempts` times.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc

from driftloop.collector.store import Store
from driftloop.curation.snapshot import Snapshot
from driftloop.retrain.dataset import DataError, prepare_training_data
from driftloop.retrain.episodes import WAITING_STEPS, Episode, EpisodeStore, Step, StepConflict, is_terminal
from driftloop.retrain.registry import ModelRegistry, TrainingRecord
from driftloop.retrain.specs import ModelSpec, SpecError

log = logging.getLogger(__name__)

__all__ = ["EpisodeRunner", "RunnerConfig", "labels_since"]


@dataclass(frozen=True)
class RunnerConfig:
    min_new_labels: int = 100
    label_deadline_s: float = 6 * 3600.0
    snapshot_window: timedelta = timedelta(days=7)
    label_horizon: timedelta = timedelta(days=7)
    poll_s: float = 5.0
    max_step_attempts: int = 2
    selection_window: timedelta = timedelta(minutes=60)
    budget: int = 100
    selection_pool_factor: float = 3.0
    selection_wait_s: float = 600.0


def labels_since(store: Store, model: str, since: datetime | None, now: datetime, window: timedelta,
                 horizon: timedelta) -> int:
    """Labels of `model`'s predictions in the window before `now` that arrived after `since`."""
    labelled = store.labelled(model, now - window, now, horizon)
    if since is None or labelled.num_rows == 0:
        return labelled.num_rows
    return int(pc.sum(pc.greater(labelled["feedback_timestamp"], since)).as_py() or 0)


class EpisodeRunner:
    """Drives episodes of any model to a terminal step (or until `stop` is set, to resume later)."""

    def __init__(
        self,
        config: RunnerConfig,
        episodes: EpisodeStore,
        registry: ModelRegistry,
        store: Store,
        *,
        spec_for: Callable[[str], ModelSpec],
        select: Callable[[Episode, datetime, datetime], str | None],
        snapshot: Callable[[Episode, datetime | None, datetime], Snapshot],
        load_snapshot: Callable[[str], Snapshot],
        train: Callable,
        register: Callable,
        workdir: Path,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        more_steps: Mapping[Step, Callable[[Episode, threading.Event], Episode]] | None = None,
    ) -> None:
        self.config = config
        self.episodes = episodes
        self.registry = registry
        self.store = store
        self.spec_for = spec_for
        self.select = select
        self.snapshot = snapshot
        self.load_snapshot = load_snapshot
        self.train = train
        self.register = register
        self.workdir = Path(workdir)
        self.clock = clock
        self.more_steps = dict(more_steps or {})  # the steps after registering: the promotion gate's (gating.py)

    def run(self, episode_id: str, stop: threading.Event | None = None) -> Episode:
        """Run the episode's steps until it ends, or `stop` is set (it then stays where it is)."""
        stop = stop or threading.Event()
        episode = self.episodes.get(episode_id)
        while not is_terminal(episode.step) and not stop.is_set():
            try:
                episode = self.step(episode, stop)
            except StepConflict:
                return self.episodes.get(episode_id)  # another runner moved it
        return episode

    def step(self, episode: Episode, stop: threading.Event) -> Episode:
        """Run the episode's current step once; the episode after it (maybe unmoved if `stop` came)."""
        step = episode.step
        if step not in WAITING_STEPS:  # waiting costs nothing to resume; the other steps count their starts
            attempts = self.episodes.begin_attempt(episode.id, step)
            if attempts > self.config.max_step_attempts:
                return self.episodes.fail(episode.id, step, f"{step}: interrupted {attempts - 1} times; not retried again")
            episode = self.episodes.get(episode.id)  # with its attempts counted
        try:
            handler = getattr(self, f"_{step}", None) or self.more_steps.get(step)
            if handler is None:
                raise RuntimeError(f"this process cannot run the step {step}: nothing handles it here")
            return handler(episode, stop)
        except StepConflict:
            raise
        except Exception as error:  # noqa: BLE001 - any failure ends this episode, never the service
            reason = f"{step}: {_reason(error)}"
            log.warning("episode %s of %s failed: %s", episode.id, episode.model, reason)
            if not isinstance(error, (DataError, SpecError, ValueError, LookupError, RuntimeError, OSError)):
                log.exception("unexpected error in episode %s", episode.id)
            return self.episodes.fail(episode.id, step, reason)

    # -- the steps, one method each, named after the step ---------------------------------------

    def _selecting(self, episode: Episode, stop: threading.Event) -> Episode:
        if "selection_deadline" not in episode.state:  # fixed once, so a resumed step does not wait afresh
            deadline = self.clock() + timedelta(seconds=self.config.selection_wait_s)
            episode = self.episodes.update_state(episode.id, Step.SELECTING, {"selection_deadline": deadline.isoformat()})
        deadline = datetime.fromisoformat(episode.state["selection_deadline"])
        wanted = int(self.config.selection_pool_factor * self.config.budget)
        while True:
            start, end = self.selection_window(episode, self.clock())
            pool = self.store.unlabelled(episode.model, start, end, horizon=self.config.label_horizon).num_rows
            if pool >= wanted or end >= deadline:
                break
            if stop.wait(min(self.config.poll_s, (deadline - end).total_seconds())):
                return episode
        batch_id = self.select(episode, start, end)
        deadline = self.clock() + timedelta(seconds=self.config.label_deadline_s)
        chosen = f"from {pool} unlabelled inputs since {start:%Y-%m-%d %H:%M:%S}"
        note = f"batch {batch_id} sent for labelling, {chosen}" if batch_id else f"nothing to send for labelling {chosen}"
        return self.episodes.advance(episode.id, Step.SELECTING, Step.LABELLING,
                                     {"batch_id": batch_id, "labels_deadline": deadline.isoformat(),
                                      "selection_start": start.isoformat(), "selection_pool": pool}, note=note)

    def selection_window(self, episode: Episode, now: datetime) -> tuple[datetime, datetime]:
        """The last `selection_window` before `now`, starting no earlier than the alert that opened the episode:
        the inputs logged before the drift was seen are not the ones a retrain needs labelled."""
        start = now - self.config.selection_window
        alert_start = (episode.state.get("trigger") or {}).get("starts_at")
        if alert_start:
            start = max(start, datetime.fromisoformat(alert_start))
        return start, now

    def _labelling(self, episode: Episode, stop: threading.Event) -> Episode:
        deadline = datetime.fromisoformat(episode.state["labels_deadline"])
        seen = -1
        while True:
            now = self.clock()
            count = self._new_labels(episode.model, now)
            if count >= self.config.min_new_labels or now >= deadline:
                why = (f"{count} new labels (min_new_labels={self.config.min_new_labels})"
                       if count >= self.config.min_new_labels else f"deadline passed with {count} new labels")
                return self.episodes.advance(episode.id, Step.LABELLING, Step.SNAPSHOTTING, {"new_labels": count},
                                             note=why)
            if count != seen:
                episode, seen = self.episodes.update_state(episode.id, Step.LABELLING, {"new_labels": count}), count
            if stop.wait(min(self.config.poll_s, max(0.0, (deadline - now).total_seconds()))):
                return episode

    def _snapshotting(self, episode: Episode, stop: threading.Event) -> Episode:
        if "snapshot_until" not in episode.state:  # fixed once, so a resumed step builds the same snapshot
            episode = self.episodes.update_state(episode.id, Step.SNAPSHOTTING,
                                                 {"snapshot_until": self.clock().isoformat()})
        until = datetime.fromisoformat(episode.state["snapshot_until"])
        built = self.snapshot(episode, until - self.config.snapshot_window, until)
        manifest = built.manifest
        return self.episodes.advance(
            episode.id, Step.SNAPSHOTTING, Step.TRAINING,
            {"snapshot_id": built.snapshot_id, "snapshot_rows": manifest["rows"],
             "rows_per_class": manifest["rows_per_class"]},
            note=f"snapshot {built.snapshot_id}: {manifest['rows']} rows")

    def _training(self, episode: Episode, stop: threading.Event) -> Episode:
        spec = self.spec_for(episode.model)
        table = self.load_snapshot(episode.state["snapshot_id"]).read()
        data = prepare_training_data(table, spec)
        attempt = episode.attempts
        name = f"{_folder(episode.model)}-{episode.id}-{attempt}"
        trained = self.train(data, spec, name, self.workdir / episode.id / f"model-{attempt}")
        return self.episodes.advance(
            episode.id, Step.TRAINING, Step.REGISTERING,
            {"model_folder": str(trained.folder), "training": trained.record.to_dict(),
             "metrics": dict(trained.metrics), "classes": list(trained.classes), "features": list(trained.features),
             "timings": dict(trained.timings), "worker_nodes": trained.details.get("worker_nodes")},
            note=f"trained: validation accuracy {trained.metrics['val_accuracy']:.3f}")

    def _registering(self, episode: Episode, stop: threading.Event) -> Episode:
        existing = self.registry.by_episode(episode.id)
        if existing is None:
            from driftloop.retrain.training import TrainedModel

            state = episode.state
            trained = TrainedModel(
                folder=Path(state["model_folder"]), record=TrainingRecord.from_dict(state["training"]),
                metrics=state["metrics"], classes=tuple(state["classes"]), features=tuple(state["features"]),
            )
            table = self.load_snapshot(state["snapshot_id"]).read()
            existing = self.register(episode, trained, table, self.spec_for(episode.model))
        gated = Step.SHADOWING in self.more_steps and self.registry.alias(episode.model, "champion") is not None
        note = f"registered version {existing.version} as challenger" + (
            "; the promotion gate decides" if gated else "; no champion to gate against: promote one by hand")
        done = self.episodes.advance(episode.id, Step.REGISTERING, Step.SHADOWING if gated else Step.REGISTERED,
                                     {"version": existing.version}, note=note)
        shutil.rmtree(self.workdir / episode.id, ignore_errors=True)  # the registry holds its own copy now
        return done

    def _new_labels(self, model: str, now: datetime) -> int:
        latest = self.registry.find(model, "latest")
        return labels_since(self.store, model, latest.created_at if latest else None, now,
                            self.config.snapshot_window, self.config.label_horizon)


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _folder(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
