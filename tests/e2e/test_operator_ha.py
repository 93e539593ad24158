"""Two operator processes against one cluster, as the chart's two replicas: only the one holding the Lease
writes, killing it hands the jobs to the other, and every job finishes with each pod made exactly once.
The pods run a stand-in trainer (a sleep), so a run lasts seconds; the emulator, the kubelet and both
operators talk over HTTP, each with its own token, and the emulator records who wrote what."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dreem_operator.api import ConditionType, Phase, Reason
from tests.conftest import free_port
from tests.k8s.emulator import EmulatedCluster, Write
from tests.k8s.harness import Kubectl, cluster_with_crd, job_manifest, minimal_spec, phase_is
from tests.k8s.kubelet import LocalKubelet
from tests.k8s.operator_process import LEASE_SECONDS, OperatorProcess

pytestmark = pytest.mark.slow

SLEEPER = [sys.executable, "-c", "import os, time; time.sleep(float(os.environ['SLEEP']))"]


@dataclass
class Replicas:
    cluster: EmulatedCluster
    kubectl: Kubectl
    kubelet: LocalKubelet
    first: OperatorProcess
    second: OperatorProcess

    def leading(self, operator: OperatorProcess) -> bool:
        return bool(re.search(r"^dreem_leader 1\.0$", operator.metrics(), re.MULTILINE))

    def writes_by(self, operator: OperatorProcess) -> list[Write]:
        return [w for w in self.cluster.emulator.writes if w.who == identity(operator)]


def identity(operator: OperatorProcess) -> str:
    return operator.settings["DREEM_OPERATOR_IDENTITY"]


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    with cluster_with_crd(tmp_path) as cluster:
        port = str(free_port())

        def replica(name: str) -> OperatorProcess:
            # Each replica authenticates as itself, so the emulator's record of writes names it.
            return OperatorProcess(
                cluster.kubeconfig_for(name), tmp_path / f"{name}.log", identity=name, master_port=port
            )

        first, second = replica("operator-a"), replica("operator-b")
        kubelet = LocalKubelet(cluster.kubeconfig_for("kubelet"), tmp_path / "node", SLEEPER, {}).start()
        try:
            yield Replicas(cluster, Kubectl(cluster.kubeconfig), kubelet, first, second)
        finally:
            kubelet.stop()
            first.stop()
            second.stop()


def sleeping_job(name: str, seconds: float) -> dict[str, object]:
    spec = minimal_spec(name) | {"podTemplate": {"env": [{"name": "SLEEP", "value": str(seconds)}]}}
    return job_manifest(name, spec)


def wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_only_the_leader_writes_and_a_killed_leader_hands_its_jobs_over(replicas: Replicas) -> None:
    first, second, kubectl = replicas.first.start(), replicas.second, replicas.kubectl
    wait(lambda: replicas.leading(first), timeout=30)
    second.start()
    kubectl.apply_job(sleeping_job("flies", seconds=8))
    kubectl.wait_for("flies", phase_is(Phase.RUNNING), timeout=60, what="Running")
    assert not replicas.leading(second)
    # The standby heard of the job, as the leader did, and wrote nothing: not even to the Lease.
    assert replicas.writes_by(second) == []
    assert {w.name for w in replicas.writes_by(first) if w.plural == "pods"} == {"flies-0-0", "flies-0-1"}

    first.kill()
    killed = time.monotonic()
    kubectl.apply_job(sleeping_job("moths", seconds=1))
    moths = kubectl.wait_for("moths", phase_is(Phase.SUCCEEDED, Phase.FAILED), timeout=60, what="a finished phase")
    took_over = time.monotonic() - killed
    flies = kubectl.wait_for("flies", phase_is(Phase.SUCCEEDED, Phase.FAILED), timeout=60, what="a finished phase")
    assert moths["status"]["phase"] == flies["status"]["phase"] == Phase.SUCCEEDED, (moths, flies)
    assert replicas.leading(second)
    # A lease duration from the last renewal the standby saw, at most: not a resync, not a restart.
    assert took_over < 3 * float(LEASE_SECONDS["lease_duration_seconds"]), took_over

    # Every pod was created once, and started once.
    pods = sorted(name for _, plural, _, name in replicas.cluster.emulator.created_at if plural == "pods")
    assert pods == ["flies-0-0", "flies-0-1", "moths-0-0", "moths-0-1"]
    assert sorted(entry.split("/")[1] for entry in replicas.kubelet.started) == pods
    assert flies["status"]["restarts"] == 0
    truths = {c["type"]: c["status"] for c in flies["status"]["conditions"]}
    assert [t for t, truth in truths.items() if truth == "True"] == [ConditionType.CREATED, ConditionType.SUCCEEDED]
    assert list(truths) == list(ConditionType)  # one of each, never restarted: Restarting stayed False
    # The second replica wrote only once it held the Lease: its first write is the Lease's.
    by_second = replicas.writes_by(second)
    assert by_second[0].plural == "leases" and by_second[0].verb == "update"
    assert {w.name for w in by_second if w.plural == "pods"} == {"moths-0-0", "moths-0-1"}
    assert any(w.name == "flies" and w.subresource == "status" for w in by_second)  # it finished flies
    reasons = [e["reason"] for e in kubectl.events() if e["involvedObject"]["name"] == "flies"]
    assert sorted(reasons) == sorted({Reason.GANG_PENDING, Reason.GANG_RUNNING, Reason.TRAINING_FINISHED})
    # Both replicas list and watch only the pods the operator makes: the API server filters them.
    for replica in (first, second):
        asked = {
            (action, selector)
            for who, action, plural, selector in replicas.cluster.emulator.selectors
            if plural == "pods" and who == identity(replica)
        }
        # kopf's list and watch ask for pods with the job label; the reconciles, for one job's pods.
        assert {("LIST", "dreem.sleap.ai/job"), ("WATCH", "dreem.sleap.ai/job")} <= asked, asked
        assert all(selector.startswith("dreem.sleap.ai/job") for _, selector in asked), asked


def test_a_leader_stopped_for_a_rolling_update_hands_over_at_once(replicas: Replicas) -> None:
    first, second, kubectl = replicas.first.start(), replicas.second, replicas.kubectl
    wait(lambda: replicas.leading(first), timeout=30)
    second.start()
    first.stop()  # SIGTERM: the leader lets its reconciles land and releases the Lease
    stopped = time.monotonic()
    kubectl.apply_job(sleeping_job("flies", seconds=0))
    assert kubectl.wait_for_pods("dreem.sleap.ai/job=flies", 2, timeout=30) == ["flies-0-0", "flies-0-1"]
    handed_over = time.monotonic() - stopped
    assert handed_over < float(LEASE_SECONDS["lease_duration_seconds"]), handed_over
    assert "released Lease default/dreem-operator" in replicas.first.log.read_text()
