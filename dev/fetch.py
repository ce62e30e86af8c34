"""Fetches the broker's classpath and the registry from Maven Central, once, into a cache.

The cache lives outside the repository (a fresh clone on the same machine reuses it):
`$CONNECTOR_DEV_CACHE`, else `${XDG_CACHE_HOME:-~/.cache}/learnosity-connector`. Each
entry's folder name carries its version and, for Kafka, a hash of `dev/kafka/pom.xml`, so
changing a pin fetches anew instead of reusing a stale classpath. Entries are fetched into
a temporary folder beside their final place and renamed into it when complete, so a fetch
that was killed half-way is never mistaken for a finished one; a file lock keeps two
processes (a test session and `make stack-up`) from fetching the same thing twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from dev.errors import StackError
from dev.procs import require_tool

POM = Path(__file__).parent / "kafka" / "pom.xml"

# Apicurio Registry 3.0.x is the newest 3.x line whose classes run on Java 17 (3.3.x is
# compiled for Java 21). Its `all` tar.gz is a Quarkus "legacy jar": a runner jar + lib/.
APICURIO_VERSION = "3.0.9"
APICURIO_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"

# Pinned plugin versions: Maven's default for the `dependency:` prefix varies by install.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# The registry's parent pom is not on Central, and plugins from 3.x on refuse an artifact
# whose descriptor they cannot read; 2.10's `copy` fetches the file alone, and the
# archive's digest is checked below instead.
COPY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:2.10"
APICURIO_SHA256 = "2b28181501a20cbf6efcd77f9b7153908fc01f3d3a7c32024c0bd9e1b04c8a43"

MVN_HINT = "install Apache Maven (e.g. apt-get install maven); it fetches the jars once"


def cache_root() -> Path:
    override = os.environ.get("CONNECTOR_DEV_CACHE")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "learnosity-connector"


def kafka_version() -> str:
    """The Kafka version pinned in the pom (the pom is the one place it is written)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if match is None:
        raise StackError(f"{POM} has no <kafka.version> property")
    return match.group(1).strip()


def kafka_libs(announce: Callable[[str], None] | None = None) -> Path:
    """The folder of the broker's jars (`java -cp '<it>/*'`), fetched on first use."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:10]
    entry = cache_root() / f"kafka-{kafka_version()}-{digest}"

    def fetch(tmp: Path) -> None:
        _mvn(
            "-f",
            str(POM),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            f"-DoutputDirectory={tmp / 'libs'}",
            "-DincludeScope=runtime",
        )

    _ensure(entry, fetch, f"Kafka {kafka_version()} broker classpath", announce)
    return entry / "libs"


def apicurio_runner(announce: Callable[[str], None] | None = None) -> Path:
    """The registry's Quarkus runner jar (`java -jar <it>`; lib/ beside it), fetched once."""
    entry = cache_root() / f"apicurio-{APICURIO_VERSION}"

    def fetch(tmp: Path) -> None:
        download = tmp / "download"
        _mvn(
            f"{COPY_PLUGIN}:copy",
            f"-Dartifact={APICURIO_ARTIFACT}",
            f"-DoutputDirectory={download}",
        )
        (archive,) = download.glob("*.tar.gz")
        digest = _sha256(archive)
        if digest != APICURIO_SHA256:
            raise StackError(f"{archive.name} has sha256 {digest}, expected {APICURIO_SHA256}")
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        shutil.rmtree(download)

    _ensure(entry, fetch, f"Apicurio Registry {APICURIO_VERSION}", announce)
    return entry / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"


def _ensure(
    entry: Path,
    fetch: Callable[[Path], None],
    what: str,
    announce: Callable[[str], None] | None,
) -> None:
    if entry.is_dir():
        return
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _locked(entry.parent / f".{entry.name}.lock"):
        if entry.is_dir():  # another process fetched it while we waited for the lock
            return
        started = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.partial-", dir=entry.parent))
        try:
            fetch(tmp)
            tmp.rename(entry)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        message = f"fetched {what} into {entry} in {time.monotonic() - started:.1f} s (cold cache)"
        (announce or _print_stderr)(message)


def _mvn(*args: str) -> None:
    mvn = require_tool("mvn", MVN_HINT)
    # -q keeps a warm run silent; -B avoids progress bars in CI logs; -C fails on a
    # checksum mismatch instead of warning.
    result = subprocess.run(
        [mvn, "-q", "-B", "-C", *args], capture_output=True, text=True, timeout=1200, check=False
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise StackError(f"`mvn {' '.join(args)}` failed (exit {result.returncode}):\n{output}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _print_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
