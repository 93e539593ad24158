"""What the trainer and the operator agree on: the custom resource they both write to, the environment the
operator gives a training pod, and what `dreem`'s exit status tells the operator.

Both sides import this module, so it imports nothing beyond the standard library: an import-linter contract
keeps torch, Lightning, kopf and the Kubernetes client out of it.
"""

from __future__ import annotations

from typing import TypedDict

GROUP = "dreem.sleap.ai"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "DreemTrainingJob"
PLURAL = "dreemtrainingjobs"
SHORT_NAME = "dtj"

STATUS_PATCH = "application/merge-patch+json"
"""How both sides write the job's status. Each owns its own fields (rank 0 `progress`, the operator the rest),
and a merge patch leaves the other side's fields as they are."""


class ProgressReport(TypedDict, total=False):
    """`status.progress` as rank 0 writes it; the operator's `api.Progress` is its schema in the CRD, and a
    test keeps the two the same."""

    epoch: int
    """Completed epochs."""
    step: int
    metrics: dict[str, float]
    lastCheckpoint: str
    """The newest checkpoint's s3:// URI: where a restart resumes from."""
    bestCheckpoint: str


ENV_JOB = "DREEM_JOB"
ENV_JOB_NAMESPACE = "DREEM_JOB_NAMESPACE"
"""The job a pod belongs to: rank 0 reports progress into its status."""
ENV_ATTEMPT = "DREEM_ATTEMPT"
"""The gang a pod belongs to (status.attempt). Rank 0 fences the job's checkpoint uploads with it, so a pod of an
earlier gang still running on a lost node can never overwrite a newer gang's checkpoints."""
ENV_CACHE_DIR = "DREEM_CACHE_DIR"
"""Where downloads are cached; the operator mounts a volume there."""
ENV_PROGRESS_SECONDS = "DREEM_PROGRESS_SECONDS"
"""Seconds between progress reports within an epoch."""
ENV_S3_ENDPOINT = "AWS_ENDPOINT_URL"
CREDENTIAL_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""The keys of `spec.storage.credentialsSecret`, which become the pod's environment variables of the same
names: boto3 reads them there."""

EXIT_USER_ERROR = 2
"""`dreem` exits 2 on a UserError: retrying cannot help, so the operator fails the job at once."""
EXIT_STORAGE_ERROR = 3
"""`dreem` exits 3 when S3 storage cannot be used (unreachable, missing bucket, denied); it may be transient,
so the operator restarts the gang."""


class UserError(Exception):
    """A problem only the user can fix (the configuration, the data, weights that cannot be had): `dreem`
    reports the message, which names the key, path or value to change, and exits EXIT_USER_ERROR."""
