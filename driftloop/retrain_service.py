"""The retrain service and commands, built from the settings: registry, triggers, episodes, Ray training.

`driftloop retrain serve` runs `RetrainService` under one HTTP server at the address of
`alertmanager.webhook_url`: Alertmanager's webhook (recorded durably before the 2xx), `/healthz`,
`/readyz`, `/metrics`, `/v1/episodes`, `/v1/triggers`. A loop thread turns recorded notifications,
the schedule and the quality floor into triggers and decisions (one transaction each), and runs
each episode in a thread of its own under the model's lease, resuming those a previous process
left unfinished. `driftloop retrain run --model M` runs one episode in the foreground.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import ValidationError

from driftloop import labelling_service
from driftloop.collector.store import Store
from driftloop.curation import BatchRequest, SnapshotSpec, build_snapshot, load_snapshot, select_batch
from driftloop.curation_service import build_strategy, ledger, reference_rows
from driftloop.dashboards.alerting import LOG_PATH
from driftloop.layout import SAMPLE_FILE, alert_log_file, ray_storage_dir, registry_dir, snapshots_dir
from driftloop.retrain import Database, ModelRegistry, ModelSpec, get_spec
from driftloop.retrain.episodes import Episode, EpisodeStore, Step
from driftloop.retrain.leases import LeaseLost, Leases
from driftloop.retrain.metrics import EpisodeGauges, RetrainMetrics
from driftloop.retrain.runner import EpisodeRunner, RunnerConfig, labels_since
from driftloop.retrain.triggers import Notification, Policy, alert_triggers, decide
from driftloop.settings import Settings

log = logging.getLogger(__name__)


def open_registry(settings: Settings) -> ModelRegistry:
    """The model registry the settings name (`<data_dir>/registry` unless registry.dir says otherwise)."""
    return ModelRegistry.open(registry_dir(settings))


def spec_for(settings: Settings, model: str) -> ModelSpec:
    """The spec a model trains with: retrain.specs[model] or default_spec, with the settings' overrides."""
    retrain = settings.retrain
    spec = get_spec(retrain.specs.get(model, retrain.default_spec))
    training = {name: int(value) if name in ("epochs", "batch_size", "seed", "patience") else value
                for name, value in retrain.training.items()}
    return spec.with_params(training=training, features=retrain.features.get(model))


def webhook_address(settings: Settings) -> tuple[str, int, str]:
    """(host, port, path) of alertmanager.webhook_url: where the retrain service listens."""
    url = urllib.parse.urlsplit(settings.alertmanager.webhook_url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"alertmanager.webhook_url must be an http:// URL, got {settings.alertmanager.webhook_url!r}")
    return url.hostname, url.port or 80, url.path or "/"


