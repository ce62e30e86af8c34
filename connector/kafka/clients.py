"""Every librdkafka client of ours is made here, so they all log through Python logging.

Without a ``logger``, librdkafka prints its own lines (``%6|...|BGQUEUE|...``) straight
to stderr, bypassing the JSON format and the secret redaction of our log handler.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

#: librdkafka's own log lines, at WARNING and above unless LOG_LEVEL=DEBUG asks for more
LIBRDKAFKA_LOG = logging.getLogger("librdkafka")


def _with_logger(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "logger": LIBRDKAFKA_LOG}


def make_producer(config: dict[str, Any]) -> Producer:
    return Producer(_with_logger(config))


def make_consumer(config: dict[str, Any]) -> Consumer:
    return Consumer(_with_logger(config))


def make_admin(config: dict[str, Any]) -> AdminClient:
    return AdminClient(_with_logger(config))
