"""Every Prometheus metric of the connector: names, labels and buckets, in one place.

The only module importing prometheus-client. Names follow Prometheus conventions (base
units, ``_total`` for counters); labels take values from small fixed sets only (never a
user or session id). One registry per ``Metrics`` instance, so tests can make their own.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connector import __version__
from connector.changes.validate import INVALID_REASONS

if TYPE_CHECKING:
    from connector.catchup.crawl import CrawlStats
    from connector.checkpoint import CatchUp

# `_created` series double the scrape size and no dashboard of ours uses them
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "learnosity_connector"
#: Data API round trips: tens of milliseconds (local) to a minute (read timeout)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: a transaction commit is one or two broker round trips
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

API_OUTCOMES = ("ok", "rate_limited", "transient", "fatal")
#: why a Data API request is retried: ``TransientError.reason``, and the client's own two
API_RETRY_REASONS = (
    "rate_limited",
    "http_5xx",
    "http_4xx_retriable",
    "timeout",
    "connection",
    "api_error",
    "invalid_json",
    "response_too_large",
)
#: why a record is dead-lettered: the validation reasons, and InvalidRecordError's default
DEAD_LETTER_REASONS = (*INVALID_REASONS, "invalid_record")
CHANGE_KINDS = ("created", "status_changed", "score_changed")
TRANSACTION_OUTCOMES = ("committed", "aborted", "failed")
SLICE_STATES = ("pending", "running", "done")

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The connector's metrics; also the observer the Data API client reports to.

    Every label value a counter can take is created at zero up front, so an alert on
    ``increase(...)`` sees the first event after a restart (a series that appears with
    the value 1 has no increase). The registry also carries the standard ``process_*``
    (CPU, memory, file descriptors, start time) and ``python_info`` metrics of the
    process that serves them.
    """

    def __init__(self, api_version: str = "", registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._position = 0.0
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.api_requests = Counter(
            f"{PREFIX}_api_requests", "Data API requests by outcome.", ["outcome"], registry=r
        )
        self.api_request_duration = Histogram(
            f"{PREFIX}_api_request_duration_seconds",
            "Data API request duration.",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.api_retries = Counter(
            f"{PREFIX}_api_retries", "Data API retries by reason.", ["reason"], registry=r
        )
        self.rate_budget_wait = Counter(
            f"{PREFIX}_rate_budget_wait_seconds",
            "Time spent waiting on the client-side request budget.",
            registry=r,
        )
        self.records_fetched = Counter(
            f"{PREFIX}_records_fetched", "Records read from the Data API.", registry=r
        )
        self.changes_emitted = Counter(
            f"{PREFIX}_changes_emitted",
            "Change events committed to the output topic, by change kind.",
            ["change"],
            registry=r,
        )
        self.repeats_dropped = Counter(
            f"{PREFIX}_repeats_dropped",
            "Records dropped because nothing that matters changed.",
            registry=r,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters",
            "Records committed to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.stalled_cursor = Counter(
            f"{PREFIX}_stalled_cursor",
            "Pages with records whose next token did not move (asked again from the position).",
            registry=r,
        )
        self.stale_records = Counter(
            f"{PREFIX}_stale_records",
            "Records dropped because their session was already published in a newer state.",
            registry=r,
        )
        self.slices = Gauge(
            f"{PREFIX}_slices",
            "Backfill time slices by state (pending, running; done since the plan began).",
            ["state"],
            registry=r,
        )
        self.catchup_eta = Gauge(
            f"{PREFIX}_catchup_eta_seconds",
            "Estimated seconds until every slice is read (0 when there is no backfill).",
            registry=r,
        )
        self.requests_in_flight = Gauge(
            f"{PREFIX}_api_requests_in_flight",
            "Lanes being fetched: requests sent, or waiting for the request budget.",
            registry=r,
        )
        self.fetch_workers = Gauge(
            f"{PREFIX}_fetch_workers",
            "Fetch workers allowed to work now (sized from the budget and the latency).",
            registry=r,
        )
        self.transactions = Counter(
            f"{PREFIX}_transactions", "Kafka transactions by outcome.", ["outcome"], registry=r
        )
        self.commit_duration = Histogram(
            f"{PREFIX}_transaction_commit_duration_seconds",
            "Time to commit one batch (transaction commit, or flush without transactions).",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.produce_errors = Counter(
            f"{PREFIX}_produce_errors", "Errors while producing to Kafka.", registry=r
        )
        self.producer_queue = Gauge(
            f"{PREFIX}_producer_queue_messages",
            "Messages waiting in the producer's local queue (librdkafka msg_cnt).",
            registry=r,
        )
        self.broker_rtt = Gauge(
            f"{PREFIX}_broker_rtt_seconds",
            "Average broker round-trip time seen by the producer (librdkafka rtt.avg).",
            registry=r,
        )
        self.cursor_position = Gauge(
            f"{PREFIX}_cursor_position_seconds",
            "Updated time of the last committed record (Unix seconds).",
            registry=r,
        )
        self.lag = Gauge(
            f"{PREFIX}_lag_seconds",
            "Now minus the cursor position: how far behind the source the connector is.",
            registry=r,
        )
        self.lag.set_function(self._lag)
        self.last_poll = Gauge(
            f"{PREFIX}_last_successful_poll_timestamp_seconds",
            "When the Data API last answered with a page (Unix seconds).",
            registry=r,
        )
        self.sessions_tracked = Gauge(
            f"{PREFIX}_sessions_tracked", "Sessions whose fingerprint is kept.", registry=r
        )
        self.restore_duration = Gauge(
            f"{PREFIX}_state_restore_duration_seconds",
            "How long restoring state from the state topic took at start.",
            registry=r,
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 when /readyz answers 200.", registry=r)
        Info(f"{PREFIX}_build", "Connector version and Data API version.", registry=r).info(
            {"version": __version__, "api_version": api_version}
        )
        for outcome in API_OUTCOMES:
            self.api_requests.labels(outcome)
        for reason in API_RETRY_REASONS:
            self.api_retries.labels(reason)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for kind in CHANGE_KINDS:
            self.changes_emitted.labels(kind)
        for outcome in TRANSACTION_OUTCOMES:
            self.transactions.labels(outcome)
        for state in SLICE_STATES:
            self.slices.labels(state)

    def set_position(self, position: float | None) -> None:
        """Record the cursor position (updated time of the last committed record)."""
        if position:
            self._position = position
            self.cursor_position.set(position)

    def set_catchup(self, catchup: CatchUp) -> None:
        self.slices.labels("pending").set(catchup.slices_pending)
        self.slices.labels("running").set(catchup.slices_running)
        self.slices.labels("done").set(catchup.slices_done)
        eta = catchup.eta_seconds
        self.catchup_eta.set(eta if eta is not None else float("nan"))

    def _lag(self) -> float:
        return max(0.0, time.time() - self._position) if self._position else 0.0

    # --- the Data API client's observer interface -------------------------------------
    def request_finished(self, outcome: str, seconds: float) -> None:
        self.api_requests.labels(outcome).inc()
        self.api_request_duration.observe(seconds)
        if outcome == "ok":
            self.last_poll.set(time.time())

    def retrying(self, reason: str, delay_seconds: float) -> None:
        self.api_retries.labels(reason).inc()

    def budget_waited(self, seconds: float) -> None:
        self.rate_budget_wait.inc(seconds)

    def crawl_stats(self, stats: CrawlStats) -> None:
        """The fetch side's once-a-second report."""
        self.requests_in_flight.set(stats.in_flight)
        self.fetch_workers.set(stats.workers)

    # --- librdkafka statistics ----------------------------------------------------------
    def librdkafka_stats(self, stats_json: str) -> None:
        """The few librdkafka statistics that matter, from its periodic JSON report."""
        try:
            stats = json.loads(stats_json)
        except ValueError:
            return
        self.producer_queue.set(stats.get("msg_cnt", 0))
        rtts = [
            broker["rtt"]["avg"]
            for broker in stats.get("brokers", {}).values()
            if broker.get("rtt", {}).get("cnt")
        ]
        if rtts:
            self.broker_rtt.set(sum(rtts) / len(rtts) / 1e6)  # microseconds → seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)
