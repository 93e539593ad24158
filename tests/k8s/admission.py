"""What an API server admits: a DreemTrainingJob against the CRD schema with strict field validation
(kubectl's default), and a pod against the "restricted" Pod Security Standard."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dreem_operator.crd import CRD_FILE
from tests.k8s.openapi import pruned, schema_errors

KubernetesObject = dict[str, Any]


def schema_refusals(obj: KubernetesObject, schema: dict[str, Any]) -> list[str]:
    """What the API server refuses of `obj` under strict field validation (kubectl's default): the fields its
    schema lacks, then what breaks the schema, checked as the emulator checks every write (tests.k8s.openapi)."""
    unknown: list[str] = []
    kept = pruned(obj, schema, unknown)
    return [f'unknown field "{path}"' for path in unknown] + schema_errors(kept, schema)


def admission_errors(manifest: dict[str, Any]) -> list[str]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    return schema_refusals(manifest, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod_spec: KubernetesObject) -> list[str]:
    """The checks of the restricted Pod Security Standard (baseline included), as the admission plugin makes
    them: https://kubernetes.io/docs/concepts/security/pod-security-standards/#restricted"""
    problems: list[str] = []
    pod_context = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"spec.{flag} is set")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} uses {sorted(kinds - RESTRICTED_VOLUMES)}")
    if pod_context.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser is 0")
    for sysctl in pod_context.get("sysctls") or []:
        problems.append(f"sysctl {sysctl.get('name')} is set")
    containers = [*(pod_spec.get("initContainers") or []), *pod_spec["containers"]]
    for container in containers:
        where = f"container {container['name']}"
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            problems.append(f"{where} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{where}: capabilities must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where} adds capabilities {capabilities['add']}")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            problems.append(f"{where}: runAsNonRoot must be true")
        if context.get("runAsUser") == 0:
            problems.append(f"{where}: runAsUser is 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile must be RuntimeDefault or Localhost (got {seccomp})")
        if context.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount must be Default")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where} uses hostPort {port['hostPort']}")
    return problems


VENDORED_CRDS = Path(__file__).resolve().parents[1] / "data" / "vendor"
"""Other projects' published CRDs, verbatim with their licenses (see each folder's SOURCE.md)."""


def vendored_crd(api_version: str, kind: str) -> KubernetesObject:
    """The vendored CRD serving `kind` at `api_version`."""
    group, version = api_version.split("/")
    for path in sorted(VENDORED_CRDS.glob("*/*.yaml")):
        crd = next(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
        spec = crd["spec"]
        if (
            spec["group"] == group
            and spec["names"]["kind"] == kind
            and any(v["name"] == version for v in spec["versions"])
        ):
            return dict(crd)
    raise LookupError(f"no vendored CRD serves {kind} {api_version}")


def custom_resource_errors(obj: KubernetesObject) -> list[str]:
    """What an API server with the vendored CRD refuses of `obj` (strict field validation included)."""
    crd = vendored_crd(obj["apiVersion"], obj["kind"])
    version = next(v for v in crd["spec"]["versions"] if v["name"] == obj["apiVersion"].split("/")[1])
    return schema_refusals(obj, version["schema"]["openAPIV3Schema"])


LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_problems(labels: dict[str, str]) -> list[str]:
    """Label values the API server refuses (k8s.io/apimachinery validation: at most 63 characters, alphanumeric
    at both ends, '-', '_' and '.' between); the official JSON schemas leave them to the server."""
    return [
        f"{key}={value!r}: not a valid label value"
        for key, value in labels.items()
        if len(value) > 63 or not LABEL_VALUE.match(value)
    ]


QUALIFIED_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def metadata_label_problems(labels: dict[str, str]) -> list[str]:
    """metadata.labels as the API server validates them on every object (apimachinery's ValidateLabels), in
    its words: a key is a qualified name ([DNS subdomain prefix/]name, the name at most 63 characters), a
    value at most 63 characters, empty or alphanumeric at both ends with '-', '_' and '.' between.
    https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set"""
    problems = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not DNS_SUBDOMAIN.match(prefix))) or (
            len(name) > 63 or not QUALIFIED_NAME_PART.match(name)
        ):
            problems.append(
                f'metadata.labels: Invalid value: "{key}": name part must consist of alphanumeric characters, '
                "'-', '_' or '.', and must start and end with an alphanumeric character"
            )
        if len(value) > 63:
            problems.append(f'metadata.labels: Invalid value: "{value}": must be no more than 63 characters')
        elif not LABEL_VALUE.match(value):
            problems.append(
                f'metadata.labels: Invalid value: "{value}": a valid label must be an empty string or consist of '
                "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
            )
    return problems


def pod_spec_problems(pod_spec: KubernetesObject) -> list[str]:
    """What the API server's pod validation (ValidatePodSpec) refuses of volumes and mounts, in its words:
    two volumes of one name, a mount of a volume the pod lacks, two mounts of one container at one path.
    https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#volumes"""
    problems: list[str] = []
    names: set[str] = set()
    for index, volume in enumerate(pod_spec.get("volumes") or []):
        name = volume.get("name")
        if name in names:
            problems.append(f'spec.volumes[{index}].name: Duplicate value: "{name}"')
        names.add(name)
    for kind in ("initContainers", "containers"):
        for position, container in enumerate(pod_spec.get(kind) or []):
            paths: set[str] = set()
            for index, mount in enumerate(container.get("volumeMounts") or []):
                where = f"spec.{kind}[{position}].volumeMounts[{index}]"
                if mount.get("name") not in names:
                    problems.append(f'{where}.name: Not found: "{mount.get("name")}"')
                if mount.get("mountPath") in paths:
                    problems.append(f'{where}.mountPath: Invalid value: "{mount["mountPath"]}": must be unique')
                paths.add(mount.get("mountPath"))
    return problems
