"""Malformed DreemTrainingJobs: each is refused by the CRD schema (as the API server with kubectl's strict field
validation would) or marked Failed by the operator with a message naming the key, and the operator keeps
serving the other jobs. The emulator admits everything, so every manifest also reaches the operator: a
cluster whose CRD is older than the operator, or a client that skips validation, must not break it."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from dreem_operator.api import Phase
from dreem_trainer.contract import GROUP, PLURAL, VERSION
from tests.conftest import free_port
from tests.k8s.admission import admission_errors
from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, condition, job_manifest, phase_is
from tests.k8s.operator_process import OperatorProcess

pytestmark = pytest.mark.slow

GOOD_SPEC: dict[str, Any] = {
    "config": {
        "model": {"d_model": 64, "nhead": 4},
        "dataset": {"train_dataset": {"dir": {"path": "s3://lab/flies"}, "crop_size": 64}},
        "optimizer": {"name": "Adam", "lr": 0.0001},
    },
    "nodes": 2,
    "storage": {"output": "s3://lab/runs/x", "endpoint": "http://minio:9000"},
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD_SPEC with the dotted `path` set to `value` (or removed, for `...`)."""
    spec = copy.deepcopy(GOOD_SPEC)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[leaf]
    else:
        node[leaf] = value
    return spec


# (id, spec, what the schema's or the operator's message must name)
CASES: list[tuple[str, Any, str]] = [
    ("negative-nodes", changed("nodes", -1), "nodes"),
    ("nodes-as-text", changed("nodes", "two"), "nodes"),
    ("fractional-gpus", changed("gpusPerNode", 1.5), "gpusPerNode"),
    ("no-storage", changed("storage", ...), "storage"),
    ("no-config", changed("config", ...), "config"),
    ("output-not-s3", changed("storage.output", "lab/runs/x"), "storage.output"),
    ("output-without-bucket", changed("storage.output", "s3://"), "storage.output"),
    ("bad-addressing", changed("storage.addressingStyle", "diagonal"), "addressingStyle"),
    ("unknown-spec-key", changed("replicas", 3), "replicas"),
    ("unknown-config-section", changed("config.optimiser", {"lr": 0.1}), "optimiser"),
    ("unknown-model-key", changed("config.model.d_modle", 32), "d_modle"),
    ("unknown-optimizer", changed("config.optimizer.name", "Adamm"), "optimizer.name"),
    ("unknown-scheduler", changed("config.scheduler", {"name": "NoSuchScheduler"}), "scheduler.name"),
    ("d-model-as-text", changed("config.model.d_model", "big"), "d_model"),
    ("negative-lr", changed("config.optimizer.lr", -0.1), "lr"),
    ("crop-as-text", changed("config.dataset.train_dataset.crop_size", "large"), "crop_size"),
    ("bad-checkpoint-uri", changed("config.checkpointing", {"dirpath": "s3:/one-slash"}), "checkpointing.dirpath"),
    ("negative-epochs", changed("config.trainer", {"max_epochs": -5}), "max_epochs"),
    ("unknown-logger", changed("config.logging", {"logger_type": "FancyLogger"}), "logger_type"),
    ("negative-backoff", changed("runPolicy", {"backoffLimit": -3}), "backoffLimit"),
    ("bad-clean-policy", changed("runPolicy", {"cleanPodPolicy": "Sometimes"}), "cleanPodPolicy"),
    ("unknown-run-policy-key", changed("runPolicy", {"retries": 3}), "retries"),
    ("node-selector-as-list", changed("podTemplate", {"nodeSelector": ["gpu"]}), "nodeSelector"),
    ("spec-as-text", "train my flies please", "spec"),
    ("missing-secret", changed("storage.credentialsSecret", "nowhere"), 'Secret "nowhere" not found'),
    ("memory-as-words", changed("resources", {"limits": {"memory": "lots"}}), "limits.memory"),
    ("request-over-limit", changed("resources", {"requests": {"cpu": "16"}, "limits": {"cpu": 8}}), "requests.cpu"),
]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[EmulatedCluster, Kubectl, OperatorProcess]]:
    with cluster_with_crd(tmp_path) as cluster:
        operator = OperatorProcess(
            cluster.kubeconfig, tmp_path / "operator.log", master_port=str(free_port()), secret_grace_seconds="1"
        ).start()
        try:
            yield cluster, Kubectl(cluster.kubeconfig), operator
        finally:
            operator.stop()


