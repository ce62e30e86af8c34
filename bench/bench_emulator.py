"""Benchmark: pages of 50 records per second that one emulator process serves on one core.

How it is measured:
- The server runs in its own process, pinned to CPU 0 (``os.sched_setaffinity``).
- The load comes from this process, pinned to the other CPU: ``--clients`` concurrent
  keep-alive connections on raw asyncio streams (a heavier client would be the
  bottleneck), each paging with ``sort: asc``, ``limit: 50`` and the ``next`` token, every
  request freshly signed the way the SDK signs (HMAC-SHA256 ``$02$``), starting over
  after the empty page that ends the data.
- After a warm-up, pages and records are counted for ``--seconds``; the server's CPU
  time over the same window comes from /proc, so ``pages per CPU-second`` is the figure
  for one core whether or not the clients kept the server busy all the time.
- Baselines from the same run, same clients: ``fixed`` (the same HTTP layer answering
  one fixed 50-record page: the ceiling of the HTTP layer) and ``no-cache`` (the
  emulator re-encoding every record of every page).
- The emulator runs with the rate limit off and a live workload (new sessions and
  changes every tick), so cache invalidation is part of the figure.

Run: ``.venv/bin/python bench/bench_emulator.py`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from connector.emulator import Emulator, EmulatorConfig, WorkloadConfig
from connector.emulator.endpoint import Reply
from connector.emulator.http import start_server

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "bench-consumer", "bench-secret"
VERSION = "v2025.2.LTS"
_NEXT = re.compile(rb'"next":"([^"]+)"')
_RECORDS = re.compile(rb'"records":(\d+)')


# --- the servers (run in a child process) --------------------------------------------
def serve(kind: str, sessions: int, port_file: str) -> None:
    config = EmulatorConfig(
        consumer_key=KEY,
        consumer_secret=SECRET,
        rate_limit=0,
        keep_truth_in_memory=False,
        cache_records=kind != "no-cache",
        workload=WorkloadConfig(
            sessions=sessions,
            users=5000,
            activities=40,
            new_sessions_per_second=200,
            changes_per_second=1000,
        ),
    )
    emulator = Emulator(config)

    def announce(url: str) -> None:
        Path(port_file).write_text(url)

    if kind != "fixed":
        emulator.run(announce)
        return

    # The fixed-response baseline: one real page, served for every request.
    states = list(emulator.store.sessions())[:50]
    body = (
        b'{"meta":{"status":true,"timestamp":1,"records":50,"next":"1.000001"},"data":['
        + b",".join(s.json() for s in states)
        + b"]}"
    )

    async def main() -> None:
        server, _ = await start_server(lambda m, t, b: Reply(200, body), "127.0.0.1", 0)
        announce(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the clients ----------------------------------------------------------------------
@dataclass
class Counts:
    pages: int = 0
    records: int = 0
    errors: int = 0
    counting: bool = False


def signed_body(request: dict[str, object]) -> bytes:
    request_string = json.dumps(request, separators=(",", ":"))
    timestamp = time.strftime("%Y%m%d-%H%M", time.gmtime())
    security = {"consumer_key": KEY, "domain": "localhost", "timestamp": timestamp}
    message = "_".join([KEY, "localhost", timestamp, request_string, "get"])
    digest = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    security["signature"] = "$02$" + digest
    return urlencode(
        {"security": json.dumps(security), "request": request_string, "action": "get"}
    ).encode()


async def client(port: int, counts: Counts, stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    token: str | None = None
    path = f"/{VERSION}/sessions/scores".encode()
    while not stop.is_set():
        request: dict[str, object] = {"sort": "asc", "limit": 50}
        if token:
            request["next"] = token
        body = signed_body(request)
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path, len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        page = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            counts.errors += 1
            continue
        found = _NEXT.search(page, 0, 200)
        records = int(_RECORDS.search(page, 0, 200).group(1))  # type: ignore[union-attr]
        token = found.group(1).decode() if found and records else None
        if counts.counting:
            counts.pages += 1
            counts.records += records
    writer.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def load(
    port: int, clients: int, warmup: float, seconds: float, pid: int
) -> dict[str, float]:
    counts, stop = Counts(), asyncio.Event()
    tasks = [asyncio.create_task(client(port, counts, stop)) for _ in range(clients)]
    await asyncio.sleep(warmup)
    counts.counting = True
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    counts.counting = False
    cpu1, t1 = cpu_seconds(pid), time.perf_counter()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    wall, cpu = t1 - t0, cpu1 - cpu0
    return {
        "pages_per_s": counts.pages / wall,
        "records_per_page": counts.records / max(counts.pages, 1),
        "server_cpu_share": cpu / wall,
        "pages_per_cpu_s": counts.pages / cpu if cpu else float("nan"),
        "errors": counts.errors,
        "peak_rss_mb": peak_rss_mb(pid),
    }


def run_one(kind: str, args: argparse.Namespace) -> dict[str, float]:
    port_file = Path(f"/tmp/bench-emulator-{os.getpid()}-{kind}.url")
    port_file.unlink(missing_ok=True)
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--sessions",
            str(args.sessions),
            "--port-file",
            str(port_file),
        ],
    )
    try:
        os.sched_setaffinity(child.pid, {args.server_cpu})
        started = time.monotonic()
        while not port_file.exists() or not port_file.read_text():
            if child.poll() is not None or time.monotonic() - started > 120:
                raise RuntimeError(f"the {kind} server did not start")
            time.sleep(0.05)
        startup = time.monotonic() - started
        port = int(port_file.read_text().rsplit(":", 1)[1])
        result = asyncio.run(load(port, args.clients, args.warmup, args.seconds, child.pid))
        result["startup_s"] = startup
        return result
    finally:
        child.terminate()
        child.wait(10)
        port_file.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--only", choices=("emulator", "no-cache", "fixed"), action="append")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.sessions, args.port_file)
        return 0

    cpus = sorted(os.sched_getaffinity(0))
    client_cpus = {c for c in cpus if c != args.server_cpu} or set(cpus)
    os.sched_setaffinity(0, client_cpus)
    kinds = args.only or ["emulator", "no-cache", "fixed"]
    print(
        f"emulator benchmark: {args.sessions} sessions, {args.clients} keep-alive clients "
        f"on CPU {sorted(client_cpus)}, server pinned to CPU {args.server_cpu}, "
        f"{args.warmup:.0f}s warm-up, {args.seconds:.0f}s measured"
    )
    header = (
        f"{'server':<10} {'pages/s':>9} {'recs/page':>9} {'server CPU':>10} "
        f"{'pages/CPU-s':>11} {'errors':>6} {'peak RSS':>9} {'start-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for kind in kinds:
        r = run_one(kind, args)
        print(
            f"{kind:<10} {r['pages_per_s']:>9.0f} {r['records_per_page']:>9.1f} "
            f"{r['server_cpu_share']:>9.0%} {r['pages_per_cpu_s']:>11.0f} "
            f"{r['errors']:>6.0f} {r['peak_rss_mb']:>7.0f}MB {r['startup_s']:>7.1f}s",
            flush=True,
        )
    print(
        "pages/CPU-s = pages served per second of the server's own CPU time: the figure for "
        "one core. server CPU < 100% means the clients, not the server, set pages/s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
