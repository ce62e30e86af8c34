"""The local stack: a Kafka broker and a schema registry, for `make stack-up` and the tests.

    python -m dev.stack up       start both in the background; write .stack/env
    python -m dev.stack down     stop both, remove their data
    python -m dev.stack status   say what runs, and where

`up` returns once both answer real client calls; the JVMs outlive it. What `down` needs to
find them again is in `.stack/state.json` (the folder is `--dir`, else $CONNECTOR_STACK_DIR,
else `.stack` in the repo); `.stack/env` holds KEY=VALUE lines for clients:

    KAFKA_BOOTSTRAP_SERVERS           PLAINTEXT listener, host:port
    KAFKA_SASL_SSL_BOOTSTRAP_SERVERS  SASL_SSL listener (SCRAM over TLS), host:port
    KAFKA_SCRAM_MECHANISM             SCRAM-SHA-512
    KAFKA_SCRAM_USERNAME              SCRAM user created at format time
    KAFKA_SCRAM_PASSWORD              its password (random per `up`)
    KAFKA_CA_FILE                     PEM of the CA that signed the broker certificate
    SCHEMA_REGISTRY_URL               Confluent-compatible API root (.../apis/ccompat/v7)

(The SCRAM and CA names differ from the connector's KAFKA_SASL_* settings on purpose:
sourcing this file must not turn security on against the PLAINTEXT bootstrap address.)
The test fixtures in tests/fixtures/stack.py build their broker and registry with the
`new_broker` and `new_registry` functions below, so both paths run the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dev.errors import StackError
from dev.fetch import apicurio_runner, kafka_libs
from dev.kafka_broker import KafkaBroker
from dev.procs import java_executable, pid_alive, stop
from dev.registry import SchemaRegistry

REPO = Path(__file__).resolve().parent.parent
# CONNECTOR_STACK_DIR lets a second stack (or a test of `make stack-up`) live beside the
# one a developer already runs.
DEFAULT_DIR = Path(os.environ.get("CONNECTOR_STACK_DIR") or REPO / ".stack")

Announce = Callable[[str], None]


def new_broker(
    *, data_root: Path, log_dir: Path, die_with_parent: bool, announce: Announce | None = None
) -> KafkaBroker:
    """A broker (not started) with its data under `data_root`, fetching jars if needed."""
    return KafkaBroker(
        java=java_executable(),
        libs=kafka_libs(announce),
        work_dir=data_root / "kafka",
        log_dir=log_dir,
        die_with_parent=die_with_parent,
    )


def new_registry(
    *, data_root: Path, log_dir: Path, die_with_parent: bool, announce: Announce | None = None
) -> SchemaRegistry:
    """A registry (not started) working under `data_root`, fetching it if needed."""
    return SchemaRegistry(
        java=java_executable(),
        runner_jar=apicurio_runner(announce),
        work_dir=data_root / "registry",
        log_dir=log_dir,
        die_with_parent=die_with_parent,
    )


def stack_env(broker: KafkaBroker, registry: SchemaRegistry) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_SASL_SSL_BOOTSTRAP_SERVERS": broker.sasl_ssl_bootstrap_servers,
        "KAFKA_SCRAM_MECHANISM": broker.scram_mechanism,
        "KAFKA_SCRAM_USERNAME": broker.scram_user,
        "KAFKA_SCRAM_PASSWORD": broker.scram_password,
        "KAFKA_CA_FILE": str(broker.ca_file),
        "SCHEMA_REGISTRY_URL": registry.url,
    }


def load_env(state_dir: Path = DEFAULT_DIR) -> dict[str, str]:
    """The KEY=VALUE pairs of a running stack's `env` file (for the demo and scripts)."""
    path = state_dir / "env"
    if not path.exists():
        raise StackError(f"{path} does not exist; run `make stack-up` first")
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, _, value in pairs}


