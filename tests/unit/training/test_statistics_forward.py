"""PreciseBatchNorm's sample of the last batch: every crop size measured, weighted by its crops; no crops, no change."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dreem_trainer.data.clip import Clip
from dreem_trainer.training.module import DreemModule
from tests.trainer_helpers import tiny_config


def clip_of(crops: torch.Tensor) -> Clip:
    count = crops.shape[0]
    return Clip(
        crops=crops,
        boxes=torch.zeros((count, 1, 4)),
        frame_ids=torch.arange(count),
        track_ids=torch.arange(count),
        index_in_frame=torch.zeros(count, dtype=torch.long),
        frame_indices=torch.arange(count),
        image_size=torch.tensor([256, 256]),
        video_index=0,
    )


def reset(module: DreemModule) -> list[nn.modules.batchnorm._BatchNorm]:
    norms = [m for m in module.model.visual_encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    return norms


def test_each_crop_size_is_measured_and_weighted_by_its_crops(tmp_path: Path) -> None:
    module = DreemModule(tiny_config(tmp_path).model_dump(mode="json")).train()
    torch.manual_seed(0)
    large = torch.randint(0, 255, (40, 1, 64, 64), dtype=torch.uint8)
    small = torch.randint(0, 255, (3, 1, 32, 32), dtype=torch.uint8)  # 1x1 in the last stage: one crop would fail
    encoded: list[int] = []
    hook = module.model.visual_encoder.register_forward_hook(lambda _, inputs, __: encoded.append(len(inputs[0])))
    norms = reset(module)
    with torch.no_grad():
        module.statistics_forward([clip_of(large), clip_of(small)], crops=8)
    hook.remove()
    # Shares in proportion to each size's crops; the rare size keeps 2, which a BatchNorm in train mode needs.
    share = round(8 * 40 / 43)
    assert sorted(encoded) == [2, share]
    # The first layer's mean is the crop-weighted mean of each size's own: measure each alone to compare.
    first = norms[0]
    assert first.running_mean is not None
    measured = first.running_mean.clone()
    alone = []
    for crops, count in ((large, share), (small, 2)):
        reset(module)
        with torch.no_grad():
            module.statistics_forward([clip_of(crops)], crops=count)
        assert first.running_mean is not None
        alone.append((first.running_mean.clone(), count))
    weighted = sum(mean * count for mean, count in alone) / sum(count for _, count in alone)
    torch.testing.assert_close(measured, weighted, rtol=1e-4, atol=1e-5)


def test_a_batch_without_crops_changes_nothing(tmp_path: Path) -> None:
    module = DreemModule(tiny_config(tmp_path).model_dump(mode="json")).train()
    norms = reset(module)
    before = [norm.running_mean.clone() for norm in norms if norm.running_mean is not None]
    module.statistics_forward([clip_of(torch.zeros((0, 1, 32, 32), dtype=torch.uint8))], crops=32)
    after = [norm.running_mean for norm in norms if norm.running_mean is not None]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
