#!/usr/bin/env bash
# Regenerates the image's lock files from pyproject.toml with pip-tools (pinned, in a
# throwaway virtual environment), with every file's sha256 from PyPI:
#
#   requirements.lock        [project].dependencies and all they pull in (the runtime)
#   requirements-build.lock  [build-system].requires (the backend the wheel is built with)
#
# The Dockerfile installs them with `pip install --require-hashes`. Run this after changing
# a dependency in pyproject.toml, then `pip install -e '.[dev]'` so the project's .venv
# holds the same versions: tests/unit/test_lock.py fails until the three agree. Resolved
# for CPython 3.11 on Linux, the image's interpreter (run it with a 3.11 python3).
# pip-compile keeps the pins a file already has: delete the files first to move every pin
# to the newest release pyproject.toml allows.
set -euo pipefail

PIP_TOOLS_VERSION=7.6.2
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), "the image runs Python 3.11"'

venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "pip-tools==$PIP_TOOLS_VERSION"

# no machine-specific index or find-links in the files; hashes of every file on PyPI
common=(--quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url
    --no-emit-find-links)
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
    "$venv/bin/pip-compile" "${common[@]}" --output-file requirements.lock pyproject.toml
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
    "$venv/bin/pip-compile" "${common[@]}" --only-build-deps --build-deps-for wheel \
    --output-file requirements-build.lock pyproject.toml
echo "tools/lock.sh: wrote requirements.lock and requirements-build.lock" >&2
