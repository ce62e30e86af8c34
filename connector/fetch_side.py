"""The fetch side of the pipeline, in a process of its own.

Fetching (signing, HTTP, JSON) and preparing pages (validation, fingerprints, event
bodies: ``changes.prepare``) need no state. In the runner's process they would share
its GIL; in a child process they run on the other core while the runner decides and
produces. The child runs a ``catchup.crawl.Crawl`` (worker threads paging the lanes);
``FetchProcess`` is its handle in the runner's process.

    runner process                           fetch process (spawned)
    FetchProcess.get  ◀── ("page", Fetched)  ──  Crawl workers: fetch, advance, prepare
    metrics           ◀── ("api", call)      ──  the client's observer calls
    metrics           ◀── ("stats", stats)   ──  once a second: requests in flight, workers
    FetchProcess.rewind ── ("rewind", lanes) ─▶  Crawl.rewind (the committed lanes)
    FetchProcess.join   ── ("stop",)          ─▶  exits; killed if it does not in time

A reader thread in the runner's process drains the pipe into a queue of ``PAGES_AHEAD``
items, so the child goes on while the runner commits; when that queue is full the pipe
fills and blocks the child's workers, so memory stays bounded.

The child ignores SIGINT/SIGTERM (the runner decides when to stop) and dies with its
parent (``PR_SET_PDEATHSIG``), so a ``kill -9`` of the connector leaves no orphan polling
the Data API.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final, Protocol

from connector import __version__
from connector.catchup.crawl import Crawl, CrawlStats, Fetched
from connector.catchup.lanes import Lane
from connector.changes.event import source_fields
from connector.changes.prepare import PagePreparer
from connector.commands.common import setup_logging
from connector.errors import ConnectorError, FatalError
from connector.gc_tuning import tune_gc
from connector.kafka.serde import BodyEncoder
from connector.learnosity.client import ApiObserver, DataApiClient
from connector.learnosity.paging import base_params
from connector.models import EventSource
from connector.settings import Settings

log = logging.getLogger(__name__)

#: the observer calls the child forwards (``ApiObserver``'s methods, nothing else)
OBSERVER_CALLS: Final = frozenset(("request_finished", "retrying", "budget_waited"))
#: items received ahead of the runner (at most a few MB at 50 records a page): enough
#: for the workers to keep fetching through a commit
PAGES_AHEAD: Final = 200
#: how often the child reports its workers
STATS_EVERY_SECONDS: Final = 1.0
_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class FetchPlan:
    """Everything the fetch side is built from; picklable, sent to the child once."""

    settings: Settings

    def source(self) -> EventSource:
        settings = self.settings
        return EventSource(settings.connector_name, settings.learnosity_api_version, __version__)

    def preparer(self) -> PagePreparer:
        return PagePreparer(
            include_responses=self.settings.learnosity_include_response_scores,
            encode_body=BodyEncoder().encode,
            source=source_fields(self.source()),
        )

    def build(
        self, send: Callable[[Fetched], None], observer: ApiObserver, stop: threading.Event
    ) -> tuple[Crawl, DataApiClient]:
        """The crawl (its workers not started) and the client its workers share."""
        settings = self.settings
        relay = _LatencyRelay(observer)
        client = DataApiClient.from_settings(settings, observer=relay, stop=stop)
        crawl = Crawl(
            client,
            base_params=base_params(settings),
            prepare=self.preparer(),
            source=source_fields(self.source()),
            send=send,
            stop=stop,
            max_workers=settings.learnosity_max_concurrency,
            rate=settings.learnosity_max_requests_per_second,
            poll_interval=settings.learnosity_poll_interval_seconds,
            lag_seconds=settings.learnosity_catchup_lag_seconds,
        )
        relay.crawl = crawl
        return crawl, client


class _LatencyRelay:
    """The client's observer: forwards every call, and tells the crawl each latency."""

    def __init__(self, observer: ApiObserver) -> None:
        self._observer = observer
        self.crawl: Crawl | None = None

    def request_finished(self, outcome: str, seconds: float) -> None:
        if outcome == "ok" and self.crawl is not None:
            self.crawl.observed_latency(seconds)
        self._observer.request_finished(outcome, seconds)

    def retrying(self, reason: str, delay_seconds: float) -> None:
        self._observer.retrying(reason, delay_seconds)

    def budget_waited(self, seconds: float) -> None:
        self._observer.budget_waited(seconds)


class CrawlObserver(ApiObserver, Protocol):
    """What the runner's process is told of the fetch side (the client's calls, stats)."""

    def crawl_stats(self, stats: CrawlStats) -> None: ...


