"""The image's lock files agree with pyproject.toml and with the environment tests run in.

``requirements.lock`` pins every runtime dependency and everything it pulls in, each with
the sha256 of its files on PyPI; the Dockerfile installs it with ``--require-hashes``.
``requirements-build.lock`` does the same for the build backend of the project's wheel.
Checked here, offline: every line is a pin with hashes; every dependency of
pyproject.toml is pinned within its range; the lock holds exactly the transitive closure
of those dependencies (read from the installed distributions' metadata, evaluated for this
interpreter, which is the image's CPython 3.11 on Linux), each pin within every range that
asks for it; and the project's .venv has exactly the locked versions, so the tests run
against what the image ships. ``tests/integration/test_install.py`` installs both locks
from PyPI with ``--require-hashes``, as the image build does.
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from tests.fixtures.locks import BUILD_LOCK, REPO, RUNTIME_LOCK, parse_lock, runtime_pins

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SYNC = "run tools/lock.sh, then .venv/bin/python -m pip install -r requirements.lock"


def installed_version(name: str) -> Version | None:
    try:
        return Version(distribution(name).version)
    except PackageNotFoundError:
        return None


def closure(roots: list[Requirement]) -> dict[NormalizedName, list[Requirement]]:
    """Every distribution the roots need here, with each requirement that asks for it, from
    the installed distributions' metadata (this interpreter's markers)."""
    wanted: dict[NormalizedName, list[Requirement]] = {}
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    queue = [root for root in roots if root.marker is None or root.marker.evaluate()]
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        wanted.setdefault(name, []).append(requirement)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        requires = distribution(name).requires or []
        for text in requires:
            needed = Requirement(text)
            extras = sorted(requirement.extras) or [""]
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in extras
            ):
                queue.append(needed)
    return wanted


def test_every_line_is_a_pin_with_hashes() -> None:
    for path in (RUNTIME_LOCK, BUILD_LOCK):
        text = path.read_text(encoding="utf-8")
        pins = parse_lock(text)
        assert pins, f"{path.name} pins nothing"
        for pin in pins.values():
            assert pin.hashes, f"{path.name}: {pin.name} has no hash"
        # nothing that points pip somewhere else than PyPI, or at this machine
        for option in ("--index-url", "--extra-index-url", "--find-links", "-e ", "file:"):
            assert not re.search(rf"^\s*{re.escape(option)}", text, re.M), (path.name, option)


def test_the_parser_refuses_what_is_not_a_hashed_pin() -> None:
    """The control for the test above."""
    hashed = "a==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n    # via b\n"
    assert parse_lock(hashed)[canonicalize_name("a")].hashes == ("0" * 64,)
    for bad in ("a==1.0\n", "a>=1.0 --hash=sha256:" + "0" * 64 + "\n", "--find-links /x\n"):
        with pytest.raises(AssertionError):
            parse_lock(bad)


def test_pyproject_dependencies_are_pinned_within_their_ranges() -> None:
    pins = runtime_pins()
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin, f"{requirement.name} is not in requirements.lock: {SYNC}"
        assert requirement.specifier.contains(pin.version, prereleases=True), (
            f"requirements.lock pins {pin.name}=={pin.version}, outside {requirement}: {SYNC}"
        )


def test_the_venv_has_exactly_the_locked_versions() -> None:
    """The tests run against what the image ships (and the closure below reads the
    metadata of exactly these versions)."""
    assert sys.version_info[:2] == (3, 11), "the lock is resolved for the image's Python 3.11"
    drift = {
        pin.name: (str(pin.version), str(installed_version(pin.name)))
        for pin in runtime_pins().values()
        if installed_version(pin.name) != pin.version
    }
    assert not drift, f"locked vs installed in .venv: {drift}; {SYNC}"


def test_the_lock_is_the_transitive_closure_of_the_dependencies() -> None:
    pins = runtime_pins()
    roots = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    wanted = closure(roots)
    missing = sorted(set(wanted) - set(pins))
    assert not missing, f"needed but not locked: {missing}; {SYNC}"
    stale = sorted(set(pins) - set(wanted))
    assert not stale, f"locked but needed by nothing: {stale}; {SYNC}"
    for name, requirements in wanted.items():
        for requirement in requirements:
            assert requirement.specifier.contains(pins[name].version, prereleases=True), (
                f"{name}=={pins[name].version} is outside {requirement}: {SYNC}"
            )


def test_the_build_lock_pins_the_build_backend() -> None:
    pins = parse_lock(BUILD_LOCK.read_text(encoding="utf-8"))
    for text in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(text)
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin, f"{requirement.name} is not in requirements-build.lock: run tools/lock.sh"
        assert requirement.specifier.contains(pin.version), f"{pin.name}=={pin.version}"
