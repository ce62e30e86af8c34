"""The Helm chart, checked by the ecosystem's own tools and against the connector itself.

Every scenario (each ``ci/*-values.yaml``; the chart's defaults alone lack the required
values, and fail) is rendered with ``helm template`` by Helm 3 and by Helm 4, which must
agree; the rendered manifests then go through ``helm lint --strict`` (both Helms),
kubernetes-validate in strict mode, checkov (no failure without a written waiver), and
checks that tie the chart to the code: every env var it sets is a setting the
connector knows, and the rendered configuration loads with the connector's own loader.

ServiceMonitor and PrometheusRule are custom resources: kubernetes-validate has no
schema for them (it only warns "couldn't find schema"), so their structure is checked
here against the prometheus-operator v1 API's field names instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from connector import __version__
from connector.errors import ConfigError
from connector.observability.metrics import Metrics
from connector.settings import LIBRDKAFKA_PREFIX, Settings, librdkafka_from_env, load_settings
from tests.fixtures.tools import REPO, Tools, load_waivers, run_checkov

# the first use of the tools may build Helm from source (a few minutes, cold)
pytestmark = pytest.mark.timeout(900)

CHART = REPO / "helm" / "learnosity-connector"
#: the required values and nothing else: the base of every ad-hoc render below
MINIMAL = CHART / "ci" / "minimal-values.yaml"
RELEASE = "lc"
NAMESPACE = "streaming"
#: the chart's kubeVersion floor and the newest schemas kubernetes-validate ships
KUBE_VERSIONS = ("1.25.0", "1.37.0")
#: Helm 3 (bin/helm) and Helm 4 (bin/helm4), both installed by tools/install.sh
HELMS = ("helm", "helm4")
REQUIRED_SCENARIOS = {
    "minimal-values",
    "existing-secret-values",
    "sasl-tls-values",
    "monitoring-values",
    "networkpolicy-values",
    "extend-values",
}
SECRET_SETTINGS = {
    "LEARNOSITY_CONSUMER_SECRET",
    "KAFKA_SASL_PASSWORD",
    "SCHEMA_REGISTRY_PASSWORD",
    "SCHEMA_REGISTRY_BEARER_TOKEN",
}
KNOWN_ENV = {name.upper() for name in Settings.model_fields} | {"CONNECTOR_SECRETS_DIR"}
MONITORING_GROUP = "monitoring.coreos.com/v1"
#: prometheus-operator's duration pattern (the CRDs' ``Duration`` type)
DURATION = re.compile(r"^(0|(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?)$")


def is_known_env(name: str) -> bool:
    return name in KNOWN_ENV or (
        name.startswith(LIBRDKAFKA_PREFIX) and len(name) > len(LIBRDKAFKA_PREFIX)
    )


def helm_binary(tools: Tools, which: str) -> Path:
    path = tools.helm if which == "helm" else tools.helm.parent / which
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: tools/install.sh installs it")
    assert which in HELMS, which
    return path


def helm(
    tools: Tools, *args: str, check: bool = True, which: str = "helm"
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(helm_binary(tools, which)), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # no cluster is ever asked: `install --dry-run=client` must not find one
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if check and done.returncode != 0:
        pytest.fail(f"{which} {' '.join(args)} failed:\n{done.stderr}")
    return done


def template(
    tools: Tools,
    *args: str,
    chart: Path = CHART,
    check: bool = True,
    which: str = "helm",
    base: Path | None = MINIMAL,
) -> str:
    """``helm template`` of ``args`` over ``base`` (the required values; None: none)."""
    command = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    command += ["--kube-version", KUBE_VERSIONS[0]]
    command += ["--values", str(base)] if base else []
    return helm(tools, *command, *args, check=check, which=which).stdout


def render_fails(tools: Tools, *args: str, which: str = "helm", base: Path | None = MINIMAL) -> str:
    """The error of a render that must fail, from its stderr."""
    command = ["template", RELEASE, str(CHART), "--kube-version", KUBE_VERSIONS[0]]
    command += ["--values", str(base)] if base else []
    done = helm(tools, *command, *args, check=False, which=which)
    assert done.returncode != 0, f"{which} rendered {args} but must refuse it"
    assert "Error:" in done.stderr, done.stderr
    return done.stderr


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def scenario_files() -> dict[str, Path]:
    return {path.stem: path for path in sorted((CHART / "ci").glob("*.yaml"))}


@dataclass(frozen=True)
class Scenario:
    name: str
    values: dict[str, Any]  # the scenario's own values file
    docs: list[dict[str, Any]]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [
            doc for doc in self.of_kind(kind) if name is None or doc["metadata"]["name"] == name
        ]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name or ''}, got {len(found)}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return dict(containers[0])

    @property
    def config(self) -> dict[str, str]:
        """The data of the chart's ConfigMap, the container's first env source."""
        source = self.container["envFrom"][0]
        return dict(self.one("ConfigMap", source["configMapRef"]["name"])["data"])

    @property
    def extra_env(self) -> set[str]:
        """Env var names the scenario adds itself (``extraEnv``): not connector settings."""
        return {entry["name"] for entry in self.values.get("extraEnv", [])}


def render_all(tools: Tools, out: Path, which: str) -> dict[str, Path]:
    """Each scenario rendered to ``<out>/<scenario>.yaml``."""
    paths = {}
    for name, values in scenario_files().items():
        paths[name] = out / f"{name}.yaml"
        paths[name].write_text(template(tools, base=values, which=which), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def rendered_dir(deploy_tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each scenario rendered by Helm 3: what the checks below read."""
    return render_all(deploy_tools, tmp_path_factory.mktemp("rendered"), "helm")