# --- the runner's side -------------------------------------------------------------------
class FetchProcess:
    """The fetch side, running in a child process."""

    def __init__(
        self,
        plan: FetchPlan,
        lanes: tuple[Lane, ...],
        *,
        observer: CrawlObserver,
        stop: threading.Event,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # no fork: librdkafka has threads
        self._conn, child_conn = context.Pipe(duplex=True)
        self._child_conn: Connection | None = child_conn
        self._process = context.Process(
            target=child_main,
            args=(child_conn, plan, lanes),
            name="learnosity-fetch",
            daemon=True,
        )
        self._observer = observer
        self._stop = stop
        self._generation = 0
        # a reader thread keeps the pipe drained into this queue, so the child goes on
        # fetching while the runner commits; None stands for "the child is gone"
        self._items: queue.Queue[Fetched | None] = queue.Queue(PAGES_AHEAD)
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, name="fetch-reader", daemon=True)

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()
        if self._child_conn is not None:
            self._child_conn.close()  # the child's end lives in the child now
            self._child_conn = None
        self._reader.start()

    def get(self, timeout: float) -> Fetched | None:
        """The next item of the current generation, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if item is None:  # the child is gone; later calls must see that too
                self._items.put_nowait(None)
                return self._exited()
            if item.generation == self._generation:
                return item

    def rewind(self, lanes: tuple[Lane, ...]) -> None:
        """Start over from ``lanes``; items of earlier generations will be dropped."""
        self._generation += 1
        with contextlib.suppress(OSError):
            self._conn.send(("rewind", (self._generation, lanes)))

    def join(self, timeout: float) -> None:
        self._closing.set()  # the reader drops items now, so a child blocked sending ends
        with contextlib.suppress(OSError):
            self._conn.send(("stop", None))
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)
        if self._reader.is_alive():
            self._reader.join(timeout)  # ends at the EOF of the child's exit
        self._conn.close()

    def _read(self) -> None:
        """The reader thread: items into the queue, metrics to the observer."""
        try:
            while True:
                kind, payload = pickle.loads(self._conn.recv_bytes())  # noqa: S301 - our child
                if kind == "page":
                    self._hand_over(payload)
                elif kind == "api":
                    name, args = payload
                    if name in OBSERVER_CALLS:
                        getattr(self._observer, name)(*args)
                elif kind == "stats":
                    self._observer.crawl_stats(payload)
        except (EOFError, OSError):
            self._hand_over(None)
        except Exception as exc:  # noqa: BLE001 - a bug here must stop the runner, not hang it
            failure = FatalError(f"reading from the fetch process failed: {exc!r}"[:1000])
            self._hand_over(Fetched(self._generation, error=failure))

    def _hand_over(self, item: Fetched | None) -> None:
        while not self._closing.is_set():
            try:
                self._items.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _exited(self) -> Fetched | None:
        if self._stop.is_set():
            return None
        self._process.join(1.0)
        code = self._process.exitcode
        error = FatalError(f"the fetch process exited unexpectedly (exit code {code})")
        return Fetched(self._generation, error=error)


# --- the child's side --------------------------------------------------------------------
class _Sender:
    """Sends whole messages: the lock keeps two threads' messages from interleaving."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __call__(self, message: tuple[str, Any]) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            self._conn.send_bytes(data)


class _ForwardingObserver:
    def __init__(self, send: _Sender) -> None:
        self._send = send

    def request_finished(self, outcome: str, seconds: float) -> None:
        self._send(("api", ("request_finished", (outcome, seconds))))

    def retrying(self, reason: str, delay_seconds: float) -> None:
        self._send(("api", ("retrying", (reason, delay_seconds))))

    def budget_waited(self, seconds: float) -> None:
        self._send(("api", ("budget_waited", (seconds,))))


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def child_main(conn: Connection, plan: FetchPlan, lanes: tuple[Lane, ...]) -> None:
    """The fetch process: the crawl's workers fetch, prepare and send; this thread
    reports stats; a listener thread takes the runner's rewinds and stop."""
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(plan.settings)
    stop = threading.Event()
    sender = _Sender(conn)

    def send(item: Fetched) -> None:
        try:
            sender(("page", _picklable(item)))
        except (BrokenPipeError, EOFError, ConnectionResetError, OSError):
            stop.set()  # the runner is gone or closed its end: stop quietly

    crawl, client = plan.build(send, _ForwardingObserver(sender), stop)
    listener = threading.Thread(
        target=_listen, args=(conn, crawl, stop), name="control", daemon=True
    )
    tune_gc()
    listener.start()
    crawl.start(lanes)
    try:
        while not stop.wait(STATS_EVERY_SECONDS):
            sender(("stats", crawl.stats()))
    except (BrokenPipeError, EOFError, ConnectionResetError, OSError):
        pass
    finally:
        stop.set()
        crawl.wake()
        crawl.join(2.0)
        client.close()


def _listen(conn: Connection, crawl: Crawl, stop: threading.Event) -> None:
    """The runner's messages: rewinds, then stop."""
    try:
        while True:
            kind, payload = conn.recv()
            if kind == "stop":
                break
            if kind == "rewind":
                generation, lanes = payload
                crawl.rewind(lanes, generation)
    except (EOFError, OSError):
        pass  # the runner is gone
    stop.set()
    crawl.wake()


def _picklable(item: Fetched) -> Fetched:
    """An unexpected exception becomes a FatalError naming it (it may not pickle)."""
    error = item.error
    if error is None or isinstance(error, ConnectorError):
        return item
    return Fetched(item.generation, error=FatalError(f"the fetch side failed: {error!r}"[:1000]))
