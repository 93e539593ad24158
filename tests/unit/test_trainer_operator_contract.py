"""The trainer-operator contract from both ends: what `dreem train` exits with in a pod is what the operator's
decision acts on."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import get_args, get_type_hints

import huggingface_hub.constants
import pytest
import yaml
from typer.testing import CliRunner

from dreem_operator.api import ConditionType, DreemTrainingJobStatus, Phase, Progress, Reason
from dreem_operator.children import JobRef, OperatorSettings
from dreem_operator.reconcile import Observation, ObservedPod, reconcile
from dreem_trainer.cli import app
from dreem_trainer.contract import EXIT_USER_ERROR, ProgressReport
from tests.trainer_helpers import tiny_raw


def test_unavailable_pretrained_weights_fail_the_job_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An air-gapped cluster with empty caches: the weights cannot be had. The hub client reads its settings
    # when it is first imported, so they are set on it as well as in the environment.
    for variable in ("HF_HOME", "TORCH_HOME"):
        monkeypatch.setenv(variable, str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache" / "hub"))
    raw = tiny_raw(tmp_path, model={"encoder_cfg": {"model_name": "resnet18", "pretrained": True}})
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))

    trained = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert trained.exit_code == EXIT_USER_ERROR, trained.output
    assert "model.encoder_cfg.pretrained" in trained.output

    # The same failure in rank 0 of a two-node job; its termination message is the end of its log.
    pods = [
        ObservedPod("flies-0-0", 0, 0, "Failed", trained.exit_code, trained.output),
        ObservedPod("flies-0-1", 0, 1, "Running"),
    ]
    spec = {"config": raw, "nodes": 2, "storage": {"output": "s3://lab/runs/flies"}, "runPolicy": {"backoffLimit": 3}}
    running = DreemTrainingJobStatus(phase=Phase.RUNNING, restarts=0, startTime="2026-11-25T11:00:00Z")
    seen = Observation(pods, now=datetime(2026, 11, 25, 12))
    plan = reconcile(JobRef("flies", "lab", "uid-1"), spec, running, 1, seen, OperatorSettings())
    assert plan.status.phase == Phase.FAILED and plan.status.restarts == 0
    failed = [c for c in plan.status.conditions or [] if c.type == ConditionType.FAILED]
    assert [(c.status, c.reason) for c in failed] == [("True", Reason.CONFIGURATION_ERROR)]
    assert "model.encoder_cfg.pretrained" in (plan.status.message or "")
    # The other rank is stopped; the failed one stays, its log telling why (cleanPodPolicy decides later).
    assert plan.delete_pods == ["flies-0-1"] and plan.create == []


def test_the_progress_rank_0_reports_is_the_progress_the_crd_stores() -> None:
    """A key the trainer wrote that the CRD's schema lacks would be pruned by the API server without a word."""
    reported = get_type_hints(ProgressReport)
    stored = Progress.model_fields
    assert set(reported) == set(stored)
    for key, kind in reported.items():
        annotation = stored[key].annotation
        assert annotation is not None and kind in get_args(annotation), (key, kind, annotation)
