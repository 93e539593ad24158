"""The DreemTrainingJob API (dreem.sleap.ai/v1alpha1): spec and status as pydantic models.

`spec.config` is the training YAML itself, validated by the trainer's own schema, so a job manifest and
`dreem train --config` accept exactly the same configuration. Field names follow Kubernetes
conventions (camelCase) outside `config`; Kubernetes-native structures (tolerations, affinity, env,
volumes) are passed to the pods as given and validated by the API server there. `resources` are checked
here first: an unparsable quantity makes the API server refuse the pod with 400, which says nothing of
a spec to fix.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dreem_operator.names import GPU_RESOURCE, OPERATOR_VOLUMES, REPLACEABLE_MOUNTS
from dreem_trainer.config import DreemConfig
from dreem_trainer.config.paths import S3Uri

KubernetesObject = dict[str, Any]

QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[eE][+-]?[0-9]+)|[numkMGTPE]|[KMGTPE]i)?$")
"""A Kubernetes resource quantity ("8", "500m", "32Gi", "1e3"): a number and its unit."""
UNIT_FACTORS = {
    "": Decimal(1),
    **{suffix: Decimal(10) ** power for suffix, power in {"n": -9, "u": -6, "m": -3, "k": 3}.items()},
    **{suffix: Decimal(10) ** (3 * n) for n, suffix in enumerate("MGTPE", start=2)},
    **{f"{suffix}i": Decimal(2) ** (10 * n) for n, suffix in enumerate("KMGTPE", start=1)},
}


def quantity_value(quantity: int | float | str) -> Decimal:
    """The amount a quantity stands for ("32Gi" is 34359738368, "500m" 0.5); ValueError if it is none."""
    match = QUANTITY.match(str(quantity).strip()) if not isinstance(quantity, bool) else None
    if match is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 8, 500m, 32Gi)")
    number, unit = Decimal(match.group(1)), match.group(2) or ""
    if unit in UNIT_FACTORS:  # "E" is exa and "Ei" exbi; an exponent has digits ("1e3")
        return number * UNIT_FACTORS[unit]
    exponent = int(unit[1:])
    if abs(exponent) > 30:  # no resource comes near 10^30; Decimal would overflow on 1e999999999
        raise ValueError(f"{quantity!r} is beyond any resource's size")
    return number * Decimal(10) ** exponent


class Phase(StrEnum):
    """Where a job stands, in `status.phase`."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def finished(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.FAILED)


class ConditionType(StrEnum):
    """The conditions every job carries, one of each, each True or False (`kubectl wait --for=condition=...`)."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Reason(StrEnum):
    """Why a job is where it is: the reason of its conditions and of the Event recorded with each change."""

    CREATED = "JobCreated"
    GANG_PENDING = "GangPending"
    GANG_RUNNING = "GangRunning"
    GANG_RESTART = "GangRestart"
    GANG_DISRUPTED = "GangDisrupted"
    SCHEDULE_TIMEOUT = "ScheduleTimeout"
    TRAINING_FINISHED = "TrainingFinished"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    INVALID_SPEC = "InvalidSpec"
    CONFIGURATION_ERROR = "ConfigurationError"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    WAITING_FOR_CREDENTIALS = "WaitingForSecret"
    CREDENTIALS_MISSING = "MissingSecret"
    WAITING_FOR_PREVIOUS_JOB = "WaitingForPreviousJob"
    CREATE_REFUSED = "FailedCreate"
    # A pod that cannot start, with the reason Kubernetes gives it (the scheduler's or the kubelet's), so
    # `kubectl get dtj` says what `kubectl describe pod` would.
    SCHEDULING_GATED = "SchedulingGated"
    UNSCHEDULABLE = "Unschedulable"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    INVALID_IMAGE_NAME = "InvalidImageName"
    ERR_IMAGE_NEVER_PULL = "ErrImageNeverPull"
    IMAGE_INSPECT_ERROR = "ImageInspectError"
    REGISTRY_UNAVAILABLE = "RegistryUnavailable"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    PRE_START_HOOK_ERROR = "PreStartHookError"
    POST_START_HOOK_ERROR = "PostStartHookError"


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


class SchedulingPolicy(ApiModel):
    """How each attempt's gang is queued and scheduled, with Kubeflow's field names. What reaches the cluster
    depends on the operator's gang scheduler (the chart's `gangScheduler`): a Volcano or scheduler-plugins
    PodGroup per attempt, and Kueue's plain-pod group labels on the pods."""

    minAvailable: int | None = Field(
        None,
        ge=1,
        description="Pods the gang scheduler must place together (default: spec.nodes; the trainer needs them all).",
    )
    queue: str | None = Field(
        None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="With gangScheduler volcano: the Volcano queue of the PodGroup. Otherwise: the Kueue "
        "LocalQueue in the job's namespace (label kueue.x-k8s.io/queue-name, so at most 63 characters); the pods "
        "then wait, gated, until Kueue admits the whole gang.",
    )
    priorityClass: str | None = Field(
        None, description="PriorityClass of the Volcano PodGroup (the pods' own is spec.podTemplate.priorityClassName)."
    )
    minResources: dict[str, int | str] | None = Field(
        None,
        description="Resources the gang needs before any pod is placed, e.g. {nvidia.com/gpu: 8} (default: the pods' "
        "requests times minAvailable).",
    )

    @field_validator("minResources")
    @classmethod
    def _quantities(cls, resources: dict[str, int | str] | None) -> dict[str, int | str] | None:
        for name, value in (resources or {}).items():
            try:
                quantity_value(value)
            except ValueError as error:
                raise ValueError(f"{name}: {error}") from None
        return resources

    scheduleTimeoutSeconds: int | None = Field(
        None,
        ge=1,
        description="Seconds the gang may take, from its pods' release to the scheduler (after Kueue's admission, "
        "if queued), until every pod runs; then the attempt's pods are deleted and scheduleTimeoutAction applies "
        "(default: no limit). Also the scheduler-plugins PodGroup's own wait.",
    )
    scheduleTimeoutAction: Literal["Requeue", "Fail"] = Field(
        "Requeue",
        description="After scheduleTimeoutSeconds: Requeue starts a new attempt (queued again) after the restart "
        "delay, without using backoffLimit; Fail fails the job (default: Requeue).",
    )


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
    schedulingPolicy: SchedulingPolicy = Field(
        default_factory=SchedulingPolicy,
        description="Gang scheduling and queueing of each attempt's pods (Kubeflow's field names).",
    )


