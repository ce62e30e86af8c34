"""The fetch side of the pipeline, in a process of its own.

Fetching (signing, HTTP, JSON) and preparing pages (validation, fingerprints, event
bodies: ``changes.prepare``) need no state, and take about half of the CPU a record
costs. In the runner's process they would share its GIL; in a child process they run
on the other core while the runner decides and produces. The child drives an ordinary
``Fetcher`` synchronously; ``FetchProcess`` is its stand-in in the runner's process,
with the same interface (``start``/``get``/``rewind``/``join``/``generation``).

    runner process                          fetch process (spawned)
    FetchProcess.get  ◀── ("page", Fetched) ──  Fetcher.fetch_one: fetch, advance, prepare
    metrics           ◀── ("api", call)     ──  the client's observer calls
    FetchProcess.rewind ── ("rewind", cursor) ─▶ listener: Fetcher.rewind (generations 1:1)
    FetchProcess.join   ── ("stop",)         ─▶ exits; killed if it does not in time

A reader thread in the runner's process drains the pipe into a queue of ``PAGES_AHEAD``
pages, so the child goes on while the runner commits; when that queue is full the pipe
fills and blocks the child, so memory stays bounded.

The two processes share the preparing. In a backfill the child would be the slower one
(preparing is most of a record's cost), and the runner would wait for pages between its
commits. So when fewer than ``HAND_RAW_BELOW`` pages wait in the runner's queue (the
child shares that count through shared memory), the child hands the next page over as
it was fetched (its records as JSON: a tenth of the cost of preparing them) and the
runner prepares it itself, with the same ``PagePreparer``. The queue's length steers
it: a runner that falls behind gets prepared pages again.

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
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any, Final, cast

from connector import __version__, fastjson
from connector.changes.event import source_fields
from connector.changes.prepare import PagePreparer
from connector.commands.common import setup_logging
from connector.errors import ConnectorError, FatalError
from connector.gc_tuning import tune_gc
from connector.kafka.event_writer import RawEventWriter
from connector.kafka.serde import BodyEncoder
from connector.learnosity.client import ApiObserver, DataApiClient
from connector.learnosity.fetcher import Fetched, Fetcher
from connector.learnosity.paging import Pager, Step
from connector.models import EventSource, Page, PreparedPage
from connector.settings import Settings, StartFrom

log = logging.getLogger(__name__)

#: the observer calls the child forwards (``ApiObserver``'s methods, nothing else)
OBSERVER_CALLS: Final = frozenset(("request_finished", "retrying", "budget_waited"))
#: pages received ahead of the runner (at most about 2 MB at 50 records a page):
#: enough for the child to keep fetching through a commit
PAGES_AHEAD: Final = 40
#: the child hands pages over unprepared while fewer than this many wait in the runner
HAND_RAW_BELOW: Final = 2
_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class FetchPlan:
    """Everything the fetch side is built from; picklable, sent to the child once."""

    settings: Settings
    #: where a run without a cursor starts (resolved once: ``latest`` is a fixed time)
    start_from: StartFrom

    def make_pager(self, token: str | None) -> Pager:
        now = datetime.now(UTC)
        pager = Pager.from_settings(self.settings, cursor=token, now=now)
        if token is None:
            pager = Pager(pager.filters, self.start_from, limit=pager.limit, now=now)
        return pager

    def preparer(self) -> PagePreparer:
        settings = self.settings
        source = EventSource(settings.connector_name, settings.learnosity_api_version, __version__)
        return PagePreparer(
            include_responses=settings.learnosity_include_response_scores,
            encode_body=BodyEncoder().encode,
            source=source_fields(source),
            fast_writer=RawEventWriter,
        )

    def build(
        self,
        cursor: str | None,
        *,
        observer: ApiObserver,
        stop: threading.Event,
        hand_raw: Callable[[], bool],
    ) -> tuple[Fetcher[PreparedPage | RawPage], DataApiClient]:
        """A fetcher (its thread not started) that prepares each page, or hands it over
        raw while ``hand_raw()`` says so; and its client."""
        client = DataApiClient.from_settings(self.settings, observer=observer, stop=stop)
        fetcher = Fetcher(
            client,
            self.make_pager,
            cursor,
            poll_interval=self.settings.learnosity_poll_interval_seconds,
            stop=stop,
            prepare=_SharedPreparing(self.preparer(), hand_raw),
            pipeline=True,
            on_stall=lambda p: log.warning(
                "stalled cursor: the same token and records came back",
                extra={"cursor": p.cursor},
            ),
        )
        return fetcher, client


@dataclass(frozen=True, slots=True)
class RawPage:
    """A page handed over unprepared: its records as JSON (the runner prepares them)."""

    records_json: bytes

    def page(self) -> Page:
        """The page as far as preparing reads it: its records (not its cursor)."""
        return Page(tuple(fastjson.loads(self.records_json)), None)


class _SharedPreparing:
    """The child's ``prepare``: the page prepared, or raw while ``hand_raw()`` says so."""

    def __init__(self, preparer: PagePreparer, hand_raw: Callable[[], bool]) -> None:
        self._preparer = preparer
        self._hand_raw = hand_raw

    def __call__(self, page: Page) -> PreparedPage | RawPage:
        if self._hand_raw():
            try:  # decoded JSON always encodes again, exactly; if not, prepare it here
                return RawPage(fastjson.dumps(page.records))
            except TypeError:
                pass
        return self._preparer(page)


