"""The model server: the registry's champion behind `POST /v1/predict`, swapped without a failed request when the alias moves.

    app = create_server(registry=registry, model="churn", logger=EventLogger(...), metrics_registry=CollectorRegistry())
    serve(app, "127.0.0.1", 8080)   # driftloop.collector.serve: uvicorn, one worker, GC tuned for the p99

Routes: `POST /v1/predict` (one request `{"request_id"?, "features": {...}}` or a batch
`{"instances": [...]}`), `GET /v1/model`, `GET /healthz`, `GET /metrics`, OpenAPI at `/docs`.
A request names its features; a missing, unknown or wrongly typed feature is a 422 that names
it (`errors[].field`, e.g. `instances.3.features.tenure`). The answer carries each request id
(the caller's, or a new one) and the version that answered.

Hot swap. `ChampionWatcher` polls the registry's alias history (one cheap SQLite read per
`reload_interval_s`); when the champion moved, it loads the new version beside the old one
(sha256 checked, weights read with `weights_only=True`, one warm-up prediction) and then
replaces one reference. A request reads that reference once, so it is answered wholly by one
version, and no request waits for a load or fails because of one. A version that fails to load
is never served: the old one keeps serving and the failure is counted and logged.

Logging. Every prediction goes to Kafka through the collector's `EventLogger`, which only
enqueues: Kafka is never waited for on the request path. The logger's buffer is bounded; when
Kafka is away long enough to fill it, further logs are dropped, counted in
`driftloop_serve_log_dropped_total` and said in the log, and predictions go on being answered.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from driftloop.collector.producer import EventLogger
from driftloop.collector.schemas import FeatureValue, InvalidEvent
from driftloop.retrain.preprocessing import InputError
from driftloop.retrain.registry import ModelRegistry

log = logging.getLogger(__name__)

__all__ = ["ChampionWatcher", "MAX_BATCH", "PredictRequest", "ServeMetrics", "ServingModel", "create_server"]

MAX_BATCH = 1000
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_JSON = "application/json"
_LOG_EVERY_S = 10.0

RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Features = dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], FeatureValue]


class Instance(BaseModel):
    """One request in a batch: its features by name, and optionally its request id."""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId | None = Field(default=None, description="Yours, to join feedback later; else one is made.")
    features: Features = Field(description="Every feature the model reads, by name (null for a missing value).")


class PredictRequest(BaseModel):
    """One request (`features`, optionally `request_id`) or a batch (`instances`)."""

    model_config = ConfigDict(extra="forbid")

    request_id: RequestId | None = None
    features: Features | None = None
    instances: list[Instance] | None = Field(default=None, min_length=1, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_or_batch(self) -> PredictRequest:
        if (self.features is None) == (self.instances is None):
            raise ValueError("send either 'features' (one request) or 'instances' (a batch), not both or neither")
        if self.instances is not None and self.request_id is not None:
            raise ValueError("a batch takes request ids per instance ('instances[].request_id'), not 'request_id'")
        return self


class Answer(BaseModel):
    request_id: str
    label: str
    probabilities: dict[str, float]


class SingleAnswer(Answer):
    model: str
    version: int


class BatchAnswer(BaseModel):
    model: str
    version: int
    predictions: list[Answer]


@dataclass(frozen=True)
class ServingModel:
    """One loaded version, as requests see it: replaced whole, never changed."""

    version: int
    predictor: Any
    classes: tuple[str, ...]
    features: tuple[str, ...]


class ServeMetrics:
    """The server's metrics, labelled by model and, where one version answered, version."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.latency = Histogram("driftloop_serve_request_seconds", "Time to answer a prediction request.",
                                 ["model", "version"], buckets=LATENCY_BUCKETS, registry=registry)
        self.responses = Counter("driftloop_serve_responses", "Responses by status code.", ["model", "code"],
                                 registry=registry)
        self.predictions = Counter("driftloop_serve_predictions", "Predictions answered (a batch counts each).",
                                   ["model", "version"], registry=registry)
        self.log_dropped = Counter("driftloop_serve_log_dropped", "Predictions answered but not logged, by reason "
                                   "(buffer_full: Kafka away long enough to fill the logger's buffer).",
                                   ["model", "reason"], registry=registry)
        self.version = Gauge("driftloop_serve_model_version", "The version serving now.", ["model"], registry=registry)
        self.reloads = Counter("driftloop_serve_reloads", "Champion loads after an alias move, by outcome.",
                               ["model", "outcome"], registry=registry)