class PodTemplate(ApiModel):
    """Scheduling and extras for the training pods."""

    labels: dict[str, str] | None = Field(
        None, description="Extra labels of the training pods (the operator's own labels win on a clash)."
    )
    annotations: dict[str, str] | None = Field(
        None, description="Extra annotations of the training pods (the operator's own win on a clash)."
    )
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
    volumeMounts: list[KubernetesObject] | None = Field(
        None,
        description="Mounts of the extra volumes in the trainer; one at /var/cache/dreem or /scratch replaces the "
        "operator's empty volume there.",
    )

    def kept_operator_volumes(self) -> dict[str, str]:
        """The operator's volumes the pods keep, by name, with their mount paths: all but those this template
        mounts a volume of its own in place of (at the cache or the scratch folder)."""
        replaced = {str(mount.get("mountPath")) for mount in self.volumeMounts or []} & REPLACEABLE_MOUNTS
        return {name: path for name, path in OPERATOR_VOLUMES.items() if path not in replaced}

    @model_validator(mode="after")
    def _clear_of_the_operators_volumes(self) -> PodTemplate:
        """Two mounts at one path, or two volumes of one name, make every pod invalid: the API server refuses
        them. The config and shared memory stay the operator's; the cache and scratch may be replaced."""
        for index, mount in enumerate(self.volumeMounts or []):
            path = mount.get("mountPath")
            if path in OPERATOR_VOLUMES.values() and path not in REPLACEABLE_MOUNTS:
                raise ValueError(
                    f"volumeMounts[{index}].mountPath: {path} is where the operator mounts the trainer's own volume"
                )
        kept = self.kept_operator_volumes()
        for index, volume in enumerate(self.volumes or []):
            if volume.get("name") in kept:
                raise ValueError(
                    f"volumes[{index}].name: {volume['name']!r} is the name of the operator's volume at "
                    f"{OPERATOR_VOLUMES[volume['name']]}; choose another"
                )
        return self


