"""The operator's pure decisions, table by table: phases, conditions, gang restarts and disruptions, the delay
after failures, suspend, deadline, TTL, children."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import kubernetes_validate
import pytest
import yaml

from dreem_operator.api import ConditionType, DreemTrainingJobStatus, Phase, Progress, Reason
from dreem_operator.children import OperatorSettings
from dreem_operator.reconcile import (
    Event,
    Observation,
    ObservedPod,
    Plan,
    Refusal,
    event_object,
    observe_pod,
    reconcile,
)
from dreem_trainer.config import validate
from dreem_trainer.contract import EXIT_USER_ERROR
from tests.unit.operator.cases import JOB, NOW, SETTINGS, kinds, pod, pods_created, run, spec, status


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
    assert [e.reason for e in plan.events] == [Reason.GANG_PENDING]
    # The deadline's clock starts when the whole gang is out to the scheduler (not queued), not at creation.
    assert plan.status.startTime is None
    queued = [pod(0, "Pending", gated=True), pod(1, "Pending", gated=True)]
    assert run(queued, plan.status, now=NOW + timedelta(minutes=5)).status.startTime is None
    released = run([pod(0, "Pending"), pod(1, "Pending")], plan.status, now=NOW + timedelta(minutes=9))
    assert released.status.startTime == "2026-11-25T12:09:00Z"


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
            ["flies-0-0"],  # the failed rank stays for `kubectl logs`
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
            # The failed rank stays for its log (cleanPodPolicy decides once the job has failed); the rank still
            # running is stopped.
            [pod(0, "Failed", 2, exit_code=137), pod(1, "Running", 2)],
            {"phase": Phase.RUNNING, "restarts": 2},
            Phase.FAILED,
            [],
            ["flies-2-1"],
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
    assert plan.status.restarts == 0 and plan.delete_pods == ["flies-0-1"]  # the failed rank keeps its log
    assert plan.events[-1].type == "Warning" and plan.events[-1].reason == Reason.CONFIGURATION_ERROR
    # Once failed, cleanPodPolicy decides: Running (the default) keeps it, All removes it.
    failed = plan.status
    assert run([pod(0, "Failed", exit_code=EXIT_USER_ERROR)], failed).delete_pods == []
    everything = run([pod(0, "Failed", exit_code=EXIT_USER_ERROR)], failed, runPolicy={"cleanPodPolicy": "All"})
    assert everything.delete_pods == ["flies-0-0"]


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
    # Resuming starts a new gang: a pod of the suspended one that never stopped can hold neither its names nor
    # its checkpoints.
    resumed = run([], suspended.status)
    assert resumed.status.phase == Phase.PENDING and pods_created(resumed) == ["Pod/flies-2-0", "Pod/flies-2-1"]
    assert resumed.status.progress == progress and resumed.status.restarts == 1 and resumed.status.attempt == 2
    assert again(resumed, runPolicy={"suspend": True}).status.attempt == 3
    suspended_again = run([], suspended.status, runPolicy={"suspend": True})
    assert suspended_again.status.attempt == 2 and suspended_again.events == []
    conditions = {c.type: c for c in resumed.status.conditions or []}
    assert (conditions[ConditionType.SUSPENDED].status, conditions[ConditionType.SUSPENDED].reason) == (
        "False",
        Reason.RESUMED,
    )


def again(plan: Plan, **changes: Any) -> Plan:
    """The next reconcile, from the status `plan` left."""
    return run([], plan.status, **changes)


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
    assert waiting.status.credentialsAwaitedSince == "2026-11-25T12:00:00Z"
    still = run([], waiting.status, now=NOW + timedelta(seconds=59), secret_problem=problem)
    assert still.status.phase == Phase.PENDING
    late = run([], still.status, now=NOW + timedelta(seconds=61), secret_problem=problem)
    assert late.status.phase == Phase.FAILED and late.status.message == problem and late.create == []
    assert late.events[-1].reason == Reason.CREDENTIALS_MISSING


def test_a_restart_during_a_secret_rotation_gets_the_whole_grace() -> None:
    # A day into the run a rank fails, and the next gang finds the Secret deleted for its re-creation.
    problem = 'spec.storage.credentialsSecret: Secret "minio" not found in namespace "lab"'
    restarting = status(phase=Phase.RESTARTING, restarts=1, attempt=1, startTime="2026-11-24T12:00:00Z")
    seen = Observation([], NOW, secret_problem=problem)
    waiting = reconcile(JOB, spec(), restarting, 7, seen, SETTINGS)
    assert waiting.status.phase == Phase.PENDING and waiting.status.credentialsAwaitedSince == "2026-11-25T12:00:00Z"
    rotated = run([], waiting.status, now=NOW + timedelta(seconds=20))  # the Secret is back
    assert [k for k in kinds(rotated) if k.startswith("Pod/")] == ["Pod/flies-1-0", "Pod/flies-1-1"]
    assert rotated.status.credentialsAwaitedSince is None


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
            ObservedPod("x", 0, 1, "Failed", None, "The node was low on memory.", reason="Evicted"),
        ),
        (
            {
                "metadata": {
                    "name": "flies-0-1",
                    "labels": {"dreem.sleap.ai/attempt": "0", "dreem.sleap.ai/rank": "1"},
                },
                "status": {
                    "phase": "Failed",
                    "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [
                        {
                            "name": "trainer",
                            "state": {
                                "terminated": {
                                    "exitCode": 137,
                                    "reason": "OOMKilled",
                                    "message": "Epoch 3: 45%",
                                    "finishedAt": "2026-11-25T11:59:52Z",
                                }
                            },
                        }
                    ],
                },
            },
            ObservedPod(
                "flies-0-1",
                0,
                1,
                "Failed",
                137,
                "Epoch 3: 45%",
                reason="OOMKilled",
                finished_at=datetime(2026, 11, 25, 11, 59, 52),
                scheduled=True,
            ),
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
            ObservedPod("going", 0, 0, "Pending", terminating=True, deletion_deadline=datetime(2026, 11, 25, 12, 0, 0)),
        ),
    ],
    ids=["terminated", "no-status-yet", "evicted", "oom-killed", "not-a-gang-pod", "being-deleted"],
)
def test_observe_pod(manifest: dict[str, Any], observed: ObservedPod | None) -> None:
    assert observe_pod(manifest) == observed


def test_the_last_failed_gang_keeps_its_failed_pods_for_their_logs() -> None:
    """A Job keeps its failed pods; so does the gang's last attempt, until the next one ends too: the status
    message holds one line of why, and `kubectl logs flies-0-1` the rest."""
    waited = status(phase=Phase.RESTARTING, restarts=1, attempt=1, nextAttemptTime="2026-11-25T11:59:00Z")
    last_failure = pod(1, "Failed", 0, exit_code=1)
    restarted = run([last_failure], waited)
    created = sorted(k for k in kinds(restarted) if k.startswith("Pod/"))
    assert created == ["Pod/flies-1-0", "Pod/flies-1-1"] and restarted.delete_pods == []
    running = status(phase=Phase.RUNNING, restarts=1, attempt=1, startTime="2026-11-25T11:00:00Z")
    again = run([last_failure, pod(0, "Running", 1), pod(1, "Failed", 1, exit_code=1)], running)
    assert again.status.phase == Phase.RESTARTING and again.delete_pods == ["flies-1-0"]
    waited = again.status.model_copy(update={"nextAttemptTime": "2026-11-25T11:59:00Z"})
    next_gang = run([last_failure, pod(1, "Failed", 1, exit_code=1)], waited)
    assert next_gang.delete_pods == ["flies-0-1"]  # two failures back: its log has been superseded
    assert sorted(k for k in kinds(next_gang) if k.startswith("Pod/")) == ["Pod/flies-2-0", "Pod/flies-2-1"]


def test_a_restart_blames_the_rank_that_failed_first_and_says_why() -> None:
    """Rank 1 is OOM-killed; rank 0 then dies in a collective. The message must name rank 1 and OOMKilled:
    the termination message is the log's tail (FallbackToLogsOnError), which says neither."""
    running = status(phase=Phase.RUNNING, restarts=0, attempt=0, startTime="2026-11-25T11:00:00Z")
    oom = pod(1, "Failed", 0, 137, "Epoch 3: 45%|####5", reason="OOMKilled", finished_at=NOW - timedelta(seconds=8))
    collective = pod(0, "Failed", 0, 1, "torch.distributed.DistBackendError: NCCL error", finished_at=NOW)
    message = str(run([collective, oom], running).status.message)
    assert message.startswith("flies-0-1 failed (exit code 137, OOMKilled): Epoch 3: 45%|####5; it ran out of memory")
    rejected = pod(0, "Failed", 0, None, "Pod was rejected: node(s) didn't have free ports", reason="OutOfpods")
    message = str(run([rejected, pod(1, "Running")], running).status.message)
    assert message.startswith("flies-0-0 failed (OutOfpods): Pod was rejected: node(s) didn't have free ports;")


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


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_an_event_of_every_reason_passes_the_official_schema_strictly(version: str) -> None:
    message = "pod flies-0-1: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    for reason in Reason:
        kubernetes_validate.validate(event_object(JOB, Event("Warning", reason, message), NOW), version, strict=True)


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


