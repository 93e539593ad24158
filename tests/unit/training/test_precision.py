"""Precision, the DDP backend and host-to-device copies follow the accelerator; bf16 keeps the association."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

from dreem_trainer.config import ConfigError
from dreem_trainer.data.clip import Clip
from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.hardware import (
    Hardware,
    autocast_dtype,
    cpus_in_quota,
    ddp_backend,
    model_threads,
    resolve_precision,
    uses_gpu,
)
from dreem_trainer.training.module import DreemModule, clip_offsets
from dreem_trainer.training.run import build_trainer, data_loader
from tests.trainer_helpers import tiny_config

CPU_ONLY = Hardware(cuda_available=False, bf16_supported=False)
HOPPER = Hardware(cuda_available=True, bf16_supported=True)
VOLTA = Hardware(cuda_available=True, bf16_supported=False)


@pytest.mark.parametrize(
    ("configured", "accelerator", "hardware", "expected"),
    [
        (None, "gpu", HOPPER, "bf16-mixed"),
        (None, "cuda", HOPPER, "bf16-mixed"),
        (None, "auto", HOPPER, "bf16-mixed"),
        (None, "gpu", VOLTA, "32-true"),
        (None, "cpu", HOPPER, "32-true"),
        (None, "auto", CPU_ONLY, "32-true"),
        ("32-true", "gpu", HOPPER, "32-true"),
        ("bf16-mixed", "cpu", CPU_ONLY, "bf16-mixed"),
        ("16-mixed", "gpu", VOLTA, "16-mixed"),
    ],
)
def test_precision_is_bf16_on_gpus_that_have_it_unless_configured(
    configured: str | None, accelerator: str, hardware: Hardware, expected: str
) -> None:
    assert resolve_precision(configured, accelerator, hardware) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("configured", "hardware", "expected"),
    [
        (None, HOPPER, torch.bfloat16),
        (None, VOLTA, None),
        ("32-true", HOPPER, None),
        ("64-true", HOPPER, None),
        ("bf16-mixed", VOLTA, None),
        ("bf16-true", HOPPER, torch.bfloat16),
        ("16-mixed", VOLTA, torch.float16),
    ],
)
def test_tracking_autocasts_to_what_training_would_resolve(
    configured: str | None, hardware: Hardware, expected: torch.dtype | None
) -> None:
    """Tracking on a GPU takes its autocast from the precision training resolves; bf16 on a GPU without it
    tracks in float32 instead of failing."""
    precision = resolve_precision(configured, "cuda", hardware)  # type: ignore[arg-type]
    assert autocast_dtype(precision, hardware) == expected


def test_ddp_backend_is_nccl_on_gpus_and_gloo_on_cpu() -> None:
    assert ddp_backend("gpu", HOPPER) == "nccl"
    assert ddp_backend("auto", HOPPER) == "nccl"
    assert ddp_backend("auto", CPU_ONLY) == "gloo"
    assert ddp_backend("cpu", HOPPER) == "gloo"
    assert not uses_gpu("mps", HOPPER)


def test_trainer_gets_the_resolved_precision_and_ddp_backend(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"strategy": "ddp"})
    trainer = build_trainer(config, has_validation=False, interactive=False, hardware=CPU_ONLY)
    assert trainer.precision == "32-true"
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy.process_group_backend == "gloo"
    explicit = tiny_config(tmp_path, trainer={"precision": "bf16-mixed"})
    assert build_trainer(explicit, has_validation=False, interactive=False, hardware=CPU_ONLY).precision == "bf16-mixed"


def test_precision_accepts_lightnings_short_spellings_and_names_a_wrong_one(tmp_path: Path) -> None:
    assert tiny_config(tmp_path, trainer={"precision": 16}).trainer.precision == "16-mixed"
    assert tiny_config(tmp_path, trainer={"precision": "bf16"}).trainer.precision == "bf16-mixed"
    with pytest.raises(ConfigError) as raised:
        tiny_config(tmp_path, trainer={"precision": "bf8"})
    assert any(issue.path == "trainer.precision" for issue in raised.value.issues)


def test_loader_pins_memory_when_asked_and_the_config_can_override(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    split, loader = config.dataset.train_dataset, config.dataloader.train_dataloader
    assert data_loader(split, loader, 0, pin_memory=True).pin_memory
    assert not data_loader(split, loader, 0).pin_memory
    explicit = loader.model_validate(loader.model_dump() | {"pin_memory": False})
    assert not data_loader(split, explicit, 0, pin_memory=True).pin_memory


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinning page-locks host memory for a CUDA device")
def test_clip_pins_and_copies_without_blocking(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    clip = ClipDataset(config.dataset.train_dataset, seed=0)[0].pin_memory()
    assert clip.crops.is_pinned() and clip.boxes.is_pinned()
    moved = clip.to(torch.device("cuda"), non_blocking=True)
    assert torch.equal(moved.crops.cpu(), clip.crops)


def test_compile_compiles_the_encoder_in_place(tmp_path: Path) -> None:
    plain = DreemModule(tiny_config(tmp_path).model_dump(mode="json"))
    compiled = DreemModule(tiny_config(tmp_path, model={"compile": True}).model_dump(mode="json"))
    assert compiled.model.visual_encoder.feature_extractor._compiled_call_impl is not None
    assert plain.model.visual_encoder.feature_extractor._compiled_call_impl is None
    # Checkpoints keep the plain names, so `dreem track` loads them without compiling.
    assert compiled.state_dict().keys() == plain.state_dict().keys()


def _association(module: DreemModule, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query instance and per other frame of the clip: the probability of each instance of that
    frame (softmax over the frame's instances) and the instance chosen."""
    matrix = module(clip).matrices[-1].float()
    frames = clip.frame_ids
    frame_numbers = sorted(set(frames.tolist()))
    probabilities = torch.zeros_like(matrix)
    for frame in frame_numbers:
        columns = frames == frame
        probabilities[:, columns] = matrix[:, columns].softmax(-1)
    other_frame = frames[:, None] != frames[None, :]
    best = torch.where(other_frame, probabilities, -1.0)
    chosen = torch.stack([best[:, frames == frame].argmax(-1) for frame in frame_numbers], dim=1)
    return probabilities, chosen


