"""The operator's decisions, as one pure function: from a job and the children observed, the children to
create or delete and the job's next status. The kopf handlers only read, call this, and apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

from pydantic import ValidationError

from dreem_operator.api import Condition, DreemTrainingJobSpec, DreemTrainingJobStatus, KubernetesObject
from dreem_operator.children import (
    JobRef,
    OperatorSettings,
    config_map,
    gang_pod,
    headless_service,
    progress_role,
    progress_role_binding,
    service_account,
)
from dreem_operator.names import FIELD_MANAGER, LABEL_ATTEMPT, LABEL_RANK, TRAINER_CONTAINER
from dreem_trainer.config.loader import issues_from
from dreem_trainer.contract import EXIT_USER_ERROR

MAX_CONDITIONS = 20
"""The status keeps the newest transitions only, so a long-lived job's object stays small."""

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


@dataclass(frozen=True)
class ObservedPod:
    name: str
    attempt: int
    rank: int
    phase: PodPhase
    exit_code: int | None = None
    message: str = ""
    terminating: bool = False
    """Deleted and still stopping (its kubelet has not confirmed): it no longer counts, but it still runs."""


def observe_pod(pod: KubernetesObject) -> ObservedPod | None:
    """What the decision needs from a pod: its place in the gang and how its trainer ended.

    None for a pod that lacks the gang labels."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    if LABEL_ATTEMPT not in labels or LABEL_RANK not in labels:
        return None
    try:
        attempt, rank = int(labels[LABEL_ATTEMPT]), int(labels[LABEL_RANK])
    except ValueError:
        return None
    status = pod.get("status") or {}
    phase: PodPhase = status["phase"] if status.get("phase") in get_args(PodPhase) else "Pending"
    exit_code, message = None, status.get("message") or ""
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if container.get("name") == TRAINER_CONTAINER and terminated:
            exit_code = terminated.get("exitCode")
            message = terminated.get("message") or terminated.get("reason") or message
    terminating = bool(meta.get("deletionTimestamp"))
    return ObservedPod(meta.get("name", ""), attempt, rank, phase, exit_code, message, terminating)


@dataclass(frozen=True)
class Observation:
    """What the handlers saw of the job's world, besides the job itself."""

    pods: list[ObservedPod]
    now: datetime
    """Naive UTC."""
    created: datetime | None = None
    """The job's creationTimestamp, naive UTC."""
    secret_problem: str | None = None
    """Why spec.storage.credentialsSecret cannot be used (missing, or lacks a key), if it cannot."""


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


def event_object(job: JobRef, event: Event, now: datetime) -> KubernetesObject:
    """A core/v1 Event on the job, as `kubectl describe dtj` lists them."""
    stamp = _stamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{job.name}.", "namespace": job.namespace},
        "involvedObject": {
            "apiVersion": job.owner()["apiVersion"],
            "kind": job.owner()["kind"],
            "name": job.name,
            "namespace": job.namespace,
            "uid": job.uid,
        },
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
    }


@dataclass
class Plan:
    create: list[KubernetesObject] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    status: DreemTrainingJobStatus = field(default_factory=DreemTrainingJobStatus)
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_problems(error: ValidationError) -> str:
    """The spec's problems worded as `dreem config validate` words them, with did-you-mean for typos."""
    return "; ".join(f"spec.{issue}" for issue in issues_from(error)[:10])


class Decision:
    """Builds a Plan step by step; one instance per reconcile."""

    def __init__(self, status: DreemTrainingJobStatus, now: datetime, generation: int) -> None:
        self.plan = Plan(status=status.model_copy(deep=True))
        self.plan.status.observedGeneration = generation
        self.now = now

    def phase(self, phase: Any, reason: str, message: str = "", warning: bool = False, record: bool = False) -> Plan:
        """Enter `phase`. A new phase, a new reason within it, or a decision that is news by itself
        (`record`: every gang restart) is recorded as a condition and an Event; repeating the same
        decision on the next reconcile records nothing."""
        status = self.plan.status
        last = status.conditions[-1] if status.conditions else None
        if record or status.phase != phase or (last is not None and last.reason != reason):
            condition = Condition(
                type=phase, status="True", reason=reason, message=message, lastTransitionTime=_stamp(self.now)
            )
            status.conditions = [*(status.conditions or []), condition][-MAX_CONDITIONS:]
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message or phase))
        status.phase = phase
        status.message = message
        if phase in ("Succeeded", "Failed") and status.completionTime is None:
            status.completionTime = _stamp(self.now)
        return self.plan