class RetrainService:
    """Triggers, decisions and episodes for every model; one instance per process."""

    def __init__(self, settings: Settings, metrics: RetrainMetrics | None = None, gate_metrics=None,
                 hand_over_to_gate: bool = False) -> None:
        """`gate_metrics`: the GateMetrics the episodes' gates report to; `hand_over_to_gate`: an episode that
        reaches the gate's steps is left there after one round (for `retrain run` in the foreground)."""
        self.settings = settings
        self.gate_metrics = gate_metrics
        self.hand_over_to_gate = hand_over_to_gate
        self._gates: dict = {}
        self.registry = open_registry(settings)
        self.database: Database = self.registry.database
        self.episodes = EpisodeStore(self.database)
        self.leases = Leases(self.database)
        self.metrics = metrics or RetrainMetrics(CollectorRegistry())
        self.metrics.registry.register(EpisodeGauges(lambda: self.episodes.episodes(active=True)))
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        retrain = settings.retrain
        self.policy = Policy(cooldown_s=retrain.cooldown_s, min_new_labels=retrain.min_new_labels)
        self.runner = self._runner()
        self._threads: dict[str, threading.Thread] = {}
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._ray_lock = threading.Lock()
        self._ray_ready: threading.Event | None = None
        self._ray_error: BaseException | None = None
        self._last_schedule = self._last_quality = time.monotonic()

    # -- triggers --------------------------------------------------------------------------------

    def accept_notification(self, body: Mapping) -> int:
        """Validate an Alertmanager notification and record it durably; pydantic's ValidationError if malformed."""
        notification = Notification.model_validate(body)
        return self.episodes.record_notification(notification.groupKey, notification.status, dict(body))

    def log_alerts(self, body: Mapping) -> int:
        """The log receiver: every alert of a notification as one JSON line of the alert log, and one log line."""
        notification = Notification.model_validate(body)
        received = datetime.now(UTC).isoformat()
        lines = []
        for alert in notification.alerts:
            name = alert.labels.get("alertname", "")
            lines.append(orjson.dumps({
                "received_at": received, "group_key": notification.groupKey, "status": alert.status,
                "alertname": name, "labels": alert.labels, "annotations": alert.annotations,
                "starts_at": alert.startsAt.isoformat(), "ends_at": alert.endsAt.isoformat() if alert.endsAt else None,
                "fingerprint": alert.fingerprint}) + b"\n")
            log.info("alert %s %s %s: %s", alert.status, name,
                     ",".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname"),
                     alert.annotations.get("summary", ""))
            self.metrics.alerts_logged.labels(name, alert.status).inc()
        path = alert_log_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as out:  # one write per notification, so lines of two writers never interleave
            out.write(b"".join(lines))
        return len(lines)

    def process_notifications(self) -> int:
        """Decide on every recorded notification not processed yet; each in one transaction."""
        done = 0
        for notification_id, body in self.episodes.pending_notifications():
            notification = Notification.model_validate(body)
            started = []
            with self.database.transaction() as db:
                for trigger in alert_triggers(notification):
                    decision, episode = self._decide(
                        db, trigger.model, "alertmanager", firing=trigger.firing, instances=trigger.instances,
                        notification_id=notification_id, group_key=trigger.group_key,
                        detail={"alertnames": list(trigger.alertnames), "status": notification.status,
                                "starts_at": trigger.started_at.isoformat() if trigger.started_at else None})
                    started.append((trigger.model, decision))
                db.execute("UPDATE notifications SET processed_at = ? WHERE id = ?",
                           (datetime.now(UTC).isoformat(), notification_id))
            for model, decision in started:
                self.metrics.triggers.labels(model, "alertmanager", decision).inc()
            done += 1
        return done

    def trigger(self, model: str, source: str, detail: Mapping | None = None, new_labels: int | None = None,
                start: Step | None = None) -> tuple[str, Episode | None]:
        """Record one trigger of `model` from `source` and its decision; the episode it started, if any.

        `start` overrides the step a started episode begins at (a person may ask for labels first).
        """
        with self.database.transaction() as db:
            decision, episode = self._decide(db, model, source, detail=detail, new_labels=new_labels, start=start)
        self.metrics.triggers.labels(model, source, decision).inc()
        return decision, episode

    def _decide(self, db, model: str, source: str, *, firing: bool = True, instances=(), notification_id=None,
                group_key=None, detail=None, new_labels=None, start=None) -> tuple[str, Episode | None]:
        recent = self.episodes.episodes(model, limit=20)
        handled = _handled_instances(db, model) if instances else {}
        decision = decide(source, datetime.now(UTC), self.policy, recent, firing=firing, instances=instances,
                          handled=handled, new_labels=new_labels)
        episode = None
        if decision.decision == "started":
            state = {"trigger": {"source": source, **dict(detail or {})}}
            episode = self.episodes.create_episode(db, model, source, start or decision.start, state)
        self.episodes.record_trigger(
            db, model, source, decision.decision, decision.reason,
            episode_id=episode.id if episode else decision.joined, notification_id=notification_id,
            group_key=group_key, fingerprints=instances, detail=detail)
        log.info("%s trigger for %s: %s (%s)", source, model, decision.decision, decision.reason)
        return decision.decision, episode

    def check_schedule(self) -> None:
        retrain = self.settings.retrain
        if retrain.schedule_interval_s is None:
            return
        if time.monotonic() - self._last_schedule < retrain.schedule_interval_s:
            return
        self._last_schedule = time.monotonic()
        for model in retrain.schedule_models:
            self.trigger(model, "schedule", new_labels=self._new_labels(model))

    def check_quality(self) -> None:
        """The champion's accuracy over its last `quality_labels` labels; below the floor, a trigger."""
        retrain = self.settings.retrain
        if retrain.quality_floor is None or time.monotonic() - self._last_quality < retrain.quality_interval_s:
            return
        self._last_quality = time.monotonic()
        models = retrain.quality_models or [m for m in self.registry.models() if self.registry.alias(m, "champion")]
        for model in models:
            accuracy, labels = self.champion_accuracy(model)
            if accuracy is not None and accuracy < retrain.quality_floor:
                self.trigger(model, "quality", detail={"accuracy": accuracy, "labels": labels,
                                                       "floor": retrain.quality_floor})

    def champion_accuracy(self, model: str) -> tuple[float | None, int]:
        """Accuracy over the last `quality_labels` labelled predictions answered by the champion (None: too few)."""
        wanted = self.settings.retrain.quality_labels
        now = datetime.now(UTC)
        labelled = Store(self.settings.store_dir).labelled(
            model, now - timedelta(hours=self.settings.retrain.snapshot_window_hours), now, self.settings.label_horizon)
        champion = self.registry.alias(model, "champion")
        if champion is not None and labelled.num_rows and "model_version" in labelled.column_names:
            served = labelled.filter(pc.equal(labelled["model_version"], str(champion)))
            labelled = served if served.num_rows else labelled  # before a server logs registry versions
        if labelled.num_rows < wanted:
            return None, labelled.num_rows
        last = labelled.slice(labelled.num_rows - wanted)
        correct = pc.equal(last["label"].cast(pa.string()), last["true_label"].cast(pa.string()))
        return float(pc.mean(correct.cast(pa.float64())).as_py()), wanted

    def _new_labels(self, model: str) -> int:
        latest = self.registry.find(model, "latest")
        retrain = self.settings.retrain
        return labels_since(Store(self.settings.store_dir), model, latest.created_at if latest else None,
                            datetime.now(UTC), timedelta(hours=retrain.snapshot_window_hours),
                            self.settings.label_horizon)

    # -- episodes --------------------------------------------------------------------------------

    def resume(self) -> list[str]:
        """Start a thread for every unfinished episode this process is not running and whose lease is free."""
        started = []
        for episode in reversed(self.episodes.episodes(active=True)):
            with self._lock:
                if episode.model in self._threads and self._threads[episode.model].is_alive():
                    continue
                if self.leases.acquire(_lease(episode.model), self.holder, self.settings.retrain.lease_s) is None:
                    continue
                stop = threading.Event()
                thread = threading.Thread(target=self._run_episode, args=(episode, stop), daemon=True,
                                          name=f"episode-{episode.id}")
                self._threads[episode.model], self._stops[episode.model] = thread, stop
                thread.start()
                started.append(episode.id)
        return started

    def run_episode(self, episode_id: str) -> Episode:
        """Run one episode to its end in this thread (the lease must be free); for `driftloop retrain run`."""
        episode = self.episodes.get(episode_id)
        if self.leases.acquire(_lease(episode.model), self.holder, self.settings.retrain.lease_s) is None:
            holder = self.leases.holder(_lease(episode.model))
            raise RuntimeError(f"another retrain service ({holder.holder if holder else '?'}) runs {episode.model}'s "
                               "episodes; it will run this one")
        return self._run_episode(episode, threading.Event())

    def _run_episode(self, episode: Episode, stop: threading.Event) -> Episode:
        model, lease = episode.model, _lease(episode.model)
        renewing = threading.Thread(target=self._renew, args=(lease, stop), daemon=True)
        renewing.start()
        self.metrics.running.labels(model).inc()
        try:
            log.info("episode %s of %s: %s", episode.id, model, episode.step)
            finished = self.runner.run(episode.id, stop)
            if finished.finished:
                seconds = ((finished.finished_at or datetime.now(UTC)) - finished.created_at).total_seconds()
                self.metrics.duration.labels(model, finished.outcome).observe(seconds)
                self.metrics.episodes.labels(model, finished.outcome).inc()
                fit_s = (finished.state.get("timings") or {}).get("fit_s")
                if fit_s is not None:
                    self.metrics.training.labels(model).observe(fit_s)
                log.info("episode %s of %s ended %s %s", finished.id, model, finished.outcome, finished.reason)
            return finished
        finally:
            self.metrics.running.labels(model).dec()
            stop.set()
            renewing.join(timeout=5)
            self.leases.release(lease, self.holder)

    def _renew(self, lease: str, stop: threading.Event) -> None:
        ttl = self.settings.retrain.lease_s
        while not stop.wait(ttl / 3):
            try:
                self.leases.renew(lease, self.holder, ttl)
            except LeaseLost:
                log.error("lost the lease %s; stopping its episode", lease)
                stop.set()
            except Exception:  # noqa: BLE001 - a busy database: try again at the next beat
                log.warning("could not renew the lease %s", lease, exc_info=True)

    def loop(self, stop: threading.Event) -> None:
        """Process notifications, schedule and quality checks, and resume episodes until `stop` is set."""
        while not stop.is_set():
            try:
                self.process_notifications()
                self.check_schedule()
                self.check_quality()
                self.resume()
            except Exception:  # noqa: BLE001 - the service stays up; the next round tries again
                log.exception("retrain loop round failed")
            stop.wait(min(1.0, self.settings.retrain.poll_s))

    def shutdown(self) -> None:
        """Stop the episodes' waits; each stays at its step, to be resumed by the next process."""
        with self._lock:
            for stop in self._stops.values():
                stop.set()
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout=10)

    # -- what the steps do, wired to curation, the store and Ray --------------------------------

    def _runner(self) -> EpisodeRunner:
        settings = self.settings
        retrain = settings.retrain
        config = RunnerConfig(
            min_new_labels=retrain.min_new_labels, label_deadline_s=retrain.label_deadline_s,
            snapshot_window=timedelta(hours=retrain.snapshot_window_hours), label_horizon=settings.label_horizon,
            poll_s=retrain.poll_s, max_step_attempts=retrain.max_step_attempts,
            selection_window=timedelta(minutes=retrain.selection_window_minutes or settings.drift.window_minutes),
            budget=retrain.budget or settings.curation.budget, selection_pool_factor=retrain.selection_pool_factor,
            selection_wait_s=retrain.selection_wait_s,
        )
        return EpisodeRunner(
            config, self.episodes, self.registry, Store(settings.store_dir),
            spec_for=lambda model: spec_for(settings, model),
            select=self._select, snapshot=self._snapshot,
            load_snapshot=lambda snapshot_id: load_snapshot(snapshots_dir(settings), snapshot_id),
            train=self._train, register=self._register, workdir=settings.data_dir / "retrain",
            more_steps=self._gate_steps(),
        )

    def _gate_steps(self) -> dict:
        """The episode's steps after registering: shadowing and watching, decided by the promotion gate."""
        from driftloop.retrain.decisions import GateLedger
        from driftloop.retrain.gating import GateSteps

        return GateSteps(self.episodes, self.registry, GateLedger(self.database), self._gate_for,
                         poll_s=self.settings.gate.check_interval_s, hand_over=self.hand_over_to_gate).steps()

    def _gate_for(self, model: str):
        if model not in self._gates:
            from driftloop.promotion_service import build_gate

            self._gates[model] = build_gate(self.settings, model, metrics=self.gate_metrics)
        return self._gates[model]

    def _select(self, episode: Episode, start: datetime, end: datetime) -> str | None:
        settings, retrain = self.settings, self.settings.retrain
        strategy = build_strategy(settings, retrain.strategy or settings.curation.strategy,
                                  settings.curation.balanced, settings.curation.deduplicated)
        request = BatchRequest(model=episode.model, budget=retrain.budget or settings.curation.budget,
                               start=start, end=end, label_horizon=settings.label_horizon)
        reference = self._reference_rows(episode.model)
        if strategy.name.startswith("drift_targeted") and reference is None:
            raise ValueError(f"drift-targeted selection needs reference rows: register a champion or profile the model "
                             f"(driftloop drift profile --model {episode.model})")
        batch = select_batch(Store(settings.store_dir), ledger(settings), strategy, request, reference=reference)
        self.metrics.batches.labels(episode.model, "empty" if batch is None else "sent").inc()
        if batch is None:
            return None
        self.metrics.batch_rows.labels(episode.model).inc(len(batch))
        if labelling_service.enabled(settings):
            try:  # the batch is recorded either way: a failed push is retried with `driftloop curate push`
                labelling_service.push(settings, batch.batch_id)
            except (labelling_service.LabelStudioError, labelling_service.LabelStudioOff, OSError, ValueError) as error:
                log.warning("episode %s: batch %s not pushed to Label Studio (%s); push it with `driftloop curate "
                            "push %s`", episode.id, batch.batch_id, error, batch.batch_id)
        return batch.batch_id

    def _reference_rows(self, model: str) -> pa.Table | None:
        profile = self.registry.profile_dir(model)
        if profile is not None and (profile / SAMPLE_FILE).is_file():
            return pq.read_table(profile / SAMPLE_FILE)
        return reference_rows(self.settings, model, None)

    def _snapshot(self, episode: Episode, since: datetime | None, until: datetime):
        settings = self.settings
        spec = SnapshotSpec(model=episode.model, since=since, until=until,
                            label_horizon_hours=settings.label_horizon_hours,
                            balance=settings.curation.snapshot_balance, seed=settings.curation.seed)
        reference_file = settings.retrain.reference_files.get(episode.model)
        reference = pq.read_table(reference_file) if reference_file else None
        try:
            return build_snapshot(Store(settings.store_dir), spec, snapshots_dir(settings), reference=reference)
        except ValueError as error:
            if "nothing to snapshot" in str(error):
                raise ValueError(f"empty snapshot: {error}") from None
            raise

    def _train(self, data, spec: ModelSpec, name: str, folder: Path):
        from driftloop.retrain.training import RunSettings, train_model

        spec.build_module(data.n_inputs, len(data.classes))  # a spec that cannot build fails before Ray is asked
        ray = self.settings.ray
        try:
            self.connect_ray()
        except Exception as error:  # noqa: BLE001 - whatever ray.init raises, the episode says Ray is not there
            where = ray.address or os.environ.get("RAY_ADDRESS") or "a local Ray"
            raise RuntimeError(f"Ray at {where} is not reachable: {' '.join(str(error).split())[:300]}") from None
        run = RunSettings(storage_path=ray_storage_dir(self.settings), num_workers=ray.num_workers,
                          use_gpu=ray.use_gpu, max_failures=ray.max_failures, timeout_s=ray.train_timeout_s,
                          placement_strategy=ray.placement_strategy)
        return train_model(data, spec, run, name, folder)

    def connect_ray(self) -> None:
        """Join or start Ray once per process, from a thread that lives as long as the process.

        A local Ray's processes die with the *thread* that started them (Linux's parent-death signal is
        per thread): started from an episode's thread, Ray would go down when that episode ends.
        """
        with self._ray_lock:
            if self._ray_ready is None:
                self._ray_ready = threading.Event()
                threading.Thread(target=self._keep_ray, daemon=True, name="ray").start()
            ready = self._ray_ready
        ready.wait()
        if self._ray_error is not None:
            error = self._ray_error
            with self._ray_lock:  # the next training tries again
                self._ray_ready, self._ray_error = None, None
            raise error

    def _keep_ray(self) -> None:
        from driftloop.ray_cluster import connect_ray

        try:
            connect_ray(self.settings.ray)
        except BaseException as error:  # noqa: BLE001 - handed to the caller of connect_ray
            self._ray_error = error
            self._ray_ready.set()
            return
        self._ray_ready.set()
        threading.Event().wait()  # this thread stays: Ray's local processes live as long as it does

    def _register(self, episode: Episode, trained, table: pa.Table, spec: ModelSpec):
        from driftloop.retrain.candidates import register_candidate

        return register_candidate(
            self.registry, episode.model, trained, table, spec, snapshot_id=episode.state.get("snapshot_id"),
            origin=f"episode ({episode.source})", episode_id=episode.id, alias="challenger",
            reason=f"episode {episode.id}, started by {episode.source}",
            evidence={"metrics": dict(trained.metrics), "snapshot_id": episode.state.get("snapshot_id")},
            actor=f"retrain {self.holder}", sample_rows=self.settings.drift.reference_sample_rows,
            fit_estimator=self.estimator_fit(episode.model),
        )

    def estimator_fit(self, model: str):
        """What fits the monitor's performance estimator into a new version's profile (settings.estimation)."""
        from driftloop.drift_service import fit_estimator

        return lambda rows, folder: fit_estimator(self.settings, model, rows, folder)


