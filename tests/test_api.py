"""The ingestion API served for real (uvicorn on a free port), over HTTP, writing to the session's real Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import jsonschema
import orjson
import pytest
import uvicorn
from events import event_ids_in, feedback_for, prediction_documents
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from driftloop.collector import Topics, create_app, serve
from driftloop.collector.api import is_loopback
from driftloop.settings import KafkaSettings
from driftloop.stack import create_topics, free_port

API_KEY = "test-api-key-0123456789"


@dataclass(frozen=True)
class Api:
    client: httpx.Client
    bootstrap: str
    topics: Topics


@contextmanager
def serving(app):
    """The app under uvicorn in a thread on a free port; its URL once it accepts connections."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def api(kafka):
    settings = KafkaSettings(bootstrap_servers=kafka, topic_prefix=f"test-api-{uuid.uuid4().hex[:8]}.")
    create_topics(kafka, settings)
    app = create_app(bootstrap_servers=kafka, topics=settings.topics(), registry=CollectorRegistry(), api_key=API_KEY)
    with serving(app) as url, httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        yield Api(client, kafka, settings.topics())




def post(api: Api, path: str, body, **kwargs) -> httpx.Response:
    return api.client.post(path, content=orjson.dumps(body), headers={"Content-Type": "application/json"}, **kwargs)


def test_accepted_events_are_in_kafka_exactly_once_when_the_202_arrives(api):
    predictions = prediction_documents(50)
    feedback = feedback_for(predictions)
    answers = [post(api, "/v1/predictions", {"events": predictions})]
    answers += [post(api, "/v1/feedback", event) for event in feedback[:20]]  # one at a time
    answers.append(post(api, "/v1/feedback", {"events": feedback[20:]}))  # the rest as a batch

    assert [a.status_code for a in answers] == [202] * len(answers), answers[0].text
    assert answers[0].json() == {"accepted": 50, "event_ids": [p["event_id"] for p in predictions]}
    in_predictions = event_ids_in(api.bootstrap, api.topics.predictions, "prediction")  # read only after the 202s
    in_feedback = event_ids_in(api.bootstrap, api.topics.feedback, "feedback")
    assert {i: in_predictions[i] for i in answers[0].json()["event_ids"]} == {p["event_id"]: 1 for p in predictions}
    assert {f["event_id"]: in_feedback[f["event_id"]] for f in feedback} == {f["event_id"]: 1 for f in feedback}


def test_the_api_fills_in_event_id_and_time_and_accepts_feedback_for_an_unknown_request(api):
    answer = post(api, "/v1/feedback", {"request_id": f"never-predicted-{uuid.uuid4().hex}", "rating": 4.5})

    assert answer.status_code == 202, answer.text
    (event_id,) = answer.json()["event_ids"]
    assert event_ids_in(api.bootstrap, api.topics.feedback, "feedback")[event_id] == 1


