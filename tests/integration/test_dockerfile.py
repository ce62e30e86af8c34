"""The Dockerfile and .dockerignore, checked without a container engine.

hadolint and checkov lint it as they would in any pipeline (no finding of any level from
hadolint; no checkov failure without a waiver); the rest are the promises the chart
relies on: a numeric non-root user equal to the chart's runAsUser, exec-form entrypoint,
nothing but /tmp written, no build tools or secrets in the final stage; and a build that
resolves nothing: the base by digest, every package from a lock with hashes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from connector import __version__
from tests.fixtures.tools import (
    DOCKERFILE,
    REPO,
    Instruction,
    Tools,
    docker_context_files,
    load_waivers,
    parse_dockerfile,
    run_checkov,
)

# the first use of the tools may build Helm from source (a few minutes, cold)
pytestmark = pytest.mark.timeout(900)

BASE_IMAGE = "python:3.11-slim"
PINNED = re.compile(re.escape(BASE_IMAGE) + r"@(sha256:[0-9a-f]{64})")
OCI_LABELS = {"title", "description", "version", "revision", "created", "licenses"}


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last = max(i.stage for i in instructions)
    return [i for i in instructions if i.stage == last]


def hadolint(tools: Tools, path: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [str(tools.hadolint), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip(), f"hadolint printed nothing (exit {done.returncode}): {done.stderr}"
    findings: list[dict[str, object]] = json.loads(done.stdout)
    return findings


def test_hadolint_has_no_finding_at_any_level(deploy_tools: Tools) -> None:
    findings = hadolint(deploy_tools, DOCKERFILE)
    assert findings == [], "\n".join(
        f"{f['code']} line {f['line']}: {f['message']}" for f in findings
    )


def test_hadolint_does_report_a_bad_dockerfile(deploy_tools: Tools, tmp_path: Path) -> None:
    """The control for the test above: hadolint is really linting."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    codes = {f["code"] for f in hadolint(deploy_tools, bad)}
    assert {"DL3007", "DL3013"} <= codes, codes


def test_checkov_finds_nothing_that_is_not_waived(deploy_tools: Tools, tmp_path: Path) -> None:
    shutil.copy(DOCKERFILE, tmp_path / "Dockerfile")
    failures = run_checkov(deploy_tools, tmp_path, ["dockerfile"])
    waivers = {k: w for k, w in load_waivers().items() if "dockerfile" in w.frameworks}
    unwaived = [f"{f.check_id} {f.name}" for f in failures if f.check_id not in waivers]
    assert not unwaived, "checkov failures without a waiver in tools/checkov-waivers.yaml:\n" + (
        "\n".join(unwaived)
    )
    stale = set(waivers) - {f.check_id for f in failures}
    assert not stale, f"waivers that no longer fail, remove them: {sorted(stale)}"


def test_multi_stage_on_one_slim_base_pinned_by_digest(instructions: list[Instruction]) -> None:
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) >= 2, "build and runtime stages"
    digests = set()
    for base in bases:
        match = PINNED.fullmatch(base)
        assert match, f"FROM {base}: not {BASE_IMAGE}@sha256:<digest>"
        digests.add(match.group(1))
    assert len(digests) == 1, f"the stages use different bases: {digests}"
    # the image says what it is built on (OCI base.* labels), the same digest
    labels = " ".join(i.args for i in final_stage(instructions) if i.keyword == "LABEL")
    assert f'org.opencontainers.image.base.name="docker.io/library/{BASE_IMAGE}"' in labels
    assert f'org.opencontainers.image.base.digest="{digests.pop()}"' in labels
    # and a comment names the tag and where the digest was read
    comments = " ".join(
        line.lstrip("# ") for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    )  # fmt: skip
    assert f"Tag: {BASE_IMAGE}" in comments and "repo-info" in comments


def pip_commands(instructions: list[Instruction]) -> list[tuple[int, str]]:
    """(stage, command) of every ``pip install|download|wheel`` the build runs."""
    commands = []
    for i in instructions:
        if i.keyword != "RUN":
            continue
        for part in i.args.split("&&"):
            words = part.split()
            verbs = [w for w in words if w in ("install", "download", "wheel", "uninstall")]
            if "pip" in words and verbs and verbs[0] != "uninstall":
                commands.append((i.stage, " ".join(words)))
    return commands


