"""A test node: a kubelet that runs each pod's container as a local process, with the scheduler's part for its
one node, and the failure modes a lab cluster shows in its first week.

It polls the API (a real kubelet watches; polling keeps this one a plain loop beside its processes), and
for every new pod it resolves the environment (values, Secret and ConfigMap keys, field references),
writes ConfigMap, Secret and emptyDir volumes into a per-pod sandbox, rewrites mount paths in the
command line to the sandbox, and starts the process in its own session. Pod DNS names
(`<hostname>.<subdomain>`) resolve to 127.0.0.1, since every "node" is this machine. It patches the pod's
status as a kubelet does: Running with a start time, then Succeeded or Failed with the container's
exit code and termination message (the log tail, for `FallbackToLogsOnError`). A pod deleted from the
API gets SIGTERM, then SIGKILL after its grace period; its terminal phase and exit code (143 or 137) are
written before it is removed for good, as kubelets do since Kubernetes 1.27 (pods reach a terminal phase
before deletion).

What can go wrong, in the shapes Kubernetes writes (pkg/kubelet, pkg/scheduler, the API reference):
- a pod the node cannot take (a nodeSelector it lacks, more GPUs than it has) stays Pending with
  PodScheduled=False, reason Unschedulable and the scheduler's "0/1 nodes are available: ..." message; a pod
  naming a scheduler this node does not serve is left alone, as no scheduler would bind it;
- an image in `missing_images` never pulls: the container waits with ErrImagePull, then ImagePullBackOff;
- a missing Secret or key: the container waits with CreateContainerConfigError;
- `evict()` is node-pressure eviction (phase Failed, reason Evicted, DisruptionTarget/TerminationByKubelet);
- `lose_node()` is a node that stops reporting: its processes die with it, its Node turns Ready=Unknown with
  the unreachable taints, its pods turn Ready=False, and nothing confirms their deletion any more; the
  kubelet goes on as a fresh node for new pods;
- with `kueue=True` it also plays Kueue's plain-pod integration: a pod with a queue-name label is gated and
  finalized on sight, as Kueue's webhook does at creation, and released when `admit` allows and its whole
  group (pod-group-total-count) exists; a deleted gated pod's finalizer is removed.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes

KubernetesObject = dict[str, Any]
MERGE_PATCH = "application/merge-patch+json"
TERMINATION_MESSAGE_BYTES = 4096
"""What a kubelet keeps of a termination message."""
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP = "kueue.x-k8s.io/pod-group-name"
KUEUE_COUNT = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_MANAGED = "kueue.x-k8s.io/managed"
KUEUE_GATE = "kueue.x-k8s.io/admission"
GPU = "nvidia.com/gpu"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, status: str, reason: str | None = None, message: str | None = None) -> KubernetesObject:
    found: KubernetesObject = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": _now()}
    if reason:
        found["reason"] = reason
    if message:
        found["message"] = message
    return found


def image_id(image: str) -> str:
    """What the runtime reports as the pulled image: its name and a digest (made up, but of the real shape)."""
    return f"{image.rsplit(':', 1)[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def terminal_status(pod: RunningPod, terminated: KubernetesObject) -> KubernetesObject:
    """A finished pod's status: Succeeded or Failed by its exit code, not ready, the container terminated."""
    finished = "PodCompleted" if terminated["exitCode"] == 0 else "PodFailed"
    kept = [c for c in started_conditions(False, pod.container) if c["type"] not in ("Ready", "ContainersReady")]
    return {
        "phase": "Succeeded" if terminated["exitCode"] == 0 else "Failed",
        "conditions": [*kept, condition("Ready", "False", finished), condition("ContainersReady", "False", finished)],
        "containerStatuses": [
            {
                "name": pod.container,
                "image": pod.image,
                "imageID": image_id(pod.image),
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }


def started_conditions(ready: bool, container: str) -> list[KubernetesObject]:
    """A bound pod's conditions as the kubelet writes them (pkg/kubelet/status/generate.go)."""
    unready = (None, None) if ready else ("ContainersNotReady", f"containers with unready status: [{container}]")
    truth = "True" if ready else "False"
    return [
        condition("PodReadyToStartContainers", "True"),
        condition("Initialized", "True"),
        condition("Ready", truth, *unready),
        condition("ContainersReady", truth, *unready),
        condition("PodScheduled", "True"),
    ]


class PodConfigError(Exception):
    """A reference the pod needs (a Secret, a key) is missing; the real kubelet keeps such a pod waiting."""


@dataclass
class RunningPod:
    namespace: str
    name: str
    uid: str
    process: subprocess.Popen[bytes]
    log: Path
    message_policy: str
    container: str
    image: str = ""
    grace_seconds: float = 30.0
    stop_by: float | None = None
    """When a deleted pod's process gets SIGKILL if SIGTERM has not ended it."""


class LocalKubelet:
    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        entrypoint: list[str],
        env: dict[str, str],
        node: str = "node-a",
        gpus: int = 8,
        labels: dict[str, str] | None = None,
        schedulers: tuple[str, ...] = ("default-scheduler",),
        missing_images: tuple[str, ...] = (),
        kueue: bool = False,
    ) -> None:
        self.api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
        self.workdir = workdir
        self.entrypoint = entrypoint
        self.env = env
        self.node, self.gpus, self.labels = node, gpus, labels or {}
        self.schedulers, self.missing_images = set(schedulers), set(missing_images)
        self.kueue = kueue
        self.admit = False
        """Kueue's admission: while False, queued pods stay gated."""
        self.lost_nodes: set[str] = set()
        self.running: dict[str, RunningPod] = {}
        self.finished: dict[str, RunningPod] = {}
        self.errors: list[str] = []
        self.started: list[str] = []
        """Every pod (namespace/name/uid) this kubelet started, in order."""
        self._pulls: dict[str, int] = {}
        self._reported: dict[str, tuple[str, str]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)

    def start(self) -> LocalKubelet:
        self._register(self.node)
        self._thread.start()
        return self

    def _register(self, node: str) -> None:
        capacity = {"cpu": "64", "memory": "256Gi", "pods": "110", GPU: str(self.gpus)}
        labels = {"kubernetes.io/hostname": node, **self.labels}
        ready = condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        ready["lastHeartbeatTime"] = ready["lastTransitionTime"]
        self.api.create_node({"metadata": {"name": node, "labels": labels}})
        self.api.patch_node_status(
            node,
            {"status": {"capacity": capacity, "allocatable": capacity, "conditions": [ready]}},
            _content_type=MERGE_PATCH,
        )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        with self._lock:
            for pod in self.running.values():
                self._kill(pod)

    def log_of(self, pod_name: str) -> str:
        with self._lock:
            pods = [p for p in [*self.running.values(), *self.finished.values()] if p.name == pod_name]
        return "\n".join(p.log.read_text(errors="replace") for p in pods if p.log.exists())

    def kill(self, pod_name: str, sig: int = signal.SIGKILL) -> None:
        """What a node failure does to a rank: the process dies; the kubelet reports the exit."""
        with self._lock:
            pod = next(p for p in self.running.values() if p.name == pod_name)
        os.killpg(pod.process.pid, sig)

    def evict(self, pod_name: str, resource: str = "memory") -> None:
        """Node-pressure eviction (pkg/kubelet/eviction): the kubelet kills the pod and leaves it Failed in the
        API with reason Evicted and the DisruptionTarget condition (TerminationByKubelet)."""
        with self._lock:
            uid, pod = next((uid, p) for uid, p in self.running.items() if p.name == pod_name)
            self.finished[uid] = self.running.pop(uid)
        self._kill(pod)
        message = f"The node was low on resource: {resource}. "
        status = terminal_status(pod, {"exitCode": 137, "reason": "Error", "finishedAt": _now()})
        status.update(reason="Evicted", message=message)
        status["conditions"].insert(0, condition("DisruptionTarget", "True", "TerminationByKubelet", message))
        self._patch({"metadata": {"name": pod.name, "namespace": pod.namespace}}, status)

    def lose_node(self) -> str:
        """The node stops reporting (powered off): its processes die with it, and what the node lifecycle
        controller does once its grace period has passed is done at once: Ready=Unknown, the unreachable
        taints, and Ready=False on each of its pods. Nothing confirms those pods' deletion any more. The
        kubelet carries on as a new node, which it returns."""
        lost = self.node
        with self._lock:
            self.lost_nodes.add(lost)
            victims = list(self.running.items())
            for uid, _ in victims:
                self.finished[uid] = self.running.pop(uid)
        for _, pod in victims:
            self._kill(pod)
        unknown = condition("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        taints = [
            {"key": "node.kubernetes.io/unreachable", "effect": effect, "timeAdded": _now()}
            for effect in ("NoSchedule", "NoExecute")
        ]
        self.api.patch_node(lost, {"spec": {"taints": taints}}, _content_type=MERGE_PATCH)
        self.api.patch_node_status(lost, {"status": {"conditions": [unknown]}}, _content_type=MERGE_PATCH)
        response = self.api.list_pod_for_all_namespaces(_preload_content=False)
        for pod in json.loads(response.data)["items"]:
            if (pod.get("spec") or {}).get("nodeName") == lost:
                conditions = [c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] != "Ready"]
                self._patch(pod, {"conditions": [*conditions, condition("Ready", "False")]})
        self.node = f"{lost}-replacement"
        self._register(self.node)
        return lost

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self._tick()
            except Exception as error:  # a kubelet outlives any one pod's trouble; tests read `errors`
                self.errors.append(repr(error))

    def _tick(self) -> None:
        response = self.api.list_pod_for_all_namespaces(_preload_content=False)
        pods = {pod["metadata"]["uid"]: pod for pod in json.loads(response.data)["items"]}
        with self._lock:
            for uid, running in list(self.running.items()):
                pod = pods.get(uid)
                if pod is None or pod["metadata"].get("deletionTimestamp"):
                    if self._stopped(running):
                        if pod is not None:  # its end is written before the pod goes, as a kubelet does
                            self._report_exit(running)
                        self.finished[uid] = self.running.pop(uid)
                elif running.process.poll() is not None:
                    self._report_exit(running)
                    self.finished[uid] = self.running.pop(uid)
        for uid, pod in pods.items():
            meta, spec = pod["metadata"], pod.get("spec") or {}
            if spec.get("nodeName") in self.lost_nodes:
                continue  # no kubelet reports for a lost node
            if meta.get("deletionTimestamp"):
                if self.kueue and KUEUE_MANAGED in (meta.get("finalizers") or []) and uid not in self.running:
                    self._finalize(pod)
                elif uid not in self.running:  # stopped: remove the pod for good, as a kubelet does
                    self._confirm_deletion(pod)
                continue
            if (
                uid in self.running
                or uid in self.finished
                or (pod.get("status") or {}).get("phase") not in (None, "Pending")
            ):
                continue
            if self._admitted(pod, pods.values()) and self._bound(pod):
                self._start(pod)

    def _admitted(self, pod: KubernetesObject, pods: Any) -> bool:
        """Kueue's part: gate and finalize a queued pod on sight; release a gated group once admitted whole."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        labels = meta.get("labels") or {}
        if self.kueue and KUEUE_QUEUE in labels and labels.get(KUEUE_MANAGED) != "true":
            meta_patch = {
                "labels": {KUEUE_MANAGED: "true"},
                "finalizers": [*(meta.get("finalizers") or []), KUEUE_MANAGED],
            }
            self._patch_pod(pod, {"metadata": meta_patch, "spec": {"schedulingGates": [{"name": KUEUE_GATE}]}})
            gated = "Scheduling is blocked due to non-empty scheduling gates"
            self._patch(
                pod, {"phase": "Pending", "conditions": [condition("PodScheduled", "False", "SchedulingGated", gated)]}
            )
            return False
        if not spec.get("schedulingGates"):
            return True
        group = labels.get(KUEUE_GROUP)
        members = [
            other
            for other in pods
            if (other["metadata"].get("labels") or {}).get(KUEUE_GROUP) == group
            and not other["metadata"].get("deletionTimestamp")
        ]
        wanted = int((meta.get("annotations") or {}).get(KUEUE_COUNT, "1"))
        if self.kueue and self.admit and group and len(members) >= wanted:
            for member in members:
                self._patch_pod(member, {"spec": {"schedulingGates": None}})
        return False

    def _finalize(self, pod: KubernetesObject) -> None:
        finalizers = [f for f in pod["metadata"].get("finalizers") or [] if f != KUEUE_MANAGED]
        self._patch_pod(pod, {"metadata": {"finalizers": finalizers or None}})

    def _bound(self, pod: KubernetesObject) -> bool:
        """The scheduler's part for this node: bind the pod here if it fits, or say why it does not."""
        spec = pod.get("spec") or {}
        if spec.get("nodeName"):
            return bool(spec["nodeName"] == self.node)
        if spec.get("schedulerName", "default-scheduler") not in self.schedulers:
            return False
        reasons = []
        if any(self.labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
            reasons.append("1 node(s) didn't match Pod's node affinity/selector")
        wanted = sum(int(c.get("resources", {}).get("limits", {}).get(GPU, 0)) for c in spec.get("containers", []))
        if wanted > self.gpus:
            reasons.append(f"1 Insufficient {GPU}")
        if reasons:
            message = (
                f"0/1 nodes are available: {', '.join(sorted(reasons))}. preemption: 0/1 nodes are available: "
                "1 Preemption is not helpful for scheduling."
            )
            scheduled = [c for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == "PodScheduled"]
            if not scheduled or scheduled[0].get("message") != message:
                self._patch(
                    pod,
                    {"phase": "Pending", "conditions": [condition("PodScheduled", "False", "Unschedulable", message)]},
                )
            return False
        self._patch_pod(pod, {"spec": {"nodeName": self.node}})
        return True

    def _start(self, pod: KubernetesObject) -> None:
        (container,) = pod["spec"]["containers"]
        if container["image"] in self.missing_images:
            self._pull_failed(pod, container)
            return
        try:
            self._run(pod)
        except PodConfigError as error:
            self._waiting(pod, container, "CreateContainerConfigError", str(error))

    def _pull_failed(self, pod: KubernetesObject, container: KubernetesObject) -> None:
        """The pull fails (ErrImagePull, the runtime's error), then the kubelet backs off (ImagePullBackOff). The
        real kubelet retries with a doubling back-off, so the two alternate less and less; this one keeps to
        the back-off after its first failure."""
        uid = pod["metadata"]["uid"]
        self._pulls[uid] = self._pulls.get(uid, 0) + 1
        image = container["image"]
        if self._pulls[uid] == 1:
            message = (
                f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to resolve '
                f'reference "{image}": not found'
            )
            self._waiting(pod, container, "ErrImagePull", message)
        elif self._pulls[uid] == 5:
            self._waiting(pod, container, "ImagePullBackOff", f'Back-off pulling image "{image}"')

    def _waiting(self, pod: KubernetesObject, container: KubernetesObject, reason: str, message: str) -> None:
        uid = pod["metadata"]["uid"]
        if self._reported.get(uid) == (reason, message):
            return  # reported already: a kubelet writes a status when it changes
        self._reported[uid] = (reason, message)
        waiting = {"waiting": {"reason": reason, "message": message}}
        self._patch(
            pod,
            {
                "phase": "Pending",
                "hostIP": "127.0.0.1",
                "conditions": started_conditions(False, container["name"]),
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": waiting,
                    }
                ],
            },
        )

    def _confirm_deletion(self, pod: KubernetesObject) -> None:
        meta = pod["metadata"]
        try:
            self.api.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0)
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    def _stopped(self, pod: RunningPod) -> bool:
        """A deleted pod's container gets SIGTERM, then SIGKILL after its grace period, as on a node."""
        if pod.process.poll() is not None:
            return True
        if pod.stop_by is None:
            pod.stop_by = time.monotonic() + pod.grace_seconds
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pod.process.pid, signal.SIGTERM)
        elif time.monotonic() > pod.stop_by:
            self._kill(pod)
            return True
        return False

    def _kill(self, pod: RunningPod) -> None:
        if pod.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pod.process.pid, signal.SIGKILL)
            pod.process.wait(30)

    def _patch(self, pod: KubernetesObject, status: KubernetesObject) -> None:
        meta = pod["metadata"]
        try:
            self.api.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], {"status": status}, _content_type=MERGE_PATCH, _preload_content=False
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    def _patch_pod(self, pod: KubernetesObject, patch: KubernetesObject) -> None:
        meta = pod["metadata"]
        try:
            self.api.patch_namespaced_pod(
                meta["name"], meta["namespace"], patch, _content_type=MERGE_PATCH, _preload_content=False
            )
        except kubernetes.client.ApiException as error:
            if error.status != 404:
                raise

    def _secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self.api.read_namespaced_secret(name, namespace)
        except kubernetes.client.ApiException as error:
            raise PodConfigError(f'secret "{name}" not found') from error
        if secret.string_data and key in secret.string_data:
            return str(secret.string_data[key])
        if not secret.data or key not in secret.data:
            raise PodConfigError(f"couldn't find key {key} in Secret {namespace}/{name}")
        return base64.b64decode(secret.data[key]).decode()

    def _config_map(self, namespace: str, name: str) -> dict[str, str]:
        try:
            return dict(self.api.read_namespaced_config_map(name, namespace).data or {})
        except kubernetes.client.ApiException as error:
            raise PodConfigError(f'configmap "{name}" not found') from error

    def _resolve_env(self, pod: KubernetesObject, container: KubernetesObject) -> dict[str, str]:
        meta, spec = pod["metadata"], pod["spec"]
        namespace = meta["namespace"]
        local_name = re.compile(rf"^[a-z0-9-]+\.{re.escape(spec.get('subdomain', '-'))}(\.{namespace}(\.svc.*)?)?$")
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            if "value" in item:
                value = str(item["value"])
            elif "secretKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["secretKeyRef"]
                value = self._secret_value(namespace, ref["name"], ref["key"])
            elif "configMapKeyRef" in item.get("valueFrom", {}):
                ref = item["valueFrom"]["configMapKeyRef"]
                value = self._config_map(namespace, ref["name"])[ref["key"]]
            elif "fieldRef" in item.get("valueFrom", {}):
                field = item["valueFrom"]["fieldRef"]["fieldPath"]
                value = {"metadata.name": meta["name"], "metadata.namespace": namespace, "status.podIP": "127.0.0.1"}[
                    field
                ]
            else:
                continue
            env[item["name"]] = "127.0.0.1" if local_name.match(value) else value
        return env

    def _mount(self, pod: KubernetesObject, container: KubernetesObject, sandbox: Path) -> dict[str, Path]:
        namespace = pod["metadata"]["namespace"]
        volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes[mount["name"]]
            local = sandbox / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                for key, text in self._config_map(namespace, volume["configMap"]["name"]).items():
                    (local / key).write_text(text)
            elif "secret" in volume:
                secret_name = volume["secret"]["secretName"]
                secret = self.api.read_namespaced_secret(secret_name, namespace)
                for key, encoded in (secret.data or {}).items():
                    (local / key).write_bytes(base64.b64decode(encoded))
            mounts[mount["mountPath"]] = local
        return mounts

    def _run(self, pod: KubernetesObject) -> None:
        meta = pod["metadata"]
        (container,) = pod["spec"]["containers"]
        sandbox = self.workdir / f"{meta['name']}-{meta['uid'][:8]}"
        (sandbox / "home").mkdir(parents=True, exist_ok=True)
        env = self._resolve_env(pod, container)
        mounts = self._mount(pod, container, sandbox)

        def local(argument: str) -> str:
            for mount_path, path in mounts.items():
                if argument.startswith(mount_path):
                    return str(path) + argument[len(mount_path) :]
            return argument

        env = {name: local(value) for name, value in env.items()}
        command = [local(part) for part in [*(container.get("command") or self.entrypoint), *container.get("args", [])]]
        base = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(sandbox / "home"),
            "HOSTNAME": pod["spec"].get("hostname", meta["name"]),
        }
        log = sandbox / "log.txt"
        with log.open("wb") as handle:
            process = subprocess.Popen(
                command,
                cwd=sandbox,
                env=base | self.env | env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self.running[meta["uid"]] = RunningPod(
                meta["namespace"],
                meta["name"],
                meta["uid"],
                process,
                log,
                container.get("terminationMessagePolicy", "File"),
                container["name"],
                container["image"],
                float(pod["spec"].get("terminationGracePeriodSeconds", 30)),
            )
            self.started.append(f"{meta['namespace']}/{meta['name']}/{meta['uid']}")
        started = _now()
        self._patch(
            pod,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "conditions": started_conditions(True, container["name"]),
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": image_id(container["image"]),
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        )

    def _report_exit(self, pod: RunningPod) -> None:
        code = pod.process.returncode
        exit_code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as container runtimes report
        message = ""
        if exit_code != 0 and pod.message_policy == "FallbackToLogsOnError":
            message = pod.log.read_bytes()[-TERMINATION_MESSAGE_BYTES:].decode(errors="replace")
        terminated = {
            "exitCode": exit_code,
            "reason": "Completed" if exit_code == 0 else "Error",
            "message": message,
            "finishedAt": _now(),
        }
        self._patch({"metadata": {"name": pod.name, "namespace": pod.namespace}}, terminal_status(pod, terminated))
