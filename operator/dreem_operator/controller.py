"""One reconcile of one job: read it and its pods, ask `reconcile()` what to do, apply the plan.

Every trigger (a change of the job, a change of one of its pods, the periodic resync) lands here, so the
operator is level-triggered: it acts on what it reads now, never on what an event said. That is what makes
a restart of the operator harmless, and a takeover by a standby replica too: a standby only notes which
jobs exist, and reconciles them all once it leads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from dreem_operator.api import DreemTrainingJobStatus, KubernetesObject
from dreem_operator.children import POD_GROUP_API, JobRef, OperatorSettings
from dreem_operator.kube import ClusterApi, NotLeading, StatusConflict, api_message
from dreem_operator.metrics import OperatorMetrics
from dreem_operator.reconcile import (
    Namesake,
    Observation,
    ObservedPodGroup,
    Plan,
    Refusal,
    controlled_by,
    event_object,
    observe_pod_group,
    observe_pods,
    reconcile,
)

log = logging.getLogger(__name__)


CONFLICT_RETRIES = 5
"""Fresh reads after a status write refused as stale, before the job is left to its next trigger: a trainer
reporting progress or a kubelet updating a pod makes one now and then, never many in a row."""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def operator_fields(status: DreemTrainingJobStatus) -> dict[str, Any]:
    """The status fields the operator owns; `progress` belongs to the job's rank 0."""
    return status.model_dump(mode="json", exclude={"progress"})


def read_status(body: KubernetesObject) -> DreemTrainingJobStatus:
    try:
        return DreemTrainingJobStatus.model_validate(body.get("status") or {})
    except ValidationError as error:
        log.warning("status of %s is unreadable and starts over: %s", body["metadata"].get("name"), error)
        return DreemTrainingJobStatus()


def credentials_secret(raw_spec: Any) -> str | None:
    storage = raw_spec.get("storage") if isinstance(raw_spec, dict) else None
    secret = storage.get("credentialsSecret") if isinstance(storage, dict) else None
    return secret if isinstance(secret, str) and secret else None


@dataclass
class JobSlot:
    """Whether a reconcile of the job is running, whether another trigger arrived meanwhile, and the
    resourceVersions of this replica's own writes (the job's status, its pods) whose watch events are yet
    to arrive: such an event says nothing the pass that wrote it did not know, so it triggers nothing."""

    running: bool = False
    again: bool = False
    echoes: set[str] = field(default_factory=set)


