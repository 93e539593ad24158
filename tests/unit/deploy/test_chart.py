"""The Helm chart: lint and render with four value sets, every rendered object against the official schemas
(Kubernetes 1.30 and 1.37, strict), least-privilege RBAC derived from the operator's code, pod security,
values.schema.json, and the operator reading exactly the settings the chart sets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dreem_operator.api import DreemTrainingJobStatus
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.crd import CHART_CRD_FILE, CRD_FILE
from dreem_operator.kube import LEASE_PERMISSIONS, PERMISSIONS
from dreem_operator.reconcile import Observation, reconcile
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
        "gangScheduler": "scheduler-plugins",
        "gangSchedulerName": "default-scheduler",
        "operator": {"restartDelaySeconds": 5, "restartDelayMaxSeconds": 120, "lostPodSeconds": 90},
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


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment variables with literal values (not those read from the pod's fields)."""
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def leader_election_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (role,) = [doc for doc in docs if doc["kind"] == "Role" and doc["metadata"]["name"].endswith("-leader-election")]
    return role


def job_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == "Role" and doc is not leader_election_role(docs)]


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
    assert job_roles(docs) == []


def test_children_that_block_their_owners_deletion_are_admitted_where_owner_references_are_enforced(
    tmp_path: Path,
) -> None:
    # OwnerReferencesPermissionEnforcement admits a child whose ownerReference sets blockOwnerDeletion only
    # for a creator that may update the owner's finalizers subresource.
    job = JobRef("flies", "lab", "uid-1")
    spec = {"config": {}, "nodes": 2, "storage": {"output": "s3://lab/runs"}}
    now = datetime(2026, 11, 25, 12, 0, 0)
    plan = reconcile(job, spec, DreemTrainingJobStatus(), 1, Observation([], now), OperatorSettings())
    refs = [ref for obj in plan.create for ref in obj["metadata"].get("ownerReferences", [])]
    assert len(refs) == len([obj for obj in plan.create if obj["kind"] != "Event"]) >= 7
    assert all(ref["blockOwnerDeletion"] and ref["uid"] == "uid-1" for ref in refs)
    for docs in (render({}, tmp_path), render(VALUE_SETS["namespaced"], tmp_path)):
        for role in [doc for doc in docs if doc["kind"] == "ClusterRole"] + job_roles(docs):
            assert ("dreem.sleap.ai", "dreemtrainingjobs/finalizers", "update") in grants(role["rules"])


@pytest.mark.parametrize("name", ["default", "namespaced"])
def test_leader_election_may_use_leases_in_the_operators_namespace_only(name: str, tmp_path: Path) -> None:
    docs = render(VALUE_SETS[name], tmp_path)
    role = leader_election_role(docs)
    assert role["metadata"]["namespace"] == "dreem-system"
    assert grants(role["rules"]) == {(g, r, verb) for g, r, verbs in LEASE_PERMISSIONS for verb in verbs}
    (binding,) = [
        doc for doc in docs if doc["kind"] == "RoleBinding" and doc["roleRef"]["name"] == role["metadata"]["name"]
    ]
    assert binding["metadata"]["namespace"] == "dreem-system"
    assert binding["subjects"][0]["name"] == one(docs, "ServiceAccount")["metadata"]["name"]
    env = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    from_fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in env if "valueFrom" in e}
    assert from_fields == {
        "DREEM_OPERATOR_IDENTITY": "metadata.name",
        "DREEM_OPERATOR_LEASE_NAMESPACE": "metadata.namespace",
    }
    runtime = RuntimeSettings.from_env(plain_env({"env": env}) | {"DREEM_OPERATOR_LEASE_NAMESPACE": "dreem-system"})
    assert runtime.lease_name == role["metadata"]["name"].removesuffix("-leader-election")
    assert runtime.lease_timing.lease_duration == 15 and runtime.lease_timing.renew_deadline == 10


