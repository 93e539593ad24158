"""Every example manifest is admitted by the CRD schema, and every pod the operator builds for it passes
the official Kubernetes schemas (1.30 and 1.37, strict) and the restricted Pod Security Standard."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dreem_operator.api import DreemTrainingJobStatus, Phase
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.reconcile import Observation, reconcile
from tests.conftest import REPO_ROOT
from tests.k8s.admission import admission_errors, restricted_violations

EXAMPLES = REPO_ROOT / "examples"
JOBS = sorted((EXAMPLES / "jobs").glob("*.yaml"))
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
SETTINGS = OperatorSettings(
    trainer_image="registry.lab.example:5000/dreem-trainer:0.1.0",
    default_s3_endpoint="http://minio.minio.svc:9000",
    trainer_node_selector={"pool": "training"},
)


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def children(path: Path) -> list[dict[str, Any]]:
    manifest = load(path)
    job = JobRef(manifest["metadata"]["name"], "flies", "uid-1")
    seen = Observation([], datetime(2026, 11, 25, 12))
    plan = reconcile(job, manifest["spec"], DreemTrainingJobStatus(), 1, seen, SETTINGS)
    assert plan.status.phase == Phase.PENDING, plan.status.message
    return plan.create


def test_there_are_the_examples_the_docs_promise() -> None:
    assert [path.name for path in JOBS] == [
        "cpu-minimal.yaml",
        "queued-gang.yaml",
        "resume-from-previous.yaml",
        "two-nodes-four-gpus.yaml",
    ]
    assert (EXAMPLES / "secrets" / "minio-credentials.yaml").exists()
    application = load(EXAMPLES / "argocd" / "experiments.yaml")
    assert application["kind"] == "Application" and application["spec"]["source"]["path"] == "examples/jobs"


@pytest.mark.parametrize("path", JOBS, ids=[path.stem for path in JOBS])
def test_example_jobs_pass_the_crd_schema(path: Path) -> None:
    assert admission_errors(load(path)) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", JOBS, ids=[path.stem for path in JOBS])
def test_children_of_the_examples_pass_the_official_schemas(path: Path, version: str) -> None:
    for obj in children(path):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_secret_example_passes_the_official_schema(version: str) -> None:
    kubernetes_validate.validate(load(EXAMPLES / "secrets" / "minio-credentials.yaml"), version, strict=True)


@pytest.mark.parametrize("path", JOBS, ids=[path.stem for path in JOBS])
def test_training_pods_meet_the_restricted_pod_security_standard(path: Path) -> None:
    pods = [obj for obj in children(path) if obj["kind"] == "Pod"]
    assert pods
    for pod in pods:
        assert restricted_violations(pod["spec"]) == [], pod["metadata"]["name"]


@pytest.mark.parametrize("path", JOBS, ids=[path.stem for path in JOBS])
def test_the_trainer_root_is_read_only_and_every_place_it_writes_is_a_volume(path: Path) -> None:
    for pod in (obj for obj in children(path) if obj["kind"] == "Pod"):
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
        env = {e["name"]: e.get("value") for e in container["env"]}
        for name in ("HOME", "TMPDIR", "DREEM_CACHE_DIR"):
            assert any(env[name] == mount or env[name].startswith(mount + "/") for mount in writable), (name, env[name])


def test_the_restricted_check_catches_what_it_must() -> None:
    pod = next(obj for obj in children(JOBS[0]) if obj["kind"] == "Pod")
    spec = pod["spec"]
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/data"}})
    spec["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    problems = restricted_violations(spec)
    assert len(problems) == 3, problems


def test_operator_defaults_reach_the_pods_and_a_jobs_own_settings_win() -> None:
    by_name = {path.stem: next(o for o in children(path) if o["kind"] == "Pod") for path in JOBS}
    cpu, gpu = by_name["cpu-minimal"]["spec"], by_name["two-nodes-four-gpus"]["spec"]
    assert cpu["nodeSelector"] == {"pool": "training"}
    assert gpu["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    cpu_env = {e["name"]: e.get("value") for e in cpu["containers"][0]["env"]}
    gpu_env = {e["name"]: e.get("value") for e in gpu["containers"][0]["env"]}
    assert cpu_env["AWS_ENDPOINT_URL"] == "http://minio.minio.svc:9000"
    assert gpu_env["AWS_ENDPOINT_URL"] == "http://minio.minio.svc:9000"
    assert gpu["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
