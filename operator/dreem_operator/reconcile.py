"""The operator's decisions, as pure rules: from a job and the children observed, the children to create or
delete and the job's next status. The kopf handlers only read, call `reconcile()`, and apply its Plan.

Each rule looks at the job's Situation and either decides (returns the Plan) or passes (returns None). The
first rule that decides wins, so the order of the rules is their precedence: a suspended job is not failed
for its deadline, and a user's error fails the job before a gang restart could retry it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal, get_args

from pydantic import ValidationError

from dreem_operator.api import (
    Condition,
    DreemTrainingJobSpec,
    DreemTrainingJobStatus,
    KubernetesObject,
    Phase,
    Reason,
    RunPolicy,
)
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
    reason: Reason
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
        "reason": event.reason.value,
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

    def delete(self, pods: Iterable[ObservedPod]) -> None:
        self.plan.delete_pods += [pod.name for pod in pods]

    def create(self, children: Iterable[KubernetesObject]) -> None:
        self.plan.create += children

    def keep(self) -> Plan:
        """Stay in the phase, with its message."""
        return self.plan

    def phase(
        self, phase: Phase, reason: Reason, message: str = "", warning: bool = False, record: bool = False
    ) -> Plan:
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
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message or phase.value))
        status.phase = phase
        status.message = message
        if phase.finished and status.completionTime is None:
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


@dataclass(frozen=True)
class Situation:
    """What the rules read: the valid spec, the status as the last reconcile left it, and the pods."""

    job: JobRef
    spec: DreemTrainingJobSpec
    status: DreemTrainingJobStatus
    seen: Observation
    settings: OperatorSettings
    live: list[ObservedPod]
    """The pods that count: not being deleted."""
    stopping: list[ObservedPod]
    """Deleted, still stopping."""

    @classmethod
    def of(
        cls,
        job: JobRef,
        spec: DreemTrainingJobSpec,
        status: DreemTrainingJobStatus,
        seen: Observation,
        settings: OperatorSettings,
    ) -> Situation:
        live = [pod for pod in seen.pods if not pod.terminating]
        stopping = [pod for pod in seen.pods if pod.terminating]
        return cls(job, spec, status, seen, settings, live, stopping)

    @property
    def now(self) -> datetime:
        return self.seen.now

    @property
    def policy(self) -> RunPolicy:
        return self.spec.runPolicy

    @property
    def attempt(self) -> int:
        """The gang wanted now: every gang restart starts the next attempt."""
        return self.status.restarts or 0

    @cached_property
    def gang(self) -> dict[int, ObservedPod]:
        """The live pods of this attempt, by rank."""
        return {pod.rank: pod for pod in self.live if pod.attempt == self.attempt}

    @property
    def earlier(self) -> list[ObservedPod]:
        """Live pods of earlier attempts."""
        return [pod for pod in self.live if pod.attempt != self.attempt]

    @property
    def missing(self) -> list[int]:
        """Ranks of this attempt that have no live pod."""
        return [rank for rank in range(self.spec.nodes) if rank not in self.gang]

    @property
    def complete(self) -> bool:
        """As many pods in the gang as the job has nodes."""
        return len(self.gang) == self.spec.nodes


Rule = Callable[[Situation, Decision], Plan | None]


def spec_invalid(error: ValidationError, seen: Observation, decide: Decision) -> Plan:
    """A spec the schema refuses fails the job, whatever its phase: no rule can act on it."""
    decide.delete(pod for pod in seen.pods if not pod.terminating)
    return decide.phase(Phase.FAILED, Reason.INVALID_SPEC, spec_problems(error), warning=True)


def job_finished(s: Situation, decide: Decision) -> Plan | None:
    """A finished job keeps its phase. Its pods go as spec.runPolicy.cleanPodPolicy says, and the job itself
    once ttlSecondsAfterFinished has passed."""
    if s.status.phase is None or not s.status.phase.finished:
        return None
    doomed = {
        "All": s.live,
        "Running": [pod for pod in s.live if pod.phase in ("Pending", "Running")],
        "None": [],
    }
    decide.delete(doomed[s.policy.cleanPodPolicy])
    finished = parse_stamp(s.status.completionTime)
    if s.policy.ttlSecondsAfterFinished is not None and finished is not None:
        decide.plan.delete_job = s.now >= finished + timedelta(seconds=s.policy.ttlSecondsAfterFinished)
    return decide.keep()


def job_suspended(s: Situation, decide: Decision) -> Plan | None:
    if not s.policy.suspend:
        return None
    decide.delete(s.live)
    return decide.phase(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.runPolicy.suspend; progress is kept")


def deadline_passed(s: Situation, decide: Decision) -> Plan | None:
    started = parse_stamp(s.status.startTime)
    deadline = s.policy.activeDeadlineSeconds
    if deadline is None or started is None or s.now < started + timedelta(seconds=deadline):
        return None
    decide.delete(s.live)
    message = f"ran longer than spec.runPolicy.activeDeadlineSeconds ({deadline} s)"
    return decide.phase(Phase.FAILED, Reason.DEADLINE_EXCEEDED, message, warning=True)


def user_error(s: Situation, decide: Decision) -> Plan | None:
    """A rank that exited EXIT_USER_ERROR fails the job at once, with the trainer's reason: retrying cannot help."""
    gang = s.gang.values()
    broken = next((pod for pod in gang if pod.phase == "Failed" and pod.exit_code == EXIT_USER_ERROR), None)
    if broken is None:
        return None
    decide.delete(gang)
    message = broken.message.strip() or f"{broken.name} exited with a configuration error"
    return decide.phase(Phase.FAILED, Reason.CONFIGURATION_ERROR, message, warning=True)


