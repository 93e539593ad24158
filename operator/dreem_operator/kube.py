"""The operator's one door to the Kubernetes API: every read and write it makes, through the `kubernetes`
client, as plain dicts. `PERMISSIONS` lists exactly what these calls need, for the chart's RBAC.

Reads skip the client's model classes (`_preload_content=False`): the decisions work on the JSON the
API server sent, and decoding hundreds of pods into models per reconcile would cost more than the decision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dreem_operator.api import KubernetesObject
from dreem_operator.children import JobRef
from dreem_operator.names import FIELD_MANAGER, LABEL_JOB
from dreem_trainer.contract import CREDENTIAL_KEYS, GROUP, PLURAL, STATUS_PATCH, VERSION

log = logging.getLogger(__name__)

PERMISSIONS: list[tuple[str, str, tuple[str, ...]]] = [
    # (API group, resource, verbs), for every call below and kopf's watches.
    (GROUP, PLURAL, ("get", "list", "watch", "delete")),
    (GROUP, f"{PLURAL}/status", ("get", "patch")),
    ("", "pods", ("list", "watch", "create", "delete")),
    ("", "configmaps", ("create",)),
    ("", "services", ("create",)),
    ("", "serviceaccounts", ("create",)),
    ("", "secrets", ("get",)),
    ("", "events", ("create",)),
    ("rbac.authorization.k8s.io", "roles", ("create",)),
    ("rbac.authorization.k8s.io", "rolebindings", ("create",)),
]


class ClusterApi:
    """Typed-client calls, named after what the operator does with them."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self._api_client = api_client or client.ApiClient()
        self.core = client.CoreV1Api(self._api_client)
        self.rbac = client.RbacAuthorizationV1Api(self._api_client)
        self.custom = client.CustomObjectsApi(self._api_client)
        self._creators: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.create_namespaced_config_map,
            "Service": self.core.create_namespaced_service,
            "ServiceAccount": self.core.create_namespaced_service_account,
            "Pod": self.core.create_namespaced_pod,
            "Event": self.core.create_namespaced_event,
            "Role": self.rbac.create_namespaced_role,
            "RoleBinding": self.rbac.create_namespaced_role_binding,
        }

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    def read_job(self, namespace: str, name: str) -> KubernetesObject | None:
        try:
            response = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        body: KubernetesObject = self._json(response)
        return body

    def list_pods(self, job: JobRef) -> list[KubernetesObject]:
        """The job's pods: labelled with its name and controlled by this very job (not a namesake's)."""
        response = self.core.list_namespaced_pod(
            job.namespace, label_selector=f"{LABEL_JOB}={job.name}", _preload_content=False
        )
        return [
            pod
            for pod in self._json(response).get("items", [])
            if any(
                ref.get("uid") == job.uid and ref.get("controller")
                for ref in pod["metadata"].get("ownerReferences") or []
            )
        ]

    def secret_problem(self, namespace: str, name: str) -> str | None:
        """Why the credentials Secret cannot serve the pods, or None when it can."""
        try:
            response = self.core.read_namespaced_secret(name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return f'spec.storage.credentialsSecret: Secret "{name}" not found in namespace "{namespace}"'
            raise
        secret = self._json(response)
        present = set(secret.get("data") or {}) | set(secret.get("stringData") or {})
        missing = [key for key in CREDENTIAL_KEYS if key not in present]
        if missing:
            return f'spec.storage.credentialsSecret: Secret "{name}" lacks the key(s) {", ".join(missing)}'
        return None

    def create(self, obj: KubernetesObject) -> bool:
        """Create a child; False when one of that name exists already (a repeated reconcile)."""
        try:
            self._creators[obj["kind"]](obj["metadata"]["namespace"], obj, field_manager=FIELD_MANAGER)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.core.delete_namespaced_pod(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, status: KubernetesObject) -> None:
        """A merge patch of the operator's own status fields: `progress`, which rank 0 writes, is left alone."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            field_manager=FIELD_MANAGER,
            _content_type=STATUS_PATCH,
        )

    def delete_job(self, namespace: str, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background"
            )
        except ApiException as error:
            if error.status != 404:
                raise
