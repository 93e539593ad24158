"""The operator's process settings, read from `DREEM_OPERATOR_*` environment variables (the Helm chart sets
them), so `kopf run -m dreem_operator` and `dreem-operator` configure the same way."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from dreem_operator.children import GangScheduler, OperatorSettings

PREFIX = "DREEM_OPERATOR_"
JSON_FIELDS = {"trainer_resources", "trainer_node_selector", "trainer_tolerations"}


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
        )
