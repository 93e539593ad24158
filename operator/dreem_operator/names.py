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
FIELD_MANAGER = "dreem-operator"


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