def test_good_spec_passes_admission() -> None:
    assert admission_errors(job_manifest("good", GOOD_SPEC)) == []


# What an OpenAPI schema cannot express (S3 URI syntax, optimizer and scheduler names, int-or-list fields,
# whether a Secret exists): these pass admission and the operator must fail them.
ADMITTED_BY_THE_SCHEMA = {
    "output-not-s3",
    "output-without-bucket",
    "unknown-optimizer",
    "unknown-scheduler",
    "crop-as-text",
    "bad-checkpoint-uri",
    "missing-secret",
    "memory-as-words",
    "request-over-limit",
}


@pytest.mark.parametrize(("case", "spec", "named"), CASES, ids=[c[0] for c in CASES])
def test_each_malformed_spec_is_refused_by_the_schema_naming_the_field_or_left_to_the_operator(
    case: str, spec: Any, named: str
) -> None:
    errors = admission_errors(job_manifest("bad", spec))
    if case in ADMITTED_BY_THE_SCHEMA:
        assert errors == [], f"{case} is now refused by the schema: take it out of ADMITTED_BY_THE_SCHEMA"
    else:
        assert any(named.split(".")[-1] in error for error in errors), errors


def test_operator_fails_every_malformed_job_and_keeps_serving(
    served: tuple[EmulatedCluster, Kubectl, OperatorProcess],
) -> None:
    """What the schema refuses never reaches the operator through the API; a cluster still holds such jobs
    when they were created under an older, laxer CRD (the API server does not check stored objects again):
    those are stored as they are, the others applied."""
    cluster, kubectl, operator = served
    assert len(CASES) >= 20
    for index, (case, spec, _) in enumerate(CASES):
        manifest = job_manifest(f"bad-{index}", spec)
        if case in ADMITTED_BY_THE_SCHEMA:
            kubectl.apply_job(manifest)
        else:
            with pytest.raises(kubernetes.client.ApiException) as refused:  # as `kubectl apply` sends it
                kubectl.custom.create_namespaced_custom_object(
                    GROUP, VERSION, "default", PLURAL, copy.deepcopy(manifest), field_validation="Strict"
                )
            assert refused.value.status in (400, 422), case
            manifest["metadata"]["namespace"] = "default"
            cluster.seed(f"{GROUP}/{VERSION}/{PLURAL}", [manifest])
    kubectl.apply_job(job_manifest("good", GOOD_SPEC))

    good = kubectl.wait_for("good", phase_is(Phase.PENDING), timeout=60, what="Pending")
    assert good["status"]["message"].startswith("waiting for all pods to be scheduled")
    assert kubectl.wait_for_pods("dreem.sleap.ai/job=good", 2, timeout=30) == [
        "good-0-0",
        "good-0-1",
    ]
    expected_warnings = [f"bad-{i}" for i in range(len(CASES))]
    for index, (case, _, named) in enumerate(CASES):
        job = kubectl.wait_for(f"bad-{index}", phase_is(Phase.FAILED), timeout=60, what=f"Failed ({case})")
        message = job["status"]["message"]
        assert named in message, (case, message)
        assert condition(job, "Failed")["status"] == "True" and condition(job, "Running")["status"] == "False"
        assert not kubectl.pods(selector=f"dreem.sleap.ai/job=bad-{index}"), case
    assert operator.process is not None and operator.process.poll() is None
    # The operator writes a status first, then its Event, then the gauge: the last job's may lag its status.
    deadline = time.monotonic() + 10
    while True:
        failed = re.search(r'^dreem_jobs\{phase="Failed"\} (\d+)', operator.metrics(), re.MULTILINE)
        warned = {event["involvedObject"]["name"] for event in kubectl.events() if event["type"] == "Warning"}
        settled = failed is not None and int(failed.group(1)) == len(CASES) and warned >= set(expected_warnings)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert failed is not None and int(failed.group(1)) == len(CASES)
    assert warned >= set(expected_warnings)
