"""The Dockerfile and .dockerignore, checked without a container engine.

hadolint and checkov lint it as they would in any pipeline (no finding of any level from
hadolint; no checkov failure without a waiver); the rest are the promises the chart
relies on: a numeric non-root user equal to the chart's runAsUser, exec-form entrypoint,
nothing but /tmp written, no build tools or secrets in the final stage.
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


def test_multi_stage_with_a_pinned_slim_base(instructions: list[Instruction]) -> None:
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert len(bases) >= 2, "build and runtime stages"
    assert all(base == BASE_IMAGE for base in bases), bases


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