def test_bf16_mixed_and_fp32_give_the_same_association_on_a_fixed_batch(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, model={"dropout": 0.0, "dropout_attn_head": 0.0})
    clip = ClipDataset(config.dataset.train_dataset, seed=0)[0]
    torch.manual_seed(0)
    module = DreemModule(config.model_dump(mode="json"))
    # Fit the clip first: the association of an untrained model is a near tie everywhere, which any
    # rounding would flip and no precision could be judged by.
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        loss = module.loss(module(clip).matrices, clip.frame_ids, clip.track_ids)
        loss.backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        fp32_probabilities, fp32_chosen = _association(module, clip)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16_probabilities, bf16_chosen = _association(module, clip)
            assert module(clip).matrices[-1].dtype == torch.bfloat16  # autocast really ran the model in bf16
    assert clip_offsets(clip).max() > 0 and clip.num_instances > 2
    assert torch.equal(fp32_chosen, bf16_chosen)
    assert (fp32_probabilities - bf16_probabilities).abs().max() < 0.05


def test_each_training_process_gets_its_share_of_the_cpus_never_none() -> None:
    assert model_threads(cpus=16, training_processes=1) == 16
    assert model_threads(cpus=16, training_processes=4) == 4
    assert model_threads(cpus=4, training_processes=8) == 1


def test_a_cgroup_cpu_quota_counts_whole_cpus() -> None:
    # cgroup v2's cpu.max ("400000 100000": a Kubernetes limit of 4 CPUs) and v1's quota and period files.
    assert cpus_in_quota("400000", "100000") == 4
    assert cpus_in_quota("150000", "100000") == 1  # 1.5 CPUs: a second thread would be throttled
    assert cpus_in_quota("50000", "100000") == 1
    assert cpus_in_quota("max", "100000") is None
    assert cpus_in_quota("-1", "100000") is None
