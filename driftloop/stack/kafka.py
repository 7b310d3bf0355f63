"""A real single-node Apache Kafka broker (KRaft), run from its Maven Central jars.

The jars are resolved once with Maven into a cache outside the clone
(see docs/stack.md); storage is formatted on first start; ready means a
metadata request succeeds; the project's topics are created with their
partition counts.
"""

from __future__ import annotations

import base64
import logging
import subprocess
import uuid
from importlib import resources
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError

from driftloop.settings import KafkaSettings, StackSettings
from driftloop.stack.process import ServiceExited, ServiceProcess, port_open, require_tool, wait_until

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
"""

SERVER_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{ctrl}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{ctrl}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
"""


def kafka_lib_dir(stack: StackSettings) -> Path:
    return stack.cache_dir / f"kafka-{KAFKA_VERSION}" / "lib"


def fetch_kafka_jars(stack: StackSettings) -> Path:
    """Resolve the broker's classpath with Maven, once; later calls return the cached directory."""
    lib = kafka_lib_dir(stack)
    done = lib.parent / ".complete"
    if done.exists():
        return lib
    mvn = require_tool("mvn", "install Maven 3.8+ (Debian: apt-get install maven)")
    require_tool("java", "install Java 17 (Debian: apt-get install openjdk-17-jre-headless)")
    log.info("fetching Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, lib)
    pom = resources.files("driftloop.stack").joinpath("kafka-pom.xml")
    with resources.as_file(pom) as pom_path:
        subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom_path), DEPENDENCY_PLUGIN,
             f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
            check=True,
        )
    done.write_text(KAFKA_VERSION + "\n")
    return lib


class KafkaBroker:
    """The local broker's files, process and readiness."""

    def __init__(self, stack: StackSettings) -> None:
        self.stack = stack
        self.home = stack.state_dir / "kafka"
        self.process = ServiceProcess("kafka", stack.state_dir)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.stack.kafka_port}"

    def start(self) -> None:
        java = require_tool("java", "install Java 17 (Debian: apt-get install openjdk-17-jre-headless)")
        lib = fetch_kafka_jars(self.stack)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2)
        config = self.home / "server.properties"
        config.write_text(
            SERVER_PROPERTIES.format(
                port=self.stack.kafka_port,
                ctrl=self.stack.kafka_controller_port,
                data=self.home / "data",
            )
        )
        logging_option = f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}"
        classpath = ["-cp", f"{lib}/*"]
        subprocess.run(
            [java, "-Xmx256m", logging_option, *classpath, "kafka.tools.StorageTool", "format", "--standalone",
             "--ignore-formatted", "-t", self._cluster_id(), "-c", str(config)],
            check=True,
            capture_output=True,
        )
        heap = self.stack.kafka_heap
        self.process.start(
            [java, f"-Xms{heap}", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true", logging_option, *classpath,
             "kafka.Kafka", str(config)],
            marker=str(config),
        )

    def _cluster_id(self) -> str:
        """16 random bytes, URL-safe base64 without padding, never starting with '-'; kept across restarts."""
        path = self.home / "cluster.id"
        if not path.exists():
            cluster_id = "-"
            while cluster_id.startswith("-"):
                cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            path.write_text(cluster_id)
        return path.read_text().strip()

    def ready(self) -> bool:
        if not port_open(self.stack.kafka_port):  # kafka-python would retry for 30 s
            return False
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            admin.describe_cluster()
            return True
        finally:
            admin.close()

    def wait_ready(self, timeout_s: float = 60.0) -> float:
        def check() -> bool:
            if self.process.exited_early():
                raise ServiceExited(f"Kafka exited during start; log:\n{self.process.log_tail()}")
            return self.ready()

        try:
            return wait_until(check, timeout_s, f"Kafka broker on {self.bootstrap}", interval_s=0.3)
        except TimeoutError as error:
            raise TimeoutError(f"{error}; log {self.process.log_file}:\n{self.process.log_tail()}") from None


def create_topics(bootstrap: str, kafka: KafkaSettings) -> list[str]:
    """Create the project's topics under `kafka.topic_prefix`; existing ones are left as they are."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        wanted = {kafka.topic(name): count for name, count in kafka.partitions.items()}
        new = {
            topic: {"num_partitions": count, "replication_factor": 1}
            for topic, count in wanted.items()
            if topic not in existing
        }
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:  # another process raced us; the topics exist, fine
                pass
        # A consumer that subscribes before the broker serves a new topic's metadata gets no partitions.
        admin.wait_for_topics(list(wanted), timeout_ms=30_000)
        return sorted(wanted)
    finally:
        admin.close()
