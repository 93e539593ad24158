"""The DreemTrainingJob API (dreem.sleap.ai/v1alpha1): spec and status as pydantic models.

`spec.config` is the training YAML itself, validated by the trainer's own schema, so a job manifest and
`dreem train --config` accept exactly the same configuration. Field names follow Kubernetes
conventions (camelCase) outside `config`; Kubernetes-native structures (resources, tolerations,
affinity, env, volumes) are passed to the pods as given and validated by the API server there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dreem_trainer.config import DreemConfig
from dreem_trainer.config.paths import S3Uri

KubernetesObject = dict[str, Any]


class Phase(StrEnum):
    """Where a job stands, in `status.phase` and as the type of each condition."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class Reason(StrEnum):
    """Why a job entered its phase: the reason of its condition and of the Event recorded with it."""

    GANG_PENDING = "GangPending"
    GANG_RUNNING = "GangRunning"
    GANG_RESTART = "GangRestart"
    TRAINING_FINISHED = "TrainingFinished"
    SUSPENDED = "Suspended"
    INVALID_SPEC = "InvalidSpec"
    CONFIGURATION_ERROR = "ConfigurationError"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    WAITING_FOR_CREDENTIALS = "WaitingForSecret"
    CREDENTIALS_MISSING = "MissingSecret"


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Storage(ApiModel):
    """Where the job's data lives and where its checkpoints, logs and resolved config go."""

    endpoint: str | None = Field(
        None, description="S3 endpoint URL, e.g. http://minio.minio:9000 (default: AWS S3 or the chart's default)."
    )
    region: str | None = Field(None, description="S3 region (default: us-east-1).")
    addressingStyle: Literal["auto", "path", "virtual"] = Field(
        "auto", description='Bucket addressing; MinIO and Ceph RGW usually need "path".'
    )
    credentialsSecret: str | None = Field(
        None,
        description="Secret in the job's namespace holding AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; mounted into "
        "the pods as environment variables by reference, never copied.",
    )
    output: str = Field(
        ..., description="s3://bucket/prefix for checkpoints, logs and the resolved config; the job resumes from here."
    )

    @field_validator("output")
    @classmethod
    def _s3(cls, output: str) -> str:
        S3Uri.parse(output)
        return output


class RunPolicy(ApiModel):
    backoffLimit: int = Field(3, ge=0, description="Gang restarts allowed after retryable pod failures (default: 3).")
    activeDeadlineSeconds: int | None = Field(
        None, ge=1, description="Seconds the job may run, from its start, before it is failed (optional)."
    )
    ttlSecondsAfterFinished: int | None = Field(
        None,
        ge=0,
        description="Seconds after Succeeded or Failed before the job and its children are deleted (optional).",
    )
    suspend: bool = Field(False, description="Delete the pods and keep the progress; set back to false to resume.")
    cleanPodPolicy: Literal["All", "Running", "None"] = Field(
        "Running", description="Which pods to delete when the job finishes (default: Running)."
    )


class PodTemplate(ApiModel):
    """Scheduling and extras for the training pods."""

    nodeSelector: dict[str, str] | None = Field(
        None, description="Node labels the training pods must match (default: the chart's trainer.nodeSelector)."
    )
    tolerations: list[KubernetesObject] | None = Field(
        None, description="Tolerations of the training pods (default: the chart's trainer.tolerations)."
    )
    affinity: KubernetesObject | None = Field(None, description="Affinity of the training pods.")
    priorityClassName: str | None = Field(None, description="PriorityClass of the training pods.")
    imagePullSecrets: list[KubernetesObject] | None = Field(None, description="Image pull secrets ({name: ...}).")
    serviceAccountName: str | None = Field(
        None, description="ServiceAccount of the pods (default: a per-job account allowed to report progress only)."
    )
    env: list[KubernetesObject] | None = Field(
        None, description="Extra environment variables of the trainer container."
    )
    volumes: list[KubernetesObject] | None = Field(None, description="Extra volumes, e.g. a PVC used as data cache.")
    volumeMounts: list[KubernetesObject] | None = Field(None, description="Mounts of the extra volumes in the trainer.")


class DreemTrainingJobSpec(ApiModel):
    config: DreemConfig = Field(..., description="The DREEM training configuration, section for section.")
    nodes: int = Field(1, ge=1, description="Training pods (one per node); they form one DDP gang.")
    gpusPerNode: int = Field(0, ge=0, description="nvidia.com/gpu per pod; one training process per GPU (0: CPU).")
    resources: KubernetesObject | None = Field(
        None,
        description="Resource requests and limits of the trainer container (default: the chart's trainer.resources).",
    )
    storage: Storage = Field(..., description="S3-compatible storage for data, checkpoints and logs.")
    runPolicy: RunPolicy = Field(default_factory=RunPolicy, description="Restarts, deadlines, suspension and cleanup.")
    image: str | None = Field(None, description="Trainer image (default: the operator's configured trainer image).")
    podTemplate: PodTemplate = Field(default_factory=PodTemplate, description="Scheduling of the training pods.")


class Condition(ApiModel):
    type: str = Field(
        ..., description="The phase entered (Pending, Running, Restarting, Succeeded, Failed or Suspended)."
    )
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    lastTransitionTime: str | None = None


class Progress(ApiModel):
    epoch: int | None = Field(None, description="Last completed epoch.")
    step: int | None = Field(None, description="Optimizer steps so far.")
    metrics: dict[str, float] | None = Field(None, description="Latest logged metrics, e.g. val_loss and val_idf1.")
    lastCheckpoint: str | None = Field(None, description="URI of the newest checkpoint.")
    bestCheckpoint: str | None = Field(None, description="URI of the best checkpoint.")


class DreemTrainingJobStatus(ApiModel):
    phase: Phase | None = Field(None, description="Pending, Running, Restarting, Succeeded, Failed or Suspended.")
    conditions: list[Condition] | None = Field(None, description="What happened, newest last.")
    observedGeneration: int | None = Field(None, description="The spec generation this status describes.")
    startTime: str | None = Field(None, description="When the first pods were created.")
    completionTime: str | None = Field(None, description="When the job succeeded or failed.")
    restarts: int | None = Field(None, description="Gang restarts so far.")
    message: str | None = Field(None, description="Why the job is in its phase, e.g. the configuration error.")
    progress: Progress | None = Field(None, description="Training progress reported by rank 0.")