def last_line(message: str, limit: int = 300) -> str:
    """The line of a termination message that says why: the last non-empty one, shortened."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1][:limit] if lines else ""


def parse_stamp(stamp: str | None) -> datetime | None:
    """A Kubernetes timestamp as naive UTC; None when absent or unreadable."""
    try:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ") if stamp else None
    except ValueError:
        return None


def reconcile(
    job: JobRef,
    raw_spec: dict[str, Any],
    status: DreemTrainingJobStatus,
    generation: int,
    seen: Observation,
    settings: OperatorSettings,
) -> Plan:
    """The next step for one job. Children other than pods are listed in `plan.create` whenever pods are
    created: creating them is idempotent (an existing one is kept), which spares a read of each per reconcile."""
    now = seen.now
    stopping = [pod for pod in seen.pods if pod.terminating]
    pods = [pod for pod in seen.pods if not pod.terminating]
    decision = Decision(status, now, generation)
    plan = decision.plan
    try:
        spec = DreemTrainingJobSpec.model_validate(raw_spec)
    except ValidationError as error:
        plan.delete_pods = [pod.name for pod in pods]
        return decision.phase("Failed", "InvalidSpec", spec_problems(error), warning=True)

    policy = spec.runPolicy
    if plan.status.phase in ("Succeeded", "Failed"):
        doomed = {"All": pods, "Running": [p for p in pods if p.phase in ("Pending", "Running")], "None": []}
        plan.delete_pods = [pod.name for pod in doomed[policy.cleanPodPolicy]]
        finished = parse_stamp(plan.status.completionTime)
        if policy.ttlSecondsAfterFinished is not None and finished is not None:
            plan.delete_job = now >= finished + timedelta(seconds=policy.ttlSecondsAfterFinished)
        return plan

    if policy.suspend:
        plan.delete_pods = [pod.name for pod in pods]
        return decision.phase("Suspended", "Suspended", "suspended by spec.runPolicy.suspend; progress is kept")

    started = parse_stamp(plan.status.startTime)
    deadline = policy.activeDeadlineSeconds
    if deadline is not None and started is not None and now >= started + timedelta(seconds=deadline):
        plan.delete_pods = [pod.name for pod in pods]
        message = f"ran longer than spec.runPolicy.activeDeadlineSeconds ({deadline} s)"
        return decision.phase("Failed", "DeadlineExceeded", message, warning=True)

    attempt = plan.status.restarts or 0
    plan.delete_pods = [pod.name for pod in pods if pod.attempt != attempt]
    current = {pod.rank: pod for pod in pods if pod.attempt == attempt}

    broken = next((p for p in current.values() if p.phase == "Failed" and p.exit_code == EXIT_USER_ERROR), None)
    if broken is not None:
        plan.delete_pods += [p.name for p in current.values()]
        message = broken.message.strip() or f"{broken.name} exited with a configuration error"
        return decision.phase("Failed", "ConfigurationError", message, warning=True)

    failed = [p for p in current.values() if p.phase in ("Failed", "Unknown")]
    lost = [rank for rank in range(spec.nodes) if rank not in current]
    if failed or (plan.status.phase == "Running" and lost):
        plan.delete_pods += [p.name for p in current.values()]
        if failed:
            cause = f"{failed[0].name} failed (exit code {failed[0].exit_code})"
            last_words = last_line(failed[0].message)
            if last_words:
                cause += f": {last_words}"
        else:
            cause = f"pod {job.names.pod(attempt, lost[0])} disappeared while the gang was running"
        if attempt >= policy.backoffLimit:
            return decision.phase("Failed", "BackoffLimitExceeded", f"{cause}; no restarts left", warning=True)
        plan.status.restarts = attempt + 1
        message = f"{cause}; restarting all pods from the last checkpoint"
        return decision.phase("Restarting", "GangRestart", message, warning=True, record=True)

    if len(current) == spec.nodes and all(p.phase == "Succeeded" for p in current.values()):
        return decision.phase("Succeeded", "TrainingFinished", "all ranks finished")

    missing = [rank for rank in range(spec.nodes) if rank not in current]
    if missing and seen.secret_problem is not None:
        created = seen.created or now
        if now < created + timedelta(seconds=settings.secret_grace_seconds):
            # GitOps tools apply a job and its Secret in no fixed order: give the Secret a moment to arrive.
            return decision.phase("Pending", "WaitingForSecret", seen.secret_problem, warning=True)
        plan.delete_pods += [p.name for p in current.values()]
        return decision.phase("Failed", "MissingSecret", seen.secret_problem, warning=True)
    previous = len(stopping) + sum(pod.attempt != attempt for pod in pods)
    if missing and previous:
        # A new gang starts only once the old one is gone: its rank 0 may still be uploading the checkpoint
        # the new one must resume from, and both would answer to the same rank DNS names meanwhile.
        if plan.status.phase == "Restarting":
            return plan  # the message keeps saying why the gang restarts
        return decision.phase(
            "Pending", "GangPending", f"waiting for {previous} pod(s) of the previous attempt to stop"
        )
    if missing:
        plan.create += [
            config_map(job, spec, settings),
            headless_service(job, settings),
            service_account(job),
            progress_role(job),
            progress_role_binding(job),
        ]
    plan.create += [gang_pod(job, spec, attempt, rank, settings) for rank in missing]
    if plan.status.startTime is None and missing:
        plan.status.startTime = _stamp(now)
    if plan.status.restarts is None:
        plan.status.restarts = 0
    # A rank that finished first keeps the gang Running until the others finish.
    if len(current) == spec.nodes and all(p.phase in ("Running", "Succeeded") for p in current.values()):
        return decision.phase("Running", "GangRunning", f"{spec.nodes} pod(s) running")
    if plan.status.phase == "Restarting":
        return plan
    return decision.phase("Pending", "GangPending", "waiting for all pods to be scheduled")