def test_every_package_comes_from_a_lock_with_hashes(instructions: list[Instruction]) -> None:
    commands = pip_commands(instructions)
    build, runtime = 0, max(i.stage for i in instructions)
    locked = [(stage, command) for stage, command in commands if "--require-hashes" in command]
    # build: the runtime dependencies downloaded and the build backend installed, both
    # hash-checked and binary only; runtime: installed from the lock, offline
    assert any(s == build and " download " in c and "-r requirements.lock" in c for s, c in locked)
    assert any(s == build and "-r requirements-build.lock" in c for s, c in locked)
    assert any(
        s == runtime and "-r /requirements.lock" in c and "--no-index" in c for s, c in locked
    )
    assert all("--only-binary=:all:" in c for s, c in locked if s == build), locked
    # what is not hash-checked is the project's own wheel, and it brings nothing along
    for _, command in commands:
        if "--require-hashes" in command:
            continue
        assert "--no-deps" in command, f"installs dependencies without hashes: {command}"
        if " wheel " in f" {command} ":
            assert "--no-build-isolation" in command, "build isolation fetches setuptools"
        else:
            assert "--no-index" in command and "learnosity-kafka-connector==" in command
    runtime_runs = " ".join(
        i.args for i in instructions if i.stage == runtime and i.keyword == "RUN"
    )
    assert "pip --python /opt/venv/bin/python check" in runtime_runs, "the set is checked complete"


def test_the_check_of_pip_commands_sees_an_unlocked_install() -> None:
    """The control for the test above."""
    unlocked = parse_dockerfile("FROM x AS build\nRUN pip install requests && pip download y\n")
    assert [c for _, c in pip_commands(unlocked)] == ["pip install requests", "pip download y"]


def test_final_stage_runs_as_the_charts_numeric_non_root_user(
    instructions: list[Instruction],
) -> None:
    users = [i.args for i in final_stage(instructions) if i.keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    # numeric, or the kubelet cannot verify runAsNonRoot
    assert uid.isdigit() and gid.isdigit() and int(uid) >= 10000, users[-1]
    values = yaml.safe_load(
        (REPO / "helm" / "learnosity-connector" / "values.yaml").read_text(encoding="utf-8")
    )
    for context in (values["podSecurityContext"], values["securityContext"]):
        assert context["runAsUser"] == int(uid) and context["runAsGroup"] == int(gid)


def test_exec_form_entrypoint_runs_the_connector(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    (entrypoint,) = [i.args for i in stage if i.keyword == "ENTRYPOINT"]
    (cmd,) = [i.args for i in stage if i.keyword == "CMD"]
    # JSON arrays: no shell in between, so SIGTERM reaches the connector as PID 1
    assert json.loads(entrypoint)[0].endswith("/learnosity-connector")
    assert json.loads(cmd) == ["run"]
    (healthcheck,) = [i.args for i in stage if i.keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck and "CMD [" in healthcheck


def test_oci_labels_and_version(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    labels = " ".join(i.args for i in stage if i.keyword == "LABEL")
    present = set(re.findall(r"org\.opencontainers\.image\.([a-z.]+)=", labels))
    assert present >= OCI_LABELS, OCI_LABELS - present
    args = dict(i.args.partition("=")[::2] for i in stage if i.keyword == "ARG")
    assert args["VERSION"] == __version__, "Dockerfile ARG VERSION must follow the package"


def test_final_stage_has_no_build_tools_or_secrets(instructions: list[Instruction]) -> None:
    stage = final_stage(instructions)
    text = " ".join(f"{i.keyword} {i.args}" for i in stage)
    for tool in ("gcc", "build-essential", "apt-get install", "git ", "curl", "wget"):
        assert tool not in text, f"final stage mentions {tool!r}"
    assert "uninstall --yes pip setuptools wheel" in text, "pip and friends are removed"
    assert "--mount=type=bind,from=build" in text, "wheels are mounted, never copied in"
    assert "source=/src/requirements.lock" in text, "the lock too"
    assert not [i for i in stage if i.keyword in ("COPY", "ADD")], "nothing copied into runtime"
    for i in stage:
        if i.keyword in ("ARG", "ENV"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", i.args) or [i.args.split("=")[0]]
            for name in names:
                assert not re.search(r"SECRET|PASSWORD|TOKEN|KEY", name, re.I), name
    env = " ".join(i.args for i in stage if i.keyword == "ENV")
    assert "TMPDIR=/tmp" in env and "HOME=/tmp" in env, "writes go to the mounted /tmp"


def test_dockerignore_sends_only_what_the_build_copies(instructions: list[Instruction]) -> None:
    files = docker_context_files()
    sources = []
    for i in instructions:
        if i.keyword == "COPY" and "--from" not in i.args:
            sources += [s.rstrip("/") for s in i.args.split()[:-1] if not s.startswith("--")]
    for source in sources:
        assert any(f == source or f.startswith(source + "/") for f in files), (
            f"COPY {source}: not in the build context (.dockerignore excludes it)"
        )
    for path in files:
        top = path.split("/")[0]
        assert top in sources, f"{path} is sent to the build but never used"
        assert "__pycache__" not in path and not path.endswith(".pyc")
    assert not any(f.startswith((".env", ".venv/", ".git/", "tests/")) for f in files)
