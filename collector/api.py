"""The ingestion HTTP API: predictions and feedback in, 202 only once Kafka acknowledged every event.

    app = create_app(bootstrap_servers="127.0.0.1:19092", topics=Topics(), registry=CollectorRegistry())
    serve(app, host="127.0.0.1", port=18000)  # uvicorn, one worker, no access log, GC tuned for the p99

Routes: `POST /v1/predictions` (`{"events": [...]}`), `POST /v1/feedback` (one
event, or `{"events": [...]}`), `POST /v1/label-studio/webhook` (Label Studio's annotations, with
a shared secret; only when one is given), `GET /healthz` (liveness: the process answers),
`GET /readyz` (readiness: Kafka answers), `GET /metrics`, and the OpenAPI
document at `/openapi.json` and `/docs`. A route is one entry of `ROUTES`-style
registration in `create_app`; each POST route is `_ingest(...)` with its body model.

A request is accepted (202) only after Kafka acknowledged all of its events with
acks=all. Otherwise the answer names exactly which event ids Kafka acknowledged
and which it did not confirm: 503 with Retry-After when that is retriable (a
timeout, the broker away), 500 when Kafka refused the events for good. Resending
the same `event_id` values is always safe: the store keeps one copy per event id.
An event too large for Kafka is refused (422) before anything is sent.

Security: with an API key, every route but `/healthz` and `/readyz` needs
`Authorization: Bearer <key>` (FastAPI's `HTTPBearer`, so OpenAPI states it); a
request without it is refused before its body is read. `serve` refuses to listen
beyond loopback without a key unless told `insecure=True`. A body must arrive
within `body_timeout_s` and weigh at most `max_body_bytes`.

The event loop never waits on Kafka: kafka-python's sender thread resolves an
asyncio future per request through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import ipaddress
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPBearer
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from driftloop.collector.durable import durable_producer, kafka_unreachable
from driftloop.collector.label_studio import SECRET_HEADER, WEBHOOK_PATH, parse_webhook, withdrawal
from driftloop.collector.metrics import ApiMetrics
from driftloop.collector.schemas import EventPolicy, FeedbackEvent, InvalidEvent, PredictionEvent, encode
from driftloop.collector.topics import Topics

log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 1000
MAX_EVENT_BYTES = 1_000_000  # Kafka's default record limit (1 MiB for the request) less room for the batch's headers
GC_THRESHOLDS = (10_000, 20, 20)  # see serve(); Python's defaults are (700, 10, 10)
READY_CACHE_S = 1.0
_JSON = "application/json"


class PredictionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[PredictionEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class FeedbackBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class Accepted(BaseModel):
    """Every event of the request is acknowledged by Kafka."""

    accepted: int
    event_ids: list[str]


class NotAllAcknowledged(BaseModel):
    """Kafka did not acknowledge every event: exactly which it did, and which it did not confirm."""

    detail: str
    event_ids: list[str] = Field(description="Every event id of the request: resend them all, or only `not_acknowledged`.")
    acknowledged: list[str] = Field(description="Written: Kafka acknowledged them (acks=all).")
    not_acknowledged: list[str] = Field(description="Not confirmed: perhaps written, perhaps not; resend with the same ids.")


# A feedback body is one event, or a batch: `{"events": [...]}` picks the batch.
_ONE, _BATCH = "event", "batch"
FeedbackBody = Annotated[
    Annotated[FeedbackEvent, Tag(_ONE)] | Annotated[FeedbackBatch, Tag(_BATCH)],
    Discriminator(lambda body: _BATCH if isinstance(body, dict) and "events" in body else _ONE),
]


class NotAcknowledged(RuntimeError):
    """Kafka did not acknowledge every event of a request. Usually retriable (a timeout): resend the same event ids.

    Not retriable when Kafka refused the events for good (kafka-python's `retriable` is False).
    `acknowledged` are the ids Kafka did acknowledge; the others are not confirmed.
    """

    def __init__(self, reason: str, event_ids: list[str], retriable: bool, acknowledged: list[str] | None = None) -> None:
        super().__init__(reason)
        self.event_ids = event_ids
        self.retriable = retriable
        self.acknowledged = acknowledged or []


class _BodyProblem(Exception):
    """A request body refused before validation: too large (413), too slow (408), or not JSON (422)."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("detail", ""))
        self.status = status
        self.body = body


def create_app(
    *,
    bootstrap_servers: str,
    topics: Topics,
    registry: CollectorRegistry,
    api_key: str | None = None,
    max_body_bytes: int = 1024 * 1024,
    body_timeout_s: float = 10.0,
    ack_timeout_s: float = 10.0,
    linger_ms: int = 5,
    client_id: str = "driftloop-api",
    policy: EventPolicy | None = None,
    public_metrics: bool = False,
    public_docs: bool = False,
    label_studio_secret: str | None = None,
    annotated_requests: Callable[[list[str]], dict[str, str]] | None = None,
) -> FastAPI:
    """The API as an ASGI app; it connects to Kafka at startup and closes its producer at shutdown.

    With an `api_key`, `/metrics` and the OpenAPI pages need it too, unless `public_metrics` /
    `public_docs` (say, for a Prometheus that cannot send a key).

    With a `label_studio_secret`, `POST /v1/label-studio/webhook` takes Label Studio's webhook
    calls that carry it in `X-Driftloop-Webhook-Secret` (that route needs no API key: the secret is its
    key). `annotated_requests` tells the request each deleted annotation labelled (the store knows).
    """
    if api_key is not None and not api_key:
        raise ValueError("'api_key' must be None (no authentication) or a non-empty string")
    if max_body_bytes < 1:
        raise ValueError(f"'max_body_bytes' must be at least 1, got {max_body_bytes}")
    if body_timeout_s <= 0:
        raise ValueError(f"'body_timeout_s' must be positive, got {body_timeout_s}")
    policy = policy or EventPolicy()
    metrics = ApiMetrics(registry)
    publisher = _Publisher(bootstrap_servers, client_id, linger_ms, ack_timeout_s)
    readiness = _Readiness(bootstrap_servers, publisher)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await asyncio.to_thread(publisher.start, [topics.predictions, topics.feedback])
        try:
            yield
        finally:
            await asyncio.to_thread(publisher.close)

    app = FastAPI(
        title="driftloop ingestion API",
        summary="Log predictions and feedback; 202 means Kafka acknowledged every event (acks=all).",
        lifespan=lifespan,
        exception_handlers={NotAcknowledged: _not_acknowledged, _BodyProblem: _body_problem},
        openapi_url=None, docs_url=None, redoc_url=None,  # served below, behind the key when there is one
    )
    app.state.api_key_required = api_key is not None
    key = _key_dependency(api_key)
    guarded = [Depends(key)] if api_key is not None else []
    errors = {
        401: {"description": "Missing or wrong API key (`Authorization: Bearer <key>`); nothing was written."},
        408: {"description": f"The body did not arrive within {body_timeout_s:g} s; nothing was written."},
        413: {"description": f"Body larger than {max_body_bytes} bytes."},
        422: {"description": "Invalid body; `errors` names each bad field as a dotted path. Nothing was written."},
        500: {"model": NotAllAcknowledged, "description": "Kafka refused events for good; the body says which were written."},
        503: {"model": NotAllAcknowledged,
              "description": "Kafka did not acknowledge every event in time; the body says which it did. Retry after "
                             "Retry-After with the same event ids."},
    }
    accepted = {topic: metrics.events.labels(topic) for topic in (topics.predictions, topics.feedback)}
    body_limits = (max_body_bytes, body_timeout_s)

    def ingest(topic: str, adapter: TypeAdapter, events_of: Callable[[Any], tuple[list, bool]]) -> Callable:
        async def endpoint(request: Request) -> Response:
            body = await _read_body(request, *body_limits)
            events, batched = events_of(_validate(adapter, body))
            _check(events, policy, datetime.now(UTC), batched)
            await publisher.publish(topic, events)
            accepted[topic].inc(len(events))
            ids = [event.event_id for event in events]
            return Response(orjson.dumps({"accepted": len(ids), "event_ids": ids}), 202, media_type=_JSON)

        return endpoint

    routes = [  # (path, body model, topic, the events of a validated body, summary)
        ("/v1/predictions", PredictionBatch, topics.predictions, lambda body: (body.events, True),
         "Log up to 1000 predictions: `{\"events\": [PredictionEvent, ...]}`."),
        ("/v1/feedback", FeedbackBody, topics.feedback,
         lambda body: (body.events, True) if isinstance(body, FeedbackBatch) else ([body], False),
         "Log one feedback event, or up to 1000 as `{\"events\": [...]}`. The request id need not be known."),
    ]
    bodies = {}
    for path, model, topic, events_of, summary in routes:
        adapter = TypeAdapter(model)
        bodies[path] = adapter
        app.add_api_route(
            path, ingest(topic, adapter, events_of), methods=["POST"], status_code=202, response_model=Accepted,
            responses=errors, dependencies=guarded, description=summary, name=path.strip("/").replace("/", "_"),
        )

    if label_studio_secret is not None:
        app.add_api_route(
            WEBHOOK_PATH, _label_studio_webhook(publisher, topics.feedback, policy, body_limits, annotated_requests,
                                                accepted[topics.feedback]),
            methods=["POST"], status_code=202, response_model=Accepted, name="v1_label_studio_webhook",
            dependencies=[Depends(_secret_dependency(label_studio_secret))],
            responses={401: {"description": f"Missing or wrong `{SECRET_HEADER}`; nothing was written."},
                       400: {"description": "Not a Label Studio webhook body; `errors` names the field. Nothing was "
                                            "written."},
                       **{code: errors[code] for code in (408, 413, 500, 503)}},
            description="Label Studio's webhook (ANNOTATION_CREATED, ANNOTATION_UPDATED, ANNOTATIONS_DELETED): each "
                        "annotation becomes a feedback event with source `annotator`; a deletion withdraws its labels.",
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Kafka does not answer: do not send traffic here."}})
    async def readyz() -> Response:
        """Readiness: Kafka answered a metadata request within the last second."""
        problem = await readiness.problem()
        if problem:
            return _json(503, {"status": "not ready", "reason": problem})
        return _json(200, {"status": "ready"})

    @app.get("/metrics", include_in_schema=False, dependencies=[] if public_metrics else guarded)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    docs_guard = [] if public_docs else guarded

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_guard)
    async def openapi() -> Response:
        return _json(200, _openapi_document(app, bodies, policy))

    @app.get("/docs", include_in_schema=False, dependencies=docs_guard)
    async def docs() -> HTMLResponse:
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    app.add_middleware(_Metrics, metrics=metrics, routes={r.path for r in app.routes if isinstance(r, APIRoute)})
    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 18000, log_level: str = "info",
          insecure: bool = False) -> None:
    """Run the API in this process under uvicorn: one worker, uvloop and httptools when installed, no access log.

    Beyond loopback without an API key it refuses to start, unless `insecure`.

    It tunes this process's garbage collector first. Requests waiting on Kafka keep their objects
    alive across many collections, so they get promoted, and full collections of the ~100k objects
    of the imported code were the p99 (≈50 ms at 3k requests/s). Freezing those objects and
    collecting the young generation less often takes that away.
    """
    check_bind(host, getattr(app.state, "api_key_required", False), insecure)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def check_bind(host: str, has_key: bool, insecure: bool = False) -> None:
    """Raise PermissionError for a non-loopback `host` without an API key, unless `insecure`."""
    if not insecure and not has_key and not is_loopback(host):
        raise PermissionError(
            f"refusing to serve the ingestion API on {host} without an API key: anyone who reaches it could write "
            "events. Set DRIFTLOOP_API__API_KEY (16+ characters), bind 127.0.0.1, or pass --insecure"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret_dependency(secret: str) -> Callable:
    """A FastAPI security dependency: the webhook's shared secret in its header, or 401 before the body is read."""
    header = APIKeyHeader(name=SECRET_HEADER, auto_error=False, scheme_name="labelStudioWebhookSecret",
                          description="The shared secret Label Studio's webhook sends")
    expected = secret.encode()

    async def require_secret(given: str | None = Depends(header)) -> None:  # noqa: B008  FastAPI's way
        if given is None or not hmac.compare_digest(given.strip().encode(), expected):
            raise HTTPException(401, detail=f"missing or wrong webhook secret: send the header '{SECRET_HEADER}'")

    return require_secret


def _label_studio_webhook(publisher: _Publisher, topic: str, policy: EventPolicy, body_limits: tuple[int, float],
                          annotated_requests: Callable[[list[str]], dict[str, str]] | None, accepted) -> Callable:
    """The webhook route: a checked Label Studio body becomes feedback events, sent and acknowledged, or a 400."""

    async def webhook(request: Request) -> Response:
        body = await _read_body(request, *body_limits)
        try:
            call = parse_webhook(orjson.loads(body))
        except orjson.JSONDecodeError as error:
            raise _BodyProblem(400, _not_label_studio("", f"invalid JSON at character {error.pos}: {error.msg}")) from None
        except InvalidEvent as error:
            raise _BodyProblem(400, _not_label_studio(error.field, error.reason)) from None
        now = datetime.now(UTC)
        events = list(call.labels)
        if call.deleted:
            requests = await asyncio.to_thread(annotated_requests, list(call.deleted)) if annotated_requests else {}
            events += [withdrawal(key, requests.get(key), now) for key in call.deleted]
        _check(events, policy, now, batched=True)
        if events:
            await publisher.publish(topic, events)
            accepted.inc(len(events))
        ids = [event.event_id for event in events]
        return Response(orjson.dumps({"accepted": len(ids), "event_ids": ids}), 202, media_type=_JSON)

    return webhook


def _not_label_studio(field: str, message: str) -> dict:
    return {"detail": "not a Label Studio webhook body; nothing was written", "errors": [{"field": field, "message": message}]}


def _key_dependency(api_key: str | None) -> Callable:
    """A FastAPI security dependency: `Authorization: Bearer <api_key>`, or 401 saying what to send."""
    bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", description="`Authorization: Bearer <api key>`")
    expected = (api_key or "").encode()

    async def require_key(credentials=Depends(bearer)) -> None:  # noqa: B008  FastAPI's way to declare it
        if credentials is None or not hmac.compare_digest(credentials.credentials.strip().encode(), expected):
            raise HTTPException(
                401, detail="missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="driftloop"'},
            )

    return require_key


async def _read_body(request: Request, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body, or a _BodyProblem: over `max_bytes` (413) or not all there within `timeout_s` (408)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise _BodyProblem(413, {"detail": f"request body is larger than the limit of {max_bytes} bytes"})
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _BodyProblem(413, {"detail": f"request body is larger than the limit of {max_bytes} bytes"})
                chunks.append(chunk)
    except TimeoutError:
        raise _BodyProblem(408, {"detail": f"the request body did not arrive within {timeout_s:g} s"}) from None
    return b"".join(chunks)


def _validate(adapter: TypeAdapter, body: bytes):
    """The body parsed (orjson: NaN, Infinity and numbers that overflow are not JSON) and validated."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        message = f"invalid JSON at character {error.pos}: {error.msg} (NaN and Infinity are not JSON)"
        raise _BodyProblem(422, _invalid([{"field": "", "message": message}])) from None
    try:
        return adapter.validate_python(document)
    except ValidationError as error:
        raise _BodyProblem(422, _invalid([_problem(p) for p in error.errors(include_url=False)])) from None


def _check(events: list, policy: EventPolicy, now: datetime, batched: bool) -> None:
    """The deployment's policy and Kafka's size limit, for every event, before any is sent."""
    problems = []
    for index, event in enumerate(events):
        prefix = f"events.{index}." if batched else ""
        refused = policy.check(event, now)
        if refused is not None:
            problems.append({"field": f"{prefix}{refused.field}", "message": refused.reason})
        size = len(encode(event))
        if size > MAX_EVENT_BYTES:
            problems.append({"field": prefix.rstrip(".") or "",
                             "message": f"the event is {size} bytes encoded; Kafka takes at most {MAX_EVENT_BYTES}"})
    if problems:
        raise _BodyProblem(422, _invalid(problems))


def _openapi_document(app: FastAPI, bodies: dict[str, TypeAdapter], policy: EventPolicy) -> dict:
    """FastAPI's document, with each POST route's body schema (read by hand, after the key) and the policy's bounds."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(title=app.title, version="1", summary=app.summary, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for path, adapter in bodies.items():
        schema = adapter.json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        document["paths"][path]["post"]["requestBody"] = {
            "required": True, "content": {_JSON: {"schema": schema}},
        }
    features = schemas["PredictionEventV1"]["properties"]["features"]
    features["maxProperties"] = policy.max_features
    name = schemas["PredictionEventV1"]["properties"]["model_name"]
    if policy.model_names:
        name["enum"] = sorted(policy.model_names)
    if policy.model_name_pattern is not None:
        name["pattern"] = f"^(?:{policy.model_name_pattern})$"
    app.openapi_schema = document
    return document


class _Publisher:
    """A KafkaProducer whose acknowledgements the event loop can await, without a thread per request."""

    def __init__(self, bootstrap_servers: str, client_id: str, linger_ms: int, ack_timeout_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.client_id = client_id
        self.linger_ms = linger_ms
        self.ack_timeout_s = ack_timeout_s
        self._producer: KafkaProducer | None = None

    def start(self, topics: list[str]) -> None:
        """Connect, and learn the partitions of `topics` now, so that `send` never waits for metadata."""
        timeout_ms = int(self.ack_timeout_s * 1000)
        self._producer = durable_producer(
            self.bootstrap_servers,
            client_id=self.client_id,
            compression_type="lz4",
            linger_ms=self.linger_ms,
            delivery_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms - self.linger_ms,
            max_block_ms=timeout_ms,
            allow_auto_create_topics=False,  # creating topics, with their partition counts, is the stack's job
        )
        for topic in topics:
            try:
                self._producer.partitions_for(topic)
            except KafkaTimeoutError:
                self._producer.close(timeout=0)
                raise RuntimeError(
                    f"Kafka at {self.bootstrap_servers} has no topic {topic!r}; create it first"
                ) from None

    def close(self) -> None:
        if self._producer is None:
            return
        try:
            self._producer.close(timeout=self.ack_timeout_s)
        except KafkaError as error:  # kafka-python's close gives up on a flush that does not finish
            log.warning("Kafka producer did not close cleanly: %s", error)

    async def publish(self, topic: str, events: list) -> None:
        """Send `events` and return once Kafka acknowledged them all; else raise NotAcknowledged naming what was."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        acknowledged: list[str] = []
        timer = loop.call_later(self.ack_timeout_s, _settle, done, TimeoutError)  # cheaper than asyncio.timeout
        try:
            for event in events:
                acked, failed = _callbacks(event.event_id, len(events), acknowledged, loop, done)
                future = self._producer.send(topic, key=event.request_id.encode(), value=encode(event))
                future.add_callback(acked).add_errback(failed)
            await done
        except (KafkaError, TimeoutError) as error:
            ids = [event.event_id for event in events]
            written = list(acknowledged)  # a snapshot: the sender thread may still append
            if isinstance(error, TimeoutError | KafkaTimeoutError):
                reason = f"Kafka did not acknowledge every event within {self.ack_timeout_s} s"
                raise NotAcknowledged(reason, ids, True, written) from error
            raise NotAcknowledged(str(error), ids, error.retriable, written) from error
        finally:
            timer.cancel()


class _Readiness:
    """Whether Kafka answers, asked at most once a second however often the probe comes."""

    def __init__(self, bootstrap_servers: str, publisher: _Publisher) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.publisher = publisher
        self.checked_at = -float("inf")
        self.last: str | None = "not checked yet"
        self.lock = asyncio.Lock()

    async def problem(self) -> str | None:
        async with self.lock:
            if time.monotonic() - self.checked_at >= READY_CACHE_S:
                if self.publisher._producer is None:
                    self.last = "the Kafka producer is not started"
                else:
                    self.last = await asyncio.to_thread(kafka_unreachable, self.bootstrap_servers, 2.0)
                self.checked_at = time.monotonic()
            return self.last


def _callbacks(event_id: str, count: int, acknowledged: list[str], loop: asyncio.AbstractEventLoop,
               done: asyncio.Future) -> tuple[Callable, Callable]:
    """Callbacks for kafka-python's sender thread: note the acknowledged id; settle `done` on the loop at the last."""

    def acked(_metadata) -> None:
        acknowledged.append(event_id)  # list.append is atomic under the GIL
        if len(acknowledged) == count:
            loop.call_soon_threadsafe(_settle, done, None)

    def failed(error: Exception) -> None:
        loop.call_soon_threadsafe(_settle, done, error)

    return acked, failed


def _settle(done: asyncio.Future, error: BaseException | type[BaseException] | None) -> None:
    if done.done():  # timed out already, or an earlier error settled it
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _invalid(problems: list[dict[str, str]]) -> dict:
    return {"detail": "invalid request body", "errors": problems}


def _problem(problem: dict) -> dict[str, str]:
    """A pydantic error as {"field": "events.0.label", "message": ...}; "" is the whole body."""
    parts = list(problem["loc"])
    if parts[:1] in ([_ONE], [_BATCH]):  # a tag of FeedbackBody, not a field: no event field is called so
        parts = parts[1:]
    return {"field": ".".join(str(part) for part in parts), "message": problem["msg"].removeprefix("Value error, ")}


async def _not_acknowledged(_request: Request, error: NotAcknowledged) -> Response:
    written = set(error.acknowledged)
    body = {
        "event_ids": error.event_ids,
        "acknowledged": [i for i in error.event_ids if i in written],
        "not_acknowledged": [i for i in error.event_ids if i not in written],
    }
    summary = f"{len(body['acknowledged'])} of {len(error.event_ids)} events acknowledged"
    if not error.retriable:
        detail = f"Kafka refused the events: {error}; {summary}. Retrying the others will not help"
        return _json(500, {"detail": detail, **body})
    detail = (
        f"{error}: {summary}; the others may or may not be written. Retry after Retry-After seconds with the same "
        "event_id values (all, or those not acknowledged), so that the store keeps one copy of each."
    )
    return _json(503, {"detail": detail, **body}, {"retry-after": "1"})


async def _body_problem(_request: Request, error: _BodyProblem) -> Response:
    return _json(error.status, error.body)


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=_JSON)


class _Metrics:
    """Latency per route and responses per route and status code, for every answer, the guards' included."""

    def __init__(self, app, metrics: ApiMetrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.latency = {route: metrics.latency.labels(route) for route in (*routes, "other")}
        self.responses: dict[tuple[str, int], Any] = {}  # the labelled children, looked up once

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in self.latency else "other"
        status = 500
        start = time.perf_counter()

        async def send_noting_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self.latency[route].observe(time.perf_counter() - start)
            counter = self.responses.get((route, status))
            if counter is None:
                counter = self.responses[route, status] = self.metrics.responses.labels(route, str(status))
            counter.inc()
