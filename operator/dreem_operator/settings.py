"""The operator's process settings, read from `DREEM_OPERATOR_*` environment variables (the Helm chart sets
them), so `kopf run -m dreem_operator` and `dreem-operator` configure the same way."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from dreem_operator.children import GangScheduler, OperatorSettings
from dreem_operator.lease import LeaseTiming

PREFIX = "DREEM_OPERATOR_"
JSON_FIELDS = {"trainer_resources", "trainer_node_selector", "trainer_tolerations"}
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a pod finds its own namespace, the Lease's namespace when the chart does not name one."""


class RuntimeSettings(BaseModel):
    trainer_image: str = Field(OperatorSettings.trainer_image, description="Default trainer image of the pods.")
    master_port: int = Field(OperatorSettings.master_port, ge=1, le=65535, description="Rank 0's DDP port.")
    secret_grace_seconds: int = Field(
        OperatorSettings.secret_grace_seconds, ge=0, description="How long a job waits for its Secret."
    )
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch (empty: all).")
    metrics_port: int = Field(8000, ge=0, le=65535, description="Prometheus metrics port (0: off).")
    liveness_port: int = Field(8080, ge=0, le=65535, description="Liveness endpoint /healthz port (0: off).")
    resync_seconds: float = Field(10.0, gt=0, description="How often every job is reconciled without an event.")
    workers: int = Field(16, ge=1, description="Threads reconciling jobs concurrently.")
    default_s3_endpoint: str | None = Field(None, description="S3 endpoint for jobs that name none.")
    trainer_resources: dict[str, Any] | None = Field(None, description="Training pods' resources (JSON).")
    trainer_node_selector: dict[str, str] | None = Field(None, description="Training pods' nodeSelector (JSON).")
    trainer_tolerations: list[dict[str, Any]] | None = Field(None, description="Training pods' tolerations (JSON).")
    gang_scheduler: GangScheduler = Field(
        OperatorSettings.gang_scheduler, description="none, volcano or scheduler-plugins: a PodGroup per attempt."
    )
    scheduler_name: str | None = Field(None, description="The training pods' schedulerName (default: the gang's).")
    restart_delay_seconds: float = Field(
        OperatorSettings.restart_delay_seconds, ge=0, description="The first delay before a new gang after a failure."
    )
    restart_delay_max_seconds: float = Field(
        OperatorSettings.restart_delay_max_seconds, ge=0, description="The longest delay before a new gang."
    )
    lost_pod_seconds: float = Field(
        OperatorSettings.lost_pod_seconds,
        ge=0,
        description="Seconds past its deletion deadline a not-ready pod is waited for before it is force-deleted.",
    )
    trainer_fixed_user: bool = Field(
        OperatorSettings.trainer_fixed_user,
        description="Run training pods as the image's UID/GID 65532; false lets the platform assign one (OpenShift).",
    )
    lease_name: str = Field("dreem-operator", min_length=1, description="The leader-election Lease's name.")
    lease_namespace: str = Field(
        "", description="The Lease's namespace (default: the operator pod's own namespace, else 'default')."
    )
    identity: str = Field(
        "", description="This replica's name in the Lease (default: hostname_random; the chart gives the pod name)."
    )
    lease_duration_seconds: int = Field(
        15, ge=1, description="Seconds a standby waits, after the Lease last changed, before it takes over."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="Seconds a leader keeps acting without renewing; under the lease duration."
    )
    retry_period_seconds: float = Field(2.0, gt=0, description="Seconds between tries to acquire or renew the Lease.")

    @model_validator(mode="after")
    def _lease_timing(self) -> RuntimeSettings:
        self.lease_timing  # noqa: B018  (raises ValueError, which pydantic reports, when the rule fails)
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RuntimeSettings:
        values: dict[str, object] = {}
        for field in cls.model_fields:
            raw = environ.get(PREFIX + field.upper())
            if raw is None or raw == "":
                continue
            if field == "namespaces":
                values[field] = [part.strip() for part in raw.split(",") if part.strip()]
            elif field in JSON_FIELDS:
                try:
                    values[field] = json.loads(raw)
                except json.JSONDecodeError as error:
                    raise SystemExit(
                        f"dreem-operator: bad setting: {PREFIX}{field.upper()}: not JSON ({error})"
                    ) from None
            else:
                values[field] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(
                f"{PREFIX}{str(issue['loc'][0]).upper()}: {issue['msg']} (got {issue.get('input')!r})"
                if issue["loc"]
                else issue["msg"]
                for issue in error.errors()
            )
            raise SystemExit(f"dreem-operator: bad setting: {problems}") from None

    @property
    def decisions(self) -> OperatorSettings:
        return OperatorSettings(
            trainer_image=self.trainer_image,
            master_port=self.master_port,
            secret_grace_seconds=self.secret_grace_seconds,
            default_s3_endpoint=self.default_s3_endpoint or None,
            trainer_resources=self.trainer_resources or None,
            trainer_node_selector=self.trainer_node_selector or None,
            trainer_tolerations=self.trainer_tolerations or None,
            gang_scheduler=self.gang_scheduler,
            scheduler_name=self.scheduler_name or None,
            restart_delay_seconds=self.restart_delay_seconds,
            restart_delay_max_seconds=self.restart_delay_max_seconds,
            lost_pod_seconds=self.lost_pod_seconds,
            trainer_fixed_user=self.trainer_fixed_user,
        )

    @property
    def lease_timing(self) -> LeaseTiming:
        return LeaseTiming(self.lease_duration_seconds, self.renew_deadline_seconds, self.retry_period_seconds)

    def lease_home(self) -> str:
        if self.lease_namespace:
            return self.lease_namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"

    def replica_identity(self) -> str:
        """client-go's default identity (hostname and a random suffix) unless one is given: two processes on
        one host must never share an identity, since the Lease's holder may renew it at once."""
        return self.identity or f"{socket.gethostname()}_{uuid.uuid4()}"
