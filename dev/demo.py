"""`make demo`: the whole product on this machine, start to finish, in about a minute.

    1. a local Kafka broker and schema registry (dev.stack, in a folder of its own)
    2. the Learnosity Data API emulator with a live workload of learners
    3. the connector, exactly once, Avro through the schema registry
    4. the decoded events, read back with `learnosity-connector tail`
    5. everything stopped again

Nothing here is special to the demo: these are the commands a user would type.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dev.stack import load_env

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "connector"]
STREAM_SECONDS = 12.0


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if re.match(rf"^{re.escape(name)}(\{{| )", line)
    )


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    import socket  # noqa: PLC0415 - only here

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def show_events(env: dict[str, str], committed: int) -> None:
    """Read the events back as a user would, and show a few of them decoded."""
    say("5/5 the decoded events: learnosity-connector tail --from-beginning")
    # --max: the workload keeps changing, so "idle for N seconds" would never come
    tail = subprocess.run(
        [*CLI, "tail", "--from-beginning", "--max", str(committed), "--timeout", "10"],
        env=env,
        capture_output=True,
        check=True,
        cwd=REPO,
    )
    lines = tail.stdout.decode().splitlines()
    kinds: dict[str, int] = {}
    for line in lines:
        kind = json.loads(line)["event"]["change"]
        kinds[kind] = kinds.get(kind, 0) + 1
    status_changes = [line for line in lines if '"status_changed"' in line]
    for line in [*lines[:2], *status_changes[-3:]]:
        event = json.loads(line)["event"]
        event.pop("subscores", None)  # long: the full event is one `tail` away
        print("   " + json.dumps(event, ensure_ascii=False))
    print(
        f"   ... {len(lines)} events read back: "
        + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
    )
    status = subprocess.run([*CLI, "status"], env=env, capture_output=True, check=False, cwd=REPO)
    print(status.stdout.decode())


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="learnosity-demo-"))
    stack_dir = work / "stack"
    processes: list[subprocess.Popen[bytes]] = []
    say("1/5 starting a local Kafka broker and schema registry (first run fetches the jars)")
    subprocess.run(
        [sys.executable, "-m", "dev.stack", "up", "--dir", str(stack_dir)], check=True, cwd=REPO
    )
    try:
        stack = load_env(stack_dir)
        say(
            "2/5 starting the Learnosity Data API emulator: 300 sessions, 60 learners, live changes"
        )
        emulator = subprocess.Popen(
            [
                *CLI,
                "emulator",
                "--port",
                "0",
                "--seed",
                "7",
                "--users",
                "60",
                "--sessions",
                "300",
                "--new-sessions-per-second",
                "2",
                "--changes-per-second",
                "15",
            ],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        processes.append(emulator)
        assert emulator.stdout is not None
        first_line = emulator.stdout.readline().decode()
        print("   " + first_line.strip())
        url = first_line.rsplit(" ", 1)[1].strip()

        port = free_port()
        env = {
            **os.environ,
            "LEARNOSITY_BASE_URL": url,
            "LEARNOSITY_CONSUMER_KEY": "demo-consumer",
            "LEARNOSITY_CONSUMER_SECRET": "demo-secret",
            "LEARNOSITY_POLL_INTERVAL_SECONDS": "1",
            "KAFKA_BOOTSTRAP_SERVERS": stack["KAFKA_BOOTSTRAP_SERVERS"],
            "SCHEMA_REGISTRY_URL": stack["SCHEMA_REGISTRY_URL"],
            "CONNECTOR_NAME": "demo",
            "KAFKA_TOPIC": "demo.learnosity.scores",
            "HTTP_PORT": str(port),
            "LOG_FORMAT": "text",
        }
        say("3/5 starting the connector: learnosity-connector run (exactly once, Avro + registry)")
        log_path = work / "connector.log"
        with log_path.open("wb") as log:
            connector = subprocess.Popen(
                [*CLI, "run"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO
            )
        processes.append(connector)
        wait_until(lambda: ready(port) or connector.poll() is not None, 90, "the connector")
        if connector.poll() is not None:
            print(log_path.read_text())
            raise SystemExit("demo: the connector stopped")
        print(f"   ready: state restored, first poll answered (metrics on :{port}/metrics)")

        say(f"4/5 streaming live changes for {STREAM_SECONDS:.0f} s")
        end = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < end:
            time.sleep(3)
            print(
                "   fetched {:>5.0f}  changes emitted {:>5.0f}  repeats dropped {:>5.0f}  "
                "lag {:>5.1f} s".format(
                    metric(port, "learnosity_connector_records_fetched_total"),
                    metric(port, "learnosity_connector_changes_emitted_total"),
                    metric(port, "learnosity_connector_repeats_dropped_total"),
                    metric(port, "learnosity_connector_lag_seconds"),
                ),
                flush=True,
            )

        show_events(env, int(metric(port, "learnosity_connector_changes_emitted_total")))
        return 0
    finally:
        say("stopping the connector, the emulator and the stack")
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        subprocess.run(
            [sys.executable, "-m", "dev.stack", "down", "--dir", str(stack_dir)],
            check=False,
            cwd=REPO,
        )


if __name__ == "__main__":
    sys.exit(main())