GOOD_FEEDBACK = {"request_id": "r-1", "label": 1}
GOOD_PREDICTION = prediction_documents(1)[0]
NO_FEATURES = {k: v for k, v in GOOD_PREDICTION.items() if k != "features"}
INFINITE_LATENCY = orjson.dumps({"events": [GOOD_PREDICTION]}).replace(b'"latency_ms":3.0', b'"latency_ms":Infinity')
# case: (route, body, the field the 422 must name; "" for the whole body)
BAD_BODIES = {
    "malformed-json": ("/v1/feedback", b'{"request_id": "r-1", "label": ', ""),
    "nan-literal": ("/v1/feedback", b'{"request_id": "r-1", "rating": NaN}', ""),
    "infinity-literal": ("/v1/predictions", INFINITE_LATENCY, ""),
    "overflows-to-infinity": ("/v1/feedback", b'{"request_id": "r-1", "rating": 1e999}', ""),
    "wrong-type": ("/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "rating": "great"}), "rating"),
    "missing-field": ("/v1/predictions", orjson.dumps({"events": [NO_FEATURES]}), "events.0.features"),
    "missing-field-in-feedback-batch": (
        "/v1/feedback", orjson.dumps({"events": [GOOD_FEEDBACK, {"label": 1}]}), "events.1.request_id"
    ),
    "unknown-field": ("/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "lable": 2}), "lable"),
    "neither-label-nor-rating": ("/v1/feedback", orjson.dumps({"request_id": "r-1"}), ""),
    "empty-batch": ("/v1/predictions", orjson.dumps({"events": []}), "events"),
    "batch-over-1000": ("/v1/feedback", orjson.dumps({"events": [GOOD_FEEDBACK] * 1001}), "events"),
    "not-an-object": ("/v1/predictions", b"[1, 2]", ""),
    "empty-body": ("/v1/feedback", b"", ""),
    # one rule, stated once in the schema: no lax coercions
    "rating-false": ("/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "rating": False}), "rating"),
    "rating-as-text": ("/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "rating": "1.5"}), "rating"),
    "timestamp-as-a-number": ("/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "timestamp": 0}), "timestamp"),
    "empty-label": ("/v1/feedback", orjson.dumps({"request_id": "r-1", "label": ""}), "label.constrained-str"),
    "time-before-1970": ("/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "timestamp": "0001-01-01T00:30+01:00"}), "timestamp"),
    "integer-feature-past-64-bits": (
        "/v1/predictions", orjson.dumps({"events": [{**GOOD_PREDICTION, "features": {"x": 2**64 - 1}}]}), "events.0.features"
    ),
    "too-many-features": (
        "/v1/predictions", orjson.dumps({"events": [{**GOOD_PREDICTION, "features": {f"x{i}": 1.0 for i in range(1001)}}]}),
        "events.0.features",
    ),
    "time-far-from-the-clock": (
        "/v1/feedback", orjson.dumps({**GOOD_FEEDBACK, "timestamp": "2001-01-01T00:00:00Z"}), "timestamp"
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES, ids=list(BAD_BODIES))
def test_a_bad_body_gets_422_naming_the_field(api, case):
    path, body, field = BAD_BODIES[case]

    answer = api.client.post(path, content=body, headers={"Content-Type": "application/json"})

    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == "invalid request body"
    problems = answer.json()["errors"]
    assert field in [p["field"] for p in problems], problems
    assert all(p["message"] for p in problems)


def test_nan_is_refused_as_invalid_json_with_its_position(api):
    answer = api.client.post(
        "/v1/feedback", content=b'{"request_id": "r-1", "rating": NaN}', headers={"Content-Type": "application/json"}
    )

    assert answer.json()["errors"] == [{
        "field": "", "message": "invalid JSON at character 32: unexpected character, expected a JSON value "
        "(NaN and Infinity are not JSON)",
    }]


def test_an_oversized_body_gets_413_whether_its_length_is_declared_or_chunked(api):
    big = orjson.dumps({"events": [GOOD_FEEDBACK] * 60_000})  # about 1.7 MB, over the 1 MiB default
    assert len(big) > 1024 * 1024

    declared = api.client.post("/v1/feedback", content=big, headers={"Content-Type": "application/json"})
    chunked = api.client.post(
        "/v1/feedback", content=(big[i:i + 65536] for i in range(0, len(big), 65536)),
        headers={"Content-Type": "application/json"},
    )

    assert (declared.status_code, chunked.status_code) == (413, 413), (declared.text, chunked.text)
    assert "1048576 bytes" in declared.json()["detail"]


def test_a_chunked_body_under_the_limit_is_accepted(api):
    body = orjson.dumps({"events": feedback_for(prediction_documents(3))})
    answer = api.client.post(
        "/v1/feedback", content=(body[i:i + 100] for i in range(0, len(body), 100)),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 202, answer.text


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-0123456789", f"Basic {API_KEY}", API_KEY],
                         ids=["missing", "wrong-key", "wrong-scheme", "no-scheme"])
def test_a_missing_or_wrong_api_key_gets_401_and_nothing_is_written(api, authorization):
    request_id = f"unauthorised-{uuid.uuid4().hex}"
    headers = {"Content-Type": "application/json"} | ({"Authorization": authorization} if authorization else {})
    body = orjson.dumps({"request_id": request_id, "event_id": request_id, "label": 1})
    with httpx.Client(base_url=str(api.client.base_url), timeout=30) as anonymous:  # without the fixture's key
        answer = anonymous.post("/v1/feedback", content=body, headers=headers)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in answer.json()["detail"]
    assert request_id not in event_ids_in(api.bootstrap, api.topics.feedback, "feedback")


def test_after_bad_input_the_service_is_healthy_and_accepts_a_good_request(api):
    for path, body, _ in BAD_BODIES.values():
        api.client.post(path, content=body, headers={"Content-Type": "application/json"})
    api.client.post("/v1/feedback", content=b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})

    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert post(api, "/v1/predictions", {"events": prediction_documents(2)}).status_code == 202


def metric(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return 0.0


def test_metrics_count_accepted_events_responses_and_latency(api):
    def scrape() -> tuple[float, float, float]:
        text = api.client.get("/metrics").text
        return (
            metric(text, "driftloop_api_events_accepted_total", {"topic": api.topics.feedback}),
            metric(text, "driftloop_api_responses_total", {"route": "/v1/feedback", "code": "422"}),
            metric(text, "driftloop_api_request_duration_seconds_count", {"route": "/v1/feedback"}),
        )

    before = scrape()
    post(api, "/v1/feedback", {"events": feedback_for(prediction_documents(3))})
    post(api, "/v1/feedback", {"request_id": "r-1"})  # 422
    after = scrape()

    assert [b - a for a, b in zip(before, after, strict=True)] == [3, 1, 2]


def test_openapi_documents_both_post_routes(api):
    spec = api.client.get("/openapi.json").json()

    assert {"/v1/predictions", "/v1/feedback"} <= {path for path, ops in spec["paths"].items() if "post" in ops}
    assert api.client.get("/docs").status_code == 200


def test_503_with_retry_after_when_kafka_does_not_acknowledge_in_time(local_stack, kafka_settings):
    app = create_app(
        bootstrap_servers=kafka_settings.bootstrap_servers, topics=kafka_settings.topics(),
        registry=CollectorRegistry(), ack_timeout_s=1.5,
    )
    broker = local_stack.kafka.process.pid()
    with serving(app) as url:
        os.kill(broker, signal.SIGSTOP)  # the real broker, frozen: connected, but it acknowledges nothing
        try:
            started = time.monotonic()
            answer = httpx.post(f"{url}/v1/feedback", json={"request_id": "r-1", "event_id": "e-1", "label": 1})
            waited = time.monotonic() - started
        finally:
            os.kill(broker, signal.SIGCONT)

    assert answer.status_code == 503, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["event_ids"] == ["e-1"] and "same event_id" in answer.json()["detail"]
    assert (answer.json()["acknowledged"], answer.json()["not_acknowledged"]) == ([], ["e-1"])
    assert 1.0 < waited < 10


def test_the_api_refuses_to_start_when_its_topics_do_not_exist(kafka):
    app = create_app(
        bootstrap_servers=kafka, topics=Topics("test-api-missing."), registry=CollectorRegistry(), ack_timeout_s=1
    )

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(RuntimeError, match="no topic 'test-api-missing.predictions'; create it first"):
        asyncio.run(start())


def test_a_batch_with_an_event_kafka_can_never_take_is_refused_whole_before_anything_is_sent(kafka_settings):
    app = create_app(
        bootstrap_servers=kafka_settings.bootstrap_servers, topics=kafka_settings.topics(),
        registry=CollectorRegistry(), max_body_bytes=4 * 1024 * 1024,
    )
    good = prediction_documents(5)
    huge = {**good[0], "event_id": "huge", "embedding": [0.12345678901234567] * 65536}  # ~1.3 MB; Kafka takes 1 MiB

    with serving(app) as url:
        answer = httpx.post(f"{url}/v1/predictions", json={"events": good[1:] + [huge]}, timeout=30)

    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "events.4" and "Kafka takes at most" in answer.json()["errors"][0]["message"]
    assert not event_ids_in(kafka_settings.bootstrap_servers, kafka_settings.topic("predictions"), "prediction"), \
        "all or nothing: not one event of the batch was sent"


def test_openapi_states_the_key_and_the_rules(api):
    spec = api.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["apiKey"] == {
        "type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <api key>`"}
    assert spec["paths"]["/v1/predictions"]["post"]["security"] == [{"apiKey": []}]
    prediction = spec["components"]["schemas"]["PredictionEventV1"]["properties"]
    assert (prediction["features"]["minProperties"], prediction["features"]["maxProperties"]) == (1, 1000)
    output = spec["components"]["schemas"]["PredictionOutput"]
    assert [branch["required"] for branch in output["anyOf"]] == [["label"], ["probabilities"], ["score"]]
    feedback = spec["components"]["schemas"]["FeedbackEventV1"]
    assert [branch["required"] for branch in feedback["anyOf"]] == [["label"], ["rating"]]
    body = spec["paths"]["/v1/predictions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["events"] == {
        "items": {"$ref": "#/components/schemas/PredictionEventV1"}, "maxItems": 1000, "minItems": 1,
        "title": "Events", "type": "array"}
    # What OpenAPI states, a validator of it enforces: the cases it can state are refused by the document too.
    validator = jsonschema.Draft202012Validator({**body, "components": spec["components"]})
    assert validator.is_valid({"events": [GOOD_PREDICTION]})
    for case in ("missing-field", "empty-batch", "too-many-features"):
        assert not validator.is_valid(orjson.loads(BAD_BODIES[case][1])), case
    assert not validator.is_valid({"events": [{**GOOD_PREDICTION, "output": {"label": None}}]}), "output says nothing"


def test_with_a_key_metrics_and_docs_need_it_and_health_does_not(api):
    with httpx.Client(base_url=str(api.client.base_url), timeout=30) as anonymous:
        assert [anonymous.get(path).status_code for path in ("/metrics", "/openapi.json", "/docs")] == [401] * 3
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").json() == {"status": "ready"}
    assert api.client.get("/metrics").status_code == 200


def raw_request(url: str, head: bytes, body: bytes = b"", wait_s: float = 30) -> bytes:
    """Send `head` and part of a body on a socket, then read what the server answers without sending more."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as connection:
        connection.sendall(head + body)
        return connection.recv(65536)


def test_a_request_without_the_key_is_refused_before_its_body_is_read(api):
    head = (b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 900000\r\n\r\n")
    started = time.monotonic()
    answer = raw_request(str(api.client.base_url), head, b'{"request_id"')  # 13 of 900,000 bytes sent
    assert answer.startswith(b"HTTP/1.1 401") and b"Authorization: Bearer" in answer
    assert time.monotonic() - started < 10


def test_a_body_that_does_not_arrive_in_time_gets_408(kafka_settings):
    app = create_app(bootstrap_servers=kafka_settings.bootstrap_servers, topics=kafka_settings.topics(),
                     registry=CollectorRegistry(), body_timeout_s=1.0)
    head = (b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n")
    with serving(app) as url:
        started = time.monotonic()
        answer = raw_request(url, head, b'{"request_id": "r-1", ')
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert 0.9 < waited < 10


def test_serving_beyond_loopback_without_a_key_is_refused_unless_insecure(kafka_settings):
    app = create_app(bootstrap_servers=kafka_settings.bootstrap_servers, topics=kafka_settings.topics(),
                     registry=CollectorRegistry())
    with pytest.raises(PermissionError, match="without an API key.*--insecure"):
        serve(app, host="0.0.0.0", port=free_port())
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")
