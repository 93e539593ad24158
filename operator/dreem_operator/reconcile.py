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
    ConditionType,
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
    pod_group,
    progress_role,
    progress_role_binding,
    service_account,
)
from dreem_operator.names import FIELD_MANAGER, LABEL_ATTEMPT, LABEL_RANK, TRAINER_CONTAINER
from dreem_trainer.config.loader import issues_from
from dreem_trainer.contract import EXIT_USER_ERROR
from dreem_trainer.contract import KIND as JOB_KIND

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]
ENDED: tuple[PodPhase, ...] = ("Succeeded", "Failed")
"""A pod in these phases holds no node, no GPU and no rank's DNS name: it is kept for its log."""

DISRUPTION_CONDITIONS = ("DisruptionTarget", "TerminationTarget")
"""Pod conditions that say the pod is being stopped for the cluster's sake, not its own fault: Kubernetes'
DisruptionTarget (eviction, preemption, taint manager, node-pressure eviction, graceful node shutdown) and
Kueue's TerminationTarget (its workload was evicted or preempted)."""

TROUBLE_ORDER: tuple[Reason, ...] = (
    Reason.CREATE_CONTAINER_CONFIG_ERROR,
    Reason.CREATE_CONTAINER_ERROR,
    Reason.INVALID_IMAGE_NAME,
    Reason.ERR_IMAGE_NEVER_PULL,
    Reason.IMAGE_PULL_BACK_OFF,
    Reason.ERR_IMAGE_PULL,
    Reason.IMAGE_INSPECT_ERROR,
    Reason.REGISTRY_UNAVAILABLE,
    Reason.PRE_START_HOOK_ERROR,
    Reason.POST_START_HOOK_ERROR,
    Reason.UNSCHEDULABLE,
    Reason.SCHEDULING_GATED,
)
"""Why a pod cannot start, as Kubernetes words it, most actionable first: a gang held up by several reasons
reports the first (a missing Secret key is fixed before a full cluster frees up)."""


@dataclass(frozen=True)
class Trouble:
    """Why a pod has not started: the pod's own reason and message, copied, never parsed (they differ between
    Kubernetes versions and container runtimes)."""

    reason: Reason
    message: str


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
    deletion_deadline: datetime | None = None
    """metadata.deletionTimestamp: when its kubelet should have stopped it (the grace period included)."""
    ready: bool = False
    trouble: Trouble | None = None
    disruption: str | None = None
    """Why the cluster stopped it (a DisruptionTarget or TerminationTarget condition), as `Reason: message`."""
    gated: bool = False
    """Held by a scheduling gate: queued in Kueue, not yet released to the scheduler."""
    reason: str = ""
    """Why its trainer ended, as Kubernetes words it (OOMKilled, Error), or why the pod failed without it."""
    finished_at: datetime | None = None
    """When its trainer ended: the first rank to fail is the one to blame (the others die of losing it)."""
    scheduled: bool = False
    """Placed on a node (PodScheduled): what keeps it from running is then on the node (image, volumes)."""

    def failure(self) -> str:
        """`<pod> failed (exit code 137, OOMKilled): <the last line it logged>`."""
        ending = [f"exit code {self.exit_code}"] if self.exit_code is not None else []
        if self.reason and self.reason not in ("Error", "Completed"):
            ending.append(self.reason)
        cause = f"{self.name} failed ({', '.join(ending) or 'no exit code'})"
        last_words = last_line(self.message)
        if last_words and last_words != self.reason:
            cause += f": {last_words}"
        if self.reason == "OOMKilled":
            cause += "; it ran out of memory: raise spec.resources' memory, or lower dataloader.num_workers"
        return cause


