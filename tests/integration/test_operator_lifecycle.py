"""The job lifecycle through the operator process and the API emulator. Pods run a stand-in trainer that
exits as the job's podTemplate.env tells it (so restarts, deadlines and TTLs take seconds), except for the
configuration-error case, which runs the real `dreem train`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dreem_operator.api import Phase, Reason
from dreem_trainer.contract import PLURAL
from tests.conftest import dreem_executable, free_port
from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, condition, job_manifest, minimal_spec, phase_is
from tests.k8s.kubelet import LocalKubelet
from tests.k8s.operator_process import OperatorProcess

pytestmark = pytest.mark.slow

STAND_IN = [
    sys.executable,
    "-c",
    "import os, sys, time; time.sleep(float(os.environ.get('SLEEP', '0'))); "
    "print(os.environ.get('SAY', '')); sys.exit(int(os.environ.get('EXIT', '0')))",
]


@dataclass
class Served:
    cluster: EmulatedCluster
    kubectl: Kubectl
    operator: OperatorProcess
    workdir: Path

    def kubelet(self, entrypoint: list[str]) -> LocalKubelet:
        return LocalKubelet(self.cluster.kubeconfig, self.workdir / "node", entrypoint, {}).start()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with cluster_with_crd(tmp_path) as cluster:
        operator = OperatorProcess(cluster.kubeconfig, tmp_path / "operator.log", master_port=str(free_port()))
        operator.start("--namespace", "default")
        try:
            yield Served(cluster, Kubectl(cluster.kubeconfig), operator, tmp_path)
        finally:
            operator.stop()


def job(name: str, env: dict[str, str] | None = None, nodes: int = 2, **run_policy: Any) -> dict[str, Any]:
    spec = minimal_spec(name, nodes) | {
        "runPolicy": run_policy,
        "podTemplate": {"env": [{"name": key, "value": value} for key, value in (env or {}).items()]},
    }
    return job_manifest(name, spec)


def test_retryable_failures_restart_the_gang_until_the_backoff_limit(served: Served) -> None:
    kubelet = served.kubelet(STAND_IN)
    try:
        served.kubectl.apply_job(
            job("flaky", {"EXIT": "1", "SAY": "CUDA error: an illegal memory access"}, backoffLimit=2)
        )
        failed = served.kubectl.wait_for("flaky", phase_is(Phase.FAILED), timeout=60, what="Failed")
    finally:
        kubelet.stop()
    status = failed["status"]
    assert status["restarts"] == 2
    assert status["message"].endswith("failed (exit code 1): CUDA error: an illegal memory access; no restarts left")
    assert (condition(failed, "Failed")["status"], condition(failed, "Failed")["reason"]) == (
        "True",
        Reason.BACKOFF_LIMIT_EXCEEDED,
    )
    assert condition(failed, "Running")["status"] == condition(failed, "Restarting")["status"] == "False"
    # Three attempts of two ranks each, every one its own pod.
    attempts = {entry.split("/")[1].rsplit("-", 1)[0] for entry in kubelet.started}
    assert attempts == {"flaky-0", "flaky-1", "flaky-2"}
    # The third attempt may fail before both ranks run: each restart is recorded all the same.
    reasons = [e["reason"] for e in served.kubectl.events() if e["involvedObject"]["name"] == "flaky"]
    assert reasons.count(Reason.GANG_RESTART) == 2 and reasons[-1] == Reason.BACKOFF_LIMIT_EXCEEDED, reasons


def test_active_deadline_fails_the_job_and_stops_its_pods(served: Served) -> None:
    kubelet = served.kubelet(STAND_IN)
    try:
        served.kubectl.apply_job(job("slow", {"SLEEP": "600"}, activeDeadlineSeconds=3))
        failed = served.kubectl.wait_for("slow", phase_is(Phase.FAILED), timeout=60, what="Failed")
        assert "activeDeadlineSeconds (3 s)" in failed["status"]["message"]
        served.kubectl.wait_for("slow", lambda _: not served.kubectl.pods(), timeout=30, what="pods gone")
        served.kubectl.wait_for("slow", lambda _: not kubelet.running, timeout=30, what="processes stopped")
    finally:
        kubelet.stop()


def test_ttl_deletes_a_finished_job_and_everything_it_owns(served: Served) -> None:
    kubelet = served.kubelet(STAND_IN)
    try:
        # 5 s: the pods are still there to be seen when it succeeds, on a loaded machine too (the finish is
        # stamped to the whole second, so they go 4-5 s after).
        served.kubectl.apply_job(job("brief", ttlSecondsAfterFinished=5, cleanPodPolicy="None"))
        served.kubectl.wait_for("brief", phase_is(Phase.SUCCEEDED), timeout=60, what="Succeeded")
        assert served.kubectl.names("pods") == ["brief-0-0", "brief-0-1"]
        deadline = time.monotonic() + 30
        while served.kubectl.names("pods") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served.kubectl.names("pods") == []
    finally:
        kubelet.stop()
    assert served.kubectl.names("configmaps") == served.kubectl.names("serviceaccounts") == []
    with pytest.raises(Exception, match=r"404|Not Found"):
        served.kubectl.job("brief")


def test_a_configuration_error_fails_at_once_with_the_trainers_reason(served: Served) -> None:
    kubelet = served.kubelet([dreem_executable()])
    manifest = job("typo", nodes=1, backoffLimit=3)
    # Passes the operator's schema, fails in the trainer: no labels where the data should be.
    config = manifest["spec"]["config"]
    config["dataset"]["train_dataset"]["dir"]["path"] = str(served.workdir / "no-such-folder")
    # Local outputs, so the run reaches the data before any storage check.
    config["checkpointing"] = {"dirpath": str(served.workdir / "models")}
    config["logging"] = {"save_dir": str(served.workdir / "logs")}
    try:
        served.kubectl.apply_job(manifest)
        failed = served.kubectl.wait_for("typo", phase_is(Phase.FAILED), timeout=120, what="Failed")
    finally:
        kubelet.stop()
    status = failed["status"]
    assert status["restarts"] == 0 and condition(failed, "Failed")["reason"] == Reason.CONFIGURATION_ERROR
    message = status["message"]
    assert "dataset.train_dataset.dir.path: no such folder on this machine" in message, message
    assert message.endswith("no-such-folder')"), message


def test_jobs_outside_the_watched_namespaces_are_left_alone(served: Served) -> None:
    served.kubectl.apply_job(job("elsewhere"), namespace="other")
    served.kubectl.apply_job(job("here"))
    served.kubectl.wait_for("here", phase_is(Phase.PENDING), timeout=30, what="Pending")
    assert served.kubectl.wait_for_pods("dreem.sleap.ai/job=here", 2, timeout=30) == ["here-0-0", "here-0-1"]
    assert "status" not in served.kubectl.job("elsewhere", namespace="other")
    assert served.kubectl.pods(namespace="other") == []


def test_the_operator_carries_on_through_watches_that_end_and_expire(tmp_path: Path) -> None:
    """An API server ends every watch after a while and keeps a short window of changes: kopf watches again
    from the last version it saw, or lists afresh on 410 Expired. Here every watch ends within 0.3 s and one
    change per resource is kept, and the job is created and changed while no watch is open: the operator's
    next watch of jobs is answered 410, and the job still runs once to its end, each of its pods made once."""
    with cluster_with_crd(tmp_path) as cluster:
        cluster.emulator.changes_kept, cluster.emulator.longest_watch_s = 1, 0.3
        operator = OperatorProcess(cluster.kubeconfig, tmp_path / "operator.log", master_port=str(free_port()))
        operator.start("--namespace", "default")
        served = Served(cluster, Kubectl(cluster.kubeconfig), operator, tmp_path)
        kubelet = served.kubelet(STAND_IN)
        try:
            with cluster.holding_watches():
                deadline = time.monotonic() + 30
                while cluster.emulator.waiting_watches[PLURAL] == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)  # the operator's job watch ends and waits to start again
                served.kubectl.apply_job(job("steady", {"SLEEP": "1"}))
                served.kubectl.patch_job("steady", {"metadata": {"annotations": {"lab/note": "second change"}}})
            done = served.kubectl.wait_for("steady", phase_is(Phase.SUCCEEDED), timeout=90, what="Succeeded")
        finally:
            kubelet.stop()
            operator.stop()
        created = [write for write in cluster.emulator.writes if write.verb == "create" and write.plural == "pods"]
        expired = cluster.emulator.served[f"EXPIRED {PLURAL}"]
    assert expired >= 1  # the watch from before the job was answered 410, and the operator listed again
    assert done["status"]["restarts"] == 0 and len(created) == 2
