"""A test kubelet: runs each pod's container as a local process, the way a node would, and reports back.

It polls the API (no watch: the emulator and the `kubernetes` client disagree on watch parameters), and
for every new pod it resolves the environment (values, Secret and ConfigMap keys, field references),
writes ConfigMap, Secret and emptyDir volumes into a per-pod sandbox, rewrites mount paths in the
command line to the sandbox, and starts the process in its own session. Pod DNS names
(`<hostname>.<subdomain>`) resolve to 127.0.0.1, since every "node" is this machine. It patches the pod's
status as a kubelet does: Running with a start time, then Succeeded or Failed with the container's
exit code and termination message (the log tail, for `FallbackToLogsOnError`). A pod deleted from the
API gets SIGTERM, then SIGKILL after its grace period; a pod whose Secret is missing stays Pending
with CreateContainerConfigError.
"""

from __future__ import annotations

import base64
import contextlib
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


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    grace_seconds: float = 30.0
    stop_by: float | None = None
    """When a deleted pod's process gets SIGKILL if SIGTERM has not ended it."""


class LocalKubelet:
    def __init__(self, kubeconfig: Path, workdir: Path, entrypoint: list[str], env: dict[str, str]) -> None:
        self.api = kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))
        self.workdir = workdir
        self.entrypoint = entrypoint
        self.env = env
        self.running: dict[str, RunningPod] = {}
        self.finished: dict[str, RunningPod] = {}
        self.errors: list[str] = []
        self.started: list[str] = []
        """Every pod (namespace/name/uid) this kubelet started, in order."""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)

    def start(self) -> LocalKubelet:
        self._thread.start()
        return self

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
                        self.finished[uid] = self.running.pop(uid)
                elif running.process.poll() is not None:
                    self._report_exit(running)
                    self.finished[uid] = self.running.pop(uid)
        for uid, pod in pods.items():
            meta = pod["metadata"]
            if meta.get("deletionTimestamp"):
                if uid not in self.running:  # stopped: remove the pod for good, as a kubelet does
                    self._confirm_deletion(pod)
                continue
            if (
                uid in self.running
                or uid in self.finished
                or (pod.get("status") or {}).get("phase") not in (None, "Pending")
            ):
                continue
            try:
                self._run(pod)
            except PodConfigError as error:
                self._patch(pod, {"phase": "Pending", "message": str(error), "reason": "CreateContainerConfigError"})

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
                "containerStatuses": [
                    {
                        "name": container["name"],
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
        body = {"metadata": {"name": pod.name, "namespace": pod.namespace}}
        self._patch(
            body,
            {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {"name": pod.container, "ready": False, "restartCount": 0, "state": {"terminated": terminated}}
                ],
            },
        )
