"""Fetches the next page while the current one is processed (a background thread).

The fetcher owns the pager: once page N is in, it advances the cursor, prepares the page
(validation, fingerprints, event bodies: ``changes.prepare``) and asks for page N+1, so
the Data API round trip and the stateless work overlap deciding and producing. The
queue between the two threads is short (two pages), so memory stays bounded.

Nothing here touches Kafka or the committed state. When the runner must re-read from
the committed cursor (an aborted transaction), it calls ``rewind``: the fetcher starts a
new *generation* from that cursor, and the runner drops whatever an older generation
still hands over.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from connector.errors import ShutdownRequested
from connector.learnosity.client import DataApiClient, PendingPage
from connector.learnosity.paging import Pager, Step
from connector.models import Page, PreparedPage

log = logging.getLogger(__name__)


#: what the fetcher hands over per page: as fetched, or prepared (``changes.prepare``)
P = TypeVar("P")


@dataclass(frozen=True)
class Fetched(Generic[P]):
    """One page and what it meant, or the error that stopped the fetcher."""

    generation: int
    page: P | None
    step: Step | None
    #: the pager's cursor after this page (what to commit once the page is processed)
    cursor: str | None
    error: BaseException | None = None


class PageSource(Protocol):
    """What the runner reads pages from: a ``Fetcher`` or ``fetch_side.FetchProcess``."""

    @property
    def generation(self) -> int: ...

    def start(self) -> None: ...

    def get(self, timeout: float) -> Fetched[PreparedPage] | None: ...

    def rewind(self, cursor: str | None) -> None: ...

    def join(self, timeout: float) -> None: ...


class Fetcher(Generic[P]):
    def __init__(
        self,
        client: DataApiClient,
        make_pager: Callable[[str | None], Pager],
        cursor: str | None,
        *,
        poll_interval: float,
        stop: threading.Event,
        prepare: Callable[[Page], P],
        on_stall: Callable[[Pager], None] | None = None,
        pipeline: bool = False,
    ) -> None:
        self._client = client
        #: send the next request before preparing the page just read (``fetch_one``)
        self._pipeline = pipeline
        self._ahead: tuple[int, PendingPage] | None = None
        self._prepare = prepare
        self._make_pager = make_pager
        self._poll_interval = poll_interval
        self._stop = stop
        self._on_stall = on_stall
        self._queue: queue.Queue[Fetched[P]] = queue.Queue(maxsize=2)
        self._lock = threading.Lock()
        self._generation = 0
        self._pager = make_pager(cursor)
        self._wake = threading.Event()  # cuts a poll-interval wait short on rewind
        self._thread = threading.Thread(target=self._loop, name="fetcher", daemon=True)

    @property
    def generation(self) -> int:
        return self._generation

    def start(self) -> None:
        self._thread.start()

    def get(self, timeout: float) -> Fetched[P] | None:
        """The next fetched page of the current generation, or None after ``timeout``."""
        try:
            while True:
                item = self._queue.get(timeout=timeout)
                if item.generation == self._generation:
                    return item
        except queue.Empty:
            return None

    def rewind(self, cursor: str | None) -> None:
        """Start over from ``cursor``; pages of earlier generations will be dropped."""
        with self._lock:
            self._generation += 1
            self._pager = self._make_pager(cursor)
        self._drain()
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._wake.set()
        self._drain()
        self._thread.join(timeout)

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def _put(self, item: Fetched[P]) -> bool:
        """Hand over ``item``; False if the fetcher should stop or was rewound meanwhile."""
        while not self._stop.is_set():
            if item.generation != self._generation:
                return False
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def fetch_one(self) -> Fetched[P] | None:
        """One request, synchronously: the page (prepared) or the error that stops
        fetching; None on shutdown or when rewound while the request was in flight.
        For a caller that runs the fetcher without its thread (``fetch_side``)."""
        with self._lock:
            generation, pager = self._generation, self._pager
        ahead, self._ahead = self._ahead, None
        try:
            if ahead is not None and ahead[0] == generation:
                page = self._client.finish(ahead[1])
            else:
                if ahead is not None:  # sent before a rewind: not ours any more
                    self._client.abandon(ahead[1])
                page = self._client.fetch(pager.request())
        except ShutdownRequested:
            return None
        except Exception as exc:  # noqa: BLE001 - handed to the runner, which re-raises it
            return Fetched(generation, None, None, None, exc)
        with self._lock:
            if generation != self._generation:
                return None  # rewound while this request was in flight
            step = pager.advance(page)
            following = pager.request() if step is Step.MORE and self._pipeline else None
        if following is not None:
            # the next request goes out now: the Data API answers it while this page
            # is prepared and handed over
            pending = self._client.begin(following)
            self._ahead = (generation, pending) if pending is not None else None
        if step is Step.STALLED and self._on_stall is not None:
            self._on_stall(pager)
        return Fetched(generation, self._prepare(page), step, pager.cursor)

    def wait_to_poll(self) -> None:
        """Caught up or stalled: wait a poll interval (cut short by a rewind or stop)."""
        self._wake.wait(self._poll_interval)
        self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            item = self.fetch_one()
            if item is None:
                continue  # stopping (the loop ends), or rewound mid-request
            handed_over = self._put(item)
            if item.error is not None:
                return  # handed to the runner, which raises it
            if handed_over and item.step is not Step.MORE:
                self.wait_to_poll()
