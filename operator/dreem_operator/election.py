"""Leader election between the operator's replicas, on a `coordination.k8s.io/v1` Lease.

The `kubernetes` client ships only a ConfigMap lock, so this is client-go's algorithm over
CoordinationV1Api (see dreem_operator.lease for the rules): every retry period, the leader renews the Lease
with a PUT of what it last wrote, and a standby reads it and takes it once it has not changed for a whole
lease duration. A leader that cannot renew within its renew deadline stops acting at once (its `Tenure`
lapses, and every write asks it first) and keeps trying, as a standby, to lead again.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from dreem_operator.api import KubernetesObject
from dreem_operator.kube import LeaseApi
from dreem_operator.lease import (
    JITTER,
    LeaseRecord,
    LeaseTiming,
    Sighting,
    Tenure,
    claim,
    held_by_another,
    observe,
    released,
)
from dreem_operator.metrics import OperatorMetrics

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Runs the election in its own thread; `tenure.leading()` says whether this replica may act now.

    `on_started` runs (in the election thread) each time this replica becomes leader: the operator then
    reconciles every job, since a standby only noted them.
    """

    def __init__(
        self,
        leases: LeaseApi,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming,
        metrics: OperatorMetrics,
        on_started: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.leases, self.namespace, self.name, self.identity = leases, namespace, name, identity
        self.timing, self.metrics, self.on_started = timing, metrics, on_started
        self.clock, self.wall = clock, wall
        self.tenure = Tenure(timing.renew_deadline, clock)
        self._lease: KubernetesObject | None = None
        """The Lease as this replica last wrote it, while it leads."""
        self._sighting: Sighting | None = None
        self._was_leading = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> LeaderElector:
        log.info(
            "leader election on Lease %s/%s as %s (lease %s s, renew deadline %s s, retry %s s)",
            self.namespace,
            self.name,
            self.identity,
            self.timing.lease_duration,
            self.timing.renew_deadline,
            self.timing.retry_period,
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as error:  # the API or the network: try again next period, as client-go does
                log.warning(
                    "leader election: could not read or write Lease %s/%s: %s", self.namespace, self.name, error
                )
            self._note_changes("it was not renewed in time, or another replica holds it")
            period = self.timing.retry_period
            self._stop.wait(period if self.tenure.leading() else period * random.uniform(1.0, JITTER))  # noqa: S311

    def _note_changes(self, why: str) -> None:
        leading = self.tenure.leading()
        if leading == self._was_leading:
            return
        self._was_leading = leading
        self.metrics.leader.set(1 if leading else 0)
        if leading:
            self.metrics.leader_acquired.inc()
            log.info("leading: this replica (%s) now reconciles the jobs", self.identity)
            self.on_started()
        else:
            self._lease = None
            self.metrics.forget_phases()
            log.warning("no longer leading Lease %s/%s: %s", self.namespace, self.name, why)

    def try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew; True when this replica holds the lease afterwards."""
        sent = self.clock()
        if self._lease is not None and self.tenure.leading():
            # The fast path: renew what this replica last wrote. If anyone else wrote meanwhile, the
            # resourceVersion no longer matches and the slow path below reads what they wrote.
            current = LeaseRecord.from_spec(self._lease["spec"])
            if self._write(self._lease, claim(current, self.identity, self.timing, self.wall()), sent):
                return True
        lease = self.leases.read(self.namespace, self.name)
        if lease is None:
            record = claim(None, self.identity, self.timing, self.wall())
            created = self.leases.create(record.lease(self.name, self.namespace))
            if created is None:
                return False
            self._hold(created, sent)
            return True
        record = LeaseRecord.from_spec(lease.get("spec") or {})
        self._sighting = observe(self._sighting, record, self.clock())
        if held_by_another(self._sighting, self.identity, self.clock()):
            if self.tenure.leading():  # another replica took it: whatever this one believed, it must stop
                self.tenure.end()
            return False
        return self._write(lease, claim(record, self.identity, self.timing, self.wall()), sent)

    def _write(self, lease: KubernetesObject, record: LeaseRecord, sent: float) -> bool:
        written = self.leases.replace({**lease, "spec": record.to_spec()})
        if written is None:
            return False
        self._hold(written, sent)
        return True

    def _hold(self, lease: KubernetesObject, sent: float) -> None:
        self._lease = lease
        self._sighting = Sighting(LeaseRecord.from_spec(lease["spec"]), sent)
        self.tenure.renewed(sent)

    def stop(self, before_release: Callable[[], None] = lambda: None) -> None:
        """Stop electing; a leader stops acting, lets `before_release` finish what is under way, and hands the
        Lease back so that a standby takes over within a retry period instead of a lease duration."""
        self._stop.set()
        self._thread.join(self.timing.retry_period * JITTER + 5)
        lease, leading = self._lease, self.tenure.leading()
        self.tenure.end()
        self._note_changes("shutting down")
        if lease is None or not leading:
            return
        before_release()
        try:
            record = released(LeaseRecord.from_spec(lease["spec"]), self.wall())
            if self.leases.replace({**lease, "spec": record.to_spec()}):
                log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as error:  # the standby then waits out the lease, as after a crash
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, error)
