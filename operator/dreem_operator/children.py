"""The objects a DreemTrainingJob owns, built as plain dicts: the resolved config, the headless Service
and one gang pod per node. Pure functions: the handlers apply what these return."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from dreem_operator.api import QUANTITY, DreemTrainingJobSpec, KubernetesObject
from dreem_operator.names import (
    CACHE_MOUNT,
    CONFIG_FILE,
    CONFIG_MOUNT,
    COSCHEDULING_GROUP_LABEL,
    GPU_RESOURCE,
    KUEUE_GROUP_COUNT_ANNOTATION,
    KUEUE_GROUP_LABEL,
    KUEUE_QUEUE_LABEL,
    KUEUE_RETRIABLE_ANNOTATION,
    SCRATCH_MOUNT,
    TRAINER_CONTAINER,
    VOLCANO_GROUP_ANNOTATION,
    JobNames,
)
from dreem_trainer.config import DreemConfig, dump_yaml
from dreem_trainer.contract import (
    API_VERSION,
    CREDENTIAL_KEYS,
    ENV_ATTEMPT,
    ENV_CACHE_DIR,
    ENV_JOB,
    ENV_JOB_NAMESPACE,
    ENV_S3_ENDPOINT,
    GROUP,
    KIND,
    PLURAL,
)

GangScheduler = Literal["none", "volcano", "scheduler-plugins"]
SCHEDULER_NAMES: dict[GangScheduler, str | None] = {
    "none": None,
    "volcano": "volcano",
    "scheduler-plugins": "scheduler-plugins-scheduler",
}
"""The pods' schedulerName for each gang scheduler unless the chart names another: Volcano's scheduler, and
scheduler-plugins installed as a second scheduler (its chart's default name; as a replacement it is
default-scheduler)."""
POD_GROUP_API: dict[GangScheduler, str] = {
    "volcano": "scheduling.volcano.sh/v1beta1",
    "scheduler-plugins": "scheduling.x-k8s.io/v1alpha1",
}
TRAINER_UID = 65532
"""The non-root user of the trainer image (trainer_image/Dockerfile)."""


@dataclass(frozen=True)
class OperatorSettings:
    """What a cluster admin chooses for every job (Helm values reach these through the environment)."""

    trainer_image: str = "localhost/dreem-trainer:0.1.0"
    master_port: int = 29500
    secret_grace_seconds: int = 60
    """How long a job waits for its credentials Secret before it fails."""
    default_s3_endpoint: str | None = None
    """The cluster's S3 endpoint, for jobs that name none."""
    trainer_resources: KubernetesObject | None = None
    trainer_node_selector: dict[str, str] | None = None
    trainer_tolerations: list[KubernetesObject] | None = None
    """Defaults for the training pods; a job's own resources and podTemplate win."""
    gang_scheduler: GangScheduler = "none"
    """Which gang scheduler places each attempt's pods together, through a PodGroup per attempt."""
    scheduler_name: str | None = None
    """The pods' schedulerName (default: SCHEDULER_NAMES[gang_scheduler])."""
    restart_delay_seconds: float = 10.0
    restart_delay_max_seconds: float = 360.0
    """The wait before a new gang after a failure: doubling from the first, up to the second."""
    lost_pod_seconds: float = 60.0
    """How long past its deletion deadline a deleted, not-ready pod is waited for before it counts as lost with
    its node and is force-deleted."""
    trainer_fixed_user: bool = True
    """Run the trainer as the image's user (TRAINER_UID: runAsUser, runAsGroup, fsGroup). False leaves the UID
    to the platform: OpenShift's restricted SCC assigns one from the namespace's range and refuses any other
    (the trainer needs no user of its own: HOME and its caches are the pod's world-writable emptyDirs)."""


@dataclass(frozen=True)
class JobRef:
    """Identity of the job, for names and ownerReferences."""

    name: str
    namespace: str
    uid: str

    @property
    def names(self) -> JobNames:
        return JobNames(self.name)

    def owner(self) -> KubernetesObject:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, labels: dict[str, str]) -> KubernetesObject:
        return {"name": name, "namespace": self.namespace, "labels": labels, "ownerReferences": [self.owner()]}


