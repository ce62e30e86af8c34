"""The emulator as one object: store, workload, truth, endpoint and HTTP server together.

Two ways to run it:

- ``Emulator(config).run()`` in the main thread (the CLI): until ``request_stop()``
  (SIGTERM/SIGINT).
- ``Emulator(config).start()`` for tests: a background thread with its own event loop,
  listening on a free port; ``url`` is then set; ``stop()`` ends it.

The workload ticks in the server's event loop every ``tick_seconds`` unless ``ticking``
is off (tests then change sessions through ``workload``'s methods, from any thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from connector.emulator.catalog import Catalog
from connector.emulator.endpoint import ScoresEndpoint
from connector.emulator.faults import FaultConfig, FaultInjector
from connector.emulator.http import HttpProtocol, start_server
from connector.emulator.persist import load_workload, save_workload
from connector.emulator.ratelimit import RateLimiter
from connector.emulator.records import SessionState
from connector.emulator.requestlog import RequestLog
from connector.emulator.security import Consumers
from connector.emulator.store import SessionStore
from connector.emulator.truth import TruthLog
from connector.emulator.workload import Workload, WorkloadConfig

#: the documented demo credentials (used when LEARNOSITY_CONSUMER_KEY/SECRET are unset)
DEMO_CONSUMER_KEY: Final = "demo-consumer"
DEMO_CONSUMER_SECRET: Final = "demo-secret"  # noqa: S105 - a published demo value
DEFAULT_API_VERSION: Final = "v2025.2.LTS"


def default_credentials() -> tuple[str, str]:
    """The consumer the emulator accepts: the connector's env vars, else the demo pair."""
    return (
        os.environ.get("LEARNOSITY_CONSUMER_KEY") or DEMO_CONSUMER_KEY,
        os.environ.get("LEARNOSITY_CONSUMER_SECRET") or DEMO_CONSUMER_SECRET,
    )


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    consumer_key: str = DEMO_CONSUMER_KEY
    consumer_secret: str = field(default=DEMO_CONSUMER_SECRET, repr=False)
    #: more consumers (key → secret), e.g. to test rate limits per consumer
    extra_consumers: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: domains a request may be signed for (41005 otherwise); empty: any
    allowed_domains: tuple[str, ...] = ()
    workload: WorkloadConfig = field(default_factory=WorkloadConfig)
    #: read the initial sessions from this JSON-lines file instead of generating them
    load_path: str | None = None
    #: write every session to this JSON-lines file when the emulator stops
    save_path: str | None = None
    truth_path: str | None = None
    keep_truth_in_memory: bool = True
    #: False: the truth log leaves out the initial sessions (only later changes)
    truth_initial: bool = True
    #: append ``<Unix ms> <status>`` per request to this file (``requestlog``)
    request_log_path: str | None = None
    #: False: no background changes; tests drive ``workload`` by hand
    ticking: bool = True
    tick_seconds: float = 0.05
    #: requests per consumer per window; 0 turns the limit off
    rate_limit: int = 1000
    rate_window_seconds: float = 5.0
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: the lowest ``vYYYY.N.LTS`` served; lower ones get 43000
    min_version: tuple[int, int] = (2022, 1)
    #: False re-encodes records on every page (only to measure what the cache is worth)
    cache_records: bool = True