def conditions_of(plan: Plan) -> dict[ConditionType, tuple[str, Reason, str]]:
    found: dict[ConditionType, tuple[str, Reason, str]] = {
        c.type: (c.status, c.reason, c.lastTransitionTime) for c in plan.status.conditions or []
    }
    assert len(found) == len(plan.status.conditions or []), "one condition per type"
    return found


def test_every_condition_type_is_there_once_true_or_false_and_flips_with_its_time() -> None:
    pending = run([])
    first = conditions_of(pending)
    assert list(first) == list(ConditionType)
    assert first[ConditionType.CREATED][:2] == ("True", Reason.CREATED)
    assert first[ConditionType.RUNNING][:2] == ("False", Reason.GANG_PENDING)
    assert {c for c, (truth, _, _) in first.items() if truth == "True"} == {ConditionType.CREATED}

    later = NOW + timedelta(minutes=5)
    running = run([pod(0, "Running"), pod(1, "Running")], pending.status, now=later)
    second = conditions_of(running)
    assert second[ConditionType.RUNNING] == ("True", Reason.GANG_RUNNING, "2026-11-25T12:05:00Z")
    assert second[ConditionType.CREATED] == first[ConditionType.CREATED]  # no flip, no new time
    assert second[ConditionType.FAILED] == first[ConditionType.FAILED]

    failed = run(
        [pod(0, "Failed", exit_code=1), pod(1, "Running")], running.status, now=later, runPolicy={"backoffLimit": 0}
    )
    third = conditions_of(failed)
    # A failed job is not still Running=True: Running flips with the failure's reason.
    assert third[ConditionType.FAILED][:2] == ("True", Reason.BACKOFF_LIMIT_EXCEEDED)
    assert third[ConditionType.RUNNING][:2] == ("False", Reason.BACKOFF_LIMIT_EXCEEDED)
    assert third[ConditionType.SUCCEEDED][0] == third[ConditionType.RESTARTING][0] == "False"