def up(state_dir: Path) -> None:
    state = _read_state(state_dir)
    if state is not None:
        if all(_ours(pid, state) for pid in _pids(state)):
            print(f"the stack is already up; settings in {state_dir / 'env'}")
            return
        down(state_dir, quiet=True)  # a half-dead stack: clear it, then start afresh
    state_dir.mkdir(parents=True, exist_ok=True)
    log_dir = state_dir / "logs"
    shutil.rmtree(log_dir, ignore_errors=True)
    data_root = Path(tempfile.mkdtemp(prefix="learnosity-stack-"))
    started: list[KafkaBroker | SchemaRegistry] = []  # what to stop if start-up fails
    try:
        broker = new_broker(data_root=data_root, log_dir=log_dir / "kafka", die_with_parent=False)
        registry = new_registry(data_root=data_root, log_dir=log_dir, die_with_parent=False)
        launched = time.monotonic()
        # Both JVMs start together: on two cores that beats starting them in turn.
        for component in (broker, registry):
            started.append(component)
            component.launch()
        _write_state(state_dir, data_root, broker, registry)
        broker.await_ready()
        broker_ready = time.monotonic() - launched
        registry.await_ready()
        registry_ready = time.monotonic() - launched
    except BaseException:
        for component in started:
            component.close()
        shutil.rmtree(data_root, ignore_errors=True)
        (state_dir / "state.json").unlink(missing_ok=True)
        raise
    env = stack_env(broker, registry)
    (state_dir / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    print(f"Kafka broker ready in {broker_ready:.1f} s: {broker.bootstrap_servers} (PLAINTEXT), ")
    print(f"  {broker.sasl_ssl_bootstrap_servers} (SASL_SSL, {broker.scram_mechanism})")
    print(f"schema registry ready in {registry_ready:.1f} s: {registry.url}")
    print(f"settings in {state_dir / 'env'}; logs in {log_dir}; stop with `make stack-down`")


def down(state_dir: Path, *, quiet: bool = False) -> None:
    state = _read_state(state_dir)
    if state is None:
        if not quiet:
            print("the stack is not running")
        return
    for pid in _pids(state):
        if _ours(pid, state):
            stop(pid)
    shutil.rmtree(state["data_root"], ignore_errors=True)
    (state_dir / "env").unlink(missing_ok=True)
    (state_dir / "state.json").unlink()
    if not quiet:
        print(f"the stack is stopped; its data is removed (logs stay in {state_dir / 'logs'})")


def status(state_dir: Path) -> int:
    state = _read_state(state_dir)
    if state is None:
        print("the stack is not running")
        return 1
    for name in ("broker", "registry"):
        pid = state[name]["pid"]
        print(f"{name}: pid {pid} {'running' if _ours(pid, state) else 'NOT RUNNING'}")
    env = state_dir / "env"
    if env.exists():
        print(env.read_text(), end="")
    return 0 if all(_ours(pid, state) for pid in _pids(state)) else 1


def _write_state(
    state_dir: Path, data_root: Path, broker: KafkaBroker, registry: SchemaRegistry
) -> None:
    state = {
        "data_root": str(data_root),
        "broker": {"pid": broker.pid, "ports": list(vars(broker.ports).values())},
        "registry": {"pid": registry.pid, "port": registry.port},
    }
    (state_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    state: dict[str, Any] = json.loads(path.read_text())
    return state


def _pids(state: dict[str, Any]) -> list[int]:
    return [int(state[name]["pid"]) for name in ("broker", "registry")]


def _ours(pid: int, state: dict[str, Any]) -> bool:
    """Whether `pid` is alive and still one of our JVMs (its working folder is in our data).

    Guards `down` against a stale state file whose pid now belongs to something else.
    """
    if not pid_alive(pid):
        return False
    try:
        cwd = str(Path(f"/proc/{pid}/cwd").readlink())
    except OSError:
        return False
    return cwd.startswith(str(state["data_root"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev.stack", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--dir",
        type=Path,
        default=DEFAULT_DIR,
        help="state folder (default: $CONNECTOR_STACK_DIR, else .stack in the repo)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.dir)
        elif args.command == "down":
            down(args.dir)
        else:
            return status(args.dir)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