class ChampionWatcher:
    """Holds the champion being served and swaps in a new one when the registry's alias moves."""

    def __init__(self, registry: ModelRegistry, model: str, metrics: ServeMetrics, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"'interval_s' must be positive, got {interval_s}")
        self.registry = registry
        self.model = model
        self.metrics = metrics
        self.interval_s = interval_s
        self._seen_change = registry.last_change_id(model)
        champion = registry.alias(model, "champion")
        if champion is None:
            raise LookupError(f"model {model!r} has no champion in the registry: make one with "
                              f"`driftloop models promote --model {model} VERSION`")
        self.current = self._load(champion)  # a failure here is the caller's: nothing to serve
        self._failed: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"champion-watcher-{model}", daemon=True)
        metrics.version.labels(model).set(champion)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def check(self) -> bool:
        """One look at the registry: swap if the champion moved. True when a new version now serves."""
        change = self.registry.last_change_id(self.model)
        if change == self._seen_change:
            return False
        self._seen_change = change
        champion = self.registry.alias(self.model, "champion")
        if champion is None:
            log.warning("%s: the champion alias was cleared; still serving version %d", self.model,
                        self.current.version)
            return False
        if champion == self.current.version or champion in self._failed:
            return False
        try:
            loaded = self._load(champion)
        except Exception as error:  # noqa: BLE001 - a version that fails to load is never served; the old one stays
            self._failed.add(champion)
            self.metrics.reloads.labels(self.model, "failed").inc()
            log.error("%s: version %d did not load (%s: %s); still serving version %d", self.model, champion,
                      type(error).__name__, error, self.current.version)
            return False
        previous, self.current = self.current, loaded  # one reference: a request sees the old or the new, whole
        self.metrics.version.labels(self.model).set(champion)
        self.metrics.reloads.labels(self.model, "swapped").inc()
        log.info("%s: serving version %d (was %d)", self.model, champion, previous.version)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a locked or briefly missing database
                log.exception("%s: checking the registry for a new champion failed; retrying", self.model)

    def _load(self, version: int) -> ServingModel:
        loaded = self.registry.load(self.model, version)
        predictor = loaded.predictor
        predictor.predict_proba({name: [None] for name in predictor.feature_names})  # warm up before serving
        return ServingModel(version, predictor, tuple(str(c) for c in predictor.classes_),
                            tuple(predictor.feature_names))


def create_server(
    *,
    registry: ModelRegistry,
    model: str,
    logger: EventLogger | None,
    metrics_registry: CollectorRegistry,
    reload_interval_s: float = 1.0,
    close_timeout_s: float = 10.0,
) -> FastAPI:
    """The server as an ASGI app. It loads the champion now (LookupError without one), watches from startup.

    At shutdown it gives the logger `close_timeout_s` to have Kafka acknowledge what it holds.
    """
    metrics = ServeMetrics(metrics_registry)
    watcher = ChampionWatcher(registry, model, metrics, reload_interval_s)
    drops = _DropCounter(model, metrics)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()
            if logger is not None:
                logger.close(timeout_s=close_timeout_s)

    app = FastAPI(
        title=f"driftloop model server: {model}",
        summary="Predictions from the registry's champion; every prediction is logged to Kafka off the request path.",
        lifespan=lifespan,
        exception_handlers={RequestValidationError: _invalid_body},
    )
    app.router.route_class = _StrictJSONRoute
    app.state.watcher = watcher
    errors = {422: {"description": "Invalid body, or a feature missing, unknown or of the wrong type; "
                                   "`errors[].field` names it (e.g. `instances.3.features.tenure`)."}}

    @app.post("/v1/predict", response_model=SingleAnswer | BatchAnswer, responses=errors)
    async def predict(body: PredictRequest, request: Request) -> Response:
        """Predict for one request (`features`) or a batch (`instances`, up to 1000); logged to Kafka."""
        serving = watcher.current  # read once: this whole request is answered by this version
        request.state.version = serving.version
        batch = body.instances
        records = [body.features] if batch is None else [instance.features for instance in batch]
        began = time.perf_counter()
        try:
            probabilities = serving.predictor.predict_proba(records)
        except InputError as error:
            return _input_error(error, batch is not None)
        latency_ms = (time.perf_counter() - began) * 1000
        labels = np.argmax(probabilities, axis=1).tolist()
        rows = probabilities.tolist()
        ids = [body.request_id] if batch is None else [instance.request_id for instance in batch]
        answers = []
        version = str(serving.version)
        for request_id, record, label, row in zip(ids, records, labels, rows, strict=True):
            request_id = request_id or uuid.uuid4().hex
            output = {"label": serving.classes[label], "probabilities": dict(zip(serving.classes, row, strict=True))}
            answers.append({"request_id": request_id, **output})
            if logger is not None:
                drops.log(logger, request_id, model, version, record, output, latency_ms)
        metrics.predictions.labels(model, version).inc(len(answers))
        if batch is None:
            document = {"model": model, "version": serving.version, **answers[0]}
        else:
            document = {"model": model, "version": serving.version, "predictions": answers}
        return Response(orjson.dumps(document), 200, media_type=_JSON)

    @app.get("/v1/model")
    async def describe() -> dict:
        """The version serving now: its features (what a request must name) and classes."""
        serving = watcher.current
        return {"model": model, "version": serving.version, "features": list(serving.features),
                "classes": list(serving.classes)}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": model, "version": watcher.current.version}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics_registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Metrics, model=model, metrics=metrics)
    return app


