"""``learnosity-connector emulator``: serve the Data API emulator until SIGTERM/SIGINT.

The first line on stdout is ``emulator listening on http://HOST:PORT`` (scripts parse
it; ``--port 0`` picks a free port). The consumer is LEARNOSITY_CONSUMER_KEY and
LEARNOSITY_CONSUMER_SECRET when set, else the demo pair ``demo-consumer`` /
``demo-secret``. The secret is never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time

from connector.emulator.faults import DEFAULT_MALFORMED_KINDS, MALFORMED_KINDS, FaultConfig
from connector.emulator.persist import WorkloadFileError
from connector.emulator.service import Emulator, EmulatorConfig, default_credentials
from connector.emulator.workload import WorkloadConfig
from connector.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    serve = parser.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8765, help="port (0: a free one)")
    serve.add_argument(
        "--consumer-key",
        help="consumer key accepted (default: $LEARNOSITY_CONSUMER_KEY or demo-consumer)",
    )
    serve.add_argument(
        "--allowed-domain",
        action="append",
        default=[],
        metavar="DOMAIN",
        help="a domain requests may be signed for (repeatable; default: any) - else 41005",
    )
    serve.add_argument(
        "--rate-limit",
        type=int,
        default=1000,
        metavar="N",
        help="requests per consumer per window; 0 turns it off (default 1000)",
    )
    serve.add_argument("--rate-window", type=float, default=5.0, metavar="S", help="seconds")
    serve.add_argument(
        "--request-log",
        metavar="FILE",
        help="append '<Unix ms> <HTTP status>' per request here (buffered; whole at exit)",
    )

    work = parser.add_argument_group("workload")
    work.add_argument("--seed", type=int, default=1)
    work.add_argument("--users", type=int, default=200)
    work.add_argument("--activities", type=int, default=12)
    work.add_argument("--sessions", type=int, default=1000, help="sessions at start")
    work.add_argument(
        "--history-days", type=float, default=7.0, help="initial sessions span this many days"
    )
    work.add_argument("--new-sessions-per-second", type=float, default=1.0)
    work.add_argument("--changes-per-second", type=float, default=5.0)
    work.add_argument("--tick-ms", type=float, default=50.0, help="workload tick period")
    work.add_argument("--load", metavar="FILE", help="initial sessions from a JSON-lines file")
    work.add_argument("--save", metavar="FILE", help="write all sessions here on exit")
    work.add_argument("--truth", metavar="FILE", help="append every state change here")
    work.add_argument(
        "--truth-skip-initial",
        action="store_true",
        help="leave the initial sessions out of --truth (only the changes made later)",
    )

    faults = parser.add_argument_group("fault injection (all off by default)")
    faults.add_argument("--fault-latency-ms", type=float, default=0.0)
    faults.add_argument("--fault-latency-jitter-ms", type=float, default=0.0)
    faults.add_argument(
        "--fault-error-rate", type=float, default=0.0, help="fraction answered 500/502/503"
    )
    faults.add_argument("--fault-429-burst-every", type=int, default=0, metavar="N")
    faults.add_argument("--fault-429-burst-length", type=int, default=0, metavar="M")
    faults.add_argument("--fault-truncate-rate", type=float, default=0.0)
    faults.add_argument("--fault-status-false-rate", type=float, default=0.0)
    faults.add_argument(
        "--fault-stall-rate", type=float, default=0.0, help="same token and page again"
    )
    faults.add_argument(
        "--fault-malformed-rate", type=float, default=0.0, help="one broken record in a page"
    )
    faults.add_argument(
        "--fault-malformed-kinds",
        default=",".join(DEFAULT_MALFORMED_KINDS),
        metavar="K,K",
        help=f"what a malformed record may be: {', '.join(MALFORMED_KINDS)}",
    )
    faults.add_argument("--fault-reset-rate", type=float, default=0.0)
    faults.add_argument(
        "--fault-oversized-rate",
        type=float,
        default=0.0,
        help="fraction of records served with --fault-oversized-bytes more",
    )
    faults.add_argument("--fault-oversized-bytes", type=int, default=0, metavar="N")
    faults.add_argument(
        "--fault-frozen-cursor-rate",
        type=float,
        default=0.0,
        help="fraction of tokens answered with themselves as next, dt_saved moving",
    )
    faults.add_argument(
        "--fault-frozen-cursor-length",
        type=int,
        default=20,
        metavar="N",
        help="frozen answers per frozen token",
    )


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    key, secret = default_credentials()
    try:
        fault_config = FaultConfig(
            latency_ms=args.fault_latency_ms,
            latency_jitter_ms=args.fault_latency_jitter_ms,
            error_rate=args.fault_error_rate,
            burst_429_every=args.fault_429_burst_every,
            burst_429_length=args.fault_429_burst_length,
            truncate_rate=args.fault_truncate_rate,
            status_false_rate=args.fault_status_false_rate,
            stall_rate=args.fault_stall_rate,
            malformed_rate=args.fault_malformed_rate,
            reset_rate=args.fault_reset_rate,
            malformed_kinds=tuple(k.strip() for k in args.fault_malformed_kinds.split(",")),
            oversized_rate=args.fault_oversized_rate,
            oversized_bytes=args.fault_oversized_bytes,
            frozen_cursor_rate=args.fault_frozen_cursor_rate,
            frozen_cursor_length=args.fault_frozen_cursor_length,
        )
    except ValueError as exc:
        raise ConfigError([str(exc)]) from None
    problems = [
        f"--{name.replace('_', '-')} must be at least {low}"
        for name, low in (("users", 1), ("activities", 1), ("sessions", 0), ("rate_limit", 0))
        if getattr(args, name) < low
    ]
    if args.tick_ms <= 0:
        problems.append("--tick-ms must be positive")
    if problems:
        raise ConfigError(problems)
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        consumer_key=args.consumer_key or key,
        consumer_secret=secret,
        allowed_domains=tuple(args.allowed_domain),
        workload=WorkloadConfig(
            seed=args.seed,
            users=args.users,
            activities=args.activities,
            sessions=args.sessions,
            history_days=args.history_days,
            new_sessions_per_second=args.new_sessions_per_second,
            changes_per_second=args.changes_per_second,
        ),
        load_path=args.load,
        save_path=args.save,
        truth_path=args.truth,
        keep_truth_in_memory=False,
        truth_initial=not args.truth_skip_initial,
        request_log_path=args.request_log,
        tick_seconds=args.tick_ms / 1000.0,
        rate_limit=args.rate_limit,
        rate_window_seconds=args.rate_window,
        faults=fault_config,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    started = time.monotonic()
    try:
        emulator = Emulator(config)
    except WorkloadFileError as exc:
        raise ConfigError([f"--load: {exc}"]) from None
    except OSError as exc:  # --load, --truth or --save cannot be opened
        raise ConfigError([f"{exc.filename}: {exc.strerror}"]) from None

    def listening(url: str) -> None:
        print(f"emulator listening on {url}", flush=True)
        print(
            f"  {len(emulator.store)} sessions ready in {time.monotonic() - started:.1f}s; "
            f"consumer key {emulator.consumer_key!r}; endpoint {url}/<version>/sessions/scores",
            file=sys.stderr,
            flush=True,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, emulator.request_stop)

    try:
        emulator.run(listening)
    except OSError as exc:  # the port is taken, the host is not ours
        raise ConfigError([f"--host/--port: cannot listen ({exc.strerror or exc})"]) from None
    return 0
