"""The local stack: a real Kafka broker, Prometheus, Alertmanager and Label Studio on 127.0.0.1."""

from driftloop.stack.kafka import KafkaBroker, create_topics, fetch_kafka_jars
from driftloop.stack.label_studio import LABEL_STUDIO_VERSION, Credentials, LabelStudioServer, local_credentials
from driftloop.stack.local import LocalStack, PortTaken, ServiceStatus
from driftloop.stack.monitoring import Alertmanager, Prometheus, register_scrape_target, unregister_scrape_target
from driftloop.stack.process import MissingTool, ServiceExited, free_port

__all__ = [
    "LABEL_STUDIO_VERSION",
    "Alertmanager",
    "Credentials",
    "KafkaBroker",
    "LabelStudioServer",
    "LocalStack",
    "MissingTool",
    "PortTaken",
    "Prometheus",
    "ServiceExited",
    "ServiceStatus",
    "create_topics",
    "fetch_kafka_jars",
    "free_port",
    "local_credentials",
    "register_scrape_target",
    "unregister_scrape_target",
]