def _handled_instances(db, model: str) -> dict[str, str]:
    """Alert instances of `model` that already started or joined an episode, and that episode."""
    rows = db.execute("""SELECT fingerprints, episode_id FROM triggers WHERE model = ? AND source = 'alertmanager'
                         AND episode_id IS NOT NULL ORDER BY id DESC LIMIT 500""", (model,))
    handled: dict[str, str] = {}
    for row in rows:
        for instance in json.loads(row["fingerprints"]):
            handled.setdefault(instance, row["episode_id"])
    return handled


def _lease(model: str) -> str:
    return f"retrain:{model}"


def create_app(service: RetrainService, registry: CollectorRegistry, path: str):
    """The service's HTTP API: the webhook at `path`, health, readiness, metrics, episodes and triggers."""
    app = FastAPI(title="driftloop retrain service",
                  summary="Alertmanager's webhook in; retrain episodes out. 200 means the notification is recorded.")

    def json_response(status: int, body) -> Response:
        return Response(orjson.dumps(body), status, media_type="application/json")

    @app.post(path, responses={400: {"description": "not JSON"}, 422: {"description": "`errors` names each bad field"},
                               503: {"description": "not recorded; Alertmanager sends it again"}})
    async def alerts(request: Request) -> Response:
        """Alertmanager's webhook (version 4). Recorded durably before the answer; processed right after."""
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as error:
            service.metrics.notifications.labels("invalid").inc()
            return json_response(400, {"detail": f"the body is not JSON: {error}"})
        if not isinstance(body, dict):
            service.metrics.notifications.labels("invalid").inc()
            return json_response(422, {"detail": "invalid notification",
                                       "errors": [{"field": "", "message": "the body must be a JSON object"}]})
        try:
            notification_id = await asyncio.to_thread(service.accept_notification, body)
        except ValidationError as error:
            service.metrics.notifications.labels("invalid").inc()
            problems = [{"field": ".".join(str(part) for part in problem["loc"]), "message": problem["msg"]}
                        for problem in error.errors()]
            return json_response(422, {"detail": "invalid notification; nothing was recorded", "errors": problems})
        except Exception as error:  # noqa: BLE001 - the database did not take it: Alertmanager retries on 5xx
            log.exception("could not record a notification")
            service.metrics.notifications.labels("failed").inc()
            return json_response(503, {"detail": f"not recorded ({type(error).__name__}); send it again"})
        service.metrics.notifications.labels("recorded").inc()
        return json_response(200, {"recorded": notification_id})

    @app.post(LOG_PATH, responses={400: {"description": "not JSON"}, 422: {"description": "not a notification"}})
    async def alert_log(request: Request) -> Response:
        """Alertmanager's log receiver: every alert, firing or resolved, appended to the alert log."""
        try:
            body = orjson.loads(await request.body())
            logged = await asyncio.to_thread(service.log_alerts, body)
        except orjson.JSONDecodeError as error:
            return json_response(400, {"detail": f"the body is not JSON: {error}"})
        except ValidationError as error:
            problems = [{"field": ".".join(str(part) for part in problem["loc"]), "message": problem["msg"]}
                        for problem in error.errors()]
            return json_response(422, {"detail": "invalid notification; nothing was logged", "errors": problems})
        return json_response(200, {"logged": logged})

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        try:
            service.database.schema_version()
        except Exception as error:  # noqa: BLE001
            return json_response(503, {"status": "registry database not readable", "error": str(error)})
        return json_response(200, {"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/episodes")
    async def episodes(model: str | None = None) -> list[dict]:
        return [episode.describe() for episode in service.episodes.episodes(model)]

    @app.get("/v1/triggers")
    async def triggers(model: str | None = None) -> list[dict]:
        return [trigger.describe() for trigger in service.episodes.triggers(model)]

    return app


def run_retrain_service(settings: Settings) -> None:
    """`driftloop retrain serve`: the webhook, the loop, the episodes; SIGTERM stops it cleanly."""
    import uvicorn

    from driftloop.services import announce_to_prometheus

    host, port, path = webhook_address(settings)
    from driftloop.retrain.promotion import GateMetrics

    registry = CollectorRegistry()
    gate_metrics = GateMetrics()
    registry.register(gate_metrics)
    service = RetrainService(settings, RetrainMetrics(registry), gate_metrics)
    app = create_app(service, registry, path)
    stop = threading.Event()
    looping = threading.Thread(target=service.loop, args=(stop,), daemon=True, name="retrain-loop")
    looping.start()
    if settings.ray.connect_at_start:
        threading.Thread(target=_warm_ray, args=(service,), daemon=True, name="ray-warm-up").start()
    announce_to_prometheus(settings, "retrain", f"{host}:{port}")
    log.info("retrain service on http://%s:%d (webhook %s, holder %s)", host, port, path, service.holder)
    try:
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), access_log=False)
    finally:
        stop.set()
        looping.join(timeout=10)
        service.shutdown()


def _warm_ray(service: RetrainService) -> None:
    try:
        service.connect_ray()
        log.info("Ray is up for the first retrain")
    except Exception as error:  # noqa: BLE001 - the first training tries again and fails its episode if it must
        log.warning("could not start Ray ahead of the first retrain: %s", error)


def run_manual(settings: Settings, model: str, select: bool = False) -> Episode:
    """`driftloop retrain run --model M`: a manual trigger and, when it starts an episode, that episode here."""
    service = RetrainService(settings, hand_over_to_gate=True)
    decision, episode = service.trigger(model, "manual", detail={"select": select},
                                        start=Step.SELECTING if select else None)
    if episode is None:
        running = service.episodes.episodes(model, active=True)
        raise RuntimeError(f"no retrain started for {model!r} ({decision}): "
                           f"episode {running[0].id if running else '?'} is running")
    return service.run_episode(episode.id)