def test_restarting_and_running_take_turns_and_both_stay_listed() -> None:
    running = status(phase=Phase.RUNNING, restarts=0, startTime="2026-11-25T11:00:00Z")
    restarting = run([pod(0, "Failed", exit_code=1), pod(1, "Running")], running)
    states = conditions_of(restarting)
    assert states[ConditionType.RESTARTING][:2] == ("True", Reason.GANG_RESTART)
    assert states[ConditionType.RUNNING][:2] == ("False", Reason.GANG_RESTART)
    back = run([pod(0, "Running", 1), pod(1, "Running", 1)], restarting.status, now=NOW + timedelta(minutes=1))
    states = conditions_of(back)
    assert states[ConditionType.RESTARTING][0] == "False" and states[ConditionType.RUNNING][0] == "True"


def test_an_invalid_spec_is_never_created() -> None:
    plan = run([], nodes=0)
    states = conditions_of(plan)
    assert states[ConditionType.CREATED][:2] == ("False", Reason.INVALID_SPEC)
    assert states[ConditionType.FAILED][:2] == ("True", Reason.INVALID_SPEC)


def test_conditions_an_older_operator_wrote_are_dropped_not_fatal() -> None:
    old = DreemTrainingJobStatus.model_validate(
        {
            "phase": "Running",
            "restarts": 1,
            "conditions": [
                {
                    "type": "Pending",
                    "status": "True",
                    "reason": "GangPending",
                    "lastTransitionTime": "2026-11-25T11:00:00Z",
                },
                {
                    "type": "Running",
                    "status": "True",
                    "reason": "GangRunning",
                    "lastTransitionTime": "2026-11-25T11:01:00Z",
                },
            ],
        }
    )
    assert [c.type for c in old.conditions or []] == [ConditionType.RUNNING] and old.restarts == 1


