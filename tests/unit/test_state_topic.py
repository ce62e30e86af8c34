"""Reading the state topic back: the end it reads to, asked again while a just-created
topic has no leader yet."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from connector.kafka import state_topic


class LeaderlessConsumer:
    """Answers NOT_LEADER_FOR_PARTITION ``times`` times, then its watermarks."""

    def __init__(self, times: int, code: int = KafkaError.NOT_LEADER_FOR_PARTITION) -> None:
        self.times = times
        self.code = code
        self.asked = 0

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        self.asked += 1
        if self.asked <= self.times:
            raise KafkaException(KafkaError(self.code))
        return 0, 42


def test_the_high_watermark_is_asked_again_until_the_partition_has_a_leader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state_topic, "WATERMARK_RETRY_SECONDS", 0.0)
    consumer = LeaderlessConsumer(times=3)
    end = state_topic._high_watermark(consumer, TopicPartition("t", 0), timeout=5.0)  # type: ignore[arg-type]
    assert end == 42 and consumer.asked == 4


def test_another_error_is_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_topic, "WATERMARK_RETRY_SECONDS", 0.0)
    consumer = LeaderlessConsumer(times=1, code=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        state_topic._high_watermark(consumer, TopicPartition("t", 0), timeout=5.0)  # type: ignore[arg-type]
    assert consumer.asked == 1