def s3_endpoint(spec: DreemTrainingJobSpec, settings: OperatorSettings) -> str | None:
    return spec.storage.endpoint or settings.default_s3_endpoint or None


def training_config(spec: DreemTrainingJobSpec, settings: OperatorSettings) -> DreemConfig:
    """The job's config with its outputs under `storage.output` unless the user placed them."""
    config = spec.config
    output = spec.storage.output.rstrip("/")
    checkpointing = config.checkpointing
    if checkpointing.dirpath is None:
        checkpointing = checkpointing.model_copy(update={"dirpath": f"{output}/models"})
    logging_config = config.logging
    if logging_config is not None and "save_dir" not in logging_config.model_fields_set:
        logging_config = logging_config.model_copy(update={"save_dir": f"{output}/logs"})
    storage = config.storage.model_copy(
        update={
            key: value
            for key, value in {
                "endpoint_url": s3_endpoint(spec, settings),
                "region": spec.storage.region,
                "addressing_style": spec.storage.addressingStyle,
            }.items()
            if value is not None and key not in config.storage.model_fields_set
        }
    )
    trainer = config.trainer.model_copy(
        update={
            "num_nodes": spec.nodes,
            "devices": max(spec.gpusPerNode, 1),
            "accelerator": "gpu" if spec.gpusPerNode else "cpu",
            "strategy": config.trainer.strategy or ("ddp" if spec.nodes * max(spec.gpusPerNode, 1) > 1 else None),
        }
    )
    return config.model_copy(
        update={"checkpointing": checkpointing, "logging": logging_config, "storage": storage, "trainer": trainer}
    )


def config_map(job: JobRef, spec: DreemTrainingJobSpec, settings: OperatorSettings) -> KubernetesObject:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": job.metadata(job.names.config_map, job.names.labels()),
        "data": {CONFIG_FILE: dump_yaml(training_config(spec, settings))},
    }


def headless_service(job: JobRef, settings: OperatorSettings) -> KubernetesObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": job.metadata(job.names.service, job.names.labels()),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # ranks must resolve each other before they are ready
            "selector": job.names.labels(),
            "ports": [{"name": "ddp", "port": settings.master_port, "targetPort": settings.master_port}],
        },
    }


def rank_env(
    job: JobRef, spec: DreemTrainingJobSpec, attempt: int, rank: int, settings: OperatorSettings
) -> list[KubernetesObject]:
    """What Lightning (and torchrun, as PET_*) needs to form the gang, plus storage access by reference."""
    processes = max(spec.gpusPerNode, 1)
    values = {
        "MASTER_ADDR": job.names.master_address,
        "MASTER_PORT": str(settings.master_port),
        "NODE_RANK": str(rank),
        "NUM_NODES": str(spec.nodes),
        "WORLD_SIZE": str(spec.nodes * processes),
        "PET_MASTER_ADDR": job.names.master_address,
        "PET_MASTER_PORT": str(settings.master_port),
        "PET_NODE_RANK": str(rank),
        "PET_NNODES": str(spec.nodes),
        "PET_NPROC_PER_NODE": str(processes),
        ENV_JOB: job.name,
        ENV_JOB_NAMESPACE: job.namespace,
        ENV_ATTEMPT: str(attempt),
        ENV_CACHE_DIR: CACHE_MOUNT,
        # The image's user may have no writable home; libraries keep caches under $HOME and $TMPDIR.
        "HOME": SCRATCH_MOUNT,
        "TMPDIR": SCRATCH_MOUNT,
    }
    endpoint = s3_endpoint(spec, settings)
    if endpoint:
        values[ENV_S3_ENDPOINT] = endpoint
    env: list[KubernetesObject] = [{"name": key, "value": value} for key, value in values.items()]
    if spec.storage.credentialsSecret:
        env += [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": spec.storage.credentialsSecret, "key": key}}}
            for key in CREDENTIAL_KEYS
        ]
    return env + list(spec.podTemplate.env or [])


