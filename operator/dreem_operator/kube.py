"""The operator's one door to the Kubernetes API: every read and write it makes, through the `kubernetes`
client, as plain dicts. `PERMISSIONS` lists exactly what these calls need in the watched namespaces, and
`LEASE_PERMISSIONS` what leader election needs in the operator's own namespace, for the chart's RBAC.

Every write to a job or its children first asks the fence (`may_write`) whether this replica leads, so a
standby never writes whatever code path reaches here; the Lease itself is written through `LeaseApi`.

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

POD_GROUPS = "podgroups"

PERMISSIONS: list[tuple[str, str, tuple[str, ...]]] = [
    # (API group, resource, verbs), for every call below and kopf's watches.
    (GROUP, PLURAL, ("get", "list", "watch", "delete")),
    (GROUP, f"{PLURAL}/status", ("get", "patch")),
    # No call updates finalizers: OwnerReferencesPermissionEnforcement (on in OpenShift) asks for this right
    # on the owner before it admits a child whose ownerReference sets blockOwnerDeletion.
    (GROUP, f"{PLURAL}/finalizers", ("update",)),
    ("", "pods", ("get", "list", "watch", "create", "delete")),
    ("", "configmaps", ("get", "create")),
    ("", "services", ("get", "create")),
    ("", "serviceaccounts", ("get", "create")),
    ("", "secrets", ("get",)),
    ("", "events", ("create",)),
    ("rbac.authorization.k8s.io", "roles", ("get", "create")),
    ("rbac.authorization.k8s.io", "rolebindings", ("get", "create")),
    # A PodGroup per attempt, with a gang scheduler (`get` on children: an existing one's owner is checked).
    ("scheduling.volcano.sh", "podgroups", ("get", "list", "create", "delete")),
    ("scheduling.x-k8s.io", "podgroups", ("get", "list", "create", "delete")),
]
LEASE_PERMISSIONS: list[tuple[str, str, tuple[str, ...]]] = [
    ("coordination.k8s.io", "leases", ("get", "create", "update")),
]


class NotLeading(Exception):
    """A write was asked of a replica that does not lead (any more): it is not made."""


class StatusConflict(Exception):
    """The job changed since it was read (409 Conflict): the status write was not made."""


def _always() -> bool:
    return True


def answer_unless(refusal: int, call: Callable[[], Any]) -> KubernetesObject | None:
    """The JSON the API server answered `call` with (made with `_preload_content=False`), or None when it
    answered with the HTTP status `refusal` (404 for a read, 409 for a create or an update)."""
    try:
        response = call()
    except ApiException as error:
        if error.status == refusal:
            return None
        raise
    body: KubernetesObject = json.loads(response.data)
    return body


def api_message(error: ApiException) -> str:
    """What the API server said, from its Status body (`message`), else the HTTP reason."""
    try:
        message = json.loads(error.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or error.reason or f"HTTP {error.status}")


class ClusterApi:
    """Typed-client calls, named after what the operator does with them."""

    def __init__(self, api_client: client.ApiClient | None = None, may_write: Callable[[], bool] = _always) -> None:
        self._api_client = api_client or client.ApiClient()
        self._may_write = may_write
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
        self._readers: dict[str, Callable[..., Any]] = {
            "ConfigMap": self.core.read_namespaced_config_map,
            "Service": self.core.read_namespaced_service,
            "ServiceAccount": self.core.read_namespaced_service_account,
            "Pod": self.core.read_namespaced_pod,
            "Role": self.rbac.read_namespaced_role,
            "RoleBinding": self.rbac.read_namespaced_role_binding,
        }

    @staticmethod
    def _json(response: Any) -> Any:
        return json.loads(response.data)

    def _fence(self) -> None:
        if not self._may_write():
            raise NotLeading("this replica does not lead: the write is left to the leader")

    def read_job(self, namespace: str, name: str) -> KubernetesObject | None:
        return answer_unless(
            404,
            lambda: self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False
            ),
        )

    def list_pods(self, job: JobRef) -> list[KubernetesObject]:
        """The pods labelled with the job's name: its own, and any a namesake left (reconcile tells them apart)."""
        response = self.core.list_namespaced_pod(
            job.namespace, label_selector=f"{LABEL_JOB}={job.name}", _preload_content=False
        )
        items: list[KubernetesObject] = self._json(response).get("items", [])
        return items

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

    def create(self, obj: KubernetesObject) -> str | None:
        """Create a child and return its resourceVersion; None when one of that name exists already (a
        repeated reconcile, or a namesake's: `existing` tells them apart)."""
        self._fence()
        namespace = obj["metadata"]["namespace"]
        if obj["kind"] == "PodGroup":
            group, version = obj["apiVersion"].split("/")
            created = answer_unless(
                409,
                lambda: self.custom.create_namespaced_custom_object(
                    group, version, namespace, POD_GROUPS, obj, field_manager=FIELD_MANAGER, _preload_content=False
                ),
            )
        else:
            create = self._creators[obj["kind"]]
            created = answer_unless(
                409, lambda: create(namespace, obj, field_manager=FIELD_MANAGER, _preload_content=False)
            )
        return None if created is None else str(created["metadata"]["resourceVersion"])

    def existing(self, obj: KubernetesObject) -> KubernetesObject | None:
        """The object of `obj`'s kind and name as it is in the cluster, None if there is none."""
        meta = obj["metadata"]
        if obj["kind"] == "PodGroup":
            group, version = obj["apiVersion"].split("/")
            return answer_unless(
                404,
                lambda: self.custom.get_namespaced_custom_object(
                    group, version, meta["namespace"], POD_GROUPS, meta["name"], _preload_content=False
                ),
            )
        read = self._readers[obj["kind"]]
        return answer_unless(404, lambda: read(meta["name"], meta["namespace"], _preload_content=False))

    def list_pod_groups(self, job: JobRef, api_version: str) -> list[KubernetesObject]:
        """The job's PodGroups of the gang scheduler's API, controlled by this very job."""
        group, version = api_version.split("/")
        response = self.custom.list_namespaced_custom_object(
            group, version, job.namespace, POD_GROUPS, label_selector=f"{LABEL_JOB}={job.name}", _preload_content=False
        )
        items: list[KubernetesObject] = self._json(response).get("items", [])
        return items

    def delete_pod_group(self, namespace: str, name: str, api_version: str) -> None:
        self._fence()
        group, version = api_version.split("/")
        try:
            self.custom.delete_namespaced_custom_object(group, version, namespace, POD_GROUPS, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def force_delete_pod(self, namespace: str, name: str) -> None:
        """Delete at once, without waiting for a kubelet (`kubectl delete --force --grace-period=0`)."""
        self._fence()
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    def delete_pod(self, namespace: str, name: str) -> None:
        self._fence()
        try:
            self.core.delete_namespaced_pod(name, namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    def patch_status(self, namespace: str, name: str, status: KubernetesObject, resource_version: str) -> str:
        """A merge patch of the operator's own status fields (`progress`, which rank 0 writes, is left alone),
        made only if the job is still at `resource_version`, the version the decision was made on: otherwise
        the API server answers 409 and this raises StatusConflict, so a stale decision never overwrites a
        newer one, nor progress reported meanwhile. Returns the job's new resourceVersion."""
        self._fence()
        try:
            response = self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"metadata": {"resourceVersion": resource_version}, "status": status},
                field_manager=FIELD_MANAGER,
                _content_type=STATUS_PATCH,
                _preload_content=False,
            )
        except ApiException as error:
            if error.status == 409:
                raise StatusConflict(f"{namespace}/{name} changed since resourceVersion {resource_version}") from None
            raise
        version: str = self._json(response)["metadata"]["resourceVersion"]
        return version

    def delete_job(self, namespace: str, name: str) -> None:
        self._fence()
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, propagation_policy="Background"
            )
        except ApiException as error:
            if error.status != 404:
                raise