def gang_broken(s: Situation, decide: Decision) -> Plan | None:
    """A failed rank, or one lost while the gang ran, stops the whole gang: the next attempt resumes from the
    last checkpoint, until spec.runPolicy.backoffLimit is spent."""
    gang = s.gang.values()
    failed = [pod for pod in gang if pod.phase in ("Failed", "Unknown")]
    lost = s.missing if s.status.phase == Phase.RUNNING else []
    if not failed and not lost:
        return None
    decide.delete(gang)
    if failed:
        cause = f"{failed[0].name} failed (exit code {failed[0].exit_code})"
        last_words = last_line(failed[0].message)
        if last_words:
            cause += f": {last_words}"
    else:
        cause = f"pod {s.job.names.pod(s.attempt, lost[0])} disappeared while the gang was running"
    if s.attempt >= s.policy.backoffLimit:
        return decide.phase(Phase.FAILED, Reason.BACKOFF_LIMIT_EXCEEDED, f"{cause}; no restarts left", warning=True)
    decide.plan.status.restarts = s.attempt + 1
    message = f"{cause}; restarting all pods from the last checkpoint"
    return decide.phase(Phase.RESTARTING, Reason.GANG_RESTART, message, warning=True, record=True)


def training_finished(s: Situation, decide: Decision) -> Plan | None:
    if not s.complete or not all(pod.phase == "Succeeded" for pod in s.gang.values()):
        return None
    return decide.phase(Phase.SUCCEEDED, Reason.TRAINING_FINISHED, "all ranks finished")


def secret_unusable(s: Situation, decide: Decision) -> Plan | None:
    """No new pod starts without its credentials Secret. GitOps tools apply a job and its Secret in no fixed
    order, so the Secret has settings.secret_grace_seconds to arrive before the job fails."""
    if not s.missing or s.seen.secret_problem is None:
        return None
    created = s.seen.created or s.now
    if s.now < created + timedelta(seconds=s.settings.secret_grace_seconds):
        return decide.phase(Phase.PENDING, Reason.WAITING_FOR_CREDENTIALS, s.seen.secret_problem, warning=True)
    decide.delete(s.gang.values())
    return decide.phase(Phase.FAILED, Reason.CREDENTIALS_MISSING, s.seen.secret_problem, warning=True)


def previous_gang_stopping(s: Situation, decide: Decision) -> Plan | None:
    """A new gang starts only once the old one is gone: its rank 0 may still be uploading the checkpoint the
    new one must resume from, and both would answer to the same rank DNS names meanwhile."""
    previous = len(s.stopping) + len(s.earlier)
    if not s.missing or not previous:
        return None
    if s.status.phase == Phase.RESTARTING:
        return decide.keep()  # the message keeps saying why the gang restarts
    return decide.phase(
        Phase.PENDING, Reason.GANG_PENDING, f"waiting for {previous} pod(s) of the previous attempt to stop"
    )


def run_the_gang(s: Situation, decide: Decision) -> Plan:
    """Create what is missing and say how far the gang has come. Children other than pods are listed whenever
    pods are created: creating them is idempotent (an existing one is kept), which spares a read of each."""
    missing = s.missing
    if missing:
        decide.create(
            [
                config_map(s.job, s.spec, s.settings),
                headless_service(s.job, s.settings),
                service_account(s.job),
                progress_role(s.job),
                progress_role_binding(s.job),
            ]
        )
    decide.create(gang_pod(s.job, s.spec, s.attempt, rank, s.settings) for rank in missing)
    status = decide.plan.status
    if status.startTime is None and missing:
        status.startTime = _stamp(s.now)
    if status.restarts is None:
        status.restarts = 0
    # A rank that finished first keeps the gang Running until the others finish.
    if s.complete and all(pod.phase in ("Running", "Succeeded") for pod in s.gang.values()):
        return decide.phase(Phase.RUNNING, Reason.GANG_RUNNING, f"{s.spec.nodes} pod(s) running")
    if s.status.phase == Phase.RESTARTING:
        return decide.keep()
    return decide.phase(Phase.PENDING, Reason.GANG_PENDING, "waiting for all pods to be scheduled")


JOB_RULES: tuple[Rule, ...] = (job_finished, job_suspended, deadline_passed)
"""Rules about the job as a whole: they act on every pod it has."""
GANG_RULES: tuple[Rule, ...] = (user_error, gang_broken, training_finished, secret_unusable, previous_gang_stopping)
"""Rules about the current attempt's gang; `run_the_gang` decides when none of them does."""


def reconcile(
    job: JobRef,
    raw_spec: dict[str, Any],
    status: DreemTrainingJobStatus,
    generation: int,
    seen: Observation,
    settings: OperatorSettings,
) -> Plan:
    """The next step for one job: the first rule that decides."""
    decide = Decision(status, seen.now, generation)
    try:
        spec = DreemTrainingJobSpec.model_validate(raw_spec)
    except ValidationError as error:
        return spec_invalid(error, seen, decide)
    situation = Situation.of(job, spec, status, seen, settings)
    for rule in JOB_RULES:
        if (plan := rule(situation, decide)) is not None:
            return plan
    # Whatever the gang rules decide, the pods of earlier attempts go.
    decide.delete(situation.earlier)
    for rule in GANG_RULES:
        if (plan := rule(situation, decide)) is not None:
            return plan
    return run_the_gang(situation, decide)
