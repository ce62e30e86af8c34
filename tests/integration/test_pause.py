"""A process paused past its transaction timeout (a frozen node, ``SIGSTOP``): when it
runs again, the broker has aborted its open transaction; the connector aborts too,
re-reads from the committed lanes and goes on, without a restart and without loss."""

from __future__ import annotations

import os
import signal

import pytest

from connector.emulator.faults import FaultConfig
from dev.kafka_broker import KafkaBroker
from tests.fixtures.pipeline import MakePipeline
from tests.support.connector_proc import wait_for
from tests.support.pipeline import assert_stream_is_clean

pytestmark = pytest.mark.integration
P = "learnosity_connector_"


def test_a_pause_past_the_transaction_timeout_is_aborted_and_re_read(
    make_pipeline: MakePipeline, kafka_broker: KafkaBroker
) -> None:
    pipeline = make_pipeline(sessions=1500, faults=FaultConfig(latency_ms=20))
    connector = pipeline.connector(
        # a short transaction timeout, so the pause outlives it in a few seconds
        LIBRDKAFKA_TRANSACTION_TIMEOUT_MS="5000",
        LIBRDKAFKA_MESSAGE_TIMEOUT_MS="4000",
        KAFKA_COMMIT_INTERVAL_MS="3000",  # a transaction is open most of the time
        LEARNOSITY_MAX_REQUESTS_PER_SECOND="20",
    )
    connector.wait_ready()
    wait_for(lambda: connector.metric(P + "records_fetched_total") >= 100, 60, "records read")
    assert connector.process is not None
    transactional_id = f"{pipeline.env['CONNECTOR_NAME']}.producer"

    def rolled_back() -> bool:
        """The broker's log says it aborted our transaction for its timeout."""
        text = kafka_broker.log_file.read_text(errors="replace")
        return any(
            transactional_id in line and "timeout" in line.lower() for line in text.splitlines()
        )

    assert not rolled_back()
    os.kill(connector.process.pid, signal.SIGSTOP)
    try:
        wait_for(rolled_back, 90, "the broker to abort the paused transaction", interval=0.5)
    finally:
        os.kill(connector.process.pid, signal.SIGCONT)
    pipeline.emulator.workload.step(100)
    landed = pipeline.converge(timeout=180)
    assert connector.alive(), pipeline.logs()
    assert connector.metric(P + 'transactions_total{outcome="aborted"}') >= 1, pipeline.logs()
    assert_stream_is_clean(landed)
    assert connector.terminate() == 0, pipeline.logs()
