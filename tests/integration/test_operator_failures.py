"""A lab cluster's first week, through the operator process: pods that cannot start, a gang that does not run in
time, evictions and a lost node, a job re-created over its old children, gang schedulers and Kueue, and
`kubectl wait`. The test node (tests/k8s/kubelet.py) plays the kubelet, the scheduler's part and Kueue; pods
run a stand-in trainer that sleeps and exits as its environment says, so each case takes seconds."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dreem_operator.api import Phase, Reason
from tests.conftest import free_port
from tests.k8s.admission import custom_resource_errors
from tests.k8s.emulator import EmulatedCluster
from tests.k8s.harness import Kubectl, cluster_with_crd, condition, job_manifest, minimal_spec, phase_is
from tests.k8s.kubelet import LocalKubelet
from tests.k8s.operator_process import OperatorProcess

pytestmark = pytest.mark.slow

STAND_IN = [
    sys.executable,
    "-c",
    "import os, sys, time; time.sleep(float(os.environ.get('SLEEP', '0'))); sys.exit(int(os.environ.get('EXIT', '0')))",
]
MISSING_IMAGE = "ghcr.io/lab/dreem:nosuch"


@dataclass
class Lab:
    cluster: EmulatedCluster
    kubectl: Kubectl
    workdir: Path
    operator: OperatorProcess | None = None
    kubelet: LocalKubelet | None = None
    stops: list[Callable[[], None]] = field(default_factory=list)

    def start(self, operator: dict[str, str] | None = None, **node: Any) -> LocalKubelet:
        self.operator = OperatorProcess(
            self.cluster.kubeconfig,
            self.workdir / "operator.log",
            master_port=str(free_port()),
            **(operator or {}),
        ).start("--namespace", "default")
        self.stops.append(self.operator.stop)
        self.kubelet = LocalKubelet(self.cluster.kubeconfig, self.workdir / "node", STAND_IN, {}, **node).start()
        self.stops.append(self.kubelet.stop)
        return self.kubelet

    def wait_for(
        self, name: str, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 60
    ) -> dict[str, Any]:
        return self.kubectl.wait_for(name, check, timeout=timeout, what=what)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with cluster_with_crd(tmp_path) as cluster:
        lab = Lab(cluster, Kubectl(cluster.kubeconfig), tmp_path)
        try:
            yield lab
        finally:
            for stop in reversed(lab.stops):
                stop()


def job(name: str, nodes: int = 2, env: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    template = spec.pop("podTemplate", {})
    template["env"] = [{"name": key, "value": value} for key, value in (env or {}).items()] + template.get("env", [])
    return job_manifest(name, minimal_spec(name, nodes) | {"podTemplate": template} | spec)


def kubectl(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The kubectl binary from `make tools`, against the emulated cluster."""
    binary = Path(sys.executable).parent / "kubectl"
    if not binary.exists():
        pytest.fail("kubectl is missing from the virtual environment: run `make tools`")
    command = [str(binary), "--kubeconfig", str(lab.cluster.kubeconfig), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def reason_is(*reasons: str) -> Callable[[dict[str, Any]], bool]:
    """Running's reason: the job's current one (the `Reason` column of `kubectl get dtj`)."""

    def check(found: dict[str, Any]) -> bool:
        conditions = (found.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Running" and c["reason"] in reasons for c in conditions)

    return check


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def status_of(found: dict[str, Any], key: str) -> Any:
    return (found.get("status") or {}).get(key)


def test_pods_that_cannot_start_say_why_and_a_late_gang_is_requeued_or_failed(lab: Lab) -> None:
    lab.start(gpus=1, missing_images=(MISSING_IMAGE,))
    lab.kubectl.create_secret("s3-credentials", {"AWS_ACCESS_KEY_ID": "x"})
    # Long enough that every "why" below is seen before the timeout tears the gangs down, on a loaded machine
    # too (the start is stamped to the whole second, so the timeout fires 9-10 s after release).
    timeout = {"scheduleTimeoutSeconds": 10}
    lab.kubectl.apply_job(
        job("greedy", gpusPerNode=2, runPolicy={"schedulingPolicy": timeout | {"scheduleTimeoutAction": "Requeue"}})
    )
    lab.kubectl.apply_job(
        job("noimage", image=MISSING_IMAGE, runPolicy={"schedulingPolicy": timeout | {"scheduleTimeoutAction": "Fail"}})
    )
    key_ref = {"secretKeyRef": {"name": "s3-credentials", "key": "password"}}
    lab.kubectl.apply_job(job("nokey", podTemplate={"env": [{"name": "PASSWORD", "valueFrom": key_ref}]}))

    greedy = lab.wait_for("greedy", reason_is(Reason.UNSCHEDULABLE), "Unschedulable")
    assert status_of(greedy, "phase") == Phase.PENDING
    assert status_of(greedy, "message").startswith("pod greedy-0-")
    assert "0/1 nodes are available: 1 Insufficient nvidia.com/gpu." in status_of(greedy, "message")
    pulling = lab.wait_for(
        "noimage", reason_is(Reason.ERR_IMAGE_PULL, Reason.IMAGE_PULL_BACK_OFF), "an image pull error"
    )
    assert MISSING_IMAGE in status_of(pulling, "message")
    nokey = lab.wait_for("nokey", reason_is(Reason.CREATE_CONTAINER_CONFIG_ERROR), "CreateContainerConfigError")
    assert status_of(nokey, "message").endswith("couldn't find key password in Secret default/s3-credentials")
    # `kubectl get dtj` prints the reason in its own column (the CRD's printer column on the Running condition).
    listed = kubectl(lab, "get", "dtj")
    rows = {line.split()[0]: line.split()[1:3] for line in listed.stdout.splitlines()[1:]}
    assert rows["greedy"] == [Phase.PENDING, Reason.UNSCHEDULABLE], listed.stdout
    assert rows["nokey"] == [Phase.PENDING, Reason.CREATE_CONTAINER_CONFIG_ERROR], listed.stdout
    warnings = {(e["involvedObject"]["name"], e["reason"]) for e in lab.kubectl.events() if e["type"] == "Warning"}
    assert {("greedy", Reason.UNSCHEDULABLE), ("nokey", Reason.CREATE_CONTAINER_CONFIG_ERROR)} <= warnings

    # Ten seconds after release, the gang that cannot run is torn down: requeued as a new attempt, or failed.
    requeued = lab.wait_for("greedy", lambda j: (status_of(j, "requeues") or 0) >= 1, "a requeue")
    assert status_of(requeued, "restarts") == 0 and status_of(requeued, "attempt") >= 1
    lab.kubectl.wait_for_pods("dreem.sleap.ai/job=greedy,dreem.sleap.ai/attempt=1", 2, timeout=30)
    failed = lab.wait_for("noimage", phase_is(Phase.FAILED), "Failed")
    assert condition(failed, "Failed")["reason"] == Reason.SCHEDULE_TIMEOUT
    assert "the gang was not running 10 s after its pods were released to the scheduler: noimage-0-" in status_of(
        failed, "message"
    )
    lab.wait_for("noimage", lambda _: not lab.kubectl.pods(selector="dreem.sleap.ai/job=noimage"), "pods gone")


def test_disruptions_restart_the_gang_for_free_and_failures_back_off(lab: Lab) -> None:
    kubelet = lab.start(operator={"restart_delay_seconds": "2", "restart_delay_max_seconds": "4"})
    lab.kubectl.apply_job(job("steady", env={"SLEEP": "600"}, runPolicy={"backoffLimit": 1}))

    def running(attempt: int) -> Callable[[dict[str, Any]], bool]:
        return lambda j: status_of(j, "phase") == Phase.RUNNING and status_of(j, "attempt") == attempt

    lab.wait_for("steady", running(0), "Running")
    lab.kubectl.disrupt("steady-0-1")  # the eviction API, a drain, the scheduler's preemption
    restarting = lab.wait_for("steady", phase_is(Phase.RESTARTING), "Restarting")
    assert condition(restarting, "Restarting")["reason"] == Reason.GANG_DISRUPTED
    assert "steady-0-1 was disrupted (EvictionByEvictionAPI: Eviction API: evicting)" in status_of(
        restarting, "message"
    )
    lab.wait_for("steady", running(1), "Running again")
    kubelet.evict("steady-1-0")  # node pressure: the kubelet's own eviction, the pod stays Failed
    after = lab.wait_for("steady", running(2), "Running after the kubelet's eviction")
    assert (status_of(after, "disruptions"), status_of(after, "restarts")) == (2, 0)

    kubelet.kill("steady-2-1", signal.SIGKILL)  # a real failure: counted, and the next gang waits
    failed_once = lab.wait_for("steady", lambda j: status_of(j, "restarts") == 1, "a restart")
    assert status_of(failed_once, "message").endswith("from the last checkpoint in 2 s")
    failed_at = stamp(condition(failed_once, "Restarting")["lastTransitionTime"])
    not_before = stamp(status_of(failed_once, "nextAttemptTime"))
    assert (not_before - failed_at).total_seconds() == 2
    lab.wait_for("steady", running(3), "Running after the delay")
    pods = {pod["metadata"]["name"]: pod for pod in lab.kubectl.pods()}
    assert stamp(pods["steady-3-0"]["metadata"]["creationTimestamp"]) >= not_before
    kubelet.kill("steady-3-0", signal.SIGKILL)
    failed = lab.wait_for("steady", phase_is(Phase.FAILED), "Failed")
    assert (condition(failed, "Failed")["status"], condition(failed, "Failed")["reason"]) == (
        "True",
        Reason.BACKOFF_LIMIT_EXCEEDED,
    )
    assert condition(failed, "Running")["status"] == "False" and status_of(failed, "disruptions") == 2


def test_a_lost_node_no_longer_holds_up_the_next_gang(lab: Lab) -> None:
    kubelet = lab.start(operator={"lost_pod_seconds": "1"})
    lab.kubectl.apply_job(job("stranded", env={"SLEEP": "4"}))
    lab.wait_for("stranded", phase_is(Phase.RUNNING), "Running")
    lost = kubelet.lose_node()
    # The taint manager, once the pods' tolerations for the unreachable taint have run out: the condition,
    # then a graceful delete that no kubelet will ever confirm.
    for rank in (0, 1):
        lab.kubectl.disrupt(
            f"stranded-0-{rank}", "DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint", 1
        )
    done = lab.wait_for("stranded", phase_is(Phase.SUCCEEDED, Phase.FAILED), "a finished phase")
    assert status_of(done, "phase") == Phase.SUCCEEDED, status_of(done, "message")
    assert (status_of(done, "disruptions"), status_of(done, "restarts"), status_of(done, "attempt")) == (1, 0, 1)
    names = {pod["metadata"]["name"]: pod["spec"]["nodeName"] for pod in lab.kubectl.pods()}
    assert names == {"stranded-1-0": f"{lost}-replacement", "stranded-1-1": f"{lost}-replacement"}
    assert lab.operator is not None and "force-deleting pod default/stranded-0-" in lab.operator.log.read_text()


def test_a_recreated_job_waits_for_its_namesakes_children(lab: Lab) -> None:
    lab.start()
    first = lab.kubectl.apply_job(job("again", nodes=1, env={"SLEEP": "600"}))
    lab.wait_for("again", phase_is(Phase.RUNNING), "Running")
    # Something holds two of its children past their deletion (another controller's finalizer), so they
    # outlive the job, as they do when the garbage collector is slow.
    held = {"metadata": {"finalizers": ["lab.example/hold"]}}
    lab.kubectl.core.patch_namespaced_pod("again-0-0", "default", held)
    lab.kubectl.core.patch_namespaced_config_map("again-config", "default", held)
    lab.kubectl.delete_job("again")
    second = lab.kubectl.apply_job(job("again", nodes=1))
    assert second["metadata"]["uid"] != first["metadata"]["uid"]

    waiting = lab.wait_for("again", reason_is(Reason.WAITING_FOR_PREVIOUS_JOB), "WaitingForPreviousJob")
    assert status_of(waiting, "message").startswith('waiting for pod "again-0-0"')
    config = lab.kubectl.core.read_namespaced_config_map("again-config", "default")
    assert config.metadata.owner_references[0].uid == first["metadata"]["uid"]  # never adopted
    for pod in lab.kubectl.pods():
        assert pod["metadata"]["ownerReferences"][0]["uid"] == first["metadata"]["uid"]

    released = {"metadata": {"finalizers": None}}
    lab.kubectl.core.patch_namespaced_pod("again-0-0", "default", released)
    lab.kubectl.core.patch_namespaced_config_map("again-config", "default", released)
    done = lab.wait_for("again", phase_is(Phase.SUCCEEDED), "Succeeded")
    config = lab.kubectl.core.read_namespaced_config_map("again-config", "default")
    assert config.metadata.owner_references[0].uid == done["metadata"]["uid"]


@pytest.mark.parametrize(
    ("scheduler", "scheduler_name", "api_version"),
    [
        ("volcano", "volcano", "scheduling.volcano.sh/v1beta1"),
        ("scheduler-plugins", "scheduler-plugins-scheduler", "scheduling.x-k8s.io/v1alpha1"),
    ],
)
def test_a_gang_scheduler_gets_a_pod_group_per_attempt(
    lab: Lab, scheduler: str, scheduler_name: str, api_version: str
) -> None:
    kubelet = lab.start(operator={"gang_scheduler": scheduler}, schedulers=(scheduler_name,))
    policy = {"queue": "lab-gpus", "priorityClass": "high", "scheduleTimeoutSeconds": 300}
    lab.kubectl.apply_job(job("ganged", env={"SLEEP": "600"}, runPolicy={"schedulingPolicy": policy}))
    lab.wait_for("ganged", phase_is(Phase.RUNNING), "Running")
    (group,) = lab.kubectl.pod_groups(api_version)
    assert group["metadata"]["name"] == "ganged-0" and group["spec"]["minMember"] == 2
    assert custom_resource_errors(group) == []
    for pod in lab.kubectl.pods():
        assert pod["spec"]["schedulerName"] == scheduler_name
        meta = pod["metadata"]
        assert "ganged-0" in (
            meta["annotations"].get("scheduling.k8s.io/group-name"),
            meta["labels"].get("scheduling.x-k8s.io/pod-group"),
        )

    kubelet.kill("ganged-0-0", signal.SIGKILL)
    lab.wait_for("ganged", lambda j: status_of(j, "phase") == Phase.RUNNING and status_of(j, "attempt") == 1, "Running")
    assert [g["metadata"]["name"] for g in lab.kubectl.pod_groups(api_version)] == ["ganged-1"]
    lab.kubectl.patch_job("ganged", {"spec": {"runPolicy": {"suspend": True}}})
    lab.wait_for("ganged", lambda _: not lab.kubectl.pod_groups(api_version), "no PodGroup while suspended")


def test_kueue_admits_the_gang_whole_and_suspend_works_while_queued(lab: Lab) -> None:
    kubelet = lab.start(kueue=True)
    lab.kubectl.apply_job(job("queued", env={"SLEEP": "1"}, runPolicy={"schedulingPolicy": {"queue": "lab-queue"}}))
    queued = lab.wait_for("queued", reason_is(Reason.SCHEDULING_GATED), "SchedulingGated")
    assert status_of(queued, "phase") == Phase.PENDING and status_of(queued, "scheduleStartTime") is None
    for pod in lab.kubectl.pods():
        assert pod["metadata"]["labels"]["kueue.x-k8s.io/pod-group-name"] == "queued-0"
        assert pod["metadata"]["annotations"]["kueue.x-k8s.io/pod-group-total-count"] == "2"
        assert pod["spec"]["schedulingGates"] == [{"name": "kueue.x-k8s.io/admission"}]

    lab.kubectl.patch_job("queued", {"spec": {"runPolicy": {"suspend": True}}})
    lab.wait_for("queued", phase_is(Phase.SUSPENDED), "Suspended")
    lab.wait_for("queued", lambda _: not lab.kubectl.pods(), "queued pods gone (Kueue's finalizer removed)")
    lab.kubectl.patch_job("queued", {"spec": {"runPolicy": {"suspend": False}}})
    lab.kubectl.wait_for_pods("kueue.x-k8s.io/pod-group-name=queued-1", 2, timeout=30)
    lab.wait_for("queued", reason_is(Reason.SCHEDULING_GATED), "queued again")
    kubelet.admit = True
    done = lab.wait_for("queued", phase_is(Phase.SUCCEEDED), "Succeeded")
    assert status_of(done, "attempt") == 1 and condition(done, "Suspended")["reason"] == Reason.RESUMED


def test_kubectl_wait_for_the_succeeded_condition(lab: Lab) -> None:
    lab.start()
    lab.kubectl.apply_job(job("awaited", env={"SLEEP": "2"}))
    # Not met when the wait begins: it must wait for the transition, not find a condition already there.
    conditions = status_of(lab.kubectl.job("awaited"), "conditions") or []
    assert not [c for c in conditions if c["type"] == "Succeeded" and c["status"] == "True"], conditions
    waited = kubectl(lab, "wait", "--for=condition=Succeeded", "dtj/awaited", "--timeout=60s")
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.strip() == "dreemtrainingjob.dreem.sleap.ai/awaited condition met"
    assert status_of(lab.kubectl.job("awaited"), "phase") == Phase.SUCCEEDED