class DreemTrainingJobSpec(ApiModel):
    config: DreemConfig = Field(..., description="The DREEM training configuration, section for section.")
    nodes: int = Field(1, ge=1, description="Training pods (one per node); they form one DDP gang.")
    gpusPerNode: int = Field(0, ge=0, description="nvidia.com/gpu per pod; one training process per GPU (0: CPU).")
    resources: KubernetesObject | None = Field(
        None,
        description="Resource requests and limits of the trainer container (default: the chart's trainer.resources).",
    )

    @field_validator("resources")
    @classmethod
    def _resource_quantities(cls, resources: KubernetesObject | None) -> KubernetesObject | None:
        """What the API server would refuse of the trainer's resources, named before any pod is made."""
        if resources is None:
            return None
        unknown = sorted(set(resources) - {"limits", "requests", "claims"})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}: resources take limits, requests and claims")
        resources = {part: given for part, given in resources.items() if given is not None}  # `limits:` left empty
        amounts: dict[str, dict[str, Decimal]] = {}
        for part in ("limits", "requests"):
            given = resources.get(part, {})
            if not isinstance(given, dict):
                raise ValueError(f"{part}: a map of resource names to quantities, e.g. {{memory: 32Gi}}")
            amounts[part] = {}
            for name, value in given.items():
                try:
                    amounts[part][name] = quantity_value(value)
                except ValueError as error:
                    raise ValueError(f"{part}.{name}: {error}") from None
                if amounts[part][name] < 0:
                    raise ValueError(f"{part}.{name}: {value!r} is below 0")
        for name, request in amounts["requests"].items():
            limit = amounts["limits"].get(name)
            if limit is not None and request > limit:
                asked, most = resources["requests"][name], resources["limits"][name]
                raise ValueError(f"requests.{name}: {asked!r} is more than its limit {most!r}")
        return resources

    storage: Storage = Field(..., description="S3-compatible storage for data, checkpoints and logs.")
    runPolicy: RunPolicy = Field(default_factory=RunPolicy, description="Restarts, deadlines, suspension and cleanup.")
    image: str | None = Field(None, description="Trainer image (default: the operator's configured trainer image).")
    podTemplate: PodTemplate = Field(default_factory=PodTemplate, description="Scheduling of the training pods.")

    @model_validator(mode="after")
    def _gpus_asked_for_are_used(self) -> DreemTrainingJobSpec:
        """`nodes` and `gpusPerNode` decide the pods' trainer layout (accelerator, devices, num_nodes), whatever
        `config.trainer` says for a single machine. A job that asks for GPUs elsewhere while gpusPerNode is 0
        would train on CPU without a word: a DREEM config's `accelerator: gpu`, or GPUs in `resources.limits`
        (held by the pods, never used)."""
        if self.gpusPerNode:
            return self
        problems = []
        trainer = self.config.trainer
        if "accelerator" in trainer.model_fields_set and trainer.accelerator in ("gpu", "cuda"):
            problems.append(f"config.trainer.accelerator is {trainer.accelerator}")
        limits = (self.resources or {}).get("limits") or {}
        if limits.get(GPU_RESOURCE) not in (None, 0, "0"):
            problems.append(f"resources.limits asks for {GPU_RESOURCE}: {limits[GPU_RESOURCE]}")
        if problems:
            raise ValueError(
                f"{' and '.join(problems)}, but gpusPerNode is 0 (CPU): set gpusPerNode to the GPUs each pod "
                "trains on (it decides the layout)"
            )
        return self


class Condition(ApiModel):
    type: ConditionType = Field(
        ..., description="Created, Running, Restarting, Suspended, Succeeded or Failed: one condition of each."
    )
    status: Literal["True", "False", "Unknown"]
    reason: Reason = Field(..., description="Why the condition has its status, from a fixed list.")
    message: str = ""
    lastTransitionTime: str = Field(..., description="When the status last changed.")


class Progress(ApiModel):
    epoch: int | None = Field(None, description="Last completed epoch.")
    step: int | None = Field(None, description="Optimizer steps so far.")
    metrics: dict[str, float] | None = Field(None, description="Latest logged metrics, e.g. val_loss and val_idf1.")
    lastCheckpoint: str | None = Field(None, description="URI of the newest checkpoint.")
    bestCheckpoint: str | None = Field(None, description="URI of the best checkpoint.")


class DreemTrainingJobStatus(ApiModel):
    phase: Phase | None = Field(None, description="Pending, Running, Restarting, Succeeded, Failed or Suspended.")
    conditions: list[Condition] | None = Field(
        None, description="One per type (Created, Running, Restarting, Suspended, Succeeded, Failed), True or False."
    )
    observedGeneration: int | None = Field(None, description="The spec generation this status describes.")
    startTime: str | None = Field(
        None,
        description="When the job's pods were first released to the scheduler (after any queueing); "
        "activeDeadlineSeconds counts from here. Suspension resets it.",
    )
    completionTime: str | None = Field(None, description="When the job succeeded or failed.")
    attempt: int | None = Field(
        None, description="The current gang; its pods are <job>-<attempt>-<rank>. Every new gang gets the next."
    )
    restarts: int | None = Field(None, description="Gang restarts after failures, counted against backoffLimit.")
    disruptions: int | None = Field(
        None, description="Gang restarts after a pod was disrupted (evicted, preempted, drained): not failures."
    )
    requeues: int | None = Field(None, description="Gangs torn down after scheduleTimeoutSeconds and queued again.")
    scheduleStartTime: str | None = Field(
        None, description="When the current gang's pods were all released to the scheduler."
    )
    nextAttemptTime: str | None = Field(
        None, description="The next gang starts no earlier than this (the delay after a failure)."
    )
    credentialsAwaitedSince: str | None = Field(
        None,
        description="When the gang about to start found its credentials Secret missing or incomplete; the job "
        "fails if it is still so the operator's secret grace period later.",
    )
    message: str | None = Field(None, description="Why the job is in its phase, e.g. the configuration error.")
    progress: Progress | None = Field(None, description="Training progress reported by rank 0.")

    @field_validator("conditions", mode="before")
    @classmethod
    def _known_conditions(cls, conditions: Any) -> Any:
        """Conditions an older operator wrote (a history of phases, Pending among them) are dropped rather than
        making the whole status unreadable: the next decision writes the full set again."""
        if not isinstance(conditions, list):
            return conditions
        types, reasons = set(ConditionType), set(Reason)
        return [
            c
            for c in conditions
            if isinstance(c, dict)
            and c.get("type") in types
            and c.get("reason") in reasons
            and c.get("lastTransitionTime")
        ]