class Reconciler:
    """Runs at most one reconcile per job at a time and coalesces the triggers that arrive meanwhile into
    one more pass (creating a gang triggers an event per pod and one for the status: one pass covers
    them all, since each pass reads everything afresh). Plans are applied in a crash-safe order: status
    first, then deletions, then creations; the status write is made only if the job is still as read, so
    a pass decided on a stale read writes nothing and is decided again.

    `leading` says whether this replica leads: a standby only notes the jobs it hears of."""

    def __init__(
        self,
        api: ClusterApi,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime] = utc_now,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.api, self.settings, self.metrics, self.clock, self.leading = api, settings, metrics, clock, leading
        self._jobs: dict[tuple[str, str], JobSlot] = {}
        self._guard = threading.Lock()
        self._idle = threading.Condition(self._guard)

    def known_jobs(self) -> list[tuple[str, str]]:
        with self._guard:
            return list(self._jobs)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._jobs.pop((namespace, name), None)
        self.metrics.job_phase(namespace, name, None)

    def reconcile(self, namespace: str, name: str, version: str | None = None) -> None:
        """Reconcile the job now, or, when a reconcile of it is running, make that one run once more.
        `version`: the resourceVersion of the object whose event triggers this, if an event does."""
        with self._guard:
            slot = self._jobs.setdefault((namespace, name), JobSlot())
            if version is not None and version in slot.echoes:
                slot.echoes.discard(version)
                return
            if slot.running:
                slot.again = True
                return
            if not self.leading():
                return
            slot.running = True
        conflicts = 0
        try:
            while True:
                try:
                    self._timed(namespace, name, slot)
                except StatusConflict:
                    self.metrics.status_conflicts.inc()
                    conflicts += 1
                    if conflicts > CONFLICT_RETRIES:
                        log.warning(
                            "%s/%s kept changing under %d reconciles: left to its next trigger",
                            namespace,
                            name,
                            conflicts,
                        )
                        return
                    continue
                except NotLeading:
                    log.info("reconcile of %s/%s stopped: this replica no longer leads", namespace, name)
                    return
                with self._guard:
                    if not slot.again:
                        return
                    slot.again = False
        finally:
            with self._guard:
                slot.running = False
                self._idle.notify_all()

    def _expect_echo(self, slot: JobSlot, version: str) -> None:
        with self._guard:
            slot.echoes.add(version)

    def drain(self, timeout: float) -> bool:
        """Wait until no reconcile runs: a leader that steps down lets its writes land before it hands over."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(slot.running for slot in self._jobs.values()), timeout)

    def _timed(self, namespace: str, name: str, slot: JobSlot) -> None:
        started = time.perf_counter()
        try:
            self._reconcile(namespace, name, slot)
        except (StatusConflict, NotLeading):
            raise
        except Exception:
            self.metrics.reconcile_errors.inc()
            raise
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)

    def _reconcile(self, namespace: str, name: str, slot: JobSlot) -> None:
        body = self.api.read_job(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name)
            return
        meta = body["metadata"]
        job = JobRef(name, namespace, meta["uid"])
        raw_spec = body.get("spec")
        status = read_status(body)
        pods, foreign = observe_pods(self.api.list_pods(job), job)
        seen = Observation(
            pods=pods,
            now=self.clock(),
            pod_groups=self._pod_groups(job),
            foreign=foreign,
        )
        spec = raw_spec if isinstance(raw_spec, dict) else {}
        generation = int(meta.get("generation") or 1)
        plan = reconcile(job, spec, status, generation, seen, self.settings)
        secret = credentials_secret(raw_spec)
        if secret and any(obj["kind"] == "Pod" for obj in plan.create):
            problem = self.api.secret_problem(namespace, secret)
            if problem is not None:
                plan = reconcile(job, spec, status, generation, replace(seen, secret_problem=problem), self.settings)
        version, namesakes, refused = self._apply(job, status, plan, seen.now, meta["resourceVersion"], slot)
        if namesakes or refused:  # found while creating: decide again, knowing them
            seen = replace(seen, foreign=[*seen.foreign, *namesakes], refused=refused)
            written, plan = plan.status, reconcile(job, spec, status, generation, seen, self.settings)
            self._apply(job, written, plan, seen.now, version, slot)
        self.metrics.job_phase(namespace, name, None if plan.delete_job else plan.status.phase)

    def _pod_groups(self, job: JobRef) -> list[ObservedPodGroup]:
        if self.settings.gang_scheduler == "none":
            return []
        groups = self.api.list_pod_groups(job, POD_GROUP_API[self.settings.gang_scheduler])
        observed = [observe_pod_group(group) for group in groups if controlled_by(group, job.uid)]
        return [group for group in observed if group is not None]

    def _apply(
        self,
        job: JobRef,
        status: DreemTrainingJobStatus,
        plan: Plan,
        now: datetime,
        resource_version: str,
        slot: JobSlot,
    ) -> tuple[str, list[Namesake], Refusal | None]:
        """Apply the plan and return the job's resourceVersion after it; stop before creating anything more
        when a child's name is held by an object another owner controls, and return that too (e.g.
        a Namesake): it is never adopted. Stop as well when the API server refuses a child
        with a client error, and return its answer: the next decision says why the gang cannot start."""
        # Status first: once `attempt` is stored, a crash before the new pods exist recreates the same
        # attempt on the next reconcile instead of reviving the old one. A status write refused as stale
        # (StatusConflict) ends the pass before it deletes or creates anything on a stale decision.
        if operator_fields(plan.status) != operator_fields(status):
            resource_version = self.api.patch_status(
                job.namespace, job.name, operator_fields(plan.status), resource_version
            )
            self._expect_echo(slot, resource_version)
        for event in plan.events:
            try:
                self.api.create(event_object(job, event, now))
            except ApiException as error:  # an Event is a courtesy: losing one must not stall the job
                log.warning("could not record event %s on %s/%s: %s", event.reason, job.namespace, job.name, error)
        for pod in plan.delete_pods:
            self.api.delete_pod(job.namespace, pod)
        for pod in plan.force_delete_pods:
            log.warning("force-deleting pod %s/%s: its node is lost", job.namespace, pod)
            self.api.force_delete_pod(job.namespace, pod)
        for group in plan.delete_pod_groups:
            self.api.delete_pod_group(job.namespace, group, POD_GROUP_API[self.settings.gang_scheduler])
        for obj in plan.create:
            try:
                created = self.api.create(obj)
            except ApiException as error:
                if error.status is None or not 400 <= error.status < 500:
                    raise  # the server's trouble, not the object's: the resync tries again
                meta = obj["metadata"]
                log.warning("the API server refused %s %s/%s: %s", obj["kind"], job.namespace, meta["name"], error)
                return resource_version, [], Refusal(obj["kind"], meta["name"], error.status, api_message(error))
            if created is not None:
                if obj["kind"] == "Pod":
                    self._expect_echo(slot, created)
                    log.info("created pod %s/%s", job.namespace, obj["metadata"]["name"])
            elif (found := self.api.existing(obj)) is not None and not controlled_by(found, job.uid):
                return resource_version, [Namesake.of(obj["kind"], found)], None
        if plan.delete_job:
            self.api.delete_job(job.namespace, job.name)
        return resource_version, [], None