@pytest.fixture(scope="module")
def scenarios(rendered_dir: dict[str, Path]) -> dict[str, Scenario]:
    result = {}
    for name, path in rendered_dir.items():
        values = yaml.safe_load(scenario_files()[name].read_text(encoding="utf-8"))
        docs = documents(path.read_text(encoding="utf-8"))
        result[name] = Scenario(name=name, values=values or {}, docs=docs)
    return result


def test_every_required_scenario_exists() -> None:
    assert set(scenario_files()) >= REQUIRED_SCENARIOS, "a ci/ scenario of the issue is missing"
    minimal = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    assert set(value_paths(minimal)) == {
        "learnosity.consumerKey",
        "learnosity.consumerSecret",
        "kafka.bootstrapServers",
        "schemaRegistry.url",
    }, "minimal-values.yaml holds the required values and nothing else"


def test_helm_4_renders_what_helm_3_renders(
    deploy_tools: Tools, rendered_dir: dict[str, Path], tmp_path: Path
) -> None:
    """Every other check here reads Helm 3's render; Helm 4's is the same objects."""
    helm4 = render_all(deploy_tools, tmp_path, "helm4")
    assert set(helm4) == set(rendered_dir)
    for name, path in rendered_dir.items():
        helm3_docs = documents(path.read_text(encoding="utf-8"))
        assert helm3_docs, name
        assert documents(helm4[name].read_text(encoding="utf-8")) == helm3_docs, (
            f"{name}: Helm 4 renders other objects than Helm 3"
        )


def test_chart_app_version_is_the_connector_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["appVersion"] == __version__


# --- the ecosystem's linters ---------------------------------------------------------------


@pytest.mark.parametrize("which", HELMS)
@pytest.mark.parametrize("scenario", sorted(scenario_files()))
def test_helm_lint_strict(deploy_tools: Tools, scenario: str, which: str) -> None:
    values = str(scenario_files()[scenario])
    done = helm(
        deploy_tools, "lint", "--strict", str(CHART), "--values", values, check=False, which=which
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout, done.stdout


@pytest.mark.parametrize("which", HELMS)
def test_helm_lint_fails_on_the_charts_defaults_alone(deploy_tools: Tools, which: str) -> None:
    """The control for the test above, and the required values' first line of defence."""
    done = helm(deploy_tools, "lint", "--strict", str(CHART), check=False, which=which)
    assert done.returncode != 0 and "bootstrapServers" in done.stdout + done.stderr


def test_manifests_validate_against_kubernetes_schemas_strictly(
    deploy_tools: Tools, scenarios: dict[str, Scenario], tmp_path: Path
) -> None:
    files = []
    for scenario in scenarios.values():
        core = [doc for doc in scenario.docs if doc["apiVersion"] != MONITORING_GROUP]
        path = tmp_path / f"{scenario.name}.yaml"
        path.write_text(yaml.safe_dump_all(core), encoding="utf-8")
        files.append(str(path))
    done = kubernetes_validate(deploy_tools, files)
    # WARN means "no schema for this kind": for a core kind that is a wrong apiVersion.
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_strict_validation_rejects_a_misspelt_field(deploy_tools: Tools, tmp_path: Path) -> None:
    """The control for the test above: strict mode does catch an unknown field."""
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "imagePulPolicy": "Always"}]},
            },
        },
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    done = kubernetes_validate(deploy_tools, [str(path)])
    assert done.returncode != 0 and "imagePulPolicy" in done.stdout, done.stdout


