"""The operator's pure decisions, table by table: phases, gang restarts, suspend, deadline, TTL, children."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import yaml

from dreem_operator.api import DreemTrainingJobStatus, Phase, Progress, Reason
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.reconcile import (
    Event,
    Observation,
    ObservedPod,
    Plan,
    event_object,
    observe_pod,
    reconcile,
)
from dreem_trainer.config import validate
from dreem_trainer.contract import EXIT_USER_ERROR

JOB = JobRef("flies", "lab", "uid-1")
NOW = datetime(2026, 11, 25, 12, 0, 0)
SETTINGS = OperatorSettings(trainer_image="trainer:test", master_port=29500, secret_grace_seconds=60)


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "config": {"model": {"d_model": 64}, "dataset": {"train_dataset": {"dir": {"path": "s3://lab/flies"}}}},
        "nodes": 2,
        "gpusPerNode": 4,
        "storage": {"output": "s3://lab/runs/flies", "credentialsSecret": "minio", "endpoint": "http://minio:9000"},
        "runPolicy": {"backoffLimit": 2},
    }
    for key, value in changes.items():
        base[key] = value | base.get(key, {}) if isinstance(value, dict) and key == "runPolicy" else value
    return base


def status(**fields: Any) -> DreemTrainingJobStatus:
    return DreemTrainingJobStatus.model_validate(fields)


def pod(rank: int, phase: str, attempt: int = 0, exit_code: int | None = None, message: str = "") -> ObservedPod:
    return ObservedPod(f"flies-{attempt}-{rank}", attempt, rank, phase, exit_code, message)  # type: ignore[arg-type]


def run(
    pods: list[ObservedPod],
    current: DreemTrainingJobStatus | None = None,
    now: datetime = NOW,
    secret_problem: str | None = None,
    **changes: Any,
) -> Plan:
    seen = Observation(pods, now, created=NOW - timedelta(seconds=30), secret_problem=secret_problem)
    return reconcile(JOB, spec(**changes), current or status(), 7, seen, SETTINGS)


def kinds(plan: Plan) -> list[str]:
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in plan.create]


def pods_created(plan: Plan) -> list[str]:
    return [name for name in kinds(plan) if name.startswith("Pod/")]


def test_new_job_creates_config_service_progress_rights_and_the_gang() -> None:
    plan = run([])
    assert kinds(plan) == [
        "ConfigMap/flies-config",
        "Service/flies",
        "ServiceAccount/flies-trainer",
        "Role/flies-progress",
        "RoleBinding/flies-progress",
        "Pod/flies-0-0",
        "Pod/flies-0-1",
    ]
    assert plan.status.phase == Phase.PENDING and plan.status.restarts == 0 and plan.status.observedGeneration == 7
    assert plan.status.startTime == "2026-11-25T12:00:00Z"
    assert [e.reason for e in plan.events] == [Reason.GANG_PENDING]


@pytest.mark.parametrize(
    ("pods", "before", "phase", "created", "deleted", "restarts"),
    [
        ([pod(0, "Pending"), pod(1, "Pending")], {"phase": Phase.PENDING, "restarts": 0}, Phase.PENDING, [], [], 0),
        ([pod(0, "Running")], {"phase": Phase.PENDING, "restarts": 0}, Phase.PENDING, ["Pod/flies-0-1"], [], 0),
        ([pod(0, "Running"), pod(1, "Running")], {"phase": Phase.PENDING, "restarts": 0}, Phase.RUNNING, [], [], 0),
        (
            [pod(0, "Running"), pod(1, "Failed", exit_code=1)],
            {"phase": Phase.RUNNING, "restarts": 0},
            Phase.RESTARTING,
            [],
            ["flies-0-0", "flies-0-1"],
            1,
        ),
        ([], {"phase": Phase.RESTARTING, "restarts": 1}, Phase.RESTARTING, ["Pod/flies-1-0", "Pod/flies-1-1"], [], 1),
        (
            [pod(0, "Running", 1), pod(1, "Running", 1)],
            {"phase": Phase.RESTARTING, "restarts": 1},
            Phase.RUNNING,
            [],
            [],
            1,
        ),
        (
            [pod(0, "Failed", 2, exit_code=137), pod(1, "Running", 2)],
            {"phase": Phase.RUNNING, "restarts": 2},
            Phase.FAILED,
            [],
            ["flies-2-0", "flies-2-1"],
            2,
        ),
        (
            [pod(0, "Unknown"), pod(1, "Running")],
            {"phase": Phase.RUNNING, "restarts": 0},
            Phase.RESTARTING,
            [],
            ["flies-0-0", "flies-0-1"],
            1,
        ),
        (
            [pod(0, "Succeeded"), pod(1, "Succeeded")],
            {"phase": Phase.RUNNING, "restarts": 0},
            Phase.SUCCEEDED,
            [],
            [],
            0,
        ),
        (
            [pod(0, "Running", 0), pod(1, "Running", 1), pod(0, "Running", 1)],
            {"phase": Phase.RESTARTING, "restarts": 1},
            Phase.RUNNING,
            [],
            ["flies-0-0"],
            1,
        ),
        ([pod(0, "Succeeded"), pod(1, "Running")], {"phase": Phase.RUNNING, "restarts": 0}, Phase.RUNNING, [], [], 0),
        ([pod(0, "Running")], {"phase": Phase.RUNNING, "restarts": 0}, Phase.RESTARTING, [], ["flies-0-0"], 1),
    ],
    ids=[
        "idempotent",
        "missing-rank",
        "running",
        "gang-restart",
        "next-attempt",
        "attempt-running",
        "backoff-exhausted",
        "node-lost",
        "succeeded",
        "stale-attempt",
        "one-rank-done",
        "pod-lost",
    ],
)
def test_phase_transitions(
    pods: list[ObservedPod], before: dict[str, Any], phase: Phase, created: list[str], deleted: list[str], restarts: int
) -> None:
    plan = run(pods, status(startTime="2026-11-25T11:00:00Z", **before))
    assert plan.status.phase == phase
    assert pods_created(plan) == created
    assert sorted(plan.delete_pods) == sorted(deleted)
    assert plan.status.restarts == restarts
    if phase == Phase.FAILED:
        assert plan.status.message and "no restarts left" in plan.status.message
    if phase in (Phase.SUCCEEDED, Phase.FAILED):
        assert plan.status.completionTime == "2026-11-25T12:00:00Z"


def test_configuration_error_fails_at_once_with_the_reason() -> None:
    reason = "invalid configuration (1 problem):\n  - optimizer.name: not a torch.optim optimizer (got 'Adamm')"
    plan = run(
        [pod(0, "Failed", exit_code=EXIT_USER_ERROR, message=reason), pod(1, "Running")],
        status(phase=Phase.RUNNING, restarts=0),
    )
    assert plan.status.phase == Phase.FAILED and plan.status.message == reason
    assert plan.status.restarts == 0 and sorted(plan.delete_pods) == ["flies-0-0", "flies-0-1"]
    assert plan.events[-1].type == "Warning" and plan.events[-1].reason == Reason.CONFIGURATION_ERROR


def test_invalid_spec_is_failed_with_the_key_path() -> None:
    bad = spec()
    bad["config"]["optimizer"] = {"name": "Adamm"}
    plan = reconcile(JOB, bad, status(), 1, Observation([], NOW), SETTINGS)
    assert plan.status.phase == Phase.FAILED and plan.create == []
    assert plan.status.message is not None and "spec.config.optimizer.name" in plan.status.message
    assert run([], nodes=0).status.phase == Phase.FAILED


def test_suspend_keeps_progress_and_resume_recreates_the_gang() -> None:
    progress = Progress(epoch=4, step=40, lastCheckpoint="s3://lab/runs/flies/models/last.ckpt")
    before = status(phase=Phase.RUNNING, restarts=1, progress=progress.model_dump())
    suspended = run([pod(0, "Running", 1), pod(1, "Running", 1)], before, runPolicy={"suspend": True})
    assert suspended.status.phase == Phase.SUSPENDED and suspended.status.progress == progress
    assert sorted(suspended.delete_pods) == ["flies-1-0", "flies-1-1"] and suspended.create == []
    resumed = run([], suspended.status)
    assert resumed.status.phase == Phase.PENDING and pods_created(resumed) == ["Pod/flies-1-0", "Pod/flies-1-1"]
    assert resumed.status.progress == progress


def test_active_deadline() -> None:
    started = status(phase=Phase.RUNNING, restarts=0, startTime="2026-11-25T11:00:00Z")
    alive = [pod(0, "Running"), pod(1, "Running")]
    assert run(alive, started, runPolicy={"activeDeadlineSeconds": 7200}).status.phase == Phase.RUNNING
    late = run(alive, started, runPolicy={"activeDeadlineSeconds": 3600})
    assert late.status.phase == Phase.FAILED and "activeDeadlineSeconds" in (late.status.message or "")
    assert sorted(late.delete_pods) == ["flies-0-0", "flies-0-1"]


@pytest.mark.parametrize(
    ("policy", "deleted"), [("All", ["flies-0-0", "flies-0-1"]), ("Running", ["flies-0-1"]), ("None", [])]
)
def test_clean_pod_policy_after_finishing(policy: str, deleted: list[str]) -> None:
    done = status(phase=Phase.FAILED, restarts=0, completionTime="2026-11-25T11:59:00Z")
    plan = run([pod(0, "Failed", exit_code=1), pod(1, "Running")], done, runPolicy={"cleanPodPolicy": policy})
    assert plan.delete_pods == deleted and plan.status.phase == Phase.FAILED and plan.create == []


def test_ttl_after_finished() -> None:
    done = status(phase=Phase.SUCCEEDED, restarts=0, completionTime="2026-11-25T11:00:00Z")
    assert run([], done, runPolicy={"ttlSecondsAfterFinished": 7200}).delete_job is False
    assert run([], done, runPolicy={"ttlSecondsAfterFinished": 3600}).delete_job is True
    assert run([], done).delete_job is False
    assert run([], done, now=NOW + timedelta(days=365)).delete_job is False


def test_gang_pod_env_resources_and_ownership() -> None:
    pods = [obj for obj in run([]).create if obj["kind"] == "Pod"]
    for rank, manifest in enumerate(pods):
        container = manifest["spec"]["containers"][0]
        env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
        assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "flies-0.flies"
        assert env["NODE_RANK"] == env["PET_NODE_RANK"] == str(rank)
        assert (env["NUM_NODES"], env["WORLD_SIZE"], env["PET_NPROC_PER_NODE"]) == ("2", "8", "4")
        assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "minio", "key": "AWS_ACCESS_KEY_ID"}}
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 4
        assert container["image"] == "trainer:test"
        assert (manifest["spec"]["hostname"], manifest["spec"]["subdomain"]) == (f"flies-{rank}", "flies")
        owner = manifest["metadata"]["ownerReferences"][0]
        assert owner["controller"] is True and owner["uid"] == "uid-1" and owner["kind"] == "DreemTrainingJob"
        assert manifest["spec"]["restartPolicy"] == "Never"


def test_config_map_holds_a_valid_config_pointed_at_the_output() -> None:
    (config_map,) = [obj for obj in run([]).create if obj["kind"] == "ConfigMap"]
    config = validate(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert config.checkpointing.dirpath == "s3://lab/runs/flies/models"
    assert config.logging is not None and config.logging.save_dir == "s3://lab/runs/flies/logs"
    assert (config.trainer.num_nodes, config.trainer.devices, config.trainer.strategy) == (2, 4, "ddp")
    assert config.storage.endpoint_url == "http://minio:9000" and config.model.d_model == 64


def test_a_missing_secret_is_awaited_then_fails_the_job() -> None:
    problem = 'spec.storage.credentialsSecret: Secret "minio" not found in namespace "lab"'
    waiting = run([], secret_problem=problem)
    assert waiting.status.phase == Phase.PENDING and waiting.status.message == problem and waiting.create == []
    assert waiting.events[-1].type == "Warning" and waiting.events[-1].reason == Reason.WAITING_FOR_CREDENTIALS
    late = run([], waiting.status, now=NOW + timedelta(seconds=31), secret_problem=problem)
    assert late.status.phase == Phase.FAILED and late.status.message == problem and late.create == []
    assert late.events[-1].reason == Reason.CREDENTIALS_MISSING


def test_progress_rights_cover_only_this_jobs_status() -> None:
    created = {obj["kind"]: obj for obj in run([]).create if obj["kind"] != "Pod"}
    (rule,) = created["Role"]["rules"]
    assert rule == {
        "apiGroups": ["dreem.sleap.ai"],
        "resources": ["dreemtrainingjobs/status"],
        "resourceNames": ["flies"],
        "verbs": ["get", "patch"],
    }
    binding = created["RoleBinding"]
    assert binding["roleRef"]["name"] == created["Role"]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "flies-trainer", "namespace": "lab"}]
    pods = [obj for obj in run([]).create if obj["kind"] == "Pod"]
    assert {p["spec"]["serviceAccountName"] for p in pods} == {created["ServiceAccount"]["metadata"]["name"]}
    env = {e["name"]: e.get("value") for e in pods[0]["spec"]["containers"][0]["env"]}
    assert (env["DREEM_JOB"], env["DREEM_JOB_NAMESPACE"]) == ("flies", "lab")


@pytest.mark.parametrize(
    ("manifest", "observed"),
    [
        (
            {
                "metadata": {
                    "name": "flies-1-0",
                    "labels": {"dreem.sleap.ai/attempt": "1", "dreem.sleap.ai/rank": "0"},
                },
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [
                        {"name": "trainer", "state": {"terminated": {"exitCode": 2, "message": "bad key"}}}
                    ],
                },
            },
            ObservedPod("flies-1-0", 1, 0, "Failed", 2, "bad key"),
        ),
        (
            {"metadata": {"name": "flies-0-1", "labels": {"dreem.sleap.ai/attempt": "0", "dreem.sleap.ai/rank": "1"}}},
            ObservedPod("flies-0-1", 0, 1, "Pending"),
        ),
        (
            {
                "metadata": {"name": "x", "labels": {"dreem.sleap.ai/attempt": "0", "dreem.sleap.ai/rank": "1"}},
                "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."},
            },
            ObservedPod("x", 0, 1, "Failed", None, "The node was low on memory."),
        ),
        ({"metadata": {"name": "stray", "labels": {"dreem.sleap.ai/job": "flies"}}}, None),
        (
            {
                "metadata": {
                    "name": "going",
                    "deletionTimestamp": "2026-11-25T12:00:00Z",
                    "labels": {"dreem.sleap.ai/attempt": "0", "dreem.sleap.ai/rank": "0"},
                }
            },
            ObservedPod("going", 0, 0, "Pending", terminating=True),
        ),
    ],
    ids=["terminated", "no-status-yet", "evicted", "not-a-gang-pod", "being-deleted"],
)
def test_observe_pod(manifest: dict[str, Any], observed: ObservedPod | None) -> None:
    assert observe_pod(manifest) == observed


def test_events_name_the_job() -> None:
    event = event_object(JOB, Event("Warning", Reason.GANG_RESTART, "flies-0-1 failed"), NOW)
    assert event["involvedObject"] == {
        "apiVersion": "dreem.sleap.ai/v1alpha1",
        "kind": "DreemTrainingJob",
        "name": "flies",
        "namespace": "lab",
        "uid": "uid-1",
    }
    assert (event["type"], event["reason"], event["metadata"]["namespace"]) == ("Warning", Reason.GANG_RESTART, "lab")


def test_a_new_gang_waits_until_the_old_one_has_stopped() -> None:
    stopping = ObservedPod("flies-0-0", 0, 0, "Running", terminating=True)
    before = status(phase=Phase.RESTARTING, restarts=1, startTime="2026-11-25T11:00:00Z", message="flies-0-1 failed")
    waiting = run([stopping], before)
    assert waiting.status.phase == Phase.RESTARTING and pods_created(waiting) == [] and waiting.delete_pods == []
    assert waiting.status.message == "flies-0-1 failed"
    stale = run([pod(0, "Running", 0)], status(phase=Phase.RESTARTING, restarts=1, startTime="2026-11-25T11:00:00Z"))
    assert stale.delete_pods == ["flies-0-0"] and pods_created(stale) == []
    resumed = run([stopping], status(phase=Phase.SUSPENDED, restarts=0, startTime="2026-11-25T11:00:00Z"))
    assert resumed.status.phase == Phase.PENDING and pods_created(resumed) == []
    assert resumed.status.message == "waiting for 1 pod(s) of the previous attempt to stop"
    gone = run([], status(phase=Phase.RESTARTING, restarts=1, startTime="2026-11-25T11:00:00Z"))
    assert pods_created(gone) == ["Pod/flies-1-0", "Pod/flies-1-1"]
