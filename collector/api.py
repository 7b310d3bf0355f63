"""The ingestion HTTP API: predictions and feedback in, 202 only once Kafka acknowledged every event.

    app = create_app(bootstrap_servers="127.0.0.1:19092", topics=Topics(), registry=CollectorRegistry())
    serve(app, host="127.0.0.1", port=18000)  # uvicorn, one worker, no access log, GC tuned for the p99

Routes: `POST /v1/predictions` (`{"events": [...]}`), `POST /v1/feedback` (one
event, or `{"events": [...]}`), `GET /healthz`, `GET /metrics`, and the
OpenAPI document at `/openapi.json` and `/docs`. A request is accepted (202)
only after Kafka acknowledged all of its events with acks=all; if it does not
within `ack_timeout_s` the answer is 503 with Retry-After, and the client may
retry with the same `event_id` values (the store keeps one copy per event id).
The event loop never waits on Kafka: kafka-python's sender thread resolves an
asyncio future per request through `loop.call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from driftloop.collector.durable import durable_producer
from driftloop.collector.metrics import ApiMetrics
from driftloop.collector.schemas import FeedbackEvent, PredictionEvent, encode
from driftloop.collector.topics import Topics

log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 1000
GC_THRESHOLDS = (10_000, 20, 20)  # see serve(); Python's defaults are (700, 10, 10)
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


# A feedback body is one event, or a batch: `{"events": [...]}` picks the batch.
_ONE, _BATCH = "event", "batch"
FeedbackBody = Annotated[
    Annotated[FeedbackEvent, Tag(_ONE)] | Annotated[FeedbackBatch, Tag(_BATCH)],
    Discriminator(lambda body: _BATCH if isinstance(body, dict) and "events" in body else _ONE),
]


class NotAcknowledged(RuntimeError):
    """Kafka did not acknowledge every event of a request. Usually retriable (a timeout): resend the same event ids.

    Not retriable when Kafka refused the events for good (kafka-python's `retriable` is False, e.g. too large).
    """

    def __init__(self, reason: str, event_ids: list[str], retriable: bool) -> None:
        super().__init__(reason)
        self.event_ids = event_ids
        self.retriable = retriable


def create_app(
    *,
    bootstrap_servers: str,
    topics: Topics,
    registry: CollectorRegistry,
    api_key: str | None = None,
    max_body_bytes: int = 1024 * 1024,
    ack_timeout_s: float = 10.0,
    linger_ms: int = 5,
    client_id: str = "driftloop-api",
) -> FastAPI:
    """The API as an ASGI app; it connects to Kafka at startup and closes its producer at shutdown."""
    if api_key is not None and not api_key:
        raise ValueError("'api_key' must be None (no authentication) or a non-empty string")
    if max_body_bytes < 1:
        raise ValueError(f"'max_body_bytes' must be at least 1, got {max_body_bytes}")
    metrics = ApiMetrics(registry)
    publisher = _Publisher(bootstrap_servers, client_id, linger_ms, ack_timeout_s)

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
        exception_handlers={RequestValidationError: _invalid_body, NotAcknowledged: _not_acknowledged},
    )
    app.router.route_class = _StrictJSONRoute
    errors = {
        401: {"description": "Missing or wrong API key (`Authorization: Bearer <key>`); nothing was written."},
        413: {"description": f"Body larger than {max_body_bytes} bytes."},
        422: {"description": "Invalid body; `errors` names each bad field as a dotted path."},
        500: {"description": "Kafka refused the events for good (e.g. one too large); retrying will not help."},
        503: {"description": "Kafka did not acknowledge in time; retry after Retry-After with the same event ids."},
    }

    accepted = {topic: metrics.events.labels(topic) for topic in (topics.predictions, topics.feedback)}

    async def accept(topic: str, events: list) -> Response:
        await publisher.publish(topic, events)
        accepted[topic].inc(len(events))
        ids = [event.event_id for event in events]
        return Response(orjson.dumps({"accepted": len(ids), "event_ids": ids}), 202, media_type=_JSON)

    @app.post("/v1/predictions", status_code=202, response_model=Accepted, responses=errors)
    async def log_predictions(batch: PredictionBatch) -> Response:
        """Log up to 1000 predictions: `{"events": [PredictionEvent, ...]}`."""
        return await accept(topics.predictions, batch.events)

    @app.post("/v1/feedback", status_code=202, response_model=Accepted, responses=errors)
    async def log_feedback(body: FeedbackBody) -> Response:
        """Log one feedback event, or up to 1000 as `{"events": [...]}`. The request id need not be known."""
        return await accept(topics.feedback, body.events if isinstance(body, FeedbackBatch) else [body])

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # Outermost last: metrics see every answer; a wrong key is refused before a byte of the body is read.
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)
    if api_key is not None:
        app.add_middleware(_BearerAuth, api_key=api_key, protected_prefix="/v1/")
    app.add_middleware(_Metrics, metrics=metrics, routes={r.path for r in app.routes if isinstance(r, APIRoute)})
    return app


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 18000, log_level: str = "info") -> None:
    """Run the API in this process under uvicorn: one worker, uvloop and httptools when installed, no access log.

    It tunes this process's garbage collector first. Requests waiting on Kafka keep their objects
    alive across many collections, so they get promoted, and full collections of the ~100k objects
    of the imported code were the p99 (≈50 ms at 3k requests/s). Freezing those objects and
    collecting the young generation less often takes that away.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


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
        """Send `events` and return once Kafka acknowledged them all; else raise NotAcknowledged."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        acked, failed = _countdown(len(events), loop, done)
        timer = loop.call_later(self.ack_timeout_s, _settle, done, TimeoutError)  # cheaper than asyncio.timeout
        try:
            for event in events:
                future = self._producer.send(topic, key=event.request_id.encode(), value=encode(event))
                future.add_callback(acked).add_errback(failed)
            await done
        except (KafkaError, TimeoutError) as error:
            ids = [event.event_id for event in events]
            if isinstance(error, TimeoutError):
                raise NotAcknowledged(f"Kafka did not acknowledge within {self.ack_timeout_s} s", ids, True) from error
            raise NotAcknowledged(str(error), ids, error.retriable) from error
        finally:
            timer.cancel()


def _countdown(count: int, loop: asyncio.AbstractEventLoop, done: asyncio.Future) -> tuple[Callable, Callable]:
    """Callbacks for kafka-python's sender thread: resolve `done` on the loop after `count` acks, or the first error."""
    acks = itertools.count(1)  # next() is atomic under the GIL: no lock between the sender and the loop thread

    def acked(_metadata) -> None:
        if next(acks) == count:
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


class _StrictJSONRequest(Request):
    """A request whose JSON parser refuses NaN, Infinity and numbers that overflow to infinity (orjson)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())  # orjson.JSONDecodeError is a json.JSONDecodeError: 422
        return self._json


class _StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


async def _invalid_body(_request: Request, error: RequestValidationError) -> Response:
    problems = [_problem(problem) for problem in error.errors()]
    return _json(422, {"detail": "invalid request body", "errors": problems})


def _problem(problem: dict) -> dict[str, str]:
    """A pydantic/FastAPI error as {"field": "events.0.label", "message": ...}; "" is the whole body."""
    if problem["type"] == "json_invalid":  # loc is ("body", character position)
        position, reason = problem["loc"][-1], problem["ctx"]["error"]
        message = f"invalid JSON at character {position}: {reason} (NaN and Infinity are not JSON)"
        return {"field": "", "message": message}
    parts = list(problem["loc"][1:] if problem["loc"][:1] == ("body",) else problem["loc"])
    if parts[:1] in ([_ONE], [_BATCH]):  # a tag of FeedbackBody, not a field: no event field is called so
        parts = parts[1:]
    return {"field": ".".join(str(part) for part in parts), "message": problem["msg"].removeprefix("Value error, ")}


async def _not_acknowledged(_request: Request, error: NotAcknowledged) -> Response:
    if not error.retriable:
        return _json(500, {"detail": f"Kafka refused the events: {error}; retrying will not help"})
    body = {
        "detail": (
            f"{error}; some events may be written, none is confirmed. Retry after Retry-After seconds with the "
            "same event_id values (listed here), so that the store keeps one copy of each."
        ),
        "event_ids": error.event_ids,
    }
    return _json(503, body, {"retry-after": "1"})


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers=headers, media_type=_JSON)


async def _send_json(send, status: int, body: dict, headers: tuple = ()) -> None:
    """Answer from an ASGI middleware, before the app saw the request."""
    content = orjson.dumps(body)
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": content})


def _header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


class _BodyLimit:
    """413 for a body over `max_bytes`: by Content-Length before reading it, or by counting a chunked one."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit():  # the server reads exactly this many bytes, no more
            if int(length) > self.max_bytes:
                return await self._too_large(send)
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await self._too_large(send)
        return await self.app(scope, _replay(b"".join(chunks), receive), send)

    async def _too_large(self, send) -> None:
        await _send_json(send, 413, {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"})


def _replay(body: bytes, receive):
    """A receive that yields the already-read body once, then whatever the server says next (a disconnect)."""
    first = True

    async def replayed() -> dict:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class _BearerAuth:
    """401 for a request under `protected_prefix` without `Authorization: Bearer <api_key>`, before its body is read."""

    def __init__(self, app, api_key: str, protected_prefix: str) -> None:
        self.app = app
        self.key = api_key.encode()
        self.protected_prefix = protected_prefix

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.protected_prefix) and not self._allowed(scope):
            return await _send_json(
                send,
                401,
                {"detail": "missing or wrong API key: send the header 'Authorization: Bearer <key>'"},
                ((b"www-authenticate", b'Bearer realm="driftloop"'),),
            )
        return await self.app(scope, receive, send)

    def _allowed(self, scope) -> bool:
        scheme, _, token = (_header(scope, b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)


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
