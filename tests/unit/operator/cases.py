"""What the operator's decision tests share: a job, a clock, settings, and a shorthand for each call."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dreem_operator.api import DreemTrainingJobStatus
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.reconcile import Namesake, Observation, ObservedPod, ObservedPodGroup, Plan, Refusal, reconcile

JOB = JobRef("flies", "lab", "uid-1")
NOW = datetime(2026, 11, 25, 12, 0, 0)
SETTINGS = OperatorSettings(trainer_image="trainer:test", master_port=29500, secret_grace_seconds=60)


def spec(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "config": {"model": {"d_model": 64}, "dataset": {"train_dataset": {"dir": {"path": "s3://lab/flies"}}}},
        "nodes": 2,
        "gpusPerNode": 4,
        "storage": {"output": "s3://lab/runs/flies", "credentialsSecret": "minio", "endpoint": "http://minio:9000"},
        "runPolicy": {"backoffLimit": 2},
    }
    for key, value in changes.items():
        base[key] = base.get(key, {}) | value if isinstance(value, dict) and key == "runPolicy" else value
    return base


def status(**fields: Any) -> DreemTrainingJobStatus:
    return DreemTrainingJobStatus.model_validate(fields)


def pod(
    rank: int, phase: str, attempt: int = 0, exit_code: int | None = None, message: str = "", **more: Any
) -> ObservedPod:
    return ObservedPod(f"flies-{attempt}-{rank}", attempt, rank, phase, exit_code, message, **more)  # type: ignore[arg-type]


def run(
    pods: list[ObservedPod],
    current: DreemTrainingJobStatus | None = None,
    now: datetime = NOW,
    secret_problem: str | None = None,
    settings: OperatorSettings = SETTINGS,
    pod_groups: list[ObservedPodGroup] | None = None,
    foreign: list[Namesake] | None = None,
    refused: Refusal | None = None,
    **changes: Any,
) -> Plan:
    seen = Observation(
        pods,
        now,
        secret_problem=secret_problem,
        pod_groups=pod_groups or [],
        foreign=foreign or [],
        refused=refused,
    )
    return reconcile(JOB, spec(**changes), current or status(), 7, seen, settings)


def kinds(plan: Plan) -> list[str]:
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in plan.create]


def pods_created(plan: Plan) -> list[str]:
    return [name for name in kinds(plan) if name.startswith("Pod/")]