# --- the runner's side -------------------------------------------------------------------
class FetchProcess:
    """``Fetcher``'s interface, backed by a child process running one."""

    def __init__(
        self,
        plan: FetchPlan,
        cursor: str | None,
        *,
        observer: ApiObserver,
        stop: threading.Event,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # no fork: librdkafka has threads
        self._conn, child_conn = context.Pipe(duplex=True)
        self._child_conn: Connection | None = child_conn
        #: how many pages wait in ``_pages``, for the child to read (``HAND_RAW_BELOW``)
        self._backlog = context.RawValue(ctypes.c_int, 0)
        self._preparer = plan.preparer()  # for the pages the child hands over raw
        self._process = context.Process(
            target=child_main,
            args=(child_conn, plan, cursor, self._backlog),
            name="learnosity-fetch",
            daemon=True,
        )
        self._observer = observer
        self._stop = stop
        self._generation = 0
        # a reader thread keeps the pipe drained into this queue, so the child goes on
        # fetching while the runner commits; None stands for "the child is gone"
        self._pages: queue.Queue[Fetched[PreparedPage | RawPage] | None] = queue.Queue(PAGES_AHEAD)
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, name="fetch-reader", daemon=True)

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def pages_ahead(self) -> int:
        """Pages received from the child and not yet taken by ``get``."""
        return self._pages.qsize()

    def start(self) -> None:
        self._process.start()
        if self._child_conn is not None:
            self._child_conn.close()  # the child's end lives in the child now
            self._child_conn = None
        self._reader.start()

    def get(self, timeout: float) -> Fetched[PreparedPage] | None:
        """The next page of the current generation, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self._pages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            self._backlog.value = self._pages.qsize()
            if item is None:  # the child is gone; later calls must see that too
                self._pages.put_nowait(None)
                return self._exited()
            if item.generation == self._generation:
                return self._prepared(item)

    def _prepared(self, item: Fetched[PreparedPage | RawPage]) -> Fetched[PreparedPage]:
        """``item`` with its page prepared here if the child handed it over raw."""
        page = item.page
        if not isinstance(page, RawPage):
            return cast("Fetched[PreparedPage]", item)  # prepared, or none (an error)
        try:
            prepared = self._preparer(page.page())
        except Exception as exc:  # noqa: BLE001 - a bug must stop the runner with one line
            failure = FatalError(f"preparing a page failed: {exc!r}"[:1000])
            return Fetched(item.generation, None, None, None, failure)
        return Fetched(item.generation, prepared, item.step, item.cursor, item.error)

    def rewind(self, cursor: str | None) -> None:
        self._generation += 1
        with contextlib.suppress(OSError):
            self._conn.send(("rewind", cursor))

    def join(self, timeout: float) -> None:
        self._closing.set()  # the reader drops pages now, so a child blocked sending ends
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
        """The reader thread: pages into the queue, metrics to the observer."""
        try:
            while True:
                kind, payload = pickle.loads(self._conn.recv_bytes())  # noqa: S301 - our child
                if kind == "api":
                    name, args = payload
                    if name in OBSERVER_CALLS:
                        getattr(self._observer, name)(*args)
                elif kind == "page":
                    self._hand_over(payload)
        except (EOFError, OSError):
            self._hand_over(None)
        except Exception as exc:  # noqa: BLE001 - a bug here must stop the runner, not hang it
            failure = FatalError(f"reading from the fetch process failed: {exc!r}"[:1000])
            self._hand_over(Fetched(self._generation, None, None, None, failure))

    def _hand_over(self, item: Fetched[PreparedPage | RawPage] | None) -> None:
        while not self._closing.is_set():
            try:
                self._pages.put(item, timeout=0.2)
                self._backlog.value = self._pages.qsize()
                return
            except queue.Full:
                continue

    def _exited(self) -> Fetched[PreparedPage] | None:
        if self._stop.is_set():
            return None
        self._process.join(1.0)
        code = self._process.exitcode
        error = FatalError(f"the fetch process exited unexpectedly (exit code {code})")
        return Fetched(self._generation, None, None, None, error)


# --- the child's side --------------------------------------------------------------------
class _Sender:
    """Sends whole messages: the lock keeps two threads' messages from interleaving."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __call__(self, message: tuple[str, Any]) -> None:
        with self._lock:
            # pickle.dumps: Connection.send's ForkingPickler took 7 % of this process
            self._conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


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