def _trouble(status: KubernetesObject, gated: bool) -> Trouble | None:
    """The first reason, in TROUBLE_ORDER, that the pod cannot start; None while it starts normally."""
    found: dict[Reason, str] = {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in TROUBLE_ORDER:
            found.setdefault(Reason(waiting["reason"]), waiting.get("message") or waiting["reason"])
    for condition in status.get("conditions") or []:
        scheduled = condition.get("type") == "PodScheduled" and condition.get("status") == "False"
        if scheduled and condition.get("reason") in (Reason.UNSCHEDULABLE, Reason.SCHEDULING_GATED):
            found.setdefault(Reason(condition["reason"]), condition.get("message") or condition["reason"])
    if gated:
        found.setdefault(Reason.SCHEDULING_GATED, "waiting for its scheduling gates to be removed")
    reason = next((reason for reason in TROUBLE_ORDER if reason in found), None)
    return Trouble(reason, found[reason]) if reason is not None else None


def observe_pod(pod: KubernetesObject) -> ObservedPod | None:
    """What the decision needs from a pod: its place in the gang, how its trainer ended, and what keeps it
    from starting or stopping.

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
    exit_code, message, reason, finished_at = None, status.get("message") or "", status.get("reason") or "", None
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated")
        if container.get("name") == TRAINER_CONTAINER and terminated:
            exit_code = terminated.get("exitCode")
            message = terminated.get("message") or message
            reason = terminated.get("reason") or reason
            finished_at = parse_stamp(terminated.get("finishedAt"))
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    disrupted = next((conditions[kind] for kind in DISRUPTION_CONDITIONS if kind in conditions), None)
    disruption = None
    if disrupted is not None:
        disruption = f"{disrupted.get('reason') or disrupted['type']}: {disrupted.get('message') or ''}".rstrip(": ")
    gated = bool((pod.get("spec") or {}).get("schedulingGates"))
    return ObservedPod(
        meta.get("name", ""),
        attempt,
        rank,
        phase,
        exit_code,
        message,
        terminating=bool(meta.get("deletionTimestamp")),
        deletion_deadline=parse_stamp(meta.get("deletionTimestamp")),
        ready="Ready" in conditions,
        trouble=_trouble(status, gated) if phase == "Pending" else None,
        disruption=disruption,
        gated=gated,
        reason=reason,
        finished_at=finished_at,
        scheduled="PodScheduled" in conditions,
    )


def controlled_by(obj: KubernetesObject, uid: str) -> bool:
    return any(ref.get("uid") == uid and ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


@dataclass(frozen=True)
class Namesake:
    """An object with a name this job's child needs, which this job does not control."""

    what: str
    """Kind and name, e.g. 'configmap "flies-config"'."""
    earlier_job: bool
    """Owned by a DreemTrainingJob (an earlier one of this name): the garbage collector will remove it. Else
    it has no owner, or another (a user's own ConfigMap, say), and nothing will."""

    @classmethod
    def of(cls, kind: str, obj: KubernetesObject) -> Namesake:
        owners = obj["metadata"].get("ownerReferences") or []
        what = f'{kind.lower()} "{obj["metadata"]["name"]}"'
        return cls(what, any(owner.get("kind") == JOB_KIND for owner in owners))


def observe_pods(pods: Iterable[KubernetesObject], job: JobRef) -> tuple[list[ObservedPod], list[Namesake]]:
    """The job's own gang pods, and the pods that carry its name but that it does not control (`Namesake`)."""
    own: list[ObservedPod] = []
    foreign: list[Namesake] = []
    for pod in pods:
        if not controlled_by(pod, job.uid):
            foreign.append(Namesake.of("Pod", pod))
        elif (observed := observe_pod(pod)) is not None:
            own.append(observed)
    return own, foreign


@dataclass(frozen=True)
class ObservedPodGroup:
    name: str
    attempt: int


def observe_pod_group(group: KubernetesObject) -> ObservedPodGroup | None:
    labels = group["metadata"].get("labels") or {}
    try:
        return ObservedPodGroup(group["metadata"]["name"], int(labels[LABEL_ATTEMPT]))
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True)
class Observation:
    """What the handlers saw of the job's world, besides the job itself."""

    pods: list[ObservedPod]
    now: datetime
    """Naive UTC."""
    secret_problem: str | None = None
    """Why spec.storage.credentialsSecret cannot be used (missing, or lacks a key), if it cannot."""
    pod_groups: list[ObservedPodGroup] = field(default_factory=list)
    """The job's PodGroups (with a gang scheduler)."""
    foreign: list[Namesake] = field(default_factory=list)
    """Objects with this job's children's names that the job does not control."""
    refused: Refusal | None = None
    """A child the API server refused to create in this pass."""


@dataclass(frozen=True)
class Refusal:
    """The API server's answer to creating one of the job's children: a client error other than a conflict
    (422 Invalid, 403 Forbidden by RBAC, a quota or an admission webhook, 400 Bad Request)."""

    kind: str
    name: str
    status: int
    message: str


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: Reason
    message: str