def test_namespaced_mode_uses_roles_in_the_watched_namespaces_only(tmp_path: Path) -> None:
    docs = render(VALUE_SETS["namespaced"], tmp_path)
    assert not [doc for doc in docs if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    roles = job_roles(docs)
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["lab-a", "lab-b"]
    needed = {(group, resource, verb) for group, resource, verbs in PERMISSIONS for verb in verbs}
    assert all(grants(role["rules"]) == needed for role in roles)
    env = plain_env(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert RuntimeSettings.from_env(env).namespaces == ["lab-a", "lab-b"]


def test_deployment_is_locked_down_and_probed(tmp_path: Path) -> None:
    deployment = one(render({}, tmp_path), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" and "readinessProbe" in container
    assert container["resources"]["requests"] and container["resources"]["limits"]
    # Two replicas, one leading: a rolling update never leaves the cluster without an operator.
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"]["type"] == "RollingUpdate"


def test_the_operator_reads_every_setting_the_chart_sets(tmp_path: Path) -> None:
    docs = render(VALUE_SETS["custom-image"], tmp_path)
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = plain_env(container)
    fields = {PREFIX + field.upper() for field in RuntimeSettings.model_fields}
    assert {e["name"] for e in container["env"]} <= fields, {e["name"] for e in container["env"]} - fields
    runtime = RuntimeSettings.from_env(env)
    decisions = runtime.decisions
    assert decisions.trainer_image == "registry.lab.org/dreem-trainer:0.1.0-cu124"
    assert decisions.default_s3_endpoint == "http://minio.minio.svc:9000"
    assert decisions.trainer_node_selector == {"pool": "gpu"}
    assert decisions.trainer_resources == {"requests": {"cpu": "8", "memory": "32Gi"}}
    assert decisions.trainer_tolerations and decisions.trainer_tolerations[0]["key"] == "nvidia.com/gpu"
    assert runtime.namespaces == [] and container["image"] == "registry.lab.org/dreem-operator:0.1.0-lab1"
    assert (decisions.gang_scheduler, decisions.scheduler_name) == ("scheduler-plugins", "default-scheduler")
    assert (decisions.restart_delay_seconds, decisions.restart_delay_max_seconds) == (5, 120)
    assert decisions.lost_pod_seconds == 90
    defaults = RuntimeSettings.from_env(
        plain_env(one(render({}, tmp_path), "Deployment")["spec"]["template"]["spec"]["containers"][0])
    )
    assert defaults.decisions.default_s3_endpoint is None and defaults.decisions.trainer_node_selector is None
    assert defaults.decisions.gang_scheduler == "none" and defaults.decisions.scheduler_name is None


@pytest.mark.parametrize("registry", [None, "registry.lab.example:5000/dreem"])
def test_default_images_are_the_ones_make_images_builds(registry: str | None, tmp_path: Path) -> None:
    """`make images REGISTRY=r` and `helm install --set registry=r` name the same two images; without either, the
    operator run outside the chart defaults to the same trainer image too."""
    operator_image, trainer_image = built_images(registry)
    docs = render({} if registry is None else {"registry": registry}, tmp_path)
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = plain_env(container)
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
        ({"gangScheduler": "kueue"}, "gangScheduler"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"leaderElection": {"leaseDurationSeconds": 2.5}}, "leaseDurationSeconds"),
        # The operator's own rule, which the schema cannot state: each replica would exit at start.
        ({"leaderElection": {"leaseDurationSeconds": 5}}, "leaseDurationSeconds (5) must exceed renewDeadlineSeconds"),
        ({"leaderElection": {"retryPeriodSeconds": 10}}, "1.2 x retryPeriodSeconds (10)"),
    ],
    ids=[
        "namespace",
        "port",
        "endpoint",
        "log-level",
        "unknown-key",
        "gang-scheduler",
        "no-replicas",
        "fractional-lease",
        "lease-under-renew-deadline",
        "retry-over-renew-deadline",
    ],
)
def test_bad_values_fail_at_install(values: dict[str, Any], named: str, tmp_path: Path) -> None:
    result = helm("template", "dreem", str(CHART), values=values, tmp_path=tmp_path)
    assert result.returncode != 0 and named in result.stderr, result.stderr


def test_lease_timings_the_operator_accepts_install(tmp_path: Path) -> None:
    values = {"leaderElection": {"leaseDurationSeconds": 30, "renewDeadlineSeconds": 20, "retryPeriodSeconds": 4}}
    container = one(render(values, tmp_path), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    environment = plain_env(container)
    timing = RuntimeSettings.from_env({k: v for k, v in environment.items() if k.startswith(PREFIX)}).lease_timing
    assert (timing.lease_duration, timing.renew_deadline, timing.retry_period) == (30, 20, 4)


def test_the_chart_installs_as_a_subchart_and_under_a_long_release_name(tmp_path: Path) -> None:
    # An umbrella chart always passes its subcharts `global`.
    assert render({"global": {"imageRegistry": "registry.lab.org"}}, tmp_path)
    long_name = "gpu-cluster-production-dreem-tracking-lab1a"  # 43 characters: Helm allows up to 53
    result = helm("template", long_name, str(CHART), values={"metrics": {"enabled": True}}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    (service,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "Service"]
    name = service["metadata"]["name"]
    assert len(name) <= 63 and name.endswith("-metrics") and name.startswith("gpu-cluster-production")


def test_fixed_user_off_leaves_the_uid_to_the_platform_for_the_operator_and_its_training_pods(tmp_path: Path) -> None:
    for fixed in (True, False):
        deployment = one(render({"fixedUser": fixed}, tmp_path), "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        assert ("runAsUser" in pod["securityContext"]) is fixed and pod["securityContext"]["runAsNonRoot"] is True
        assert restricted_violations(pod) == []
        environment = {k: v for k, v in plain_env(pod["containers"][0]).items() if k.startswith(PREFIX)}
        assert RuntimeSettings.from_env(environment).decisions.trainer_fixed_user is fixed
