"""A whole lab cluster on one machine, for tests and benchmarks: the API emulator with the CRD, the
operator in its own process, and the test kubelet; plus the kubectl-like reads the tests make."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from dreem_operator.api import KubernetesObject
from dreem_operator.crd import CRD_FILE
from dreem_trainer.contract import API_VERSION, GROUP, KIND, PLURAL, VERSION
from tests.k8s.emulator import EmulatedCluster, emulated_cluster


class Kubectl:
    """The reads and writes a user makes, through the `kubernetes` client over HTTP."""

    def __init__(self, kubeconfig: Path) -> None:
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def apply_job(self, manifest: KubernetesObject, namespace: str = "default") -> KubernetesObject:
        created: KubernetesObject = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, manifest
        )
        return created

    def job(self, name: str, namespace: str = "default") -> KubernetesObject:
        response = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
        )
        body: KubernetesObject = json.loads(response.data)
        return body

    def patch_job(self, name: str, patch: KubernetesObject, namespace: str = "default") -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, _content_type="application/merge-patch+json"
        )

    def delete_job(self, name: str, namespace: str = "default") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def pods(self, namespace: str = "default", selector: str = "") -> list[KubernetesObject]:
        response = self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        items: list[KubernetesObject] = json.loads(response.data)["items"]
        return items

    def wait_for_pods(self, selector: str, count: int, timeout: float, namespace: str = "default") -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            names = sorted(pod["metadata"]["name"] for pod in self.pods(namespace, selector))
            if len(names) >= count or time.monotonic() > deadline:
                return names
            time.sleep(0.1)

    def names(self, kind: str, namespace: str = "default") -> list[str]:
        lister: dict[str, Callable[..., Any]] = {
            "pods": self.core.list_namespaced_pod,
            "configmaps": self.core.list_namespaced_config_map,
            "services": self.core.list_namespaced_service,
            "serviceaccounts": self.core.list_namespaced_service_account,
        }
        response = lister[kind](namespace, _preload_content=False)
        return sorted(item["metadata"]["name"] for item in json.loads(response.data)["items"])

    def events(self, namespace: str = "default") -> list[KubernetesObject]:
        response = self.core.list_namespaced_event(namespace, _preload_content=False)
        items: list[KubernetesObject] = json.loads(response.data)["items"]
        return items

    def create_secret(self, name: str, values: dict[str, str], namespace: str = "default") -> None:
        data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
        self.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": data})

    def wait_for(
        self,
        name: str,
        check: Callable[[KubernetesObject], bool],
        timeout: float,
        namespace: str = "default",
        what: str = "",
    ) -> KubernetesObject:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(name, namespace)
            if check(job):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what or 'condition'} not reached by {name}; status: {job.get('status')}")
            time.sleep(0.2)


def job_manifest(name: str, spec: Any) -> KubernetesObject:
    """A DreemTrainingJob as a user writes it."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


def minimal_spec(name: str, nodes: int = 2) -> KubernetesObject:
    """The least a valid job needs: data, nodes, an output."""
    return {
        "config": {"dataset": {"train_dataset": {"dir": {"path": "s3://lab/flies"}}}},
        "nodes": nodes,
        "storage": {"output": f"s3://lab/runs/{name}"},
    }


def phase_is(*phases: str) -> Callable[[KubernetesObject], bool]:
    return lambda job: (job.get("status") or {}).get("phase") in phases


@contextmanager
def cluster_with_crd(workdir: Path) -> Iterator[EmulatedCluster]:
    with emulated_cluster(workdir, [yaml.safe_load(CRD_FILE.read_text())]) as cluster:
        yield cluster
