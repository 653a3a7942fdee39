"""The Apache Kafka 4.x broker of the local stack: KRaft, one node, jars from Maven Central.

Secured (``stack.secure``), its clients' port speaks SASL_SSL with SCRAM users made when
the storage is formatted, a second port mutual TLS, and an authorizer denies what no ACL
allows (``deploy/kafka/server-secure.properties``); plain, it is one PLAINTEXT port.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass

from pipeline.config import Settings
from pipeline.resources import resource_path
from pipeline.stack.certs import StackTLS
from pipeline.stack.process import ManagedProcess, StackError, port_is_open

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass(frozen=True)
class ClusterNode:
    """This broker's place in a multi-node cluster (``cluster.py``)."""

    node_id: int
    voters: str
    """controller.quorum.voters: ``id@host:port`` of every controller."""
    cluster_id: str
    replicas: int
    min_insync: int


class KafkaBroker:
    """Fetches, formats, starts and stops the single-node broker under $AUDITPIPE_HOME/kafka
    (or one node of a cluster, ``node``)."""

    def __init__(
        self, settings: Settings, tls: StackTLS | None = None, node: ClusterNode | None = None
    ) -> None:
        self.settings = settings
        self.tls = tls
        """The stack's certificates when it runs secured."""
        self.node = node
        self.root = settings.home.resolve() / "kafka"
        self.libs = self.root / "libs"
        self.properties = self.root / "server.properties"
        self.data = self.root / "data"
        self.logs = self.root / "logs"
        stack = settings.stack
        self.process = ManagedProcess(
            name=f"kafka-{node.node_id}" if node else "kafka",
            pid_file=self.root / "kafka.pid",
            log_file=self.logs / "kafka.out",
            ports=(stack.kafka_port, stack.kafka_controller_port)
            + ((stack.kafka_mtls_port,) if tls else ()),
            cmdline_marker=str(self.properties),
        )

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.settings.stack.kafka_port}"

    def ensure_jars(self) -> None:
        """Copy the broker and its dependencies from Maven Central once (needs `mvn`)."""
        if any(self.libs.glob("kafka_2.13-*.jar")):
            return
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("Maven (`mvn`) is needed once to fetch the Kafka broker jars")
        print("kafka: fetching the broker jars from Maven Central (once) ...", flush=True)
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(resource_path("deploy", "kafka", "pom.xml")),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={self.libs}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(self.libs, ignore_errors=True)
            raise StackError(f"mvn could not fetch the Kafka jars:\n{result.stdout[-3000:]}")

    def write_properties(self) -> None:
        stack = self.settings.stack
        values: dict[str, object] = {
            "port": stack.kafka_port,
            "controller_port": stack.kafka_controller_port,
            "log_dirs": self.data,
        }
        name = "server.properties"
        if self.node is not None:
            name = "server-cluster.properties"
            values |= {
                "node_id": self.node.node_id,
                "voters": self.node.voters,
                "replicas": self.node.replicas,
                "min_insync": self.node.min_insync,
            }
        if self.tls is not None:
            name = "server-secure.properties"
            values |= {
                "mtls_port": stack.kafka_mtls_port,
                "admin_password": self.tls.password("kafka-admin"),
                "keystore": self.tls.server_keystore(),
                "ca": self.tls.ca,
            }
        template = resource_path("deploy", "kafka", name).read_text()
        self.properties.parent.mkdir(parents=True, exist_ok=True)
        self.properties.touch(mode=0o600)  # it holds the broker's password when secured
        self.properties.write_text(template.format(**values))

    def _scram_users(self) -> list[str]:
        """``--add-scram`` arguments of the storage format: the broker's own user and the
        clients' (both mechanisms)."""
        if self.tls is None:
            return []
        users = {
            "admin": self.tls.password("kafka-admin"),
            "auditpipe": self.tls.password("kafka-client"),
        }
        return [
            f"--add-scram={mechanism}=[name={name},password={password}]"
            for name, password in users.items()
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256")
        ]

    def format_storage(self) -> None:
        """Format the KRaft log directory once; a formatted one keeps its data. The SCRAM
        users of the secured stack exist only if it was formatted secured."""
        secured = self.data / "auditpipe-secured"
        if (self.data / "meta.properties").exists():
            if self.tls is not None and not secured.exists():
                raise StackError(
                    f"kafka: {self.data} was formatted without --secure (it has no SCRAM "
                    "users); stop the stack and remove it, or use another AUDITPIPE_HOME"
                )
            return
        # One node: a dynamic quorum of itself; a cluster: the static quorum of voters.
        quorum = ["--standalone"] if self.node is None else []
        cluster_id = self.node.cluster_id if self.node else new_cluster_id()
        result = subprocess.run(
            self._java(
                STORAGE_TOOL,
                "format",
                *quorum,
                f"--cluster-id={cluster_id}",
                "-c",
                str(self.properties),
                *self._scram_users(),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")
        if self.tls is not None:
            secured.touch()

    def start(self) -> bool:
        """Start the broker unless it runs already. True when this call started it."""
        if self.process.pid() is not None:
            return False
        self.process.check_ports_free()
        self.ensure_jars()
        self.write_properties()
        self.format_storage()
        self.process.spawn(self._java(MAIN_CLASS, str(self.properties)), cwd=self.root)
        return True

    def wait_ready(self) -> float:
        return self.process.wait_ready(self._answers, self.settings.stack.start_timeout_s)

    def _answers(self) -> bool:
        # The broker registers itself with the controller a moment after it opens its port.
        return port_is_open(self.settings.stack.kafka_port) and "Kafka Server started" in (
            (self.logs / "server.log").read_text(errors="replace")
            if (self.logs / "server.log").exists()
            else ""
        )

    def _java(self, main_class: str, *args: str) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("Java 17+ (`java`) is needed to run the Kafka broker")
        heap = self.settings.stack.kafka_heap
        return [
            java,
            f"-Xmx{heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.logs}",
            f"-Dlog4j2.configurationFile={resource_path('deploy', 'kafka', 'log4j2.xml')}",
            "-cp",
            f"{self.libs}/*",
            main_class,
            *args,
        ]
