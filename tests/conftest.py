"""Real services, once per session: Kafka, Prometheus, Alertmanager, a local Ray, and Label Studio.

Each test gets its own topic prefix and data directory, so tests never see each
other's events. The stack is started by the same code as `driftloop stack up`.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from driftloop.collector.store import Store
from driftloop.collector.store_writer import StoreWriter, StoreWriterConfig
from driftloop.ray_cluster import connect_ray
from driftloop.settings import KafkaSettings, RaySettings, Settings, load_settings
from driftloop.stack import LocalStack, create_topics, free_port


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the session's stack: free ports, a temporary state dir, 1 s scrapes and alert waits."""
    state = tmp_path_factory.mktemp("stack")
    return load_settings(
        data_dir=state / "data",
        stack={
            "state_dir": state,
            "kafka_port": free_port(),
            "kafka_controller_port": free_port(),
            "prometheus_port": free_port(),
            "alertmanager_port": free_port(),
            "label_studio_port": free_port(),
            "start_label_studio": False,  # the `label_studio` fixture starts it, for the tests that use it
            "kafka_heap": "512m",
        },
        prometheus={"scrape_interval_s": 1},
        alertmanager={"webhook_url": f"http://127.0.0.1:{free_port()}/v1/alerts", "group_wait_s": 1, "group_interval_s": 1},
    )


@pytest.fixture(scope="session")
def local_stack(stack_settings: Settings):
    stack = LocalStack(stack_settings)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def kafka(local_stack: LocalStack) -> str:
    """The bootstrap address of the session's real broker."""
    return local_stack.kafka.bootstrap


@pytest.fixture(scope="session")
def prometheus(local_stack: LocalStack):
    """The session's real Prometheus (`.url`, `.targets_dir` to register a scrape target)."""
    return local_stack.prometheus


@pytest.fixture(scope="session")
def alertmanager(local_stack: LocalStack):
    return local_stack.alertmanager


@pytest.fixture
def kafka_settings(kafka: str) -> KafkaSettings:
    """The project's topics under a prefix of this test's own, created on the real broker."""
    settings = KafkaSettings(bootstrap_servers=kafka, topic_prefix=f"test-{uuid.uuid4().hex[:10]}.")
    create_topics(kafka, settings)
    return settings


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def label_studio(stack_settings: Settings):
    """The session's real Label Studio, started by `stack up` (a stack of Label Studio alone) under the session's
    state dir; `.url`, `.process`, and its credentials from `driftloop.stack.local_credentials(stack)`."""
    settings = stack_settings.model_copy(update={"stack": stack_settings.stack.model_copy(update={
        "start_kafka": False, "start_prometheus": False, "start_alertmanager": False, "start_label_studio": True})})
    stack = LocalStack(settings)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 2 CPUs for the session, started as driftloop starts one (no token auth, no global env)."""
    import ray

    connect_ray(RaySettings(num_cpus=2))
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def writer(kafka, kafka_settings, data_dir) -> Store:
    """The store writer, running for the whole test into the test's data dir; the store it writes."""
    config = StoreWriterConfig(kafka, kafka_settings.topics(), data_dir / "store",
                               group_id=f"{kafka_settings.topic_prefix}w", batch_seconds=0.2)
    writer = StoreWriter(config, CollectorRegistry())
    stop = threading.Event()
    thread = threading.Thread(target=writer.run, args=(stop,), daemon=True)
    thread.start()
    yield Store(data_dir / "store")
    stop.set()
    thread.join(timeout=30)
