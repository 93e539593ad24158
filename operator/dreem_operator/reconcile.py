"""The operator's decisions, as one pure function: from a job and the children observed, the children to
create or delete and the job's next status. The kopf handlers only read, call this, and apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import ValidationError

from dreem_operator.api import Condition, DreemTrainingJobSpec, DreemTrainingJobStatus
from dreem_operator.children import JobRef, KubernetesObject, OperatorSettings, config_map, gang_pod, headless_service

CONFIG_ERROR_EXIT = 2
"""`dreem train` exits 2 for a configuration or data error: retrying cannot help."""

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


@dataclass(frozen=True)
class ObservedPod:
    name: str
    attempt: int
    rank: int
    phase: PodPhase
    exit_code: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass
class Plan:
    create: list[KubernetesObject] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    status: DreemTrainingJobStatus = field(default_factory=DreemTrainingJobStatus)
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(stamp: str | None) -> datetime | None:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=None) if stamp else None


def spec_problems(error: ValidationError) -> str:
    return "; ".join(
        f"spec.{'.'.join(str(part) for part in issue['loc'])}: {issue['msg']}" for issue in error.errors()[:10]
    )


class Decision:
    """Builds a Plan step by step; one instance per reconcile."""

    def __init__(self, status: DreemTrainingJobStatus, now: datetime, generation: int) -> None:
        self.plan = Plan(status=status.model_copy(deep=True))
        self.plan.status.observedGeneration = generation
        self.now = now

    def phase(self, phase: Any, reason: str, message: str = "", warning: bool = False) -> Plan:
        status = self.plan.status
        if status.phase != phase:
            conditions = list(status.conditions or [])
            conditions.append(
                Condition(
                    type=phase, status="True", reason=reason, message=message, lastTransitionTime=_stamp(self.now)
                )
            )
            status.conditions = conditions
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message or phase))
        status.phase = phase
        status.message = message
        if phase in ("Succeeded", "Failed") and status.completionTime is None:
            status.completionTime = _stamp(self.now)
        return self.plan


def reconcile(
    job: JobRef,
    raw_spec: dict[str, Any],
    status: DreemTrainingJobStatus,
    generation: int,
    pods: list[ObservedPod],
    have: set[str],
    now: datetime,
    settings: OperatorSettings,
) -> Plan:
    """`have` holds the kinds of the other children that exist ("ConfigMap", "Service"); `now` is naive UTC."""
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
        finished = _parse(plan.status.completionTime)
        if policy.ttlSecondsAfterFinished is not None and finished is not None:
            plan.delete_job = now >= finished + timedelta(seconds=policy.ttlSecondsAfterFinished)
        return plan

    if policy.suspend:
        plan.delete_pods = [pod.name for pod in pods]
        return decision.phase("Suspended", "Suspended", "suspended by spec.runPolicy.suspend; progress is kept")

    started = _parse(plan.status.startTime)
    deadline = policy.activeDeadlineSeconds
    if deadline is not None and started is not None and now >= started + timedelta(seconds=deadline):
        plan.delete_pods = [pod.name for pod in pods]
        message = f"ran longer than spec.runPolicy.activeDeadlineSeconds ({deadline} s)"
        return decision.phase("Failed", "DeadlineExceeded", message, warning=True)

    attempt = plan.status.restarts or 0
    plan.delete_pods = [pod.name for pod in pods if pod.attempt != attempt]
    current = {pod.rank: pod for pod in pods if pod.attempt == attempt}

    broken = next((p for p in current.values() if p.phase == "Failed" and p.exit_code == CONFIG_ERROR_EXIT), None)
    if broken is not None:
        plan.delete_pods += [p.name for p in current.values()]
        message = broken.message.strip() or f"{broken.name} exited with a configuration error"
        return decision.phase("Failed", "ConfigurationError", message, warning=True)

    failed = [p for p in current.values() if p.phase in ("Failed", "Unknown")]
    if failed:
        plan.delete_pods += [p.name for p in current.values()]
        cause = f"{failed[0].name} failed (exit code {failed[0].exit_code})"
        if attempt >= policy.backoffLimit:
            return decision.phase("Failed", "BackoffLimitExceeded", f"{cause}; no restarts left", warning=True)
        plan.status.restarts = attempt + 1
        return decision.phase("Restarting", "GangRestart", f"{cause}; restarting all pods from the last checkpoint")

    if len(current) == spec.nodes and all(p.phase == "Succeeded" for p in current.values()):
        return decision.phase("Succeeded", "TrainingFinished", "all ranks finished")

    if "ConfigMap" not in have:
        plan.create.append(config_map(job, spec))
    if "Service" not in have:
        plan.create.append(headless_service(job, settings))
    missing = [rank for rank in range(spec.nodes) if rank not in current]
    plan.create += [gang_pod(job, spec, attempt, rank, settings) for rank in missing]
    if plan.status.startTime is None and missing:
        plan.status.startTime = _stamp(now)
    if plan.status.restarts is None:
        plan.status.restarts = 0
    if len(current) == spec.nodes and all(p.phase == "Running" for p in current.values()):
        return decision.phase("Running", "GangRunning", f"{spec.nodes} pod(s) running")
    if plan.status.phase == "Restarting":
        return plan
    return decision.phase("Pending", "GangPending", "waiting for all pods to be scheduled")