def child_main(
    conn: Connection, plan: FetchPlan, cursor: str | None, backlog: ctypes.c_int
) -> None:
    """The fetch process: fetch, prepare and send, one page after another, in this
    thread; a listener thread takes the runner's rewinds and stop.

    One working thread, not a fetcher thread handing pages to a sender: two threads
    taking turns at the GIL cost a quarter of this process's CPU, more than overlapping
    the Data API's answer time with preparing saved."""
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before prctl took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup_logging(plan.settings)
    stop = threading.Event()
    send = _Sender(conn)
    fetcher, client = plan.build(
        cursor,
        observer=_ForwardingObserver(send),
        stop=stop,
        hand_raw=lambda: backlog.value < HAND_RAW_BELOW,
    )
    listener = threading.Thread(
        target=_listen, args=(conn, fetcher, stop), name="control", daemon=True
    )
    tune_gc()
    listener.start()
    try:
        while not stop.is_set():
            item = fetcher.fetch_one()
            if item is None:  # rewound meanwhile, or stopping
                continue
            send(("page", _picklable(item)))
            if item.error is not None:
                # the runner raises it: a fatal error stops us, a retriable one rewinds us
                while not stop.is_set() and fetcher.generation == item.generation:
                    fetcher.wait_to_poll()
            elif item.step is not Step.MORE:
                fetcher.wait_to_poll()
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the runner is gone or closed its end: stop quietly
    except Exception as exc:  # a bug: send it so the runner stops with one clear line
        with contextlib.suppress(OSError):
            failure = FatalError(f"the fetch process failed: {exc!r}"[:1000])
            send(("page", Fetched(fetcher.generation, None, None, None, failure)))
        raise
    finally:
        stop.set()
        client.close()


def _listen(
    conn: Connection, fetcher: Fetcher[PreparedPage | RawPage], stop: threading.Event
) -> None:
    """The runner's messages: rewinds (applied between requests), then stop."""
    try:
        while True:
            kind, cursor = conn.recv()
            if kind == "stop":
                break
            if kind == "rewind":
                fetcher.rewind(cursor)  # also cuts a poll-interval wait short
    except (EOFError, OSError):
        pass  # the runner is gone
    stop.set()
    fetcher.wake()


def _picklable(item: Fetched[PreparedPage | RawPage]) -> Fetched[PreparedPage | RawPage]:
    """An unexpected exception becomes a FatalError naming it (it may not pickle)."""
    error = item.error
    if error is None or isinstance(error, ConnectorError):
        return item
    return Fetched(
        item.generation, None, None, None, FatalError(f"the fetcher failed: {error!r}"[:1000])
    )
