"""The image's install path, without a container engine.

It repeats the Dockerfile's steps on this machine: take the build context as
.dockerignore filters it, download every runtime dependency from PyPI as the lock pins it
(``--require-hashes``, wheels only), install the build backend from its lock the same way
and build the project's wheel without build isolation, make a fresh virtual environment
without pip, install the lock into it offline (hashes checked again), then the project's
wheel with ``--no-deps`` and the version pin the Dockerfile uses, ``pip check`` it, and
run the console script.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from connector import __version__
from connector.cli import COMMANDS
from connector.emulator import Emulator
from dev.kafka_broker import KafkaBroker
from dev.registry import SchemaRegistry
from tests.fixtures.locks import runtime_pins
from tests.fixtures.tools import DOCKERFILE, REPO, copy_docker_context, parse_dockerfile

DISTRIBUTION = "learnosity-kafka-connector"
#: pip resolves and downloads the dependencies' wheels on a cold cache
BUILD_TIMEOUT_SECONDS = 600

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_SECONDS + 120)


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh virtual environment holding the installed image contents."""
    root = tmp_path_factory.mktemp("image")
    context = copy_docker_context(root / "context")
    wheels = root / "wheels"
    # pip's download cache is kept (the Dockerfile's --no-cache-dir is left out) so repeated
    # runs do not fetch the dependencies again; the hashes are checked all the same
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    binary = ["--require-hashes", "--only-binary=:all:"]
    # build stage: the runtime dependencies as wheels, from the lock
    download = ["download", "--quiet", *binary, "--no-deps", "--dest", str(wheels)]
    run([*pip, *download, "-r", "requirements.lock"], cwd=context)
    # the build backend from its lock (the image's system Python; a venv of its own here)
    builder = root / "build-venv"
    run([sys.executable, "-m", "venv", str(builder)], cwd=root)
    build_pip = [str(builder / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    run([*build_pip, "install", "--quiet", *binary, "-r", "requirements-build.lock"], cwd=context)
    wheel = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(wheels)]
    run([*build_pip, *wheel, "."], cwd=context)
    # runtime stage: a venv without pip, the lock installed offline, then the project
    venv = root / "opt-venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    target = [*pip, "--python", str(venv / "bin" / "python")]
    offline = ["install", "--quiet", "--no-index", "--find-links", str(wheels)]
    run([*target, *offline, "--require-hashes", "-r", str(context / "requirements.lock")], cwd=root)
    pin = f"{DISTRIBUTION}=={dockerfile_version()}"
    run([*target, *offline, "--no-deps", pin], cwd=root)
    run([*target, "check"], cwd=root)
    return venv


def dockerfile_version() -> str:
    instructions = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    (version,) = [i.args.split("=", 1)[1] for i in instructions if i.args.startswith("VERSION=")]
    return version


def image_env(venv: Path, home: Path) -> dict[str, str]:
    """The image's environment (its ENV lines), not this test run's."""
    return {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "PYTHONUNBUFFERED": "1",
    }


def tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_console_script_lists_every_command(installed: Path, tmp_path: Path) -> None:
    script = str(installed / "bin" / "learnosity-connector")
    env = image_env(installed, tmp_path)
    before = tree(installed)
    output = run([script, "--help"], cwd=tmp_path, env=env)
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s", output, re.M), f"{command} missing:\n{output}"
    assert run([script, "--version"], cwd=tmp_path, env=env).split() == [
        "learnosity-connector",
        __version__,
    ]
    # Each command's module is imported only when chosen: its --help proves the module
    # and its dependencies are in the wheel. A command whose module is not in the source
    # tree yet is someone's work in progress, not a packaging fault.
    for command, (module, _) in COMMANDS.items():
        source = REPO / (module.replace(".", "/") + ".py")
        if source.exists():
            assert "usage:" in run([script, command, "--help"], cwd=tmp_path, env=env)
    # Bytecode was compiled at install: running wrote nothing (a read-only root is fine).
    assert tree(installed) == before


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    python = str(installed / "bin" / "python")
    code = "import connector, pathlib; print(pathlib.Path(connector.__file__).resolve())"
    location = Path(run([python, "-c", code], cwd=tmp_path, env=image_env(installed, tmp_path)))
    assert installed.resolve() in Path(location.as_posix().strip()).parents
    assert not (installed / "bin" / "pip").exists(), "the runtime venv has no pip"


def test_the_image_holds_exactly_the_locked_distributions(installed: Path, tmp_path: Path) -> None:
    """Nothing but the lock and the project: no dependency came from anywhere else."""
    python = str(installed / "bin" / "python")
    code = (
        "import importlib.metadata as m\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)"
    )
    output = run([python, "-c", code], cwd=tmp_path, env=image_env(installed, tmp_path))
    held = {canonicalize_name(n): v for n, v in (line.split() for line in output.splitlines())}
    locked = {name: str(pin.version) for name, pin in runtime_pins().items()}
    assert held == {**locked, canonicalize_name(DISTRIBUTION): __version__}


def test_the_wheel_carries_the_package_data_and_nothing_else(installed: Path) -> None:
    wheels = list((installed.parent / "wheels").glob("learnosity_kafka_connector-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"connector", f"learnosity_kafka_connector-{__version__}.dist-info"}, top
    assert "connector/py.typed" in names
    schemas = [
        path.relative_to(REPO).as_posix() for path in (REPO / "connector" / "avro").glob("*.avsc")
    ]
    assert set(schemas) <= set(names), "Avro schemas missing from the wheel"
    assert wheels[0].name.endswith("-py3-none-any.whl")


def test_the_installed_check_reaches_learnosity_kafka_and_the_registry(
    installed: Path,
    tmp_path: Path,
    kafka_broker: KafkaBroker,
    schema_registry: SchemaRegistry,
    emulator_factory: Callable[..., Emulator],
) -> None:
    emulator = emulator_factory(sessions=5)
    env = {
        **image_env(installed, tmp_path),
        **emulator.env(),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap_servers,
        "SCHEMA_REGISTRY_URL": schema_registry.url,
        "CONNECTOR_NAME": "install-check",
    }
    script = str(installed / "bin" / "learnosity-connector")
    output = run([script, "check"], cwd=tmp_path, env=env)
    lines = output.splitlines()
    assert [line.split()[0] for line in lines] == ["OK"] * 4, output
    assert emulator.consumer_secret not in output
