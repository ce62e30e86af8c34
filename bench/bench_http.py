"""HTTP client at concurrency (issue 12): client CPU per request of each HTTP library.

The connector pages many time slices at once (up to ~64 threads sharing one Data API
client), so the HTTP client's CPU per request bounds how many requests one core sends.
How it is measured:
- The emulator runs in its own process (``learnosity-connector emulator``) with 150 ms
  of added latency per answer and the rate limit off, so the CPU measured here
  (``getrusage(RUSAGE_SELF)``: every thread of this process) is the client's only.
- ``--threads`` threads each page their own time slice (``mintime``/``maxtime``,
  ``sort: asc``, ``limit: 50``, the ``next`` token; over again at the end), every
  request signed by the SDK (``connector.learnosity.signing``, about 10 us) and POSTed as
  a form; the ``next`` token is found with a regex (no JSON decoding), so what differs
  between rows is the HTTP client alone.
- One row per client, one after the other against the same emulator, each counted for
  ``--seconds`` after a warm-up that opens the connections:
      http.client          a kept-alive ``http.client.HTTPConnection`` per thread (the
                           baseline: the least CPU a Python HTTP/1.1 client spends)
      httpx / httpx2       one shared ``Client`` (pool of ``--threads`` connections)
      ... per thread       one ``Client`` per thread
      HttpTransport        the connector's transport (``connector.learnosity.transport``):
                           one shared client, the body read streaming under its size bound
- Columns: requests/s, client CPU ms per request, the mean time a request took (latency
  plus waiting for this process's CPU), the emulator's CPU (to see it was not the limit)
  and failed requests.

    .venv/bin/python bench/bench_http.py               # 40 threads, 20 s a row (~2.5 min)
    .venv/bin/python bench/bench_http.py --repeat 3    # 3 rounds and medians (~7.5 min)

httpx is not a dependency of the connector: its rows are left out unless it is installed.

Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import importlib.util
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/bench_http.py` puts only bench/ there
    sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
from pydantic import SecretStr  # noqa: E402

from bench.bench_pipeline import cpu_seconds, emulator_process  # noqa: E402
from connector.emulator.service import DEMO_CONSUMER_KEY, DEMO_CONSUMER_SECRET  # noqa: E402
from connector.learnosity.signing import sdk_headers, signed_form  # noqa: E402
from connector.learnosity.transport import HttpTransport  # noqa: E402

# not a dependency of the connector any more: compared only when installed
httpx: Any = importlib.import_module("httpx") if importlib.util.find_spec("httpx") else None
SECRET = SecretStr(DEMO_CONSUMER_SECRET)
_NEXT = re.compile(rb'"next":"([^"]+)"')
_RECORDS = re.compile(rb'"records":(\d+)')

#: form -> (HTTP status, body)
Post = Callable[[dict[str, str]], tuple[int, bytes]]


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the clients: each a factory of Post, called once per thread ------------------------
def http_client_posts(url: str) -> Callable[[], Post]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    head = {
        **sdk_headers(DEMO_CONSUMER_KEY, url),
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept-Encoding": "gzip, deflate",
    }

    def per_thread() -> Post:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)

        def post(form: dict[str, str]) -> tuple[int, bytes]:
            conn.request("POST", parts.path, urlencode(form), head)
            response = conn.getresponse()
            return response.status, response.read()

        return post

    return per_thread


def library_posts(lib: Any, url: str, threads: int, shared: bool) -> Callable[[], Post]:
    """httpx or httpx2 (same API): one client for every thread, or one each."""
    headers = sdk_headers(DEMO_CONSUMER_KEY, url)

    def new_client() -> Any:
        return lib.Client(
            timeout=lib.Timeout(60.0, connect=10.0),
            limits=lib.Limits(max_connections=threads, max_keepalive_connections=threads),
        )

    one = new_client() if shared else None

    def per_thread() -> Post:
        client = one or new_client()

        def post(form: dict[str, str]) -> tuple[int, bytes]:
            response = client.post(url, data=form, headers=headers)
            return response.status_code, response.content

        return post

    return per_thread


def transport_posts(url: str, threads: int) -> Callable[[], Post]:
    transport = HttpTransport(10.0, 60.0, max_connections=threads)
    headers = sdk_headers(DEMO_CONSUMER_KEY, url)

    def post(form: dict[str, str]) -> tuple[int, bytes]:
        raw = transport.post_form(url, form, headers)
        return raw.status, raw.body

    return lambda: post


# --- the load -----------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    requests: int
    seconds: float
    cpu: float
    emulator_cpu: float
    errors: int
    threads: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / max(1, self.requests)


def page_slice(
    post: Post, low: int, high: int, counts: list[int], errors: list[int], i: int, stop: Any
) -> None:
    """Page [low, high) again and again until ``stop``; count requests in ``counts[i]``."""
    token: str | None = None
    while not stop.is_set():
        request: dict[str, Any] = {"sort": "asc", "limit": 50, "mintime": low, "maxtime": high}
        if token:
            request["next"] = token
        try:
            status, body = post(signed_form(DEMO_CONSUMER_KEY, SECRET, "localhost", request))
        except Exception:  # noqa: BLE001 - counted, and the thread goes on
            errors[i] += 1
            token = None
            continue
        counts[i] += 1
        found = _NEXT.search(body) if status == 200 else None
        records = _RECORDS.search(body)
        if found is None or records is None or records.group(1) == b"0":
            errors[i] += status != 200
            token = None  # the end of the slice: over again
        else:
            token = found.group(1).decode()


def measure(
    name: str, posts: Callable[[], Post], args: argparse.Namespace, emulator_pid: int
) -> Row:
    threads = args.threads
    counts, errors = [0] * threads, [0] * threads
    stop = threading.Event()
    end = int(time.time())
    span = 7 * 86_400  # the emulator's sessions were updated over the past 7 days
    workers = [
        threading.Thread(
            target=lambda i=i: page_slice(
                posts(),
                end - span + i * span // threads,
                end - span + (i + 1) * span // threads,
                counts,
                errors,
                i,
                stop,
            ),
            daemon=True,
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    time.sleep(args.warmup)
    requests, failed = sum(counts), sum(errors)
    cpu, emu, wall = own_cpu(), cpu_seconds(emulator_pid), time.perf_counter()
    time.sleep(args.seconds)
    requests, failed = sum(counts) - requests, sum(errors) - failed
    cpu, emu, wall = own_cpu() - cpu, cpu_seconds(emulator_pid) - emu, time.perf_counter() - wall
    stop.set()
    for worker in workers:
        worker.join(30)
    return Row(name, requests, wall, cpu, emu, failed, threads)


def print_rows(rows: list[Row]) -> None:
    print(
        f"{'client':<24} {'requests/s':>10} {'CPU ms/request':>14} {'ms/request':>10} "
        f"{'emulator CPU':>12} {'errors':>6}"
    )
    for r in rows:
        took = 1000 * r.threads * r.seconds / max(1, r.requests)
        print(
            f"{r.name:<24} {r.rate:>10.1f} {r.cpu_ms:>14.3f} {took:>10.1f} "
            f"{100 * r.emulator_cpu / r.seconds:>11.0f}% {r.errors:>6}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20.0, help="counted, per row")
    parser.add_argument("--warmup", type=float, default=3.0, help="per row, not counted")
    parser.add_argument("--latency-ms", type=float, default=150.0)
    parser.add_argument("--sessions", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every row")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # rows as they come
    print(
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"httpx {httpx.__version__ if httpx else '(not installed: its rows are left out)'}, "
        f"httpx2 {httpx2.__version__}; {args.threads} threads, {args.latency_ms:g} ms latency, "
        f"{args.seconds:g} s a row"
    )
    by_name: dict[str, list[Row]] = {}
    log = Path(tempfile.mkdtemp(prefix="bench-http-")) / "emulator.log"
    latency = ["--fault-latency-ms", str(args.latency_ms)]
    with emulator_process(args.sessions, log, extra=latency) as (pid, base):
        url = f"{base}/v2025.2.LTS/sessions/scores"
        clients: list[tuple[str, Callable[[], Callable[[], Post]]]] = [
            ("http.client (per thread)", lambda: http_client_posts(url)),
            ("httpx shared", lambda: library_posts(httpx, url, args.threads, True)),
            ("httpx per thread", lambda: library_posts(httpx, url, args.threads, False)),
            ("httpx2 shared", lambda: library_posts(httpx2, url, args.threads, True)),
            ("httpx2 per thread", lambda: library_posts(httpx2, url, args.threads, False)),
            ("HttpTransport (shared)", lambda: transport_posts(url, args.threads)),
        ]
        if httpx is None:
            clients = [(name, make) for name, make in clients if not name.startswith("httpx ")]
        for round_ in range(args.repeat):
            rows = [measure(name, make(), args, pid) for name, make in clients]
            if args.repeat > 1:
                print(f"round {round_ + 1}")
            print_rows(rows)
            for row in rows:
                by_name.setdefault(row.name, []).append(row)
    if args.repeat > 1:
        print(f"median of {args.repeat} rounds")
        print(f"{'client':<24} {'requests/s':>10} {'CPU ms/request':>14}")
        for name, rows in by_name.items():
            rate = statistics.median(r.rate for r in rows)
            print(f"{name:<24} {rate:>10.1f} {statistics.median(r.cpu_ms for r in rows):>14.3f}")


if __name__ == "__main__":
    main()
