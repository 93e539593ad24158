"""The objects a DreemTrainingJob owns, built as plain dicts: the resolved config, the headless Service
and one gang pod per node. Pure functions: the handlers apply what these return."""

from __future__ import annotations

from dataclasses import dataclass

from dreem_operator.api import DreemTrainingJobSpec, KubernetesObject
from dreem_operator.names import (
    CACHE_MOUNT,
    CONFIG_FILE,
    CONFIG_MOUNT,
    SCRATCH_MOUNT,
    SHARED_MEMORY_MOUNT,
    TRAINER_CONTAINER,
    JobNames,
)
from dreem_trainer.config import DreemConfig, dump_yaml
from dreem_trainer.contract import (
    API_VERSION,
    CREDENTIAL_KEYS,
    ENV_CACHE_DIR,
    ENV_JOB,
    ENV_JOB_NAMESPACE,
    ENV_S3_ENDPOINT,
    GROUP,
    KIND,
    PLURAL,
)

GPU_RESOURCE = "nvidia.com/gpu"
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


def rank_env(job: JobRef, spec: DreemTrainingJobSpec, rank: int, settings: OperatorSettings) -> list[KubernetesObject]:
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


def gang_pod(
    job: JobRef, spec: DreemTrainingJobSpec, attempt: int, rank: int, settings: OperatorSettings
) -> KubernetesObject:
    names = job.names
    resources: KubernetesObject = dict(spec.resources or settings.trainer_resources or {})
    if spec.gpusPerNode:
        limits = {**resources.get("limits", {}), GPU_RESOURCE: spec.gpusPerNode}
        resources["limits"] = limits
    template = spec.podTemplate
    pod_spec: KubernetesObject = {
        "restartPolicy": "Never",  # failures are handled per gang by the operator, not per container
        "hostname": names.hostname(rank),
        "subdomain": names.service,
        "serviceAccountName": template.serviceAccountName or names.service_account,
        # The "restricted" Pod Security Standard: non-root (the trainer image's user), no escalation, no
        # capabilities, the runtime's seccomp profile. GPUs come from the device plugin, unprivileged.
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRAINER_UID,
            "runAsGroup": TRAINER_UID,
            "fsGroup": TRAINER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": TRAINER_CONTAINER,
                "image": spec.image or settings.trainer_image,
                "args": ["train", "--config", f"{CONFIG_MOUNT}/{CONFIG_FILE}"],
                "env": rank_env(job, spec, rank, settings),
                "ports": [{"name": "ddp", "containerPort": settings.master_port}],
                "resources": resources,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                    {"name": "cache", "mountPath": CACHE_MOUNT},
                    {"name": "scratch", "mountPath": SCRATCH_MOUNT},
                    {"name": "shm", "mountPath": SHARED_MEMORY_MOUNT},
                    *list(template.volumeMounts or []),
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": names.config_map}},
            # Downloads and staged checkpoints; a PVC mounted here by podTemplate outlives the pod.
            {"name": "cache", "emptyDir": {}},
            {"name": "scratch", "emptyDir": {}},
            # DataLoader workers pass batches through shared memory; a container's default 64 MiB is too small.
            {"name": "shm", "emptyDir": {"medium": "Memory"}},
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
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": job.metadata(names.pod(attempt, rank), names.labels(attempt, rank)),
        "spec": pod_spec,
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
