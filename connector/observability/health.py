"""The HTTP endpoints operators and Kubernetes probe: /metrics, /healthz, /readyz.

``/healthz`` (liveness) answers 200 while the main loop keeps beating: it beats at
least once a second when idle, so a loop stuck for ``liveness_timeout`` seconds is wedged
and a restart is the cure. Before the state is restored there is no loop yet: start-up
(topics, fencing, reading a state topic that may hold millions of entries) is live for
up to ``startup_timeout`` seconds, and restoring counts as the first beat.

``/readyz`` (readiness) answers 200 once state is restored and the Data API answered a
first poll, and 503 while Kafka has been unreachable for more than ``kafka_grace``
seconds (an outage shorter than that is ridden through).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from connector.observability.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)


class Health:
    """What the probes report; the runner updates it, the HTTP handler reads it."""

    def __init__(
        self,
        *,
        liveness_timeout: float = 120.0,
        startup_timeout: float = 900.0,
        kafka_grace: float = 15.0,
        kafka_probe: Callable[[], bool] | None = None,
        probe_interval: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.liveness_timeout = liveness_timeout
        self.startup_timeout = startup_timeout
        self.kafka_grace = kafka_grace
        self._clock = clock
        self._kafka_probe = kafka_probe
        self._probe_interval = probe_interval
        self._lock = threading.Lock()
        self._started = self._beat = clock()
        self._restored = False
        self.first_poll = False
        self._kafka_ok_at = clock()
        self._probed_at = -float("inf")

    @property
    def restored(self) -> bool:
        return self._restored

    @restored.setter
    def restored(self, value: bool) -> None:
        self._restored = value
        if value:  # the loop starts now: its heartbeat is judged from here
            self.beat()

    def beat(self) -> None:
        self._beat = self._clock()

    def kafka_ok(self) -> None:
        self._kafka_ok_at = self._clock()

    def set_kafka_probe(self, probe: Callable[[], bool]) -> None:
        self._kafka_probe = probe

    def live(self) -> tuple[bool, str]:
        if not self._restored:
            starting = self._clock() - self._started
            if starting > self.startup_timeout:
                return False, f"start-up not finished after {starting:.0f}s"
            return True, "starting"
        stale = self._clock() - self._beat
        if stale > self.liveness_timeout:
            return False, f"main loop silent for {stale:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if not self.restored:
            return False, "restoring state"
        if not self.first_poll:
            return False, "waiting for the first Data API poll"
        self._probe_kafka()
        down_for = self._clock() - self._kafka_ok_at
        if down_for > self.kafka_grace:
            return False, f"Kafka unreachable for {down_for:.0f}s"
        return True, "ok"

    def _probe_kafka(self) -> None:
        with self._lock:  # one probe at a time, at most every probe_interval
            now = self._clock()
            if self._kafka_probe is None or now - self._probed_at < self._probe_interval:
                return
            self._probed_at = now
            if self._kafka_probe():
                self._kafka_ok_at = self._clock()


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, self.server.metrics.render(), CONTENT_TYPE)
        elif path in ("/healthz", "/readyz"):
            ok, reason = (
                self.server.health.live() if path == "/healthz" else self.server.health.ready()
            )
            body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason})
            self._send(200 if ok else 503, body.encode(), "application/json")
        else:
            self._send(404, b"not found\n", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would drown the real log lines


class HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, metrics: Metrics, health: Health, host: str = "0.0.0.0"):  # noqa: S104 - probes come from the kubelet
        super().__init__((host, port), _Handler)
        self.metrics = metrics
        self.health = health
        # evaluated at every scrape, so the gauge is right even when nothing probes /readyz
        metrics.ready.set_function(lambda: 1.0 if health.ready()[0] else 0.0)
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("serving /metrics, /healthz, /readyz", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