def event_object(job: JobRef, event: Event, now: datetime) -> KubernetesObject:
    """A core/v1 Event on the job, as `kubectl describe dtj` lists them."""
    stamp, owner = _stamp(now), job.owner()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": job.names.event_prefix, "namespace": job.namespace},
        "involvedObject": {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
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
    force_delete_pods: list[str] = field(default_factory=list)
    """Pods on a lost node: deleted with a zero grace period, as pod-gc does, since no kubelet will confirm."""
    delete_pod_groups: list[str] = field(default_factory=list)
    status: DreemTrainingJobStatus = field(default_factory=DreemTrainingJobStatus)
    events: list[Event] = field(default_factory=list)
    delete_job: bool = False


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_problems(error: ValidationError) -> str:
    """The spec's problems worded as `dreem config validate` words them, with did-you-mean for typos."""
    return "; ".join(f"spec.{issue}" for issue in issues_from(error)[:10])


PHASE_CONDITION: dict[Phase, ConditionType] = {
    Phase.RUNNING: ConditionType.RUNNING,
    Phase.RESTARTING: ConditionType.RESTARTING,
    Phase.SUSPENDED: ConditionType.SUSPENDED,
    Phase.SUCCEEDED: ConditionType.SUCCEEDED,
    Phase.FAILED: ConditionType.FAILED,
}
"""The condition that is True in each phase; a Pending job has none True but Created."""


def next_conditions(
    conditions: list[Condition] | None, phase: Phase, reason: Reason, message: str, now: str
) -> list[Condition]:
    """One condition per type, each True or False. A condition whose status flips takes the decision's reason
    and time (and its message, if it is True or is Running, which says why the gang is not running). The one the
    phase makes True, and Running, also take a new reason and message without a flip, keeping their
    lastTransitionTime. The rest keep what they said when they last flipped, so e.g. Failed=False does not
    churn while a job runs."""
    existing = {condition.type: condition for condition in conditions or []}
    active = PHASE_CONDITION.get(phase)
    created = existing.get(ConditionType.CREATED)
    was_created = created is not None and created.status == "True"
    result: list[Condition] = []
    for kind in ConditionType:
        if kind == ConditionType.CREATED:
            truth = was_created or reason != Reason.INVALID_SPEC
            wanted = (Reason.CREATED, "the spec is valid") if truth else (reason, message)
        else:
            truth = kind == active
            # Running says why the gang is not running; another False condition needs only its reason.
            wanted = (reason, message if truth or kind == ConditionType.RUNNING else "")
        old = existing.get(kind)
        status: Literal["True", "False"] = "True" if truth else "False"
        if old is None or old.status != status:
            if old is not None and kind == ConditionType.SUSPENDED and not truth:
                wanted = (Reason.RESUMED, "spec.runPolicy.suspend is false")
            result.append(
                Condition(type=kind, status=status, reason=wanted[0], message=wanted[1], lastTransitionTime=now)
            )
        elif kind in (active, ConditionType.RUNNING):
            result.append(old.model_copy(update={"reason": wanted[0], "message": wanted[1]}))
        else:
            result.append(old)
    return result


def restart_delay(settings: OperatorSettings, count: int) -> timedelta:
    """The wait before the next gang after the count-th failure (or requeue): exponential and capped, as a
    Kubernetes Job's pod back-off is (10 s, 20 s, 40 s ... up to 6 min by default)."""
    seconds = settings.restart_delay_seconds * 2 ** max(count - 1, 0)
    return timedelta(seconds=min(seconds, settings.restart_delay_max_seconds))


class Decision:
    """Builds a Plan step by step; one instance per reconcile."""

    def __init__(self, status: DreemTrainingJobStatus, now: datetime, generation: int) -> None:
        self.plan = Plan(status=status.model_copy(deep=True))
        self.plan.status.observedGeneration = generation
        self.now = now

    def delete(self, pods: Iterable[ObservedPod]) -> None:
        self.plan.delete_pods += [pod.name for pod in pods if pod.name not in self.plan.delete_pods]

    def stop(self, pods: Iterable[ObservedPod]) -> None:
        """Delete the pods that still hold their node (pending, running, or on a lost node) and keep those that
        ended: a failed rank's log is how its user learns why, and the job's cleanPodPolicy decides once it
        has finished (see `job_finished`)."""
        self.delete(pod for pod in pods if pod.phase not in ENDED)

    def create(self, children: Iterable[KubernetesObject]) -> None:
        self.plan.create += children

    def keep(self) -> Plan:
        """Stay in the phase, with its message."""
        return self.plan

    @property
    def reason(self) -> Reason | None:
        """The reason of the current decision: Running's, which always carries it (see next_conditions)."""
        running = next((c for c in self.plan.status.conditions or [] if c.type == ConditionType.RUNNING), None)
        return running.reason if running is not None else None

    def phase(
        self, phase: Phase, reason: Reason, message: str = "", warning: bool = False, record: bool = False
    ) -> Plan:
        """Enter `phase`. A new phase, a new reason within it, or a decision that is news by itself
        (`record`: every gang restart) is recorded as an Event; repeating the same decision on the next
        reconcile records nothing."""
        status = self.plan.status
        if record or status.phase != phase or self.reason != reason:
            self.plan.events.append(Event("Warning" if warning else "Normal", reason, message or phase.value))
        status.conditions = next_conditions(status.conditions, phase, reason, message, _stamp(self.now))
        status.phase = phase
        status.message = message
        if phase.finished and status.completionTime is None:
            status.completionTime = _stamp(self.now)
        return self.plan

    def next_gang(self, attempt: int, not_before: datetime | None = None) -> None:
        """The current gang is given up: the next one is a new attempt, with its own pod and group names, which
        a pod of this one (stuck on a lost node, say) can never hold, and whose checkpoint uploads fence this
        one's out."""
        status = self.plan.status
        status.attempt = attempt + 1
        status.scheduleStartTime = None
        status.nextAttemptTime = _stamp(not_before) if not_before is not None else None


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
    """Deleted, still stopping, on a node that may still stop them."""
    lost: list[ObservedPod]
    """Deleted, not ready, and still there settings.lost_pod_seconds past their deletion deadline: their node is
    gone (NotReady or unreachable: the node controller marks its pods not ready), so nothing will ever confirm
    them. They are force-deleted and no longer waited for."""

    @classmethod
    def of(
        cls,
        job: JobRef,
        spec: DreemTrainingJobSpec,
        status: DreemTrainingJobStatus,
        seen: Observation,
        settings: OperatorSettings,
    ) -> Situation:
        bound = timedelta(seconds=settings.lost_pod_seconds)
        live = [pod for pod in seen.pods if not pod.terminating]
        lost = [
            pod
            for pod in seen.pods
            if pod.terminating
            and not pod.ready
            and pod.deletion_deadline is not None
            and seen.now >= pod.deletion_deadline + bound
        ]
        stopping = [pod for pod in seen.pods if pod.terminating and pod not in lost]
        return cls(job, spec, status, seen, settings, live, stopping, lost)

    @property
    def now(self) -> datetime:
        return self.seen.now

    @property
    def policy(self) -> RunPolicy:
        return self.spec.runPolicy

    @property
    def attempt(self) -> int:
        return current_attempt(self.status)

    @cached_property
    def gang(self) -> dict[int, ObservedPod]:
        """The live pods of this attempt, by rank."""
        return {pod.rank: pod for pod in self.live if pod.attempt == self.attempt}

    @cached_property
    def earlier(self) -> list[ObservedPod]:
        """Live pods of earlier attempts that go: those that still hold a node, and the ended ones of any but
        the last gang. The last gang's ended pods stay until the next gang ends, so that `kubectl logs` shows
        why the gang restarted (the message holds one line of it)."""
        return [
            pod
            for pod in self.live
            if pod.attempt != self.attempt and (pod.phase not in ENDED or pod.attempt != self.attempt - 1)
        ]

    @property
    def missing(self) -> list[int]:
        """Ranks of this attempt that have no live pod."""
        return [rank for rank in range(self.spec.nodes) if rank not in self.gang]

    @property
    def complete(self) -> bool:
        """As many pods in the gang as the job has nodes."""
        return len(self.gang) == self.spec.nodes

    @property
    def running(self) -> bool:
        """Every rank is there and has started (a rank that finished first still counts)."""
        return self.complete and all(pod.phase in ("Running", "Succeeded") for pod in self.gang.values())

    @property
    def trouble(self) -> tuple[ObservedPod, Trouble] | None:
        """The pod of this gang whose reason for not starting matters most, with that reason."""
        stuck = [(pod, pod.trouble) for pod in self.gang.values() if pod.trouble is not None]
        if not stuck:
            return None
        return min(stuck, key=lambda found: (TROUBLE_ORDER.index(found[1].reason), found[0].rank))


Rule = Callable[[Situation, Decision], Plan | None]


def current_attempt(status: DreemTrainingJobStatus) -> int:
    """The gang wanted now. A status written before attempts were counted apart had one per restart."""
    return status.attempt if status.attempt is not None else status.restarts or 0


def spec_invalid(error: ValidationError, raw_spec: dict[str, Any], seen: Observation, decide: Decision) -> Plan:
    """A new job whose spec the schema refuses fails: no rule can act on it. What already happened is not
    undone by an edit after the fact (or a stricter schema after an upgrade): a finished job keeps its phase,
    and its cleanup and TTL go on as its runPolicy says, if that part can still be read; any other job keeps
    its phase (a gang that is running goes on) and no pod starts until the spec is fixed."""
    live = [pod for pod in seen.pods if not pod.terminating]
    phase = decide.plan.status.phase
    if phase is not None and phase.finished:
        try:
            policy = RunPolicy.model_validate(raw_spec.get("runPolicy") or {})
        except ValidationError:
            return decide.keep()
        return finished_cleanup(policy, live, seen.now, decide)
    problems = spec_problems(error)
    current = [pod for pod in live if pod.attempt == current_attempt(decide.plan.status)]
    if phase is not None and current and all(pod.phase == "Succeeded" for pod in current):
        return decide.phase(Phase.SUCCEEDED, Reason.TRAINING_FINISHED, "all ranks finished")  # before the edit
    if phase is not None:  # an edit of a valid job: undoing the edit lets it go on (suspended, backing off...)
        running = any(pod.phase in ("Pending", "Running") for pod in live)
        going_on = "the pods already running go on, and " if running else ""
        message = f"{problems}; {going_on}no pod starts until the spec is fixed"
        return decide.phase(phase, Reason.INVALID_SPEC, message, warning=True)
    decide.stop(live)
    return decide.phase(Phase.FAILED, Reason.INVALID_SPEC, problems, warning=True)


def finished_cleanup(policy: RunPolicy, live: list[ObservedPod], now: datetime, decide: Decision) -> Plan:
    """The pods of a finished job go as cleanPodPolicy says, and the job itself once ttlSecondsAfterFinished
    has passed."""
    doomed = {
        "All": live,
        "Running": [pod for pod in live if pod.phase in ("Pending", "Running")],
        "None": [],
    }
    decide.delete(doomed[policy.cleanPodPolicy])
    finished = parse_stamp(decide.plan.status.completionTime)
    if policy.ttlSecondsAfterFinished is not None and finished is not None:
        decide.plan.delete_job = now >= finished + timedelta(seconds=policy.ttlSecondsAfterFinished)
    return decide.keep()


def job_finished(s: Situation, decide: Decision) -> Plan | None:
    """A finished job keeps its phase; see `finished_cleanup`."""
    if s.status.phase is None or not s.status.phase.finished:
        return None
    return finished_cleanup(s.policy, s.live, s.now, decide)


def job_suspended(s: Situation, decide: Decision) -> Plan | None:
    """Suspension deletes the pods, queued ones included (Kueue then drops their workload), and keeps the
    progress. Resuming starts a new attempt, which resumes from the last checkpoint."""
    if not s.policy.suspend:
        return None
    decide.delete(s.live)
    if s.status.phase != Phase.SUSPENDED:
        decide.next_gang(s.attempt)
    # activeDeadlineSeconds counts running time: it starts again when the resumed gang is released. A wait for
    # the credentials Secret starts again too: the resumed gang gets the whole grace.
    decide.plan.status.startTime = None
    decide.plan.status.credentialsAwaitedSince = None
    return decide.phase(Phase.SUSPENDED, Reason.SUSPENDED, "suspended by spec.runPolicy.suspend; progress is kept")


def deadline_passed(s: Situation, decide: Decision) -> Plan | None:
    started = parse_stamp(s.status.startTime)
    deadline = s.policy.activeDeadlineSeconds
    if deadline is None or started is None or s.now < started + timedelta(seconds=deadline):
        return None
    decide.stop(s.live)
    message = f"ran longer than spec.runPolicy.activeDeadlineSeconds ({deadline} s)"
    return decide.phase(Phase.FAILED, Reason.DEADLINE_EXCEEDED, message, warning=True)


def namesakes_present(s: Situation, decide: Decision) -> Plan | None:
    """Objects with the names this job's children need, which it does not control, are never adopted (a
    ConfigMap would hold another config): the gang waits until they are gone. Those of an earlier job of the
    same name, deleted and re-created before the garbage collector removed them, go by themselves; the others
    (no owner, or another one's) stay until someone deletes them or renames the job, and the message says so."""
    if not s.missing or not s.seen.foreign:
        return None
    others = [namesake.what for namesake in s.seen.foreign if not namesake.earlier_job]
    if others:
        message = (
            f"{_listed(others)} already exist(s) in namespace {s.job.namespace!r} and belong(s) to no "
            f"DreemTrainingJob: this job needs the name(s). Delete them if they are leftovers, or create the job "
            "under another name"
        )
        return decide.phase(Phase.PENDING, Reason.WAITING_FOR_PREVIOUS_JOB, message, warning=True)
    message = (
        f"waiting for {_listed([namesake.what for namesake in s.seen.foreign])} of an earlier DreemTrainingJob "
        f"named {s.job.name!r} to be deleted (the garbage collector removes them)"
    )
    return decide.phase(Phase.PENDING, Reason.WAITING_FOR_PREVIOUS_JOB, message, warning=True)


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def user_error(s: Situation, decide: Decision) -> Plan | None:
    """A rank that exited EXIT_USER_ERROR fails the job at once, with the trainer's reason: retrying cannot help."""
    gang = s.gang.values()
    broken = next((pod for pod in gang if pod.phase == "Failed" and pod.exit_code == EXIT_USER_ERROR), None)
    if broken is None:
        return None
    decide.stop(gang)
    message = broken.message.strip() or f"{broken.name} exited with a configuration error"
    return decide.phase(Phase.FAILED, Reason.CONFIGURATION_ERROR, message, warning=True)


def gang_disrupted(s: Situation, decide: Decision) -> Plan | None:
    """A rank the cluster stopped (evicted, preempted, drained, or on a node the taint manager cleared) is not a
    failure: the gang restarts at once from the last checkpoint, without using backoffLimit."""
    victim = next(
        (pod for pod in [*s.gang.values(), *s.stopping, *s.lost] if pod.attempt == s.attempt and pod.disruption),
        None,
    )
    if victim is None:
        return None
    decide.delete(s.gang.values())
    decide.plan.status.disruptions = (s.status.disruptions or 0) + 1
    decide.next_gang(s.attempt)
    message = f"{victim.name} was disrupted ({victim.disruption}); restarting all pods from the last checkpoint"
    return decide.phase(Phase.RESTARTING, Reason.GANG_DISRUPTED, message, warning=True, record=True)


def gang_broken(s: Situation, decide: Decision) -> Plan | None:
    """A failed rank, or one lost while the gang ran, stops the whole gang: the next attempt resumes from the
    last checkpoint after an exponential, capped delay, until spec.runPolicy.backoffLimit is spent."""
    gang = s.gang.values()
    failed = [pod for pod in gang if pod.phase in ("Failed", "Unknown")]
    vanished = s.missing if s.status.phase == Phase.RUNNING else []
    if not failed and not vanished:
        return None
    if failed:
        first = min(failed, key=lambda pod: (pod.finished_at is None, pod.finished_at or s.now, pod.rank))
        cause = first.failure()
    else:
        cause = f"pod {s.job.names.pod(s.attempt, vanished[0])} disappeared while the gang was running"
    restarts = s.status.restarts or 0
    decide.stop(gang)
    if restarts >= s.policy.backoffLimit:
        return decide.phase(Phase.FAILED, Reason.BACKOFF_LIMIT_EXCEEDED, f"{cause}; no restarts left", warning=True)
    decide.plan.status.restarts = restarts + 1
    delay = restart_delay(s.settings, restarts + 1)
    decide.next_gang(s.attempt, s.now + delay)
    message = f"{cause}; restarting all pods from the last checkpoint in {delay.total_seconds():g} s"
    return decide.phase(Phase.RESTARTING, Reason.GANG_RESTART, message, warning=True, record=True)


def training_finished(s: Situation, decide: Decision) -> Plan | None:
    if not s.complete or not all(pod.phase == "Succeeded" for pod in s.gang.values()):
        return None
    return decide.phase(Phase.SUCCEEDED, Reason.TRAINING_FINISHED, "all ranks finished")


def secret_unusable(s: Situation, decide: Decision) -> Plan | None:
    """No new pod starts without its credentials Secret. GitOps tools apply a job and its Secret in no fixed
    order, and a Secret may be rotated by deleting and re-creating it, so the Secret has
    settings.secret_grace_seconds to arrive, counted from when a gang about to start first found it missing
    (a restart a week into a run gets the same grace as a new job)."""
    if not s.missing or s.seen.secret_problem is None:
        return None
    awaited = parse_stamp(s.status.credentialsAwaitedSince) or s.now
    decide.plan.status.credentialsAwaitedSince = _stamp(awaited)
    if s.now < awaited + timedelta(seconds=s.settings.secret_grace_seconds):
        return decide.phase(Phase.PENDING, Reason.WAITING_FOR_CREDENTIALS, s.seen.secret_problem, warning=True)
    decide.stop(s.gang.values())
    return decide.phase(Phase.FAILED, Reason.CREDENTIALS_MISSING, s.seen.secret_problem, warning=True)


def schedule_timed_out(s: Situation, decide: Decision) -> Plan | None:
    """A gang not running scheduleTimeoutSeconds after its pods were released to the scheduler is torn down, so
    a partial gang never holds GPUs the others wait for. Requeue queues a new attempt after the restart delay
    (not counted against backoffLimit); Fail fails the job."""
    policy = s.policy.schedulingPolicy
    released = parse_stamp(s.status.scheduleStartTime)
    timeout = policy.scheduleTimeoutSeconds
    if timeout is None or released is None or s.running or s.now < released + timedelta(seconds=timeout):
        return None
    decide.stop(s.gang.values())  # none has ended: a gang that never ran holds only its places
    trouble = s.trouble
    why = f": {trouble[0].name}: {trouble[1].reason.value}: {trouble[1].message}" if trouble else ""
    cause = f"the gang was not running {timeout} s after its pods were released to the scheduler{why}"
    if policy.scheduleTimeoutAction == "Fail":
        return decide.phase(Phase.FAILED, Reason.SCHEDULE_TIMEOUT, cause, warning=True)
    requeues = (s.status.requeues or 0) + 1
    decide.plan.status.requeues = requeues
    delay = restart_delay(s.settings, requeues)
    decide.next_gang(s.attempt, s.now + delay)
    message = f"{cause}; queueing a new attempt in {delay.total_seconds():g} s"
    return decide.phase(Phase.RESTARTING, Reason.SCHEDULE_TIMEOUT, message, warning=True, record=True)


def creation_refused(s: Situation, decide: Decision) -> Plan | None:
    """A child the API server will not create stops the gang from ever starting, and says why. An invalid
    object (422: the spec's podTemplate or resources made it so) fails the job, with the server's words, which
    name the field; anything else (a quota, RBAC, an admission webhook) may pass, so the job waits and the
    next pass tries again."""
    refused = s.seen.refused
    if refused is None:
        return None
    what = f"the API server refused {refused.kind.lower()} {refused.name}: {refused.message}"
    if refused.status == 422:
        decide.stop(s.gang.values())
        return decide.phase(Phase.FAILED, Reason.CREATE_REFUSED, f"{what}; fix the spec", warning=True)
    return decide.phase(Phase.PENDING, Reason.CREATE_REFUSED, f"{what}; trying again", warning=True)


def previous_gang_stopping(s: Situation, decide: Decision) -> Plan | None:
    """A new gang starts only once the old one is gone: its rank 0 may still be uploading the checkpoint the
    new one must resume from, and both would answer to the same rank DNS names meanwhile. Pods on a lost node
    are not waited for: see Situation.lost."""
    previous = len([pod for pod in [*s.stopping, *s.earlier] if pod.phase not in ENDED])
    if not s.missing or not previous:
        return None
    if s.status.phase == Phase.RESTARTING:
        return decide.keep()  # the message keeps saying why the gang restarts
    return decide.phase(
        Phase.PENDING, Reason.GANG_PENDING, f"waiting for {previous} pod(s) of the previous attempt to stop"
    )


def backing_off(s: Situation, decide: Decision) -> Plan | None:
    """After a failure (or a requeue) the next gang waits until status.nextAttemptTime."""
    not_before = parse_stamp(s.status.nextAttemptTime)
    if s.gang or not_before is None or s.now >= not_before:
        return None
    return decide.keep()


def run_the_gang(s: Situation, decide: Decision) -> Plan:
    """Create what is missing and say how far the gang has come. Children other than pods are listed whenever
    pods are created: creating them is idempotent (an existing one is kept), which spares a read of each."""
    missing = s.missing
    status = decide.plan.status
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
        group = pod_group(s.job, s.spec, s.attempt, s.settings)
        if group is not None:
            decide.create([group])
        status.nextAttemptTime = None
        status.credentialsAwaitedSince = None  # pods are made: the Secret, if the job names one, is there
    decide.create(gang_pod(s.job, s.spec, s.attempt, rank, s.settings) for rank in missing)
    status.restarts = status.restarts or 0
    status.disruptions = status.disruptions or 0
    status.requeues = status.requeues or 0
    status.attempt = s.attempt
    if any(pod.gated for pod in s.gang.values()):
        status.scheduleStartTime = None  # still queued: the schedule timer has not started
    elif s.complete and status.scheduleStartTime is None:
        status.scheduleStartTime = _stamp(s.now)
    if s.complete and status.startTime is None and not any(pod.gated for pod in s.gang.values()):
        # The deadline's clock: from the first release to the scheduler, not while Kueue holds the gang.
        status.startTime = _stamp(s.now)
    if s.running:
        return decide.phase(Phase.RUNNING, Reason.GANG_RUNNING, f"{s.spec.nodes} pod(s) running")
    phase = Phase.RESTARTING if s.status.phase == Phase.RESTARTING else Phase.PENDING
    trouble = s.trouble
    if trouble is not None:
        pod, why = trouble
        return decide.phase(
            phase, why.reason, f"pod {pod.name}: {why.message}", warning=why.reason != Reason.SCHEDULING_GATED
        )
    if phase == Phase.RESTARTING or (missing and decide.reason == Reason.CREATE_REFUSED):
        return decide.keep()  # why the gang restarts, or why the API server refused it, until that changes
    return decide.phase(Phase.PENDING, Reason.GANG_PENDING, _pending_message(s))


def _pending_message(s: Situation) -> str:
    """Where the gang's start stands: with the scheduler, or on the nodes (where a missing volume or a slow
    image pull keeps a pod in ContainerCreating without a reason in its status)."""
    placed = [pod for pod in s.gang.values() if pod.scheduled]
    if len(placed) < s.spec.nodes:
        return f"waiting for all pods to be scheduled ({len(placed)} of {s.spec.nodes} placed on a node)"
    starting = sorted(pod.name for pod in s.gang.values() if pod.phase == "Pending")
    return (
        f"all {s.spec.nodes} pod(s) are on their nodes, {len(starting)} still starting (pulling the image, "
        f"mounting volumes): `kubectl describe pod {starting[0] if starting else ''}` shows what it waits for"
    )


JOB_RULES: tuple[Rule, ...] = (job_finished, job_suspended, deadline_passed)
"""Rules about the job as a whole: they act on every pod it has."""
GANG_RULES: tuple[Rule, ...] = (
    namesakes_present,
    creation_refused,
    user_error,
    gang_disrupted,
    gang_broken,
    training_finished,
    secret_unusable,
    schedule_timed_out,
    previous_gang_stopping,
    backing_off,
)
"""Rules about the current attempt's gang; `run_the_gang` decides when none of them does."""


def _decide(situation: Situation, decide: Decision) -> Plan:
    for rule in JOB_RULES:
        if (plan := rule(situation, decide)) is not None:
            return plan
    # Whatever the gang rules decide, the pods of earlier attempts go.
    decide.delete(situation.earlier)
    for rule in GANG_RULES:
        if (plan := rule(situation, decide)) is not None:
            return plan
    return run_the_gang(situation, decide)


def reconcile(
    job: JobRef,
    raw_spec: dict[str, Any],
    status: DreemTrainingJobStatus,
    generation: int,
    seen: Observation,
    settings: OperatorSettings,
) -> Plan:
    """The next step for one job: the first rule that decides. Whatever it decides, pods on a lost node are
    force-deleted, and PodGroups of any gang but the one wanted now are deleted (a Volcano queue reserves
    capacity for a PodGroup as long as it exists)."""
    decide = Decision(status, seen.now, generation)
    try:
        spec = DreemTrainingJobSpec.model_validate(raw_spec)
    except ValidationError as error:
        plan = spec_invalid(error, raw_spec, seen, decide)
    else:
        situation = Situation.of(job, spec, status, seen, settings)
        plan = _decide(situation, decide)
        plan.force_delete_pods = [pod.name for pod in situation.lost]
    wanted = None if plan.status.phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.SUSPENDED) else plan.status.attempt
    plan.delete_pod_groups = [group.name for group in seen.pod_groups if group.attempt != wanted]
    return plan