class Emulator:
    def __init__(
        self, config: EmulatorConfig | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config = config or EmulatorConfig()
        self.clock = clock
        self.lock = threading.RLock()
        self.store = SessionStore()
        self.truth = TruthLog(
            config.truth_path,
            keep_in_memory=config.keep_truth_in_memory,
            log_initial=config.truth_initial,
        )
        self.request_log = RequestLog(config.request_log_path) if config.request_log_path else None
        self.workload = self._make_workload(config)
        # The initial sessions live as long as the process: keep them out of every future
        # garbage collection, which would otherwise walk them all again and again.
        gc.freeze()
        self.faults = FaultInjector(config.faults, seed=config.workload.seed)
        self.endpoint = ScoresEndpoint(
            self.store,
            Consumers(
                {config.consumer_key: config.consumer_secret, **config.extra_consumers},
                frozenset(config.allowed_domains),
            ),
            lock=self.lock,
            limiter=RateLimiter(config.rate_limit, config.rate_window_seconds),
            faults=self.faults,
            truth=self.truth,
            clock=clock,
            min_version=config.min_version,
            cache_records=config.cache_records,
            request_log=self.request_log,
        )
        self.url: str | None = None
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def _make_workload(self, config: EmulatorConfig) -> Workload:
        if config.load_path is None:
            return Workload.generate(
                config.workload, self.store, self.truth, clock=self.clock, lock=self.lock
            )
        states = load_workload(config.load_path)
        rng = random.Random(config.workload.seed)
        users = list(dict.fromkeys(s.user_id for s in states))
        activities = list({id(s.activity): s.activity for s in states}.values())
        catalog = (
            Catalog.of(rng, users, activities)
            if users
            else Catalog.generate(rng, config.workload.users, config.workload.activities)
        )
        workload = Workload(
            self.store,
            self.truth,
            catalog,
            rng=rng,
            clock=self.clock,
            lock=self.lock,
            new_sessions_per_second=config.workload.new_sessions_per_second,
            changes_per_second=config.workload.changes_per_second,
        )
        workload.adopt(states)
        return workload

    # --- what tests read ---------------------------------------------------------------
    @property
    def consumer_key(self) -> str:
        return self.config.consumer_key

    @property
    def consumer_secret(self) -> str:
        return self.config.consumer_secret

    def endpoint_url(self, version: str = DEFAULT_API_VERSION) -> str:
        if self.url is None:
            raise RuntimeError("the emulator is not listening")
        return f"{self.url}/{version}/sessions/scores"

    def env(self, version: str = DEFAULT_API_VERSION) -> dict[str, str]:
        """The connector's settings for talking to this emulator, as environment variables."""
        if self.url is None:
            raise RuntimeError("the emulator is not listening")
        return {
            "LEARNOSITY_BASE_URL": self.url,
            "LEARNOSITY_CONSUMER_KEY": self.consumer_key,
            "LEARNOSITY_CONSUMER_SECRET": self.consumer_secret,
            "LEARNOSITY_API_VERSION": version,
        }

    def truth_records(self, since_seq: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return self.truth.records(since_seq)

    def sessions(self, include_responses: bool = False) -> list[dict[str, Any]]:
        """Every session's current record, as served, in ascending updated order."""
        with self.lock:
            return [s.to_record(include_responses) for s in self.store.sessions()]

    def session(self, session_id: str) -> SessionState | None:
        with self.lock:
            return self.store.get(session_id)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            endpoint = self.endpoint.stats
            return {
                "sessions": len(self.store),
                "requests": endpoint.requests,
                "pages": endpoint.pages,
                "records": endpoint.records,
                "errors": dict(endpoint.errors),
                "faults": dict(self.faults.counts),
                "truth_seq": self.truth.seq,
            }

    # --- running -----------------------------------------------------------------------
    async def serve(self, on_listening: Callable[[str], None] | None = None) -> None:
        """Serve until ``request_stop``; then close connections, save and close files."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server, connections = await start_server(
            self.endpoint.handle, self.config.host, self.config.port
        )
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"http://{_url_host(self.config.host)}:{self.port}"
        if on_listening is not None:
            on_listening(self.url)
        ticker = asyncio.create_task(self._tick()) if self.config.ticking else None
        try:
            await self._stopping.wait()
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticker
            server.close()
            _close_all(connections)
            await server.wait_closed()
            self._finish()

    async def _tick(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.config.tick_seconds)
            now = time.monotonic()
            self.workload.advance(now - last)
            last = now

    def _finish(self) -> None:
        with self.lock:
            if self.config.save_path:
                save_workload(self.config.save_path, self.store.sessions())
            self.truth.close()
            if self.request_log is not None:
                self.request_log.close()

    def request_stop(self) -> None:
        """Ask a serving emulator to stop (from any thread, or a signal handler)."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)

    def run(self, on_listening: Callable[[str], None] | None = None) -> None:
        asyncio.run(self.serve(on_listening))

    def start(self, timeout: float = 30.0) -> Emulator:
        """Serve from a background thread; returns once listening (``url`` is set)."""
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._thread_main, name="emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the emulator did not start in time")
        if self._failure is not None:
            raise RuntimeError("the emulator failed to start") from self._failure
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve(lambda _url: self._ready.set()))
        except Exception as exc:  # noqa: BLE001 - handed to the thread that called start()
            self._failure = exc
            self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Emulator(url={self.url!r}, sessions={len(self.store)})"


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - only to name a reachable address
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _close_all(connections: set[HttpProtocol]) -> None:
    for connection in list(connections):
        connection.close()
