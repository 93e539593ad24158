"""Tracking runs where trainer.accelerator says: CUDA by default when there is one, else the CPU."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants as hub
import pytest
import torch
from typer.testing import CliRunner, Result

from dreem_trainer.cli import app
from dreem_trainer.config.run import TrainerConfig
from dreem_trainer.contract import EXIT_USER_ERROR
from dreem_trainer.inference.device import DeviceUnavailableError, inference_device
from dreem_trainer.inference.run import tracking_base
from dreem_trainer.models.checkpoint import LAYOUT, LAYOUT_KEY
from tests.conftest import DEMO_DATA, TEST_DATA

HAS_CUDA = torch.cuda.is_available()
DREEM_CHECKPOINT = TEST_DATA / "dreem" / "dreem_two_flies.ckpt"


def test_auto_takes_cuda_when_present_else_the_cpu() -> None:
    placement = inference_device(TrainerConfig())
    assert placement.device.type == ("cuda" if HAS_CUDA else "cpu")
    if not HAS_CUDA:
        assert placement.autocast_dtype is None


def test_cpu_is_honoured_and_runs_in_float32() -> None:
    placement = inference_device(TrainerConfig(accelerator="cpu"))
    assert placement.device == torch.device("cpu") and placement.autocast_dtype is None
    with placement.autocast():
        assert not torch.is_autocast_enabled("cpu")


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_asking_for_a_gpu_without_one_names_the_key(accelerator: str) -> None:
    with pytest.raises(DeviceUnavailableError, match=f"trainer.accelerator: {accelerator} asks for a CUDA GPU"):
        inference_device(TrainerConfig.model_validate({"accelerator": accelerator}))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_cuda_picks_the_listed_device_and_a_reduced_precision() -> None:
    placement = inference_device(TrainerConfig.model_validate({"accelerator": "gpu", "devices": [0]}))
    assert placement.device == torch.device("cuda", 0)
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    assert placement.autocast_dtype == expected
    full = inference_device(TrainerConfig.model_validate({"accelerator": "gpu", "precision": "32-true"}))
    assert full.autocast_dtype is None


def test_tracking_forgets_the_machine_a_model_was_trained_on(tmp_path: Path) -> None:
    trained_on_gpus = {"accelerator": "gpu", "devices": [3], "strategy": "ddp", "num_nodes": 2, "max_epochs": 7}
    checkpoint = tmp_path / "model.ckpt"
    torch.save(
        {"hyper_parameters": {"config": {"trainer": trained_on_gpus}}, "state_dict": {}, LAYOUT_KEY: LAYOUT}, checkpoint
    )
    assert tracking_base(checkpoint)["trainer"] == {"max_epochs": 7}


def track(*args: str) -> Result:
    return CliRunner().invoke(app, ["track", str(DEMO_DATA), "--checkpoint", *args, "--anchor", "thorax"])


@pytest.mark.skipif(HAS_CUDA, reason="this machine has a GPU")
def test_track_gpu_flag_without_a_gpu_is_a_user_error(tmp_path: Path) -> None:
    result = track(str(DREEM_CHECKPOINT), "--output", str(tmp_path), "--gpu")
    assert result.exit_code == EXIT_USER_ERROR
    assert "trainer.accelerator: gpu asks for a CUDA GPU and this machine has none" in result.output


def test_track_from_an_uncached_hub_checkpoint_offline_names_the_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    result = track("hf://talmolab/dreem-animals-pretrained", "--output", str(tmp_path))
    assert result.exit_code == EXIT_USER_ERROR
    assert "--checkpoint: hf://talmolab/dreem-animals-pretrained is not in the Hugging Face cache" in result.output
