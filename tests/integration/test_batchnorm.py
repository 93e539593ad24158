"""After a short run the network behaves the same in eval mode (validation, tracking) as in training."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import pytest
import torch

from dreem_trainer.data.clip import Clip
from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.models.encoder import batchnorms
from dreem_trainer.training.callbacks import PreciseBatchNorm
from dreem_trainer.training.module import DreemModule
from dreem_trainer.training.run import run_training
from tests.trainer_helpers import tiny_config

pytestmark = pytest.mark.slow


def eval_and_train_losses(trainer: object) -> tuple[float, float]:
    module = trainer.lightning_module  # type: ignore[attr-defined]
    clip = ClipDataset(module.config.dataset.val_dataset)[0]
    losses = []
    for mode in ("eval", "train"):
        getattr(module, mode)()
        module.model.transformer.eval()  # embeddings, transformer and head: only the encoder's BatchNorm differs
        with torch.no_grad():
            losses.append(float(module.loss(module(clip).matrices, clip.frame_ids, clip.track_ids)))
    return losses[0], losses[1]


def test_precise_batchnorm_keeps_eval_mode_faithful(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, trainer={"max_epochs": 4}, optimizer={"lr": 0.003})
    trainer = run_training(config)
    assert any(isinstance(c, PreciseBatchNorm) for c in trainer.callbacks)  # type: ignore[attr-defined]
    evaluated, trained = eval_and_train_losses(trainer)
    # Without re-estimated statistics this is about 0.69 against 0.04 (eval mode sees chance-level features).
    assert evaluated < 3 * trained + 0.05, (evaluated, trained)


def full_reestimation(module: DreemModule, clips: list[Clip]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every BatchNorm's exact average statistics over `clips`, with the weights frozen (the extra pass a
    precise-BN callback would otherwise run every epoch)."""
    frozen = deepcopy(module)
    norms = batchnorms(frozen)
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    frozen.train()
    with torch.no_grad():
        for clip in clips:
            frozen(clip)
    return [(norm.running_mean.clone(), norm.running_var.clone()) for norm in norms]  # type: ignore[union-attr]


@pytest.mark.parametrize(("epochs", "validate_every"), [(2, 1), (3, 2)])
def test_batchnorm_statistics_after_an_epoch_match_a_full_reestimation(
    tmp_path: Path, epochs: int, validate_every: int
) -> None:
    """Whether or not the final epoch validated (with check_val_every_n_epoch 2, the third does not): its
    last.ckpt and the network tracking goes on with hold this epoch's statistics."""
    # The kept statistics come from the epoch's last batch (one of its two clips), the reference from all.
    trainer_keys = {"max_epochs": epochs, "check_val_every_n_epoch": validate_every}
    config = tiny_config(tmp_path, seed=0, trainer=trainer_keys, optimizer={"lr": 0.003})
    trainer = run_training(config)
    module = trainer.lightning_module
    assert isinstance(module, DreemModule) and trainer.train_dataloader is not None
    dataset = trainer.train_dataloader.dataset  # the clips trained on
    reference = full_reestimation(module, [dataset[index] for index in range(len(dataset))])
    kept = [(n.running_mean, n.running_var) for n in batchnorms(module)]
    assert len(kept) == len(reference) > 0
    for layer, ((mean, var), (ref_mean, ref_var)) in enumerate(zip(kept, reference, strict=True)):
        assert mean is not None and var is not None
        # Per layer, relative to the layer's spread. A fresh network's statistics (0 and 1) are off by 0.4
        # to 2 in means and 0.4 to 65 in variances on these crops.
        mean_error = float((mean - ref_mean).norm() / ref_var.sum().sqrt())
        var_error = float((var - ref_var).norm() / ref_var.norm())
        assert mean_error < 0.25 and var_error < 0.35, (layer, mean_error, var_error)


def test_statistics_from_a_sample_of_the_crops_match_those_from_all(tmp_path: Path) -> None:
    """The re-estimation forwards at most `crops` crops of the last batch: from half of a clip's crops,
    spread over its frames, each layer's statistics are those of the whole clip, within a small part of the
    layer's spread. Crops of 128 px, the size DREEM's configs use: every pixel of a crop is a sample, and the
    deepest layers' 4x4 maps still give each channel 16 per crop."""
    split = {"crop_size": 128}
    config = tiny_config(
        tmp_path,
        seed=0,
        trainer={"max_epochs": 1},
        optimizer={"lr": 0.003},
        dataset={"train_dataset": split, "val_dataset": split},
    )
    trainer = run_training(config)
    module = trainer.lightning_module
    assert isinstance(module, DreemModule) and trainer.train_dataloader is not None
    clip = trainer.train_dataloader.dataset[0]
    assert clip.num_instances >= 16
    reference = full_reestimation(module, [clip])
    sampled = deepcopy(module)
    callback = PreciseBatchNorm(crops=clip.num_instances // 2)
    callback._last_batch = [clip]
    encoded: list[int] = []
    hook = sampled.model.visual_encoder.register_forward_hook(lambda _, inputs, __: encoded.append(len(inputs[0])))
    try:
        callback.recalibrate(trainer, sampled)
    finally:
        hook.remove()
    assert encoded == [clip.num_instances // 2]  # the sample, not the whole clip
    for layer, (norm, (ref_mean, ref_var)) in enumerate(zip(batchnorms(sampled), reference, strict=True)):
        assert norm.running_mean is not None and norm.running_var is not None
        mean_error = float((norm.running_mean - ref_mean).norm() / ref_var.sum().sqrt())
        var_error = float((norm.running_var - ref_var).norm() / ref_var.norm())
        assert mean_error < 0.1 and var_error < 0.15, (layer, mean_error, var_error)
