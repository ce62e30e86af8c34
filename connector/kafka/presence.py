"""Who is running: a running connector is a member of the consumer group ``<name>.instances``.

Kafka has no admin call (in librdkafka) that says whether a transactional id is in use,
so a running instance announces itself the way Kafka Connect workers do: by group
membership. The member consumes nothing (its partitions are paused at once); it only
heartbeats. ``reset`` looks the group up and refuses to move the cursor under a live
instance unless forced. The membership disappears within the session timeout of a
crash, and at once on a clean shutdown.
"""

from __future__ import annotations

import logging
import socket
import threading

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connector.kafka.clients import ClientWatch, failure, make_admin, make_consumer

log = logging.getLogger(__name__)

SESSION_TIMEOUT_MS = 10_000


def presence_group(connector_name: str) -> str:
    return f"{connector_name}.instances"


class Presence:
    """Keeps this process a member of the presence group until ``close``."""

    def __init__(self, client_config: dict[str, str], connector_name: str, topic: str) -> None:
        self._consumer = make_consumer(
            {
                **client_config,
                "group.id": presence_group(connector_name),
                "client.id": f"{connector_name}@{socket.gethostname()}",
                "enable.auto.commit": "false",
                "session.timeout.ms": str(SESSION_TIMEOUT_MS),
                "auto.offset.reset": "latest",
            }
        )
        self._consumer.subscribe([topic], on_assign=self._pause)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="presence", daemon=True)

    def _pause(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.pause(partitions)  # heartbeats only: never read the topic

    def start(self) -> Presence:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._consumer.poll(1.0)
            except KafkaException as exc:  # a broker outage: keep trying, the runner decides
                log.debug("presence poll failed", extra={"error": str(exc)})

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()  # leaves the group at once


def running_instances(
    client_config: dict[str, str], connector_name: str, timeout: float = 10.0
) -> list[str]:
    """Client ids of the live members of the presence group (empty: nobody is running).

    A group that does not exist means nobody runs; any other failure (not authorized to
    describe the group, brokers gone) is raised, never read as "nobody runs": ``reset``
    relies on the answer."""
    watch = ClientWatch()
    admin = make_admin(dict(client_config), watch)
    group = presence_group(connector_name)
    try:
        description = admin.describe_consumer_groups([group], request_timeout=timeout)[
            group
        ].result()
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if error.code() == KafkaError.GROUP_ID_NOT_FOUND:
            return []  # nobody ever ran, or nobody is running
        what = f"cannot tell whether an instance runs (consumer group {group!r})"
        raise failure(client_config, watch, what, error=error) from exc
    return [f"{m.client_id} ({m.host})" for m in description.members]