def test_events_record_changes_only() -> None:
    pending = run([])
    assert [e.reason for e in pending.events] == [Reason.GANG_PENDING]
    assert run([pod(0, "Pending"), pod(1, "Pending")], pending.status).events == []


@pytest.mark.parametrize(
    ("victim", "cause"),
    [
        (
            pod(1, "Failed", exit_code=137, disruption="TerminationByKubelet: The node was low on resource: memory."),
            "TerminationByKubelet: The node was low on resource: memory.",
        ),
        (
            pod(
                1,
                "Running",
                terminating=True,
                deletion_deadline=NOW,
                disruption="EvictionByEvictionAPI: Eviction API: evicting",
            ),
            "EvictionByEvictionAPI: Eviction API: evicting",
        ),
        (
            pod(1, "Running", terminating=True, deletion_deadline=NOW, disruption="WorkloadEvicted: Preempted"),
            "WorkloadEvicted: Preempted",
        ),
    ],
    ids=["kubelet-eviction", "api-eviction", "kueue-preemption"],
)
def test_a_disruption_restarts_the_gang_at_once_without_using_the_backoff_limit(
    victim: ObservedPod, cause: str
) -> None:
    running = status(phase=Phase.RUNNING, restarts=0, attempt=0, startTime="2026-11-25T11:00:00Z")
    plan = run([pod(0, "Running"), victim], running, runPolicy={"backoffLimit": 0})
    assert plan.status.phase == Phase.RESTARTING and plan.status.disruptions == 1 and plan.status.restarts == 0
    assert plan.status.attempt == 1 and plan.status.nextAttemptTime is None
    assert plan.status.message == f"flies-0-1 was disrupted ({cause}); restarting all pods from the last checkpoint"
    assert "flies-0-0" in plan.delete_pods
    assert plan.events[-1].reason == Reason.GANG_DISRUPTED
    # The disrupted gang is an earlier attempt now: the next gang waits for its pods, then starts at once.
    waiting = run([pod(0, "Running", terminating=True, deletion_deadline=NOW)], plan.status)
    assert pods_created(waiting) == [] and waiting.status.disruptions == 1
    assert pods_created(run([], plan.status)) == ["Pod/flies-1-0", "Pod/flies-1-1"]


