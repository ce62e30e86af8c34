"""Process plumbing shared by the broker and the registry: tools, ports, spawn, stop, waits.

Every JVM runs in its own session (process group), so stopping it stops whatever it
started, and a Ctrl-C in the terminal reaches only the Python process, whose cleanup then
stops the JVMs in order.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from dev.errors import StackError

# How often a readiness or shutdown condition is polled: short enough not to add visible
# latency, long enough not to busy-spin a 2-core machine that is starting two JVMs.
POLL_SECONDS = 0.1


def require_tool(name: str, hint: str) -> str:
    """The absolute path of an executable on PATH, or a StackError that says how to get it."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` was not found on PATH; {hint}")
    return path


@functools.cache  # one `java -version` per process, not one per component
def java_executable() -> str:
    """`$JAVA_HOME/bin/java` when JAVA_HOME is set, else `java` from PATH; must be Java 17+."""
    java_home = os.environ.get("JAVA_HOME")
    java = (
        str(Path(java_home) / "bin" / "java")
        if java_home
        else require_tool(
            "java", "install a Java 17+ runtime (e.g. apt-get install openjdk-17-jre)"
        )
    )
    try:
        out = subprocess.run(
            [java, "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise StackError(f"{java} does not run: {exc}") from exc
    for line in out.splitlines():
        key, _, value = line.strip().partition(" = ")
        if key == "java.specification.version":
            major = int(value.split(".")[0])
            if major < 17:
                raise StackError(f"{java} is Java {value}; Kafka 4 needs Java 17 or newer")
            return java
    raise StackError(f"could not read the Java version of {java}:\n{out}")


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now (all held open until all are chosen)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spawn(
    argv: Sequence[str], *, cwd: Path, log_file: Path, die_with_parent: bool
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session with stdout and stderr appended to `log_file`.

    `die_with_parent` asks the kernel to SIGTERM the process when its parent dies, so a
    test session killed with SIGKILL (where no atexit handler runs) leaves no JVM behind.
    `make stack-up` passes False: there the JVMs must outlive the command that started them.
    """
    command = list(argv)
    setpriv = shutil.which("setpriv")
    if die_with_parent and setpriv is not None:
        command = [setpriv, "--pdeathsig", "TERM", "--", *command]
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def pid_alive(pid: int) -> bool:
    """Whether `pid` names a live process (a zombie waiting to be reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state letter follows the parenthesised command name, which may contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"


def stop(pid: int, *, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> None:
    """SIGTERM the process group of `pid`, wait up to `timeout` s, then SIGKILL it.

    `proc`, when this process started it, is reaped so no zombie stays behind.
    """

    def gone() -> bool:
        if proc is not None:
            return proc.poll() is not None
        return not pid_alive(pid)

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if gone():
            break
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while not gone() and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
    if proc is not None:
        proc.wait(timeout=10)
        return
    # Not our child: init reaps it. Give it a moment, so `ps` right after `make stack-down`
    # shows no zombie (bounded; a slow reaper is not an error).
    deadline = time.monotonic() + 5.0
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    alive: Callable[[], bool],
    logs: Sequence[Path],
) -> float:
    """Poll `ready` until it is true; return the seconds it took.

    Fails fast, with the log tail, when the process dies (`alive` false) or the deadline
    passes, so a broken start is a clear error within seconds, not a hang.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if ready():
            return time.monotonic() - start
        if not alive():
            raise StackError(f"{what} exited before it was ready.\n{tails(logs)}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} was not ready after {timeout:.0f} s.\n{tails(logs)}")
        time.sleep(POLL_SECONDS)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ('' when it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def tails(paths: Sequence[Path], lines: int = 40) -> str:
    """The tails of the non-empty files among `paths`, each under a header naming it."""
    parts = []
    for path in paths:
        text = tail(path, lines)
        if text:
            parts.append(f"--- {path} (last {lines} lines)\n{text}")
    return "\n".join(parts) or f"(no log output in {', '.join(map(str, paths))})"