class LeaseApi:
    """The Lease calls of leader election, as plain dicts. An update is a PUT of the object last read, which
    carries its resourceVersion: of two candidates racing, the API server lets one through and answers the
    other 409, as with client-go's LeaseLock."""

    def __init__(self, api_client: client.ApiClient | None = None) -> None:
        self.coordination = client.CoordinationV1Api(api_client or client.ApiClient())

    def read(self, namespace: str, name: str) -> KubernetesObject | None:
        return answer_unless(
            404, lambda: self.coordination.read_namespaced_lease(name, namespace, _preload_content=False)
        )

    def create(self, lease: KubernetesObject) -> KubernetesObject | None:
        """The created Lease, or None when another candidate created it first."""
        namespace = lease["metadata"]["namespace"]
        return answer_unless(
            409,
            lambda: self.coordination.create_namespaced_lease(
                namespace, lease, field_manager=FIELD_MANAGER, _preload_content=False
            ),
        )

    def replace(self, lease: KubernetesObject) -> KubernetesObject | None:
        """The updated Lease, or None when it changed since it was read (409 Conflict)."""
        meta = lease["metadata"]
        return answer_unless(
            409,
            lambda: self.coordination.replace_namespaced_lease(
                meta["name"], meta["namespace"], lease, field_manager=FIELD_MANAGER, _preload_content=False
            ),
        )
