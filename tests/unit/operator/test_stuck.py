"""Nothing waits forever: pods that cannot start surface with their own reason, a gang that does not run in time
is torn down, a pod on a lost node stops blocking, and a namesake's leftovers are never adopted.

The pod statuses are the shapes Kubernetes writes (kubelet, scheduler, API server), as quoted from the API
reference and the Kubernetes sources in docs/cluster.md's stuck-state section."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dreem_operator.api import ConditionType, Phase, Reason
from dreem_operator.children import OperatorSettings
from dreem_operator.reconcile import Namesake, ObservedPod, Trouble, observe_pod, observe_pods
from tests.unit.operator.cases import JOB, NOW, kinds, pod, pods_created, run, status

LABELS = {"dreem.sleap.ai/job": "flies", "dreem.sleap.ai/attempt": "0", "dreem.sleap.ai/rank": "1"}
NOT_READY = [
    {
        "type": "Ready",
        "status": "False",
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [trainer]",
    },
    {"type": "PodScheduled", "status": "True"},
]
UNSCHEDULABLE = (
    "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 "
    "Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
    "2 No preemption victims found for incoming pod."
)


def pod_with(status: dict[str, Any], spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "flies-0-1", "labels": LABELS, **meta}, "spec": spec or {}, "status": status}


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {
        "phase": "Pending",
        "conditions": NOT_READY,
        "containerStatuses": [
            {"name": "trainer", "ready": False, "state": {"waiting": {"reason": reason, "message": message}}}
        ],
    }


@pytest.mark.parametrize(
    ("manifest", "trouble"),
    [
        (
            pod_with(waiting("ImagePullBackOff", 'Back-off pulling image "ghcr.io/lab/dreem:nosuch"')),
            Trouble(Reason.IMAGE_PULL_BACK_OFF, 'Back-off pulling image "ghcr.io/lab/dreem:nosuch"'),
        ),
        (
            pod_with(waiting("ErrImagePull", 'rpc error: code = NotFound desc = failed to pull and unpack image "x"')),
            Trouble(Reason.ERR_IMAGE_PULL, 'rpc error: code = NotFound desc = failed to pull and unpack image "x"'),
        ),
        (
            pod_with(waiting("CreateContainerConfigError", "couldn't find key password in Secret lab/s3-credentials")),
            Trouble(Reason.CREATE_CONTAINER_CONFIG_ERROR, "couldn't find key password in Secret lab/s3-credentials"),
        ),
        (
            pod_with(
                {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE}
                    ],
                }
            ),
            Trouble(Reason.UNSCHEDULABLE, UNSCHEDULABLE),
        ),
        (
            pod_with(
                {
                    "phase": "Pending",
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "SchedulingGated",
                            "message": "Scheduling is blocked due to non-empty scheduling gates",
                        }
                    ],
                },
                spec={"schedulingGates": [{"name": "kueue.x-k8s.io/admission"}]},
            ),
            Trouble(Reason.SCHEDULING_GATED, "Scheduling is blocked due to non-empty scheduling gates"),
        ),
        (pod_with(waiting("ContainerCreating", "")), None),
    ],
    ids=["image-pull-back-off", "err-image-pull", "config-error", "unschedulable", "gated", "creating"],
)
def test_observe_why_a_pod_cannot_start(manifest: dict[str, Any], trouble: Trouble | None) -> None:
    observed = observe_pod(manifest)
    assert observed is not None and observed.trouble == trouble
    assert observed.gated == (trouble is not None and trouble.reason == Reason.SCHEDULING_GATED)


def test_observe_a_disrupted_and_a_lost_pod() -> None:
    evicted = observe_pod(
        pod_with(
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory. ",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "TerminationByKubelet",
                        "message": "The node was low on resource: memory. ",
                    }
                ],
            }
        )
    )
    assert evicted is not None and evicted.disruption == "TerminationByKubelet: The node was low on resource: memory."
    lost = observe_pod(
        pod_with(
            {
                "phase": "Running",
                "conditions": [
                    {
                        "type": "DisruptionTarget",
                        "status": "True",
                        "reason": "DeletionByTaintManager",
                        "message": "Taint manager: deleting due to NoExecute taint",
                    },
                    {"type": "Ready", "status": "False"},
                ],
            },
            deletionTimestamp="2026-11-25T12:10:40Z",
            deletionGracePeriodSeconds=30,
        )
    )
    assert lost is not None and lost.terminating and not lost.ready
    assert lost.deletion_deadline == NOW + timedelta(minutes=10, seconds=40)
    assert lost.disruption == "DeletionByTaintManager: Taint manager: deleting due to NoExecute taint"
    ready = observe_pod(pod_with({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}))
    assert ready is not None and ready.ready and ready.disruption is None


def stuck(rank: int, reason: Reason, message: str, attempt: int = 0) -> ObservedPod:
    return pod(rank, "Pending", attempt, trouble=Trouble(reason, message), gated=reason == Reason.SCHEDULING_GATED)


def test_a_pod_that_cannot_start_surfaces_with_its_own_reason_most_actionable_first() -> None:
    before = status(phase=Phase.PENDING, restarts=0, attempt=0, startTime="2026-11-25T11:00:00Z")
    plan = run(
        [
            stuck(0, Reason.UNSCHEDULABLE, UNSCHEDULABLE),
            stuck(1, Reason.IMAGE_PULL_BACK_OFF, 'Back-off pulling image "x"'),
        ],
        before,
    )
    assert plan.status.phase == Phase.PENDING
    assert plan.status.message == 'pod flies-0-1: Back-off pulling image "x"'
    running = next(c for c in plan.status.conditions or [] if c.type == ConditionType.RUNNING)
    assert (running.status, running.reason) == ("False", Reason.IMAGE_PULL_BACK_OFF)
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", Reason.IMAGE_PULL_BACK_OFF)]
    only_unschedulable = run([stuck(0, Reason.UNSCHEDULABLE, UNSCHEDULABLE), pod(1, "Running")], plan.status)
    assert only_unschedulable.status.message == f"pod flies-0-0: {UNSCHEDULABLE}"
    # A restarting job's new gang that cannot start says so too.
    restarting = status(phase=Phase.RESTARTING, restarts=1, attempt=1, startTime="2026-11-25T11:00:00Z")
    stalled = run([stuck(0, Reason.ERR_IMAGE_PULL, "not found", 1), pod(1, "Running", 1)], restarting)
    assert stalled.status.phase == Phase.RESTARTING and stalled.status.message == "pod flies-1-0: not found"


def test_the_schedule_timer_starts_when_the_whole_gang_is_released_to_the_scheduler() -> None:
    before = status(phase=Phase.PENDING, restarts=0, attempt=0, startTime="2026-11-25T11:00:00Z")
    queued = run([stuck(0, Reason.SCHEDULING_GATED, "gated"), stuck(1, Reason.SCHEDULING_GATED, "gated")], before)
    assert queued.status.scheduleStartTime is None and queued.status.phase == Phase.PENDING
    assert queued.events[-1].type == "Normal"  # queued in Kueue is no problem
    half = run([pod(0, "Pending")], before)
    assert half.status.scheduleStartTime is None
    released = run([pod(0, "Pending"), stuck(1, Reason.UNSCHEDULABLE, UNSCHEDULABLE)], before)
    assert released.status.scheduleStartTime == "2026-11-25T12:00:00Z"


@pytest.mark.parametrize("action", ["Requeue", "Fail"])
def test_a_gang_not_running_in_time_is_torn_down_and_requeued_or_failed(action: str) -> None:
    settings = OperatorSettings(restart_delay_seconds=10, restart_delay_max_seconds=60)
    policy = {"schedulingPolicy": {"scheduleTimeoutSeconds": 120, "scheduleTimeoutAction": action}}
    released = status(
        phase=Phase.PENDING,
        restarts=0,
        attempt=0,
        startTime="2026-11-25T11:00:00Z",
        scheduleStartTime="2026-11-25T11:58:00Z",
    )
    gang = [pod(0, "Running"), stuck(1, Reason.UNSCHEDULABLE, UNSCHEDULABLE)]
    in_time = run(gang, released, now=NOW - timedelta(seconds=1), settings=settings, runPolicy=policy)
    assert in_time.status.phase == Phase.PENDING and in_time.delete_pods == []
    late = run(gang, released, settings=settings, runPolicy=policy)
    assert sorted(late.delete_pods) == ["flies-0-0", "flies-0-1"]
    cause = "the gang was not running 120 s after its pods were released to the scheduler: "
    cause += f"flies-0-1: Unschedulable: {UNSCHEDULABLE}"
    if action == "Fail":
        assert late.status.phase == Phase.FAILED and late.status.message == cause
        assert late.events[-1].reason == Reason.SCHEDULE_TIMEOUT
        return
    assert late.status.phase == Phase.RESTARTING and late.status.message == f"{cause}; queueing a new attempt in 10 s"
    assert (late.status.requeues, late.status.restarts, late.status.attempt) == (1, 0, 1)
    assert late.status.scheduleStartTime is None and late.status.nextAttemptTime == "2026-11-25T12:00:10Z"
    assert pods_created(run([], late.status, now=NOW + timedelta(seconds=10), settings=settings)) == [
        "Pod/flies-1-0",
        "Pod/flies-1-1",
    ]
    # A running gang is never timed out.
    running = run([pod(0, "Running"), pod(1, "Running")], released, settings=settings, runPolicy=policy)
    assert running.status.phase == Phase.RUNNING and running.delete_pods == []


def deleted(rank: int, attempt: int, deadline_ago: float, ready: bool = False) -> ObservedPod:
    return pod(
        rank,
        "Running",
        attempt,
        terminating=True,
        deletion_deadline=NOW - timedelta(seconds=deadline_ago),
        ready=ready,
    )


def test_a_pod_on_a_lost_node_stops_blocking_the_next_gang_and_is_force_deleted() -> None:
    settings = OperatorSettings(lost_pod_seconds=60)
    restarting = status(phase=Phase.RESTARTING, restarts=1, attempt=1, startTime="2026-11-25T11:00:00Z")
    within = run([deleted(0, 0, deadline_ago=59)], restarting, settings=settings)
    assert pods_created(within) == [] and within.force_delete_pods == []
    # Still ready: its kubelet reports, so it will stop; the bound is not a licence to force it.
    reporting = run([deleted(0, 0, deadline_ago=600, ready=True)], restarting, settings=settings)
    assert pods_created(reporting) == [] and reporting.force_delete_pods == []
    lost = run([deleted(0, 0, deadline_ago=60)], restarting, settings=settings)
    assert lost.force_delete_pods == ["flies-0-0"]
    assert pods_created(lost) == ["Pod/flies-1-0", "Pod/flies-1-1"]


def earlier_jobs(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": [{"kind": "DreemTrainingJob", "uid": "old"}]}}


def test_children_of_an_earlier_namesake_are_waited_for_never_adopted() -> None:
    foreign = [Namesake.of("Pod", earlier_jobs("flies-0-0")), Namesake.of("ConfigMap", earlier_jobs("flies-config"))]
    plan = run([], foreign=foreign)
    assert plan.create == [] and plan.status.phase == Phase.PENDING
    assert plan.status.message is not None and plan.status.message.startswith(
        """waiting for pod "flies-0-0", configmap "flies-config" of an earlier DreemTrainingJob named 'flies' """
    )
    assert plan.events[-1].reason == Reason.WAITING_FOR_PREVIOUS_JOB and plan.events[-1].type == "Warning"
    assert kinds(run([], plan.status))[0] == "ConfigMap/flies-config"


def test_a_users_own_object_holding_a_childs_name_is_named_as_such() -> None:
    """A biologist's own ConfigMap flies-config (no owner) is not an earlier job's: nothing will delete it, and
    the message must not invite them to wait for a garbage collector, nor say it is a job's."""
    mine = Namesake.of("ConfigMap", {"metadata": {"name": "flies-config"}})
    assert not mine.earlier_job
    message = str(run([], foreign=[mine]).status.message)
    assert message.startswith('configmap "flies-config" already exist(s) in namespace')
    assert "belong(s) to no DreemTrainingJob" in message and "another name" in message


