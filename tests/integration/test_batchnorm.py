"""After a short run the network behaves the same in eval mode (validation, tracking) as in training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.training.callbacks import PreciseBatchNorm
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