def kubernetes_validate(tools: Tools, files: list[str]) -> subprocess.CompletedProcess[str]:
    versions = [arg for version in KUBE_VERSIONS for arg in ("--kubernetes-version", version)]
    return subprocess.run(
        [str(tools.kubernetes_validate), "--strict", "--quiet", *versions, *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_checkov_finds_nothing_that_is_not_waived(
    deploy_tools: Tools, rendered_dir: dict[str, Path]
) -> None:
    directory = next(iter(rendered_dir.values())).parent
    failures = run_checkov(deploy_tools, directory, ["kubernetes"])
    waivers = {k: w for k, w in load_waivers().items() if "kubernetes" in w.frameworks}

    unwaived = [
        f"{f.check_id} {f.name} in {f.file} ({f.resource})"
        for f in failures
        if f.check_id not in waivers or Path(f.file).stem not in waivers[f.check_id].scenarios
    ]
    assert not unwaived, "checkov failures without a waiver in tools/checkov-waivers.yaml:\n" + (
        "\n".join(unwaived)
    )
    for check_id, waiver in waivers.items():
        failed_in = {Path(f.file).stem for f in failures if f.check_id == check_id}
        assert failed_in == waiver.scenarios, (
            f"waiver {check_id} lists {sorted(waiver.scenarios)} but it fails in "
            f"{sorted(failed_in)}: update tools/checkov-waivers.yaml"
        )
        assert len(waiver.why) > 40, f"waiver {check_id} must say why"


# --- the chart and the connector agree --------------------------------------------------------


def env_names(scenario: Scenario) -> dict[str, str]:
    """Every env var name the chart gives the pod, and where it comes from: what the
    scenario adds itself (``extraEnv``, ``extraEnvFrom`` of objects made outside the
    chart) is the user's, not the chart's."""
    names = {}
    pod = scenario.deployment["spec"]["template"]["spec"]
    rendered = {(d["kind"], d["metadata"]["name"]) for d in scenario.docs}
    for container in pod["containers"] + pod.get("initContainers", []):
        for env in container.get("env", []):
            if env["name"] not in scenario.extra_env:
                names[env["name"]] = f"env of {container['name']}"
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            kind, ref = (
                ("ConfigMap", "configMapRef")
                if "configMapRef" in source
                else ("Secret", "secretRef")
            )
            if (kind, source[ref]["name"]) not in rendered:
                assert source in scenario.values.get("extraEnvFrom", []), source
                continue
            for key in scenario.one(kind, source[ref]["name"])["data"]:
                names[prefix + key] = f"envFrom of {container['name']}"
    return names


def secret_files(scenario: Scenario) -> dict[str, str]:
    """Each file in the secrets directory: name -> its content, or the Secret it is from."""
    pod = scenario.deployment["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "secrets"]
    files = {}
    for source in volume["projected"]["sources"]:
        ref = source["secret"]
        if "items" in ref:
            for item in ref["items"]:
                files[item["path"]] = f"from-{ref['name']}-{item['key']}"
            continue
        # no items: every key of the chart's own Secret becomes a file
        data = scenario.one("Secret", ref["name"])["data"]
        for key, value in data.items():
            files[key] = base64.b64decode(value).decode()
    return files


def test_every_env_var_the_chart_sets_is_a_known_setting(scenarios: dict[str, Scenario]) -> None:
    unknown = [
        f"{scenario.name}: {name} ({where})"
        for scenario in scenarios.values()
        for name, where in env_names(scenario).items()
        if not is_known_env(name)
    ]
    unknown += [
        f"{scenario.name}: secret file {name}"
        for scenario in scenarios.values()
        for name in secret_files(scenario)
        if name not in SECRET_SETTINGS | {"LEARNOSITY_CONSUMER_KEY"}
        and not name.startswith(LIBRDKAFKA_PREFIX)  # secret pass-through properties
    ]
    assert not unknown, "the chart sets names the connector does not know:\n" + "\n".join(unknown)


def test_every_setting_can_be_set_from_the_chart(scenarios: dict[str, Scenario]) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    by_name = set(schema["properties"]["settings"]["propertyNames"]["enum"])
    assert by_name <= KNOWN_ENV, f"schema allows unknown settings: {by_name - KNOWN_ENV}"
    reachable = by_name | {name for s in scenarios.values() for name in env_names(s)}
    reachable |= {name for s in scenarios.values() for name in secret_files(s)}
    # LIBRDKAFKA is the dict behind LIBRDKAFKA_<NAME>, set through kafka.librdkafka
    missing = KNOWN_ENV - reachable - {"LIBRDKAFKA"}
    assert not missing, (
        f"settings the chart cannot set: {sorted(missing)}; add a typed value or add the "
        "name to settings.propertyNames.enum in values.schema.json (and a ci/ scenario)"
    )


def test_librdkafka_values_round_trip_through_the_connectors_rule(
    scenarios: dict[str, Scenario],
) -> None:
    checked = 0
    for scenario in scenarios.values():
        props = scenario.values.get("kafka", {}).get("librdkafka", {})
        if not props:
            continue
        expected = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in props.items()}
        parsed = librdkafka_from_env(scenario.config)
        assert {k: parsed[k] for k in expected if k in parsed} == expected, scenario.name
        checked += 1
    assert checked, "no scenario sets kafka.librdkafka"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No setting from the machine's environment or a .env file leaks into a load."""
    for name in list(os.environ):
        if is_known_env(name.upper()):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def load_as_the_pod_would(scenario: Scenario, workdir: Path) -> Settings:
    """Builds the pod's environment and secrets directory, then the connector's Settings."""
    secrets_dir = workdir / scenario.name
    secrets_dir.mkdir()
    for name, content in secret_files(scenario).items():
        (secrets_dir / name).write_text(content, encoding="utf-8")
    env = dict(scenario.config)
    for entry in scenario.container["env"]:
        env[entry["name"]] = entry["value"]  # extraEnv too: it wins over the ConfigMap
    assert env.pop("CONNECTOR_SECRETS_DIR").startswith("/etc/learnosity-connector/")
    env["CONNECTOR_SECRETS_DIR"] = str(secrets_dir)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return load_settings(need_kafka=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("name", sorted(scenario_files()))
def test_rendered_configuration_loads_in_the_connector(
    scenarios: dict[str, Scenario], clean_env: Path, name: str
) -> None:
    scenario = scenarios[name]
    settings = load_as_the_pod_would(scenario, clean_env)
    assert settings.learnosity_consumer_secret.get_secret_value()
    assert settings.http_port == scenario.values.get("httpPort", 8080)
    protocol = {
        (False, False): "PLAINTEXT",
        (False, True): "SSL",
        (True, False): "SASL_PLAINTEXT",
        (True, True): "SASL_SSL",
    }
    kafka = scenario.values.get("kafka", {})
    sasl = kafka.get("sasl", {}).get("enabled", False)
    tls = kafka.get("tls", {}).get("enabled", False)
    assert settings.kafka_security_protocol == protocol[sasl, tls]
    if sasl:
        assert settings.kafka_sasl_password.get_secret_value()
    if kafka.get("tls", {}).get("ca", {}).get("existingSecret"):
        assert settings.kafka_ssl_ca_location.startswith("/etc/learnosity-connector/kafka-ca/")
    for setting, value in scenario.values.get("settings", {}).items():
        assert scenario.config[setting] == (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    secret_props = kafka.get("librdkafkaSecrets", {})
    for prop, key in secret_props.get("properties", {}).items():
        # the file the pod reads holds the Secret's key (here a stand-in naming both)
        expected = f"from-{secret_props['existingSecret']}-{key}"
        assert settings.librdkafka[prop] == expected, prop
        assert expected not in repr(settings)
    registry = scenario.values.get("schemaRegistry", {})
    assert settings.schema_registry_url == registry.get("url", "")
    if scenario.values.get("encoding") == "single-object":
        assert "SCHEMA_REGISTRY_URL" not in scenario.config
    if registry.get("bearerTokenKey"):
        expected = f"from-{registry['existingSecret']}-{registry['bearerTokenKey']}"
        assert settings.schema_registry_bearer_token.get_secret_value() == expected
        assert not settings.schema_registry_password.get_secret_value()  # passwordKey ""
    if name == "all-settings-values":  # typed, not just passed along as strings
        assert settings.learnosity_statuses == ["Completed", "Pending Scoring"]
        assert settings.learnosity_include_response_scores is True
        assert settings.kafka_commit_interval_ms == 250
        assert settings.librdkafka["linger.ms"] == "20"
        assert settings.shutdown_timeout_seconds == 45
        assert settings.schema_registry_auto_register is False
        assert settings.schema_registry_subject_strategy == "topic_record"
        assert settings.learnosity_max_response_bytes == 32 * 2**20


def test_the_connector_refuses_what_the_chart_would_refuse(
    scenarios: dict[str, Scenario], clean_env: Path
) -> None:
    """Without the values the chart requires, the connector itself would stop too: the
    chart's refusal only moves the same failure from a crash-looping pod to install."""
    scenario = scenarios["minimal-values"]
    config = {k: v for k, v in scenario.config.items() if k != "LEARNOSITY_CONSUMER_KEY"}
    docs = [{**doc, "data": config} if doc["kind"] == "ConfigMap" else doc for doc in scenario.docs]
    bare = Scenario(name="bare", values=scenario.values, docs=docs)
    with pytest.raises(ConfigError) as caught:
        load_as_the_pod_would(bare, clean_env)
    assert "LEARNOSITY_CONSUMER_KEY" in "\n".join(caught.value.problems)


#: each required value, and what names it in the schema's error and in the template's
REQUIRED = [
    ("learnosity.consumerKey", "missing property 'consumerKey'"),
    ("learnosity.consumerSecret", "missing property 'consumerSecret'"),
    ("kafka.bootstrapServers", "missing property 'bootstrapServers'"),
    ("schemaRegistry.url", "missing property 'url'"),
]


def minimal_without(value: str, directory: Path) -> Path:
    """ci/minimal-values.yaml without one value (a null from --set would stay a null)."""
    values = yaml.safe_load(MINIMAL.read_text(encoding="utf-8"))
    section, key = value.split(".")
    del values[section][key]
    path = directory / f"without-{value}.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.mark.parametrize("which", HELMS)
def test_missing_required_values_fail_at_template_and_install(
    deploy_tools: Tools, which: str, tmp_path: Path
) -> None:
    schema = render_fails(deploy_tools, which=which, base=None)
    for _, complaint in REQUIRED:
        assert complaint in schema, schema
    assert "missing property 'existingSecret'" in schema  # the alternative is named too
    assert "'single-object'" in schema, "the way out of a registry is named"
    # the template says it in one line when the schema is not asked
    failed = render_fails(deploy_tools, "--skip-schema-validation", which=which, base=None)
    (line,) = [line for line in failed.splitlines() if "missing required values" in line]
    assert line.endswith(
        "missing required values: learnosity.consumerKey; learnosity.consumerSecret or "
        "learnosity.existingSecret; kafka.bootstrapServers; schemaRegistry.url (or "
        "encoding=single-object for Avro without a registry)"
    ), line
    # each one alone, left out of the minimal values
    for value, complaint in REQUIRED:
        without = minimal_without(value, tmp_path)
        assert complaint in render_fails(deploy_tools, which=which, base=without)
        alone = render_fails(deploy_tools, "--skip-schema-validation", which=which, base=without)
        assert f"missing required values: {value}" in alone, alone
    if which == "helm4":  # Helm 3's install --dry-run=client still asks a cluster
        done = helm(
            deploy_tools, "install", RELEASE, str(CHART), "--dry-run=client", check=False,
            which=which,
        )  # fmt: skip
        assert done.returncode != 0 and "missing property 'bootstrapServers'" in done.stderr
        done = helm(
            deploy_tools, "install", RELEASE, str(CHART), "--dry-run=client", "--values",
            str(MINIMAL), check=False, which=which,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("which", HELMS)
def test_encoding_single_object_is_a_choice_not_a_default(
    deploy_tools: Tools, which: str, tmp_path: Path
) -> None:
    no_url = minimal_without("schemaRegistry.url", tmp_path)
    docs = documents(
        template(deploy_tools, "--set", "encoding=single-object", which=which, base=no_url)
    )
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert "SCHEMA_REGISTRY_URL" not in config["data"]
    both = render_fails(deploy_tools, "--set", "encoding=single-object", which=which)
    assert "encoding is single-object but schemaRegistry.url is set" in both, both
    assert "encoding" in render_fails(deploy_tools, "--set", "encoding=json", which=which)


@pytest.mark.parametrize("which", HELMS)
def test_credentials_a_setting_needs_are_required_with_it(deploy_tools: Tools, which: str) -> None:
    sasl = render_fails(deploy_tools, "--set", "kafka.sasl.enabled=true", which=which)
    assert "/kafka/sasl/password" in sasl and "/kafka/sasl/existingSecret" in sasl, sasl
    sasl = render_fails(
        deploy_tools, "--skip-schema-validation", "--set", "kafka.sasl.enabled=true", which=which
    )
    assert "kafka.sasl.password or kafka.sasl.existingSecret" in sasl, sasl
    template(
        deploy_tools, "--set", "kafka.sasl.enabled=true,kafka.sasl.existingSecret=u", which=which
    )
    registry = render_fails(
        deploy_tools, "--set", "schemaRegistry.existingSecret=r,schemaRegistry.passwordKey=",
        which=which,
    )  # fmt: skip
    assert "neither schemaRegistry.passwordKey nor schemaRegistry.bearerTokenKey" in registry


# --- single writer, hardening, lifecycle ------------------------------------------------------


def test_single_writer_and_hardened_pod_in_every_scenario(scenarios: dict[str, Scenario]) -> None:
    for scenario in scenarios.values():
        spec = scenario.deployment["spec"]
        pod = spec["template"]["spec"]
        container = scenario.container
        assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, scenario.name
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False, "service links inject *_PORT variables"
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp must be writable"
        assert all(m.get("readOnly") for m in container["volumeMounts"] if m["name"] != "tmp")
        assert not any("valueFrom" in e for e in container["env"]), "secrets are files"
        assert container["args"] == ["run"]


def test_probes_and_port_match_the_connectors_http_port(scenarios: dict[str, Scenario]) -> None:
    for scenario in scenarios.values():
        container = scenario.container
        (port,) = container["ports"]
        assert port["name"] == "http"
        assert str(port["containerPort"]) == scenario.config["HTTP_PORT"], scenario.name
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        service = scenario.one("Service")
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        assert service["spec"]["publishNotReadyAddresses"] is True


def test_grace_period_exceeds_the_connectors_shutdown_bound(
    deploy_tools: Tools, scenarios: dict[str, Scenario]
) -> None:
    for scenario in scenarios.values():
        grace = scenario.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > float(scenario.config["SHUTDOWN_TIMEOUT_SECONDS"]), scenario.name
    minimal = scenarios["minimal-values"].deployment["spec"]["template"]["spec"]
    assert minimal["terminationGracePeriodSeconds"] == 30
    derived = documents(template(deploy_tools, "--set-json", "shutdownTimeoutSeconds=52.5"))
    (deployment,) = [d for d in derived if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 63
    refused = render_fails(deploy_tools, "--set", "terminationGracePeriodSeconds=20")
    assert "must exceed shutdownTimeoutSeconds" in refused, refused


def checksums(tools: Tools, *args: str) -> dict[str, str]:
    docs = documents(template(tools, *args))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    return {k: v for k, v in annotations.items() if k.startswith("checksum/")}


def test_changed_config_or_secret_changes_the_pod_checksums(deploy_tools: Tools) -> None:
    base = checksums(deploy_tools)
    assert set(base) == {"checksum/config", "checksum/secret"}
    assert checksums(deploy_tools) == base, "rendering must be deterministic"
    topic = checksums(deploy_tools, "--set", "kafka.topic=other")
    assert topic["checksum/config"] != base["checksum/config"]
    assert topic["checksum/secret"] == base["checksum/secret"]
    secret = checksums(deploy_tools, "--set", "learnosity.consumerSecret=rotated")
    assert secret["checksum/secret"] != base["checksum/secret"]
    assert secret["checksum/config"] == base["checksum/config"]


@pytest.mark.parametrize("which", HELMS)
@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("kafka.bootstrapServer=broker:9092", "bootstrapServer"),  # typo of a typed value
        ("settings.KAFKA_TOPIK=x", "KAFKA_TOPIK"),  # typo of a setting's name
        ("replicaCount=2", "replicaCount"),  # a single writer is not a knob
        ("kafka.delivery=exactly-once", "delivery"),
        # a secret never goes through the ConfigMap
        ("settings.SCHEMA_REGISTRY_BEARER_TOKEN=x", "SCHEMA_REGISTRY_BEARER_TOKEN"),
        ("extraVolumes[0].name=secrets", "/extraVolumes/0/name"),  # the chart's own volume
        ("extraEnv[0].value=x", "missing property 'name'"),
        ("prometheusRule.runbookBaseUrl=https://docs.example.com", "runbookBaseUrl"),  # no /
    ],
)
def test_values_schema_rejects_typos(
    deploy_tools: Tools, setting: str, complaint: str, which: str
) -> None:
    refused = render_fails(deploy_tools, "--set", setting, which=which)
    assert complaint in refused, refused


# --- monitoring objects -----------------------------------------------------------------------


def exposed_metric_names() -> set[str]:
    """Every series name the connector's registry can expose."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count")}
    suffixes["info"] = ("_info",)
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ()))
    return names


def metric_names_in(text: str) -> set[str]:
    return set(re.findall(r"\blearnosity_connector_[a-z0-9_]+", text))


def test_alerts_and_dashboard_use_only_metrics_the_connector_exposes() -> None:
    exposed = exposed_metric_names()
    for path in (CHART / "files" / "alerts.yaml", CHART / "files" / "dashboard.json"):
        used = metric_names_in(path.read_text(encoding="utf-8"))
        assert used, f"{path.name} uses no connector metric"
        assert used <= exposed, f"{path.name} uses unknown metrics: {sorted(used - exposed)}"


def test_monitoring_objects_and_the_disruption_budget_are_opt_in(
    scenarios: dict[str, Scenario],
) -> None:
    default_kinds = {doc["kind"] for doc in scenarios["minimal-values"].docs}
    assert default_kinds == {"ConfigMap", "Deployment", "Secret", "Service", "ServiceAccount"}
    budget = scenarios["extend-values"].one("PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 1 and "maxUnavailable" not in budget
    assert budget["selector"]["matchLabels"].items() <= (
        scenarios["extend-values"].deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    monitoring = scenarios["monitoring-values"]
    assert {d["kind"] for d in monitoring.docs} >= {"ServiceMonitor", "PrometheusRule"}
    assert any(
        d["metadata"]["name"].endswith("-dashboard") for d in monitoring.of_kind("ConfigMap")
    )
    assert scenarios["networkpolicy-values"].of_kind("NetworkPolicy")


SERVICE_MONITOR_SPEC = {
    "jobLabel", "namespaceSelector", "selector", "endpoints", "targetLabels",
    "podTargetLabels", "sampleLimit", "labelLimit", "attachMetadata",
}  # fmt: skip
ENDPOINT_FIELDS = {
    "port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "honorTimestamps",
    "relabelings", "metricRelabelings", "tlsConfig", "params", "followRedirects",
}  # fmt: skip
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def test_service_monitor_selects_the_service_and_its_port(scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios["monitoring-values"]
    monitor = scenario.one("ServiceMonitor")
    service = scenario.one("Service")
    assert monitor["apiVersion"] == MONITORING_GROUP
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC, set(spec) - SERVICE_MONITOR_SPEC
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    selector = spec["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= ENDPOINT_FIELDS, set(endpoint) - ENDPOINT_FIELDS
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        assert DURATION.match(endpoint["interval"]) and DURATION.match(endpoint["scrapeTimeout"])
        for relabel in endpoint.get("metricRelabelings", []):
            assert relabel["action"] in {"drop", "keep", "replace", "labeldrop", "labelkeep"}


def test_prometheus_rule_wraps_the_shipped_alerts(scenarios: dict[str, Scenario]) -> None:
    rule = scenarios["monitoring-values"].one("PrometheusRule")
    assert rule["apiVersion"] == MONITORING_GROUP and set(rule["spec"]) == {"groups"}
    shipped = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text(encoding="utf-8"))
    groups = rule["spec"]["groups"]
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names)), "group names must be unique"
    assert names[: len(shipped["groups"])] == [g["name"] for g in shipped["groups"]]
    alerts = {}
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for entry in group["rules"]:
            assert set(entry) <= RULE_FIELDS, set(entry) - RULE_FIELDS
            assert ("alert" in entry) != ("record" in entry)
            assert isinstance(entry["expr"], str) and entry["expr"].strip()
            assert entry["expr"].count("(") == entry["expr"].count(")")
            assert DURATION.match(entry.get("for", "0"))
            assert all(isinstance(v, str) for v in entry.get("labels", {}).values())
            alerts[entry.get("alert")] = entry
    for group in shipped["groups"]:
        for entry in group["rules"]:
            rendered = alerts[entry["alert"]]
            assert rendered["expr"] == entry["expr"]
            assert rendered["labels"] == {**entry["labels"], "team": "data-platform"}
            assert rendered["labels"]["severity"] in {"critical", "warning", "info"}
            assert {"summary", "description"} <= set(rendered["annotations"])
            # the runbook link, made absolute with prometheusRule.runbookBaseUrl
            base = scenarios["monitoring-values"].values["prometheusRule"]["runbookBaseUrl"]
            runbook = entry["annotations"]["runbook_url"]
            assert rendered["annotations"]["runbook_url"] == base + runbook
            assert base.endswith("/") and runbook.startswith("docs/operations.md#")
            others = {k: v for k, v in rendered["annotations"].items() if k != "runbook_url"}
            assert others == {k: v for k, v in entry["annotations"].items() if k != "runbook_url"}
    required = {"NotReady", "CursorStalled", "LagHigh", "DeadLetters", "RateLimited"}
    assert {f"LearnosityConnector{name}" for name in required} <= set(alerts)


def test_runbook_urls_stay_relative_without_a_base(deploy_tools: Tools) -> None:
    docs = documents(template(deploy_tools, "--set", "prometheusRule.enabled=true"))
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls and all(url.startswith("docs/operations.md#") for url in urls), urls


def test_dashboard_config_map_carries_the_dashboard(scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios["monitoring-values"]
    (board,) = [
        c for c in scenario.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert board["metadata"]["namespace"] == "monitoring"
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(board["data"]["learnosity-connector.json"])
    assert dashboard["uid"] and dashboard["title"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert exprs and all(e.count("(") == e.count(")") for e in exprs)


def test_network_policy_admits_metrics_and_allows_dns(scenarios: dict[str, Scenario]) -> None:
    scenario = scenarios["networkpolicy-values"]
    policy = scenario.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= (
        scenario.deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == scenario.values["networkPolicy"]["metricsFrom"]
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule.get("ports", [])}
    assert {53, 443, 9092} <= egress_ports


# --- what platform teams add -------------------------------------------------------------------


def test_extra_env_volumes_annotations_and_labels_are_added(
    scenarios: dict[str, Scenario],
) -> None:
    scenario = scenarios["extend-values"]
    values = scenario.values
    template_ = scenario.deployment["spec"]["template"]
    container = scenario.container
    # after the chart's own entries, in the order given
    assert container["env"][0]["name"] == "CONNECTOR_SECRETS_DIR"
    assert container["env"][1:] == values["extraEnv"]
    assert container["envFrom"][0] == {"configMapRef": {"name": f"{RELEASE}-learnosity-connector"}}
    assert container["envFrom"][1:] == values["extraEnvFrom"]
    volumes = template_["spec"]["volumes"]
    assert volumes[-len(values["extraVolumes"]) :] == values["extraVolumes"]
    mounts = container["volumeMounts"]
    assert mounts[-len(values["extraVolumeMounts"]) :] == values["extraVolumeMounts"]
    assert len({v["name"] for v in volumes}) == len(volumes), "volume names repeat"
    assert {m["name"] for m in mounts} <= {v["name"] for v in volumes}
    # the registry CA the settings point at is where a volume is mounted
    ca = scenario.config["SCHEMA_REGISTRY_SSL_CA_LOCATION"]
    assert any(ca.startswith(m["mountPath"] + "/") for m in values["extraVolumeMounts"])
    labels = template_["metadata"]["labels"]
    assert values["podLabels"].items() <= labels.items()
    assert values["podAnnotations"].items() <= template_["metadata"]["annotations"].items()
    assert {"checksum/config", "checksum/secret"} <= set(template_["metadata"]["annotations"])


def test_pod_labels_and_annotations_cannot_break_the_chart(deploy_tools: Tools) -> None:
    """The selector's labels and the roll-on-change checksums keep the chart's values."""
    docs = documents(
        template(
            deploy_tools,
            "--set", "podLabels.app\\.kubernetes\\.io/name=other,podLabels.team=x",
            "--set", "podAnnotations.checksum/config=pinned,podAnnotations.a=b",
        )
    )  # fmt: skip
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["metadata"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["labels"].items()
    assert pod["labels"]["team"] == "x" and pod["annotations"]["a"] == "b"
    assert pod["annotations"]["checksum/config"] != "pinned"


# --- documentation --------------------------------------------------------------------------


def value_paths(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from value_paths(value, f"{path}.")
        else:
            yield path


def test_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    # the required values have no default, so values.yaml only names them in comments
    required = [value for value, _ in REQUIRED] + ["learnosity.existingSecret"]
    for value in required:
        assert f"# {value.split('.')[-1]}:" in (CHART / "values.yaml").read_text(encoding="utf-8")
    paths = [*value_paths(values), *required]
    missing = [path for path in paths if f"`{path}`" not in readme]
    assert not missing, f"values not in helm/learnosity-connector/README.md: {missing}"


def render_notes(tools: Tools, tmp_path: Path, base: Path = MINIMAL) -> str:
    """``helm install --dry-run`` needs a cluster, so NOTES.txt is rendered as a template."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "_notes_probe.tpl").write_text(
        '{{- define "notes-probe" -}}\n' + notes + "\n{{- end }}\n", encoding="utf-8"
    )
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\n"
        'data:\n  notes: {{ include "notes-probe" . | quote }}\n',
        encoding="utf-8",
    )
    text = template(tools, "--show-only", "templates/notes-probe.yaml", chart=chart, base=base)
    return str(yaml.safe_load(text)["data"]["notes"])


def test_notes_say_how_to_watch_it_and_what_it_writes(deploy_tools: Tools, tmp_path: Path) -> None:
    notes = render_notes(deploy_tools, tmp_path)
    assert "rollout status deployment/lc-learnosity-connector" in notes
    assert "No ServiceMonitor" in notes and "single-object" not in notes
    monitoring = render_notes(deploy_tools, tmp_path / "2", CHART / "ci" / "monitoring-values.yaml")
    assert "ServiceMonitor scrapes it" in monitoring
    plain = render_notes(deploy_tools, tmp_path / "3", CHART / "ci" / "networkpolicy-values.yaml")
    assert "Avro single-object encoded, without a schema registry" in plain
