"""A DREEM checkpoint as model.ckpt_path starts training from its weights; a hub checkpoint offline fails at once."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dreem_trainer.config import DreemConfig, validate
from dreem_trainer.config.loader import deep_merge
from dreem_trainer.contract import EXIT_USER_ERROR
from dreem_trainer.models.checkpoint import LAYOUT, LAYOUT_KEY, load_model, read_checkpoint
from dreem_trainer.training.run import run_training
from tests.conftest import TEST_DATA, dreem_executable
from tests.trainer_helpers import tiny_raw

pytestmark = pytest.mark.slow

DREEM_CHECKPOINT = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"


def fine_tune_config(tmp_path: Path, **sections: Any) -> DreemConfig:
    split = {"crop_size": 64, "clip_length": 8, "n_chunks": 2}
    base: dict[str, Any] = {
        "model": {"ckpt_path": str(DREEM_CHECKPOINT), "d_model": 32},  # d_model: ignored, the checkpoint's is 128
        "dataset": {"train_dataset": split, "val_dataset": split},
        "trainer": {"max_epochs": 1, "limit_val_batches": 1},
        "optimizer": {"lr": 1e-4},
    }
    return validate(tiny_raw(tmp_path, **deep_merge(base, sections)))


def test_fine_tuning_from_a_dreem_checkpoint_runs_one_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trainer = run_training(fine_tune_config(tmp_path))
    said = capsys.readouterr().out
    assert f"fine-tuning from DREEM checkpoint {DREEM_CHECKPOINT}" in said
    assert "model.d_model: 32 in the configuration is ignored" in said
    # A fresh start from the weights: DREEM's checkpoint was at epoch 2, step 12; fine-tuning starts at 0.
    assert trainer.current_epoch == 1 and trainer.global_step == 2
    last = tmp_path / "models" / "last.ckpt"
    written = torch.load(last, map_location="cpu", weights_only=True)
    assert written[LAYOUT_KEY] == LAYOUT
    model_section = written["hyper_parameters"]["config"]["model"]
    assert model_section["d_model"] == 128 and model_section["embedding_meta"]["semantics"] == "dreem-0.5"
    # The parameters started from DREEM's and moved a little: two Adam steps at lr 1e-4. (BatchNorm's running
    # statistics are estimated again from the new crops, so they may move further.)
    dreem = read_checkpoint(DREEM_CHECKPOINT).weights
    tuned = dict(load_model(last).named_parameters())
    moved = [float((tuned[name].detach() - dreem[name]).abs().max()) for name in tuned]
    assert 0 < max(moved) < 0.01, max(moved)


def test_a_restarted_fine_tuning_carries_on_from_its_own_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_training(fine_tune_config(tmp_path))
    again = run_training(fine_tune_config(tmp_path, checkpointing={"resume": "auto"}, trainer={"max_epochs": 2}))
    said = capsys.readouterr().out
    assert f"resuming from {tmp_path / 'models' / 'last.ckpt'}" in said
    assert again.current_epoch == 2 and again.global_step == 4


@pytest.mark.parametrize("offline", ["HF_HUB_OFFLINE", "unreachable endpoint"])
def test_a_hub_checkpoint_offline_fails_within_seconds_naming_the_key(
    tmp_path: Path, offline: str, refused_port: int
) -> None:
    raw = tiny_raw(tmp_path, model={"ckpt_path": "hf://talmolab/dreem-animals-pretrained"})
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = os.environ | {"HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    if offline == "HF_HUB_OFFLINE":
        env["HF_HUB_OFFLINE"] = "1"
    else:
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{refused_port}"
    started = time.monotonic()
    result = subprocess.run(
        [dreem_executable(), "train", "--config", str(config)], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert result.returncode == EXIT_USER_ERROR, result.stderr
    assert "model.ckpt_path: hf://talmolab/dreem-animals-pretrained is not in the Hugging Face cache" in result.stderr
    reason = "HF_HUB_OFFLINE is set" if offline == "HF_HUB_OFFLINE" else "cannot be reached"
    assert reason in result.stderr
    # Start-up included (torch, Lightning); a hub client left to retry would add about a minute.
    assert elapsed < 60, elapsed
