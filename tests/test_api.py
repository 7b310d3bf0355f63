"""The ingestion API served for real (uvicorn on a free port), over HTTP, writing to the session's real Kafka."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import orjson
import pytest
import uvicorn
from events import event_ids_in, feedback_for, prediction_documents
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from driftloop.collector import Topics, create_app
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
            metric(text, "driftloop_api_request_seconds_count", {"route": "/v1/feedback"}),
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


def test_an_event_kafka_can_never_take_gets_500_not_a_retry(kafka_settings):
    app = create_app(
        bootstrap_servers=kafka_settings.bootstrap_servers, topics=kafka_settings.topics(),
        registry=CollectorRegistry(), max_body_bytes=4 * 1024 * 1024,
    )
    huge = {**GOOD_PREDICTION, "embedding": [0.12345678901234567] * 65536}  # ~1.3 MB encoded; Kafka takes 1 MiB

    with serving(app) as url:
        answer = httpx.post(f"{url}/v1/predictions", json={"events": [huge]}, timeout=30)

    assert answer.status_code == 500, answer.text
    assert "retrying will not help" in answer.json()["detail"] and "retry-after" not in answer.headers
