"""The local stack: a real Kafka broker, Prometheus and Alertmanager on 127.0.0.1."""

from driftloop.stack.kafka import KafkaBroker, create_topics, fetch_kafka_jars
from driftloop.stack.local import LocalStack, PortTaken, ServiceStatus
from driftloop.stack.monitoring import Alertmanager, Prometheus, register_scrape_target, unregister_scrape_target
from driftloop.stack.process import MissingTool, free_port

__all__ = [
    "Alertmanager",
    "KafkaBroker",
    "LocalStack",
    "MissingTool",
    "PortTaken",
    "Prometheus",
    "ServiceStatus",
    "create_topics",
    "fetch_kafka_jars",
    "free_port",
    "register_scrape_target",
    "unregister_scrape_target",
]
