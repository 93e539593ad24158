"""Leader election between two replicas' electors, over HTTP against the API emulator's Leases: one leads,
a crashed or cut-off leader stops acting before the standby takes over, and a leader shutting down hands
the Lease over at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import kubernetes
import pytest

from dreem_operator.election import LeaderElector
from dreem_operator.kube import LeaseApi
from dreem_operator.lease import LeaseTiming
from dreem_operator.metrics import OperatorMetrics
from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import cluster_with_crd

TIMING = LeaseTiming(lease_duration=3, renew_deadline=2, retry_period=0.25)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with cluster_with_crd(tmp_path) as served:
        yield served


def elector(cluster: EmulatedCluster, identity: str) -> LeaderElector:
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    return LeaderElector(LeaseApi(client), "default", "dreem-operator", identity, TIMING, OperatorMetrics())


def wait_until(check: Callable[[], bool], timeout: float) -> float:
    """When (time.monotonic()) `check` first held, polled every 10 ms."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
    return time.monotonic()


def holder(cluster: EmulatedCluster) -> dict[str, object]:
    client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
    lease = LeaseApi(client).read("default", "dreem-operator")
    assert lease is not None
    spec: dict[str, object] = lease["spec"]
    return spec


def sample(replica: LeaderElector, metric: str) -> float | None:
    value: float | None = replica.metrics.registry.get_sample_value(metric)
    return value


def cut_off(replica: LeaderElector, refused_port: int) -> None:
    """A network partition: the replica's API calls go to a port nobody listens on."""
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://127.0.0.1:{refused_port}"
    configuration.retries = 0
    replica.leases = LeaseApi(kubernetes.client.ApiClient(configuration))


def test_one_of_two_replicas_leads_and_keeps_leading(cluster: EmulatedCluster) -> None:
    first, second = elector(cluster, "operator-a").start(), elector(cluster, "operator-b").start()
    try:
        wait_until(lambda: first.tenure.leading() or second.tenure.leading(), timeout=10)
        time.sleep(TIMING.lease_duration + 1)  # longer than a lease: renewals keep it
        leaders = [replica for replica in (first, second) if replica.tenure.leading()]
        assert len(leaders) == 1
        (leader,) = leaders
        assert holder(cluster)["holderIdentity"] == leader.identity
        assert sample(leader, "dreem_leader_acquired_total") == 1 and sample(leader, "dreem_leader") == 1
        standby = second if leader is first else first
        assert sample(standby, "dreem_leader_acquired_total") == 0 and sample(standby, "dreem_leader") == 0
    finally:
        first.stop()
        second.stop()


@contextmanager
def leader_and_standby(cluster: EmulatedCluster) -> Iterator[tuple[LeaderElector, LeaderElector]]:
    leader = elector(cluster, "operator-a").start()
    wait_until(leader.tenure.leading, timeout=10)
    standby = elector(cluster, "operator-b").start()
    try:
        time.sleep(1)  # the standby has read the Lease, and seen it renewed
        assert not standby.tenure.leading()
        yield leader, standby
    finally:
        leader.stop()
        standby.stop()


def test_a_leader_cut_off_from_the_api_stops_acting_before_the_standby_takes_over(
    cluster: EmulatedCluster, refused_port: int
) -> None:
    with leader_and_standby(cluster) as (leader, standby):
        cut = time.monotonic()
        cut_off(leader, refused_port)
        stopped = wait_until(lambda: not leader.tenure.leading(), timeout=10)
        took_over = wait_until(standby.tenure.leading, timeout=10)
        assert stopped < took_over
        # The leader stopped within its renew deadline of the cut (plus a retry's request, slower on a busy
        # machine: the emulator, both replicas and this poll share one process); the standby waited a whole
        # lease duration from the last renewal it saw, so about (lease duration - renew deadline) lay between
        # them (less this test's polling).
        assert stopped - cut <= TIMING.renew_deadline + 1.0
        assert took_over - stopped >= TIMING.lease_duration - TIMING.renew_deadline - 0.5
        spec = holder(cluster)
        assert spec["holderIdentity"] == "operator-b" and spec["leaseTransitions"] == 1


def test_a_leader_shutting_down_hands_over_within_a_retry_period(cluster: EmulatedCluster) -> None:
    with leader_and_standby(cluster) as (leader, standby):
        drained = threading.Event()
        started = time.monotonic()
        leader.stop(before_release=drained.set)
        assert drained.is_set() and not leader.tenure.leading()
        took_over = wait_until(standby.tenure.leading, timeout=10)
        assert took_over - started < TIMING.lease_duration  # not a lease duration: the Lease was released
        assert holder(cluster)["holderIdentity"] == "operator-b"


def test_a_restarted_replica_with_the_same_identity_takes_its_lease_back_at_once(
    cluster: EmulatedCluster, refused_port: int
) -> None:
    # A container restarted in the same pod keeps the pod's name, and its old process is gone.
    first = elector(cluster, "operator-a").start()
    wait_until(first.tenure.leading, timeout=10)
    cut_off(first, refused_port)  # dies without releasing
    first.stop()
    again = elector(cluster, "operator-a").start()
    try:
        started = time.monotonic()
        took_over = wait_until(again.tenure.leading, timeout=10)
        assert took_over - started < TIMING.lease_duration
        assert holder(cluster)["leaseTransitions"] == 0
    finally:
        again.stop()
