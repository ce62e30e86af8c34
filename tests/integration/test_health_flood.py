"""The health server under a flood of idle and slowloris connections (issue 14, item 7).

The server runs in a process of its own, as in a pod, with a small open-files limit as a
container may have: its CPU time and open descriptors are read from /proc, apart from
this process that floods it. 300 connections that never send a byte and a few that
trickle one byte at a time stay open while the kubelet's probe asks /healthz: every probe
is answered within a second, the server's CPU stays low, and once the read timeout has
passed every flooding connection has been closed cleanly by the server.

Needs no Kafka: it runs wherever Linux's /proc is.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)  # Linux only, as the connector: it reads /proc

ROOT = Path(__file__).resolve().parents[2]
IDLE = 300  # connections that never send a byte
SLOWLORIS = 5  # connections that send a request one byte at a time
PROBES = 12  # /healthz probes while the flood is on
PROBE_TIMEOUT = 1.0  # seconds each may take
READ_TIMEOUT = 5.0  # the server's default: a request's head within 5 s
TIMEOUT = 10.0  # seconds any wait may take: never reached when all is well
BATCH = 4  # connections opened at once: fewer than any listen backlog
STALLED = 1.0  # seconds after which a server that accepts nothing has stopped accepting

# The server process: a limit on open files, ready and live, the port on stdout, then
# serving until its stdin closes.
SERVER = """
import resource, sys
from connector.observability.health import Health, HealthServer
from connector.observability.metrics import Metrics

nofile, max_connections = int(sys.argv[1]), int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
health = Health()
health.restored = health.first_poll = True
options = {"max_connections": max_connections} if max_connections else {}
server = HealthServer(0, Metrics(), health, "127.0.0.1", **options).start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int

    def cpu_seconds(self) -> float:
        """User and system CPU time of every thread of the server process."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def open_files(self) -> int:
        return sum(1 for _ in Path(f"/proc/{self.process.pid}/fd").iterdir())


def start_server(nofile: int, max_connections: int) -> ServerProcess:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(nofile), str(max_connections)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
    assert ready, "the server did not start"
    return ServerProcess(process, int(process.stdout.readline()))


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def open_without_waiting(port: int, count: int, opened: list[socket.socket]) -> list[socket.socket]:
    """``count`` connections started at once, none waiting for the server to accept it."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", port))
        socks.append(sock)
    opened.extend(socks)
    return socks


def wait_connected(socks: list[socket.socket], timeout: float) -> int:
    """Wait until each connection is established (or failed); how many are established."""
    poller = select.poll()
    pending = {sock.fileno(): sock for sock in socks}
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    connected = 0
    deadline = time.monotonic() + timeout
    while pending and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            sock = pending.pop(fd)
            poller.unregister(fd)
            connected += sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    return connected


def accept_queue(port: int) -> int:
    """Connections the kernel has made for the server's listening socket, not yet accepted."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":  # LISTEN: rx_queue is the accept queue
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"nothing listens on port {port}")


def flood(port: int, count: int, opened: list[socket.socket]) -> tuple[list[socket.socket], int]:
    """``count`` idle connections, a few at a time as the server accepts them, as they pile up
    over time in a pod (a burst would overflow the listen backlog and wait in the kernel).

    Returns them and how many the server had accepted when it stopped accepting (all of
    them when it never did); the rest are opened at once.
    """
    socks: list[socket.socket] = []
    while len(socks) < count:
        batch = open_without_waiting(port, min(BATCH, count - len(socks)), opened)
        socks += batch
        wait_connected(batch, TIMEOUT)
        deadline = time.monotonic() + STALLED
        while accept_queue(port):
            if time.monotonic() > deadline:
                accepted = len(socks) - len(batch)
                rest = open_without_waiting(port, count - len(socks), opened)
                wait_connected(rest, STALLED)
                return socks + rest, accepted
            time.sleep(0.001)
    return socks, count


def probe(port: int, method: str) -> tuple[int | None, float]:
    """One kubelet-style probe of /healthz on a new connection: its status and duration."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        connection.request(method, "/healthz", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read()
        assert (body == b"") == (method == "HEAD"), body
        status: int | None = response.status
    except OSError:
        status = None  # refused, reset or timed out
    finally:
        connection.close()
    return status, time.monotonic() - started


