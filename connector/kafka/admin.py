"""Topics the connector needs, created at start when missing and checked when present."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from connector.errors import KafkaFatalError
from connector.kafka.clients import (
    AUTHORIZATION_CODES,
    METADATA_TIMEOUT_SECONDS,
    ClientWatch,
    await_metadata,
    failure,
    make_admin,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = -1  # -1: the broker's default.replication.factor
    config: dict[str, str] = field(default_factory=dict)

    @property
    def compacted(self) -> bool:
        return "compact" in self.config.get("cleanup.policy", "")


@dataclass(frozen=True)
class TopicInfo:
    partitions: int
    cleanup_policy: str

    @property
    def compacted(self) -> bool:
        return "compact" in self.cleanup_policy


def describe_topics(
    client_config: dict[str, str], names: list[str], timeout: float = METADATA_TIMEOUT_SECONDS
) -> dict[str, TopicInfo | None]:
    """Partitions and cleanup policy of each topic; None for a topic that does not exist.

    Waits at most ``timeout`` for the brokers; fails at once on a cause waiting cannot
    cure (credentials, TLS), naming the broker address and the cause."""
    watch = ClientWatch()
    admin = make_admin(dict(client_config), watch)
    metadata = await_metadata(admin, watch, client_config, timeout=timeout)
    found: dict[str, TopicInfo | None] = {}
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None:
            found[name] = None
            continue
        policy = _cleanup_policy(admin, watch, client_config, name, timeout)
        found[name] = TopicInfo(len(topic.partitions), policy)
    return found


def _cleanup_policy(
    admin: AdminClient, watch: ClientWatch, config: dict[str, str], topic: str, timeout: float
) -> str:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        configs = admin.describe_configs([resource], request_timeout=timeout)[resource].result()
    except KafkaException as exc:
        raise failure(config, watch, f"cannot describe topic {topic!r}", error=exc.args[0]) from exc
    entry = configs.get("cleanup.policy")
    return str(entry.value) if entry is not None and entry.value else ""


def ensure_topics(
    client_config: dict[str, str], specs: list[TopicSpec], timeout: float = 30.0
) -> list[str]:
    """Create the missing topics; refuse a state topic that exists but is not compacted.

    Returns the names created. Raises KafkaFatalError for anything a restart cannot fix
    (not authorised, a state topic with the wrong cleanup policy, credentials) and
    RetriableError when the cluster cannot be reached in ``timeout``.
    """
    watch = ClientWatch()
    admin = make_admin(dict(client_config), watch)
    existing = set(await_metadata(admin, watch, client_config, timeout=timeout).topics)
    missing = [spec for spec in specs if spec.name not in existing]
    created: list[str] = []
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
                for s in missing
            ],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
                log.info("created topic", extra={"topic": name})
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:  # a racing instance
                    continue
                what = f"cannot create topic {name!r}"
                if error.code() == KafkaError._TIMED_OUT or error.code() in AUTHORIZATION_CODES:
                    raise failure(client_config, watch, what, error=error) from exc
                raise KafkaFatalError(
                    f"{what} at Kafka {client_config.get('bootstrap.servers')}: {error.str()}"
                ) from exc
    for spec in specs:
        if spec.compacted and spec.name not in created:
            _require_compacted(admin, watch, client_config, spec.name, timeout)
    return created


def _require_compacted(
    admin: AdminClient, watch: ClientWatch, config: dict[str, str], topic: str, timeout: float
) -> None:
    policy = _cleanup_policy(admin, watch, config, topic, timeout)
    if "compact" not in policy:
        raise KafkaFatalError(
            f"state topic {topic!r} exists with cleanup.policy={policy!r}; it must be "
            "'compact' (or the connector's state would be deleted by retention): "
            "change it with kafka-configs, or choose another CONNECTOR_NAME"
        )
