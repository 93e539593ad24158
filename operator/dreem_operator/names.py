"""The one place that names the Kubernetes objects of a DreemTrainingJob and labels them."""

from __future__ import annotations

from dataclasses import dataclass

from dreem_trainer.contract import GROUP

LABEL_JOB = f"{GROUP}/job"
LABEL_ATTEMPT = f"{GROUP}/attempt"
LABEL_RANK = f"{GROUP}/rank"
CONFIG_FILE = "config.yaml"
CONFIG_MOUNT = "/etc/dreem"
TRAINER_CONTAINER = "trainer"
CACHE_MOUNT = "/var/cache/dreem"
SCRATCH_MOUNT = "/scratch"
SHARED_MEMORY_MOUNT = "/dev/shm"  # noqa: S108  (a path inside the training container, not a host temp file)
GPU_RESOURCE = "nvidia.com/gpu"
"""The extended resource a training pod asks its GPUs by."""
OPERATOR_VOLUMES = {"config": CONFIG_MOUNT, "cache": CACHE_MOUNT, "scratch": SCRATCH_MOUNT, "shm": SHARED_MEMORY_MOUNT}
"""The trainer's own volumes, by name, and where they are mounted."""
REPLACEABLE_MOUNTS = frozenset({CACHE_MOUNT, SCRATCH_MOUNT})
"""Where a volume of the user's (a PVC, say) may take the place of the operator's empty one."""
FIELD_MANAGER = "dreem-operator"

# Other projects' keys, as their APIs spell them (volcano-sh/apis, scheduler-plugins, Kueue's plain-pod integration).
VOLCANO_GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
COSCHEDULING_GROUP_LABEL = "scheduling.x-k8s.io/pod-group"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_GROUP_COUNT_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
KUEUE_RETRIABLE_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"


@dataclass(frozen=True)
class JobNames:
    """Names derived from the job's own name: stable across operator restarts, so reconciles are idempotent."""

    job: str

    @property
    def service(self) -> str:
        """The headless Service that gives every rank a DNS name."""
        return self.job

    @property
    def config_map(self) -> str:
        return f"{self.job}-config"

    @property
    def service_account(self) -> str:
        """The pods' identity; its Role may patch this job's status and nothing else."""
        return f"{self.job}-trainer"

    @property
    def progress_role(self) -> str:
        return f"{self.job}-progress"

    def pod(self, attempt: int, rank: int) -> str:
        return f"{self.job}-{attempt}-{rank}"

    @property
    def event_prefix(self) -> str:
        """The generateName of the job's Events, as kubectl's own read `<job>.<suffix>`."""
        return f"{self.job}."

    def pod_group(self, attempt: int) -> str:
        """One gang per attempt: the PodGroup and Kueue's pod group (so a new attempt is queued afresh, and a
        scheduler-plugins PodGroup, whose Failed phase is final, is never reused)."""
        return f"{self.job}-{attempt}"

    def hostname(self, rank: int) -> str:
        return f"{self.job}-{rank}"

    @property
    def master_address(self) -> str:
        """Rank 0's stable DNS name: <hostname>.<service>, resolvable before the pod is ready."""
        return f"{self.hostname(0)}.{self.service}"

    def labels(self, attempt: int | None = None, rank: int | None = None) -> dict[str, str]:
        labels = {LABEL_JOB: self.job}
        if attempt is not None:
            labels[LABEL_ATTEMPT] = str(attempt)
        if rank is not None:
            labels[LABEL_RANK] = str(rank)
        return labels
