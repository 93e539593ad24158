"""Leader election on a `coordination.k8s.io/v1` Lease, decided the way client-go's leaderelection package
decides it, as plain functions of the record read and this replica's own monotonic clock.

Only locally observed durations matter, never the timestamps in the record (other machines' clocks): a
standby counts `leaseDurationSeconds` from the moment *it* first saw the current record, and a leader
counts its renew deadline from the moment it *sent* its last successful write. Since the renew deadline is
shorter than the lease duration, a leader that cannot renew stops acting before any standby may take over.
The record's resourceVersion (checked by the API server on every update) settles races between candidates.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

JITTER = 1.2
"""client-go's JitterFactor: a standby waits up to this multiple of the retry period between tries."""


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's LeaseDuration, RenewDeadline and RetryPeriod, with its rule between them."""

    lease_duration: int
    """Seconds a standby waits, after the record last changed, before it may take the lease."""
    renew_deadline: float
    """Seconds a leader keeps acting after its last successful renewal was sent."""
    retry_period: float
    """Seconds between tries to acquire or renew."""

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline > JITTER * self.retry_period > 0:
            raise ValueError(
                f"lease timing must satisfy lease duration ({self.lease_duration} s) > renew deadline "
                f"({self.renew_deadline} s) > {JITTER} x retry period ({self.retry_period} s) > 0"
            )


def micro_time(moment: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339 with six fractional digits), the type of a Lease's times."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease: who holds it, for how long, and since when."""

    holder: str = ""
    duration: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LeaseRecord:
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration,
            "leaseTransitions": self.transitions,
        }
        if self.acquire_time is not None:
            spec["acquireTime"] = self.acquire_time
        if self.renew_time is not None:
            spec["renewTime"] = self.renew_time
        return spec

    def lease(self, name: str, namespace: str) -> dict[str, Any]:
        """A new coordination.k8s.io/v1 Lease holding this record."""
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": self.to_spec(),
        }


@dataclass(frozen=True)
class Sighting:
    """A record as this replica last read it, and when (on its monotonic clock) it first read it so."""

    record: LeaseRecord
    since: float


def observe(previous: Sighting | None, record: LeaseRecord, now: float) -> Sighting:
    """The sighting after reading `record` at `now`: the clock restarts only when the record changed."""
    if previous is not None and previous.record == record:
        return previous
    return Sighting(record, now)


def held_by_another(sighting: Sighting, me: str, now: float) -> bool:
    """Whether someone else holds the lease and may still be renewing it: then this replica must wait."""
    record = sighting.record
    return bool(record.holder) and record.holder != me and now < sighting.since + record.duration


def claim(current: LeaseRecord | None, me: str, timing: LeaseTiming, wall: datetime) -> LeaseRecord:
    """The record to write to hold the lease from now on: a renewal keeps the acquire time and the count of
    transitions, a takeover starts both anew."""
    stamp = micro_time(wall)
    if current is not None and current.holder == me:
        return replace(current, duration=timing.lease_duration, renew_time=stamp)
    return LeaseRecord(
        holder=me,
        duration=timing.lease_duration,
        acquire_time=stamp,
        renew_time=stamp,
        transitions=current.transitions + 1 if current is not None else 0,
    )


def released(current: LeaseRecord, wall: datetime) -> LeaseRecord:
    """What a leader that shuts down writes (client-go's ReleaseOnCancel): no holder and a one-second lease,
    so a standby takes over at its next try instead of waiting out the lease."""
    stamp = micro_time(wall)
    return LeaseRecord(holder="", duration=1, acquire_time=stamp, renew_time=stamp, transitions=current.transitions)


class Tenure:
    """Whether this replica leads now: from a successful acquire or renew until `renew_deadline` after that
    write was sent. Every write the operator makes asks `leading()` first."""

    def __init__(self, renew_deadline: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.renew_deadline, self.clock = renew_deadline, clock
        self._until = float("-inf")

    def renewed(self, sent_at: float) -> None:
        self._until = max(self._until, sent_at + self.renew_deadline)

    def end(self) -> None:
        self._until = float("-inf")

    def leading(self) -> bool:
        return self.clock() < self._until
