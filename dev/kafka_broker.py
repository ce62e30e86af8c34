"""A single-node Kafka broker (KRaft, combined broker and controller) on 127.0.0.1.

Three listeners, each on a port chosen free at creation and kept for the broker's life
(a restart comes back on the same ports and data):
- PLAINTEXT: what most tests and the demo use; also the inter-broker listener.
- SASL_SSL: SCRAM-SHA-512 over TLS with a CA made at first start, so security settings are
  tested against a real handshake. The SCRAM user is created at format time.
- CONTROLLER: the KRaft quorum, never used by clients.
Settings are sized for one node (replication factor 1, min ISR 1 for the internal topics),
so transactions and consumer groups work without a second broker.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from dev.errors import StackError
from dev.procs import free_ports, port_open, spawn, stop, tails, wait_until
from dev.tls import make_broker_tls

SCRAM_MECHANISM = "SCRAM-SHA-512"

# The value types confluent-kafka's client constructors accept.
ClientConfig = dict[str, str | int | float | bool]
LOG4J2_CONFIG = Path(__file__).parent / "kafka" / "log4j2.properties"

# A small heap is plenty for test traffic. SerialGC and C1-only compilation cut JVM start
# and idle CPU on a 2-core machine, where the broker shares the cores with the tests.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

#: JVM flags that replace JVM_OPTIONS, e.g. for a benchmark that wants the broker fully
#: compiled: CONNECTOR_BROKER_JVM_OPTS="-Xms1g -Xmx1g -XX:+UseG1GC"
JVM_OPTIONS_ENV = "CONNECTOR_BROKER_JVM_OPTS"


def jvm_options() -> tuple[str, ...]:
    override = os.environ.get(JVM_OPTIONS_ENV, "").split()
    return tuple(override) if override else JVM_OPTIONS


@dataclass(frozen=True)
class BrokerPorts:
    plaintext: int
    sasl_ssl: int
    controller: int


class KafkaBroker:
    """One broker process and its folders; `start`, `stop`, `restart`, `close`.

    `work_dir` holds the configuration, TLS material and data and is removed by `close`;
    `log_dir` is left for the caller to keep (a failed test's evidence) or remove.
    """

    def __init__(
        self,
        *,
        java: str,
        libs: Path,
        work_dir: Path,
        log_dir: Path,
        die_with_parent: bool,
        scram_user: str = "connector",
    ) -> None:
        self.java = java
        self.libs = libs
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.die_with_parent = die_with_parent
        self.ports = BrokerPorts(*free_ports(3))
        self.scram_user = scram_user
        self.scram_password = secrets.token_urlsafe(18)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- what clients need -------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.ports.plaintext}"

    @property
    def sasl_ssl_bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.ports.sasl_ssl}"

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "tls" / "ca.pem"

    @property
    def scram_mechanism(self) -> str:
        return SCRAM_MECHANISM

    def client_config(self, *, secure: bool = False) -> ClientConfig:
        """librdkafka settings that reach this broker: PLAINTEXT, or SCRAM over TLS."""
        if not secure:
            return {"bootstrap.servers": self.bootstrap_servers}
        return {
            "bootstrap.servers": self.sasl_ssl_bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": SCRAM_MECHANISM,
            "sasl.username": self.scram_user,
            "sasl.password": self.scram_password,
            "ssl.ca.location": str(self.ca_file),
        }

    # -- where to look when something fails ----------------------------------------------

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j2)."""
        return self.log_dir / "server.log"

    @property
    def stdout_file(self) -> Path:
        """The JVM's stdout and stderr: crashes before logging starts land here."""
        return self.log_dir / "stdout.log"

    def log_tail(self, lines: int = 60) -> str:
        return tails([self.stdout_file, self.log_file], lines)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> float:
        """Start (formatting storage on first start) and return the seconds until ready."""
        self.launch()
        return self.await_ready(timeout)

    def launch(self) -> None:
        """Spawn the broker without waiting for it (lets the registry start alongside)."""
        if self._proc is not None and self._proc.poll() is None:
            raise StackError(f"the broker is already running (pid {self._proc.pid})")
        for port in (self.ports.plaintext, self.ports.sasl_ssl, self.ports.controller):
            if port_open(port):
                raise StackError(f"port {port} of the broker is taken by another process")
        if not (self._data_dir / "meta.properties").exists():
            self._format()
        self._proc = spawn(
            [*self._java_command(), "kafka.Kafka", str(self._config_file)],
            cwd=self.work_dir,
            log_file=self.stdout_file,
            die_with_parent=self.die_with_parent,
        )

    def await_ready(self, timeout: float = 60.0) -> float:
        """Wait until both client listeners answer a metadata request."""
        proc = self._proc
        if proc is None:
            raise StackError("the broker was not launched")
        return wait_until(
            self._answers,
            what=f"Kafka broker (pid {proc.pid})",
            timeout=timeout,
            alive=lambda: proc.poll() is None,
            logs=[self.stdout_file, self.log_file],
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Controlled shutdown (SIGTERM), SIGKILL after `timeout` s; keeps ports and data."""
        if self._proc is not None:
            stop(self._proc.pid, proc=self._proc, timeout=timeout)
            self._proc = None

    def restart(self, timeout: float = 60.0) -> float:
        """Stop and start again on the same ports and data; the seconds until ready."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop and remove the data (idempotent; safe from atexit)."""
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------

    @property
    def _config_file(self) -> Path:
        return self.work_dir / "server.properties"

    @property
    def _data_dir(self) -> Path:
        return self.work_dir / "data"

    def _java_command(self) -> list[str]:
        return [
            self.java,
            *jvm_options(),
            f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            f"{self.libs}/*",
        ]

    def _format(self) -> None:
        """Write the configuration and TLS material, then format the storage with the user."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        tls = make_broker_tls(self.work_dir / "tls")
        self._config_file.write_text(
            server_properties(self.ports, self._data_dir, tls.keystore, tls.keystore_password)
        )
        cluster_id = new_cluster_id()
        scram = f"{SCRAM_MECHANISM}=[name={self.scram_user},password={self.scram_password}]"
        result = subprocess.run(
            [
                *self._java_command(),
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
                "--config",
                str(self._config_file),
                "--add-scram",
                scram,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"formatting the broker storage failed:\n{(result.stdout + result.stderr)[-4000:]}"
            )

    def _answers(self) -> bool:
        # A port check first: it is silent, where a client would log refused connections.
        if not (port_open(self.ports.plaintext) and port_open(self.ports.sasl_ssl)):
            return False
        return all(_metadata_ok(self.client_config(secure=s)) for s in (False, True))


def _metadata_ok(config: ClientConfig) -> bool:
    admin = AdminClient({**config, "socket.timeout.ms": 2000})
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except KafkaException:
        return False


def new_cluster_id() -> str:
    """A KRaft cluster id: a url-safe base64 UUID, never starting with '-'.

    Kafka's own Uuid.randomUuid() draws again in that case, since the storage tool reads
    a leading '-' as an option: about 1 format in 64 would otherwise fail.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(ports: BrokerPorts, data_dir: Path, keystore: Path, password: str) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{ports.controller}",
        "controller.listener.names": "CONTROLLER",
        "listeners": (
            f"PLAINTEXT://127.0.0.1:{ports.plaintext},"
            f"SASL_SSL://127.0.0.1:{ports.sasl_ssl},"
            f"CONTROLLER://127.0.0.1:{ports.controller}"
        ),
        "advertised.listeners": (
            f"PLAINTEXT://127.0.0.1:{ports.plaintext},SASL_SSL://127.0.0.1:{ports.sasl_ssl}"
        ),
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
        ),
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        # The SCRAM listener: only SCRAM-SHA-512, verified against the credentials stored
        # in the cluster metadata (created at format time).
        "sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": SCRAM_MECHANISM,
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(keystore),
        "ssl.keystore.password": password,
        "ssl.key.password": password,
        "ssl.client.auth": "none",
        # One node: every internal topic has one replica and needs one in sync.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # One partition each: creating 50 internal partitions costs seconds on first use.
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.num.partitions": "1",
        "num.partitions": "1",
        # Topics are created on purpose (the state topic must be compacted); a topic made
        # by accident from a typo or a produce would hide that bug.
        "auto.create.topics.enable": "false",
        # No waiting for more members that will never come; tests see assignments at once.
        "group.initial.rebalance.delay.ms": "0",
        # Compaction visible within a test's time, not after the 15 s default backoff.
        "log.cleaner.backoff.ms": "1000",
        "log.initial.task.delay.ms": "1000",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())