def ends(socks: list[socket.socket], timeout: float) -> tuple[int, int]:
    """Wait until the server has ended every connection: (closed cleanly, reset)."""
    poller = select.poll()
    pending = {sock.fileno(): sock for sock in socks}
    for fd in pending:
        poller.register(fd, select.POLLIN)
    clean = reset = 0
    deadline = time.monotonic() + timeout
    while pending and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            try:
                if pending[fd].recv(65536):
                    continue  # a 408 before the end
                clean += 1
            except ConnectionError:
                reset += 1
            except BlockingIOError:
                continue
            del pending[fd]
            poller.unregister(fd)
    return clean, reset


@pytest.mark.parametrize(
    ("nofile", "max_connections"),
    [
        # the defaults, in a container allowing 256 open files: the cap (64) keeps the
        # newest connections and closes the ones that waited longest
        pytest.param(256, 0, id="at-the-cap"),
        # a cap above the flood: all 300 stay open until the read timeout
        pytest.param(1024, 400, id="all-held"),
    ],
)
def test_probes_are_answered_while_idle_and_slowloris_connections_pile_up(
    sockets: list[socket.socket], nofile: int, max_connections: int
) -> None:
    server = start_server(nofile, max_connections)
    try:
        cpu_before, started = server.cpu_seconds(), time.monotonic()
        idle, accepted = flood(server.port, IDLE, sockets)
        slow = open_without_waiting(server.port, SLOWLORIS, sockets)
        wait_connected(slow, STALLED)
        held = server.open_files()

        probes = []
        trickle = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 1000
        for sent in range(PROBES):
            for sock in slow:  # one more byte each
                with contextlib.suppress(OSError):  # not connected, or closed by the server
                    sock.send(trickle[sent : sent + 1])
            probes.append(probe(server.port, "HEAD" if sent % 2 else "GET"))
            time.sleep(0.05)  # the trickle's pace (nothing to wait for)
        cpu = server.cpu_seconds() - cpu_before
        wall = time.monotonic() - started
        slowest = max(seconds for _, seconds in probes)
        print(
            f"\n{IDLE} idle + {SLOWLORIS} slowloris connections ({accepted} idle accepted), "
            f"server open files {held} (limit {nofile}); {PROBES} probes: "
            f"{[status for status, _ in probes]}, slowest {slowest:.3f} s; "
            f"server CPU {cpu:.2f} s over {wall:.2f} s ({100 * cpu / wall:.0f} %)"
        )
        assert accepted == IDLE, "the server stopped accepting connections"
        assert all(status == 200 for status, _ in probes), probes
        assert slowest < PROBE_TIMEOUT
        assert cpu < 0.25 * wall, f"server CPU {cpu:.2f} s over {wall:.2f} s"
        if max_connections:
            assert held > IDLE  # they really piled up
        else:
            assert held < 64 + 20  # the cap (64) and the process's own files

        clean, reset = ends(idle, READ_TIMEOUT + TIMEOUT)
        slow_clean, slow_reset = ends(slow, READ_TIMEOUT + TIMEOUT)
        print(
            f"ended by the server: idle {clean} cleanly, {reset} reset; "
            f"slowloris {slow_clean} cleanly, {slow_reset} reset; "
            f"{time.monotonic() - started:.1f} s after the flood began"
        )
        assert (clean, reset) == (IDLE, 0)
        assert slow_clean + slow_reset == SLOWLORIS
    finally:
        assert server.process.stdin is not None
        server.process.stdin.close()
        try:
            server.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