def test_real_failures_wait_an_exponential_capped_delay() -> None:
    settings = OperatorSettings(restart_delay_seconds=10, restart_delay_max_seconds=25)
    running = status(phase=Phase.RUNNING, restarts=0, startTime="2026-11-25T11:00:00Z")
    first = run(
        [pod(0, "Failed", exit_code=1), pod(1, "Running")], running, settings=settings, runPolicy={"backoffLimit": 5}
    )
    assert first.status.nextAttemptTime == "2026-11-25T12:00:10Z"
    assert first.status.message is not None and first.status.message.endswith("from the last checkpoint in 10 s")
    early = run([], first.status, now=NOW + timedelta(seconds=9), settings=settings)
    assert pods_created(early) == [] and early.status.phase == Phase.RESTARTING and early.events == []
    due = run([], first.status, now=NOW + timedelta(seconds=10), settings=settings)
    assert pods_created(due) == ["Pod/flies-1-0", "Pod/flies-1-1"] and due.status.nextAttemptTime is None

    delays = []
    current = due.status
    for attempt in range(1, 4):
        failed = run(
            [pod(0, "Failed", attempt, exit_code=1)], current, settings=settings, runPolicy={"backoffLimit": 5}
        )
        delays.append((parse(failed.status.nextAttemptTime) - NOW).total_seconds())
        current = failed.status.model_copy(update={"nextAttemptTime": None})
    assert delays == [20, 25, 25]  # doubling from 10 s, capped at 25 s


def parse(stamp: str | None) -> datetime:
    assert stamp is not None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")


def test_a_refused_pod_waits_when_the_refusal_may_pass_and_fails_when_the_pod_is_invalid() -> None:
    quota = Refusal("Pod", "flies-0-0", 403, 'pods "flies-0-0" is forbidden: exceeded quota: gpus')
    waiting = run([], refused=quota)
    assert (
        waiting.status.phase == Phase.PENDING
        and waiting.create == []
        and "exceeded quota" in str(waiting.status.message)
    )
    assert [(e.type, e.reason) for e in waiting.events] == [("Warning", Reason.CREATE_REFUSED)]
    again = run([], waiting.status, refused=quota)
    assert again.events == []  # the same refusal on the next pass is not news
    retrying = run([], waiting.status)  # the next pass tries again: the refusal stays the news until it passes
    assert retrying.create and retrying.events == [] and retrying.status.message == waiting.status.message
    invalid = Refusal("Pod", "flies-0-0", 422, 'Pod "flies-0-0" is invalid: spec.volumes[4].name: Duplicate value')
    failed = run([pod(1, "Pending")], refused=invalid)
    assert failed.status.phase == Phase.FAILED and "Duplicate value" in str(failed.status.message)
    assert failed.delete_pods == ["flies-0-1"]


def test_time_suspended_does_not_count_against_the_deadline() -> None:
    running = status(phase=Phase.RUNNING, restarts=0, attempt=0, startTime="2026-11-25T11:30:00Z")
    suspended = run([pod(0, "Running"), pod(1, "Running")], running, runPolicy={"suspend": True}).status
    assert suspended.phase == Phase.SUSPENDED and suspended.startTime is None
    later = NOW + timedelta(hours=4)  # resumed the next morning, with a two-hour deadline
    resumed = run([], suspended, now=later, runPolicy={"activeDeadlineSeconds": 7200})
    assert resumed.status.phase == Phase.PENDING and [k for k in kinds(resumed) if k.startswith("Pod/")]


def test_a_finished_job_keeps_its_phase_whatever_becomes_of_its_spec() -> None:
    done = status(phase=Phase.SUCCEEDED, restarts=0, attempt=0, completionTime="2026-11-25T11:00:00Z")
    invalid = spec() | {"nodes": 0, "runPolicy": {"ttlSecondsAfterFinished": 60, "cleanPodPolicy": "All"}}
    seen = Observation([pod(0, "Succeeded"), pod(1, "Succeeded")], NOW)
    plan = reconcile(JOB, invalid, done, 8, seen, SETTINGS)
    assert plan.status.phase == Phase.SUCCEEDED and plan.events == []
    assert sorted(plan.delete_pods) == ["flies-0-0", "flies-0-1"] and plan.delete_job  # its runPolicy still applies
    unreadable = spec() | {"nodes": 0, "runPolicy": {"cleanPodPolicy": "Some"}}
    kept = reconcile(JOB, unreadable, done, 8, seen, SETTINGS)
    assert kept.status.phase == Phase.SUCCEEDED and kept.delete_pods == [] and not kept.delete_job


