"""The Helm chart: lint and render with four value sets, every rendered object against the official schemas
(Kubernetes 1.30 and 1.37, strict), least-privilege RBAC derived from the operator's code, pod security,
values.schema.json, and the operator reading exactly the settings the chart sets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dreem_operator.crd import CHART_CRD_FILE, CRD_FILE
from dreem_operator.kube import PERMISSIONS
from dreem_operator.settings import PREFIX, RuntimeSettings
from tests.conftest import REPO_ROOT
from tests.images.containers import built_images
from tests.k8s.admission import restricted_violations

CHART = REPO_ROOT / "charts" / "dreem-operator"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaced": {"watchNamespaces": ["lab-a", "lab-b"]},
    "metrics": {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}}},
    "custom-image": {
        "image": {"repository": "registry.lab.org/dreem-operator", "tag": "0.1.0-lab1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "lab-registry"}],
        "trainer": {
            "image": "registry.lab.org/dreem-trainer:0.1.0-cu124",
            "s3Endpoint": "http://minio.minio.svc:9000",
            "resources": {"requests": {"cpu": "8", "memory": "32Gi"}},
            "nodeSelector": {"pool": "gpu"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    },
}
FOREIGN_KINDS = {"ServiceMonitor"}
"""Kinds from other projects' CRDs, absent from the official schemas."""


def helm_binary() -> str:
    found = shutil.which("helm", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("helm is missing from the virtual environment: run `make tools`")
    return found


def helm(
    *args: str, values: dict[str, Any] | None = None, tmp_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    command = [helm_binary(), *args]
    if values is not None and tmp_path is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        command += ["--values", str(values_file)]
    return subprocess.run(command, capture_output=True, text=True, check=False)


def render(values: dict[str, Any], tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    result = helm(
        "template", "dreem", str(CHART), "--namespace", "dreem-system", *extra, values=values, tmp_path=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind]
    return found


def grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest.mark.parametrize("name", VALUE_SETS)
def test_chart_lints(name: str, tmp_path: Path) -> None:
    result = helm("lint", "--strict", str(CHART), values=VALUE_SETS[name], tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_objects_pass_the_official_schemas(name: str, version: str, tmp_path: Path) -> None:
    docs = render(VALUE_SETS[name], tmp_path, "--include-crds")
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount"} <= {doc["kind"] for doc in docs}
    for doc in docs:
        if doc["kind"] not in FOREIGN_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_chart_crd_is_the_generated_crd() -> None:
    assert CHART_CRD_FILE.read_text() == CRD_FILE.read_text(), "charts/dreem-operator/crds drifted: run `make crds`"


def test_cluster_rbac_grants_exactly_what_the_operator_calls(tmp_path: Path) -> None:
    docs = render({}, tmp_path)
    needed = {(group, resource, verb) for group, resource, verbs in PERMISSIONS for verb in verbs}
    assert grants(one(docs, "ClusterRole")["rules"]) == needed
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": one(docs, "ServiceAccount")["metadata"]["name"], "namespace": "dreem-system"}
    ]
    assert not [doc for doc in docs if doc["kind"] in ("Role", "RoleBinding")]


def test_namespaced_mode_uses_roles_in_the_watched_namespaces_only(tmp_path: Path) -> None:
    docs = render(VALUE_SETS["namespaced"], tmp_path)
    assert not [doc for doc in docs if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    roles = [doc for doc in docs if doc["kind"] == "Role"]
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["lab-a", "lab-b"]
    needed = {(group, resource, verb) for group, resource, verbs in PERMISSIONS for verb in verbs}
    assert all(grants(role["rules"]) == needed for role in roles)
    env = {e["name"]: e["value"] for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert RuntimeSettings.from_env(env).namespaces == ["lab-a", "lab-b"]


def test_deployment_is_locked_down_and_probed(tmp_path: Path) -> None:
    deployment = one(render({}, tmp_path), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" and "readinessProbe" in container
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


def test_the_operator_reads_every_setting_the_chart_sets(tmp_path: Path) -> None:
    docs = render(VALUE_SETS["custom-image"], tmp_path)
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    fields = {PREFIX + field.upper() for field in RuntimeSettings.model_fields}
    assert set(env) <= fields, set(env) - fields
    runtime = RuntimeSettings.from_env(env)
    decisions = runtime.decisions
    assert decisions.trainer_image == "registry.lab.org/dreem-trainer:0.1.0-cu124"
    assert decisions.default_s3_endpoint == "http://minio.minio.svc:9000"
    assert decisions.trainer_node_selector == {"pool": "gpu"}
    assert decisions.trainer_resources == {"requests": {"cpu": "8", "memory": "32Gi"}}
    assert decisions.trainer_tolerations and decisions.trainer_tolerations[0]["key"] == "nvidia.com/gpu"
    assert runtime.namespaces == [] and container["image"] == "registry.lab.org/dreem-operator:0.1.0-lab1"
    defaults = RuntimeSettings.from_env(
        {
            e["name"]: e["value"]
            for e in one(render({}, tmp_path), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
        }
    )
    assert defaults.decisions.default_s3_endpoint is None and defaults.decisions.trainer_node_selector is None


@pytest.mark.parametrize("registry", [None, "registry.lab.example:5000/dreem"])
def test_default_images_are_the_ones_make_images_builds(registry: str | None, tmp_path: Path) -> None:
    """`make images REGISTRY=r` and `helm install --set registry=r` name the same two images; without either, the
    operator run outside the chart defaults to the same trainer image too."""
    operator_image, trainer_image = built_images(registry)
    docs = render({} if registry is None else {"registry": registry}, tmp_path)
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (container["image"], env[PREFIX + "TRAINER_IMAGE"]) == (operator_image, trainer_image)
    if registry is None:
        assert RuntimeSettings().decisions.trainer_image == trainer_image
    else:
        assert operator_image.startswith(f"{registry}/dreem-operator:")


def test_metrics_service_and_service_monitor(tmp_path: Path) -> None:
    docs = render(VALUE_SETS["metrics"], tmp_path)
    service = next(doc for doc in docs if doc["kind"] == "Service")
    monitor = one(docs, "ServiceMonitor")
    assert service["spec"]["ports"][0]["port"] == 8000
    assert monitor["metadata"]["labels"]["release"] == "prom" and monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert not [doc for doc in render({"metrics": {"enabled": False}}, tmp_path) if doc["kind"] == "Service"]


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"metrics": {"port": 0}}, "port"),
        ({"trainer": {"image": "x", "s3Endpoint": "minio:9000"}}, "s3Endpoint"),
        ({"operator": {"logLevel": "loud"}}, "logLevel"),
        ({"replicas": 3}, "replicas"),
    ],
    ids=["namespace", "port", "endpoint", "log-level", "unknown-key"],
)
def test_bad_values_fail_at_install(values: dict[str, Any], named: str, tmp_path: Path) -> None:
    result = helm("template", "dreem", str(CHART), values=values, tmp_path=tmp_path)
    assert result.returncode != 0 and named in result.stderr, result.stderr