def trainer_resources(spec: DreemTrainingJobSpec, settings: OperatorSettings) -> KubernetesObject:
    resources: KubernetesObject = dict(spec.resources or settings.trainer_resources or {})
    if spec.gpusPerNode:
        resources["limits"] = {**resources.get("limits", {}), GPU_RESOURCE: spec.gpusPerNode}
    return resources


def gang_pod(
    job: JobRef, spec: DreemTrainingJobSpec, attempt: int, rank: int, settings: OperatorSettings
) -> KubernetesObject:
    names = job.names
    resources = trainer_resources(spec, settings)
    template = spec.podTemplate
    own_sources: dict[str, KubernetesObject] = {
        "config": {"configMap": {"name": names.config_map}},
        # Downloads and staged checkpoints; a PVC podTemplate mounts here instead outlives the pod.
        "cache": {"emptyDir": {}},
        "scratch": {"emptyDir": {}},
        # DataLoader workers pass batches through shared memory; a container's default 64 MiB is too small.
        "shm": {"emptyDir": {"medium": "Memory"}},
    }
    kept = template.kept_operator_volumes()  # a user's volume at the cache or scratch takes the operator's place
    pod_spec: KubernetesObject = {
        "restartPolicy": "Never",  # failures are handled per gang by the operator, not per container
        "hostname": names.hostname(rank),
        "subdomain": names.service,
        "serviceAccountName": template.serviceAccountName or names.service_account,
        # The "restricted" Pod Security Standard: non-root (the trainer image's user), no escalation, no
        # capabilities, the runtime's seccomp profile. GPUs come from the device plugin, unprivileged.
        "securityContext": {
            "runAsNonRoot": True,
            **(
                {"runAsUser": TRAINER_UID, "runAsGroup": TRAINER_UID, "fsGroup": TRAINER_UID}
                if settings.trainer_fixed_user
                else {}
            ),
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": TRAINER_CONTAINER,
                "image": spec.image or settings.trainer_image,
                "args": ["train", "--config", f"{CONFIG_MOUNT}/{CONFIG_FILE}"],
                "env": rank_env(job, spec, attempt, rank, settings),
                "ports": [{"name": "ddp", "containerPort": settings.master_port}],
                "resources": resources,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                # The trainer writes only to its volumes (scratch, cache, shared memory), as the image smoke
                # test checks with `--read-only`; a read-only root keeps a compromised step from altering it.
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                    "readOnlyRootFilesystem": True,
                },
                "volumeMounts": [
                    *(
                        {"name": name, "mountPath": path} | ({"readOnly": True} if path == CONFIG_MOUNT else {})
                        for name, path in kept.items()
                    ),
                    *list(template.volumeMounts or []),
                ],
            }
        ],
        "volumes": [
            *({"name": name} | own_sources[name] for name in kept),
            *list(template.volumes or []),
        ],
    }
    optional = {
        "nodeSelector": template.nodeSelector or settings.trainer_node_selector,
        "tolerations": template.tolerations or settings.trainer_tolerations,
        "affinity": template.affinity,
        "priorityClassName": template.priorityClassName,
        "imagePullSecrets": template.imagePullSecrets,
    }
    pod_spec.update({key: value for key, value in optional.items() if value})
    scheduler_name = settings.scheduler_name or SCHEDULER_NAMES[settings.gang_scheduler]
    if scheduler_name:
        pod_spec["schedulerName"] = scheduler_name
    labels, annotations = gang_metadata(job, spec, attempt, settings)
    metadata = job.metadata(
        names.pod(attempt, rank), {**(template.labels or {}), **labels, **names.labels(attempt, rank)}
    )
    metadata["annotations"] = {**(template.annotations or {}), **annotations}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def gang_metadata(
    job: JobRef, spec: DreemTrainingJobSpec, attempt: int, settings: OperatorSettings
) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations that make a scheduler treat the attempt's pods as one gang.

    Volcano finds its PodGroup by annotation, scheduler-plugins by label. Without Volcano, the pods also form
    one Kueue plain-pod group, so Kueue admits the whole gang as one Workload (or none of it); they are inert
    where Kueue does not manage the namespace. Every pod is non-retriable in its group: the operator never
    replaces one pod of a gang, it starts the next attempt as a new group, so Kueue may release a failed
    group's quota at once instead of waiting for replacements.
    """
    group = job.names.pod_group(attempt)
    if settings.gang_scheduler == "volcano":
        return {}, {VOLCANO_GROUP_ANNOTATION: group}
    labels = {KUEUE_GROUP_LABEL: group}
    if settings.gang_scheduler == "scheduler-plugins":
        labels[COSCHEDULING_GROUP_LABEL] = group
    queue = spec.runPolicy.schedulingPolicy.queue
    if queue:
        labels[KUEUE_QUEUE_LABEL] = queue
    annotations = {KUEUE_GROUP_COUNT_ANNOTATION: str(spec.nodes), KUEUE_RETRIABLE_ANNOTATION: "false"}
    return labels, annotations


def times(quantity: int | float | str, factor: int) -> int | str:
    """A Kubernetes quantity multiplied by a whole number, in its own unit ("32Gi" x 2 = "64Gi"). YAML reads
    `cpu: 0.5` as a number, which Kubernetes takes as the quantity "0.5"."""
    if isinstance(quantity, int):
        return quantity * factor
    match = QUANTITY.match(str(quantity).strip())
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {quantity!r}")
    number = Decimal(match.group(1)) * factor
    return f"{number.normalize():f}{match.group(2) or ''}"


def gang_resources(spec: DreemTrainingJobSpec, settings: OperatorSettings, members: int) -> dict[str, int | str]:
    """What `members` trainer pods request together: each pod's requests (its limits where it requests nothing,
    as Kubernetes defaults them), GPUs included. What a gang scheduler needs free before it places any pod."""
    resources = trainer_resources(spec, settings)
    per_pod: dict[str, int | float | str] = {**resources.get("limits", {}), **resources.get("requests", {})}
    return {name: times(value, members) for name, value in per_pod.items()}


def pod_group(
    job: JobRef, spec: DreemTrainingJobSpec, attempt: int, settings: OperatorSettings
) -> KubernetesObject | None:
    """The attempt's PodGroup for the gang scheduler (None without one), with Kubeflow's schedulingPolicy
    mapped onto each project's fields: Volcano takes the queue and the priority class, scheduler-plugins the
    schedule timeout (its Permit wait); both the minimum members and resources."""
    if settings.gang_scheduler == "none":
        return None
    policy = spec.runPolicy.schedulingPolicy
    members = min(policy.minAvailable or spec.nodes, spec.nodes)
    group_spec: KubernetesObject = {"minMember": members}
    minimum = policy.minResources if policy.minResources is not None else gang_resources(spec, settings, members)
    if minimum:
        group_spec["minResources"] = minimum
    if settings.gang_scheduler == "volcano":
        group_spec.update({"queue": policy.queue, "priorityClassName": policy.priorityClass})
    elif policy.scheduleTimeoutSeconds is not None:
        group_spec["scheduleTimeoutSeconds"] = policy.scheduleTimeoutSeconds
    return {
        "apiVersion": POD_GROUP_API[settings.gang_scheduler],
        "kind": "PodGroup",
        "metadata": job.metadata(job.names.pod_group(attempt), job.names.labels(attempt)),
        "spec": {key: value for key, value in group_spec.items() if value is not None},
    }


def service_account(job: JobRef) -> KubernetesObject:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": job.metadata(job.names.service_account, job.names.labels()),
        "automountServiceAccountToken": True,
    }


def progress_role(job: JobRef) -> KubernetesObject:
    """Patch rights on this one job's status: rank 0 reports progress, and no pod can touch another job."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": job.metadata(job.names.progress_role, job.names.labels()),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [f"{PLURAL}/status"],
                "resourceNames": [job.name],
                "verbs": ["get", "patch"],
            }
        ],
    }


def progress_role_binding(job: JobRef) -> KubernetesObject:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": job.metadata(job.names.progress_role, job.names.labels()),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": job.names.progress_role},
        "subjects": [{"kind": "ServiceAccount", "name": job.names.service_account, "namespace": job.namespace}],
    }
