"""Apicurio Registry on 127.0.0.1, in-memory storage, serving the Confluent-compatible API.

Clients (confluent-kafka's SchemaRegistryClient, Java serdes, ksqlDB, Flink) use `url`, the
`/apis/ccompat/v7` root; the registry's own API and UI share the port. Storage is the
default H2 in-memory database, so every start is empty and a stop loses nothing of value.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from dev.errors import StackError
from dev.procs import free_ports, port_open, spawn, stop, tails, wait_until

JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx384m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
)

CCOMPAT_PATH = "/apis/ccompat/v7"


class SchemaRegistry:
    """One registry process: `start`, `stop`, `close`; `url` is the ccompat API root."""

    def __init__(
        self,
        *,
        java: str,
        runner_jar: Path,
        work_dir: Path,
        log_dir: Path,
        die_with_parent: bool,
    ) -> None:
        self.java = java
        self.runner_jar = runner_jar
        self.work_dir = work_dir
        self.log_dir = log_dir
        self.die_with_parent = die_with_parent
        (self.port,) = free_ports(1)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API root: SchemaRegistryClient's `url`."""
        return self.base_url + CCOMPAT_PATH

    @property
    def log_file(self) -> Path:
        return self.log_dir / "registry.log"

    def log_tail(self, lines: int = 60) -> str:
        return tails([self.log_file], lines)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 90.0) -> float:
        self.launch()
        return self.await_ready(timeout)

    def launch(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            raise StackError(f"the registry is already running (pid {self._proc.pid})")
        if port_open(self.port):
            raise StackError(f"port {self.port} of the registry is taken by another process")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._proc = spawn(
            [
                self.java,
                *JVM_OPTIONS,
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={self.port}",
                # One line per request would bury the start-up errors a test needs to see.
                "-Dquarkus.http.access-log.enabled=false",
                # Let tests and the demo delete what they registered (off by default).
                "-Dapicurio.rest.deletion.group.enabled=true",
                "-Dapicurio.rest.deletion.artifact.enabled=true",
                "-Dapicurio.rest.deletion.artifact-version.enabled=true",
                "-jar",
                str(self.runner_jar),
            ],
            cwd=self.work_dir,
            log_file=self.log_file,
            die_with_parent=self.die_with_parent,
        )

    def await_ready(self, timeout: float = 90.0) -> float:
        """Wait until the ccompat API lists subjects (storage initialised, routes up)."""
        proc = self._proc
        if proc is None:
            raise StackError("the registry was not launched")
        return wait_until(
            self._answers,
            what=f"schema registry (pid {proc.pid})",
            timeout=timeout,
            alive=lambda: proc.poll() is None,
            logs=[self.log_file],
        )

    def stop(self, timeout: float = 30.0) -> None:
        if self._proc is not None:
            stop(self._proc.pid, proc=self._proc, timeout=timeout)
            self._proc = None

    def close(self) -> None:
        """Stop and remove the working folder (idempotent; safe from atexit)."""
        self.stop()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def _answers(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            # A fixed http://127.0.0.1 URL: the S310 scheme audit does not apply.
            with urllib.request.urlopen(self.url + "/subjects", timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
