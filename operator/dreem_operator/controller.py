"""One reconcile of one job: read it and its pods, ask `reconcile()` what to do, apply the plan.

Every trigger (a change of the job, a change of one of its pods, the periodic resync) lands here, so the
operator is level-triggered: it acts on what it reads now, never on what an event said. That is what makes
a restart of the operator harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from dreem_operator.api import DreemTrainingJobStatus, KubernetesObject
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.kube import ClusterApi
from dreem_operator.metrics import OperatorMetrics
from dreem_operator.reconcile import Observation, Plan, event_object, observe_pod, parse_stamp, reconcile

log = logging.getLogger(__name__)


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
    """Whether a reconcile of the job is running, and whether another trigger arrived meanwhile."""

    running: bool = False
    again: bool = False


class Reconciler:
    """Runs at most one reconcile per job at a time and coalesces the triggers that arrive meanwhile into
    one more pass (creating a gang triggers an event per pod and one for the status: one pass covers
    them all, since each pass reads everything afresh). Plans are applied in a crash-safe order: status
    first, then deletions, then creations."""

    def __init__(
        self,
        api: ClusterApi,
        settings: OperatorSettings,
        metrics: OperatorMetrics,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.api, self.settings, self.metrics, self.clock = api, settings, metrics, clock
        self._jobs: dict[tuple[str, str], JobSlot] = {}
        self._guard = threading.Lock()

    def known_jobs(self) -> list[tuple[str, str]]:
        with self._guard:
            return list(self._jobs)

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._jobs.pop((namespace, name), None)
        self.metrics.job_phase(namespace, name, None)

    def reconcile(self, namespace: str, name: str) -> None:
        """Reconcile the job now, or, when a reconcile of it is running, make that one run once more."""
        with self._guard:
            slot = self._jobs.setdefault((namespace, name), JobSlot())
            if slot.running:
                slot.again = True
                return
            slot.running = True
        try:
            while True:
                self._timed(namespace, name)
                with self._guard:
                    if not slot.again:
                        return
                    slot.again = False
        finally:
            with self._guard:
                slot.running = False

    def _timed(self, namespace: str, name: str) -> None:
        started = time.perf_counter()
        try:
            self._reconcile(namespace, name)
        except Exception:
            self.metrics.reconcile_errors.inc()
            raise
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)

    def _reconcile(self, namespace: str, name: str) -> None:
        body = self.api.read_job(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            self.forget(namespace, name)
            return
        meta = body["metadata"]
        job = JobRef(name, namespace, meta["uid"])
        raw_spec = body.get("spec")
        status = read_status(body)
        seen = Observation(
            pods=[pod for pod in map(observe_pod, self.api.list_pods(job)) if pod is not None],
            now=self.clock(),
            created=parse_stamp(meta.get("creationTimestamp")),
        )
        spec = raw_spec if isinstance(raw_spec, dict) else {}
        generation = int(meta.get("generation") or 1)
        plan = reconcile(job, spec, status, generation, seen, self.settings)
        secret = credentials_secret(raw_spec)
        if secret and any(obj["kind"] == "Pod" for obj in plan.create):
            problem = self.api.secret_problem(namespace, secret)
            if problem is not None:
                plan = reconcile(job, spec, status, generation, replace(seen, secret_problem=problem), self.settings)
        self._apply(job, status, plan, seen.now)
        self.metrics.job_phase(namespace, name, None if plan.delete_job else plan.status.phase)

    def _apply(self, job: JobRef, status: DreemTrainingJobStatus, plan: Plan, now: datetime) -> None:
        # Status first: once `restarts` is stored, a crash before the new pods exist recreates the same
        # attempt on the next reconcile instead of reviving the old one.
        if operator_fields(plan.status) != operator_fields(status):
            self.api.patch_status(job.namespace, job.name, operator_fields(plan.status))
        for event in plan.events:
            try:
                self.api.create(event_object(job, event, now))
            except ApiException as error:  # an Event is a courtesy: losing one must not stall the job
                log.warning("could not record event %s on %s/%s: %s", event.reason, job.namespace, job.name, error)
        for pod in plan.delete_pods:
            self.api.delete_pod(job.namespace, pod)
        for obj in plan.create:
            if self.api.create(obj) and obj["kind"] == "Pod":
                log.info("created pod %s/%s", job.namespace, obj["metadata"]["name"])
        if plan.delete_job:
            self.api.delete_job(job.namespace, job.name)