class _DropCounter:
    """Logs one prediction; a drop (full buffer, or an event the schema refuses) is counted and said, at most every 10 s."""

    def __init__(self, model: str, metrics: ServeMetrics) -> None:
        self.model = model
        self.counters = {reason: metrics.log_dropped.labels(model, reason) for reason in ("buffer_full", "invalid")}
        self.unsaid = 0
        self.last_said = 0.0

    def log(self, logger: EventLogger, request_id: str, model: str, version: str, features: dict, output: dict,
            latency_ms: float) -> None:
        try:
            logged = logger.log_prediction(request_id=request_id, model_name=model, model_version=version,
                                           features=features, output=output, latency_ms=latency_ms)
        except InvalidEvent as error:
            self._dropped("invalid", f"a prediction the event schema refuses ({error})")
            return
        if logged is None:
            self._dropped("buffer_full", "the logger's buffer is full (Kafka unreachable or slow)")

    def _dropped(self, reason: str, why: str) -> None:
        self.counters[reason].inc()
        self.unsaid += 1
        now = time.monotonic()
        if now - self.last_said >= _LOG_EVERY_S:
            log.warning("%s: %d predictions answered but not logged: %s; counted in "
                        "driftloop_serve_log_dropped_total", self.model, self.unsaid, why)
            self.unsaid, self.last_said = 0, now


def _input_error(error: InputError, batch: bool) -> Response:
    if error.row is None or not error.feature:
        field = "features" if not batch else "instances"
    elif batch:
        field = f"instances.{error.row}.features.{error.feature}"
    else:
        field = f"features.{error.feature}"
    message = f"feature {error.feature!r} {error.reason}" if error.feature else error.reason
    return Response(orjson.dumps({"detail": "the model cannot read these features",
                                  "errors": [{"field": field, "message": message}]}), 422, media_type=_JSON)


async def _invalid_body(_request: Request, error: RequestValidationError) -> Response:
    problems = []
    for problem in error.errors():
        parts = list(problem["loc"][1:] if problem["loc"][:1] == ("body",) else problem["loc"])
        if problem["type"] == "json_invalid":
            parts, message = [], f"invalid JSON: {problem.get('ctx', {}).get('error', problem['msg'])}"
        else:
            message = problem["msg"].removeprefix("Value error, ")
        problems.append({"field": ".".join(str(part) for part in parts), "message": message})
    return Response(orjson.dumps({"detail": "invalid request body", "errors": problems}), 422, media_type=_JSON)


class _StrictJSONRequest(Request):
    """JSON parsed by orjson, which refuses NaN and Infinity (no model input, no logged event, may hold them)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class _StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


class _Metrics:
    """Latency by version of every answered prediction, and responses by code, for each request."""

    def __init__(self, app, model: str, metrics: ServeMetrics) -> None:
        self.app = app
        self.model = model
        self.metrics = metrics
        self.latency: dict[int, Any] = {}
        self.responses: dict[int, Any] = {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/predict":
            return await self.app(scope, receive, send)
        status = 500
        start = time.perf_counter()

        async def noting_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            version = scope.get("state", {}).get("version")
            if status == 200 and version is not None:
                histogram = self.latency.get(version)
                if histogram is None:
                    histogram = self.latency[version] = self.metrics.latency.labels(self.model, str(version))
                histogram.observe(time.perf_counter() - start)
            counter = self.responses.get(status)
            if counter is None:
                counter = self.responses[status] = self.metrics.responses.labels(self.model, str(status))
            counter.inc()
