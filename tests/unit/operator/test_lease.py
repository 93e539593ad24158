"""Leader election's rules (client-go's, see dreem_operator.lease), on a clock the test moves."""

from __future__ import annotations

from datetime import UTC, datetime

import kubernetes_validate
import pytest

from dreem_operator.lease import (
    JITTER,
    LeaseRecord,
    LeaseTiming,
    Tenure,
    claim,
    held_by_another,
    micro_time,
    observe,
    released,
)

TIMING = LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=2)
WALL = datetime(2026, 8, 20, 10, 5, 2, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(10, 10, 2), (15, 20, 2), (15, 10, 9), (15, 2.4, 2), (15, 10, 0)],
)
def test_timing_that_breaks_client_gos_rule_is_refused(duration: int, deadline: float, retry: float) -> None:
    with pytest.raises(ValueError, match=r"lease duration .* > renew deadline .* > 1\.2 x retry period"):
        LeaseTiming(duration, deadline, retry)


def test_records_round_trip_through_a_lease_spec_with_micro_times() -> None:
    record = claim(None, "operator-a", TIMING, WALL)
    spec = record.to_spec()
    assert spec == {
        "holderIdentity": "operator-a",
        "leaseDurationSeconds": 15,
        "leaseTransitions": 0,
        "acquireTime": "2026-08-20T10:05:02.123456Z",
        "renewTime": "2026-08-20T10:05:02.123456Z",
    }
    assert LeaseRecord.from_spec(spec) == record
    assert LeaseRecord.from_spec({}) == LeaseRecord()


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
def test_the_lease_written_passes_the_official_schema_strictly(version: str) -> None:
    held = claim(None, "dreem-operator-7d9c-x2k4q", TIMING, WALL)
    for record in (held, released(held, WALL.replace(second=40))):
        kubernetes_validate.validate(record.lease("dreem-operator", "dreem-system"), version, strict=True)


def test_a_renewal_keeps_the_acquire_time_and_a_takeover_counts_a_transition() -> None:
    first = claim(None, "operator-a", TIMING, WALL)
    later = WALL.replace(second=30)
    renewed = claim(first, "operator-a", TIMING, later)
    assert renewed.acquire_time == first.acquire_time and renewed.renew_time == micro_time(later)
    assert renewed.transitions == 0
    taken = claim(renewed, "operator-b", TIMING, later)
    assert taken.holder == "operator-b" and taken.acquire_time == micro_time(later) and taken.transitions == 1


def test_a_standby_waits_a_whole_lease_duration_from_when_it_saw_the_record_change() -> None:
    record = claim(None, "operator-a", TIMING, WALL)
    # The record's own times are another machine's clock: only when this replica saw it counts.
    seen = observe(None, record, now=100.0)
    assert held_by_another(seen, "operator-b", now=114.9)
    assert not held_by_another(seen, "operator-b", now=115.0)
    # Reading the same record again does not restart the wait...
    assert observe(seen, record, now=110.0) is seen
    # ...but a renewal (a changed record) does.
    renewed = observe(seen, claim(record, "operator-a", TIMING, WALL.replace(second=9)), now=110.0)
    assert held_by_another(renewed, "operator-b", now=124.9)


def test_the_holder_itself_an_empty_holder_and_a_released_lease_are_free() -> None:
    record = claim(None, "operator-a", TIMING, WALL)
    assert not held_by_another(observe(None, record, 100.0), "operator-a", now=100.0)
    assert not held_by_another(observe(None, LeaseRecord(duration=15), 100.0), "operator-b", now=100.0)
    handed_over = released(record, WALL)
    assert handed_over.holder == "" and handed_over.duration == 1
    assert handed_over.transitions == record.transitions
    assert not held_by_another(observe(None, handed_over, 100.0), "operator-b", now=100.0)


def test_a_leader_leads_until_its_renew_deadline_after_the_last_renewal_it_sent() -> None:
    now = [0.0]
    tenure = Tenure(TIMING.renew_deadline, clock=lambda: now[0])
    assert not tenure.leading()
    tenure.renewed(sent_at=1.0)
    now[0] = 10.9
    assert tenure.leading()
    now[0] = 11.0
    assert not tenure.leading()
    tenure.renewed(sent_at=10.5)  # a late answer to a renewal sent before the deadline
    assert tenure.leading()
    tenure.end()
    assert not tenure.leading()


@pytest.mark.parametrize(
    "timing", [TIMING, LeaseTiming(4, 3, 0.5), LeaseTiming(2, 1.5, 1.2), LeaseTiming(137, 136.5, 0.1)]
)
def test_a_leader_that_cannot_renew_stops_before_any_standby_may_take_over(timing: LeaseTiming) -> None:
    # The leader's last successful renewal is sent at `sent`; the API server stores it after that, and a
    # standby reads it later still (after the read, or a retry period, has passed).
    now = [0.0]
    tenure = Tenure(timing.renew_deadline, clock=lambda: now[0])
    sent = 50.0
    tenure.renewed(sent)
    record = claim(None, "leader", timing, WALL)
    for seen_at in (sent, sent + 0.001, sent + timing.retry_period * JITTER):
        sighting = observe(None, record, seen_at)
        earliest_takeover = seen_at + timing.lease_duration
        assert held_by_another(sighting, "standby", earliest_takeover - 0.001)
        assert not held_by_another(sighting, "standby", earliest_takeover)
        # The leader stopped a whole (lease duration - renew deadline) before that.
        now[0] = earliest_takeover - (timing.lease_duration - timing.renew_deadline)
        assert not tenure.leading(), (timing, seen_at)
