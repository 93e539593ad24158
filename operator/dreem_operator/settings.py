"""The operator's process settings, read from `DREEM_OPERATOR_*` environment variables (the Helm chart sets
them), so `kopf run -m dreem_operator` and `dreem-operator` configure the same way."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, Field, ValidationError

from dreem_operator.children import OperatorSettings

PREFIX = "DREEM_OPERATOR_"


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> RuntimeSettings:
        values: dict[str, object] = {}
        for field in cls.model_fields:
            raw = environ.get(PREFIX + field.upper())
            if raw is None or raw == "":
                continue
            values[field] = [part.strip() for part in raw.split(",") if part.strip()] if field == "namespaces" else raw
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
        )