def test_a_running_gang_outlives_an_edit_the_schema_refuses() -> None:
    running = status(phase=Phase.RUNNING, restarts=0, attempt=0, startTime="2026-11-25T11:00:00Z")
    gang = [pod(0, "Running"), pod(1, "Running")]
    edited = spec() | {"podTemplate": {"volumes": [{"name": "shm", "emptyDir": {}}]}}  # the operator's name
    seen = Observation(gang, NOW)
    plan = reconcile(JOB, edited, running, 8, seen, SETTINGS)
    assert plan.status.phase == Phase.RUNNING and plan.delete_pods == [] and plan.create == []
    assert "spec.podTemplate" in str(plan.status.message) and "no pod starts until the spec is fixed" in str(
        plan.status.message
    )
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", Reason.INVALID_SPEC)]
    fixed = reconcile(JOB, spec(), plan.status, 9, seen, SETTINGS)
    assert fixed.status.phase == Phase.RUNNING and fixed.status.message == "2 pod(s) running"
    nothing_running = reconcile(JOB, edited, status(), 8, Observation([], NOW), SETTINGS)
    assert nothing_running.status.phase == Phase.FAILED  # a new job with a bad spec fails, as before


@pytest.mark.parametrize("waiting", ["suspended", "backing off"])
def test_a_job_without_pods_waits_out_an_edit_the_schema_refuses(waiting: str) -> None:
    """A suspended job, or one between two gangs, edited wrongly must not fail for good: reverting the edit
    lets it go on, as it does a running gang."""
    before = {
        "suspended": status(phase=Phase.SUSPENDED, restarts=0, attempt=1),
        "backing off": status(phase=Phase.RESTARTING, restarts=1, attempt=1, nextAttemptTime="2026-11-25T12:05:00Z"),
    }[waiting]
    policy = {"suspend": True} if waiting == "suspended" else {}
    edited = spec() | {"podTemplate": {"volumes": [{"name": "shm", "emptyDir": {}}]}, "runPolicy": policy}
    plan = reconcile(JOB, edited, before, 8, Observation([], NOW), SETTINGS)
    assert plan.status.phase == before.phase and plan.create == []
    assert "spec.podTemplate" in str(plan.status.message) and "no pod starts until the spec is fixed" in str(
        plan.status.message
    )
    reverted = reconcile(JOB, spec(), plan.status, 9, Observation([], NOW + timedelta(minutes=10)), SETTINGS)
    assert [k for k in kinds(reverted) if k.startswith("Pod/")], reverted.status


@pytest.mark.parametrize(
    "counted",
    [
        {"restarts": 1, "attempt": 1},
        {"restarts": 1},  # written before attempts were counted apart from restarts: one gang per restart
    ],
)
def test_a_gang_that_finishes_under_a_refused_edit_succeeds(counted: dict[str, int]) -> None:
    running = status(phase=Phase.RUNNING, startTime="2026-11-25T11:00:00Z", **counted)
    edited = spec() | {"podTemplate": {"volumes": [{"name": "shm", "emptyDir": {}}]}}
    done = Observation([pod(0, "Failed", 0, 1), pod(0, "Succeeded", 1), pod(1, "Succeeded", 1)], NOW)
    plan = reconcile(JOB, edited, running, 8, done, SETTINGS)
    assert plan.status.phase == Phase.SUCCEEDED and plan.delete_pods == []


def test_a_resumed_gang_waits_the_whole_grace_for_its_secret() -> None:
    problem = 'spec.storage.credentialsSecret: Secret "minio" not found in namespace "lab"'
    waiting = run([], secret_problem=problem)
    suspended = run([], waiting.status, runPolicy={"suspend": True}).status
    assert suspended.credentialsAwaitedSince is None
    resumed = run([], suspended, now=NOW + timedelta(hours=2), secret_problem=problem)
    assert resumed.status.phase == Phase.PENDING and resumed.status.credentialsAwaitedSince == "2026-11-25T14:00:00Z"