def test_pods_are_told_apart_by_their_controller_uid() -> None:
    def labelled(name: str, uid: str, controller: bool = True) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "labels": {"dreem.sleap.ai/job": "flies", "dreem.sleap.ai/attempt": "0", "dreem.sleap.ai/rank": "0"},
                "ownerReferences": [{"uid": uid, "controller": controller}],
            }
        }

    own, foreign = observe_pods(
        [labelled("flies-0-0", JOB.uid), labelled("flies-0-1", "old-uid"), labelled("flies-0-2", JOB.uid, False)], JOB
    )
    assert [p.name for p in own] == ["flies-0-0"] and [n.what for n in foreign] == [
        'pod "flies-0-1"',
        'pod "flies-0-2"',
    ]


def test_a_gang_on_its_nodes_is_not_said_to_wait_for_the_scheduler() -> None:
    """Pods placed but stuck in ContainerCreating (a missing volume, a slow pull) carry no reason in their
    status: the message must say they are on their nodes, and where to look, not that they await scheduling."""
    pending = status(phase=Phase.PENDING, restarts=0, attempt=0)
    unplaced = run([pod(0, "Pending", scheduled=True), pod(1, "Pending")], pending).status.message
    assert unplaced == "waiting for all pods to be scheduled (1 of 2 placed on a node)"
    placed = run([pod(0, "Running", scheduled=True), pod(1, "Pending", scheduled=True)], pending).status.message
    assert str(placed).startswith("all 2 pod(s) are on their nodes, 1 still starting")
    assert "kubectl describe pod flies-0-1" in str(placed)
