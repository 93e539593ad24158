"""CheckpointSeam against the installed Lightning: each test pins what one of ModelCheckpoint's private
members means to LatestCheckpoint, so a Lightning release that changes a meaning fails here rather than
in a resumed run. A real Trainer fits Lightning's BoringModel for a few steps on CPU."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from torch import Tensor

import dreem_trainer
from dreem_trainer.training.checkpoint_seam import MOVED_PATHS, CheckpointSeam, moved_state

Note = tuple[str, int, bool, str]
"""(hook, global step, may_save, the file written at that step)."""


class LoggingModel(BoringModel):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.log("seen", float(batch_idx))
        return super().training_step(batch, batch_idx)


class Probe(CheckpointSeam):
    """Notes what the seam reports around each checkpointing hook, and each call Lightning makes to write_last."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.notes: list[Note] = []
        self.last_calls: list[tuple[int, str, dict[str, Tensor]]] = []
        self.at_train_epoch_end: bool | None = None

    def _note(self, hook: str, trainer: pl.Trainer) -> None:
        step = trainer.global_step
        self.notes.append((hook, step, self.may_save(trainer), Path(self.written_at(step)).name))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.at_train_epoch_end = self.saves_at_train_epoch_end(trainer)
        self._note("train_start", trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._note("validation_end", trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._note("before_train_epoch_end", trainer)
        super().on_train_epoch_end(trainer, pl_module)
        self._note("train_epoch_end", trainer)

    def write_last(self, trainer: pl.Trainer, metrics: dict[str, Tensor]) -> None:
        self.last_calls.append((trainer.global_step, Path(self.written_at(trainer.global_step)).name, metrics))
        super().write_last(trainer, metrics)


def fit(
    directory: Path, ckpt_path: Path | None = None, keeping: dict[str, Any] | None = None, **settings: Any
) -> tuple[pl.Trainer, Probe]:
    """Two epochs of two steps; the probe keeps the newest epoch's checkpoint (no monitor, top 1, unless
    `keeping` says otherwise) and last.ckpt."""
    probe = Probe(dirpath=directory / "ckpts", save_last=True, **(keeping or {}))
    options: dict[str, Any] = {
        "default_root_dir": directory,
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 2,
        "limit_train_batches": 2,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "callbacks": [probe],
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    trainer = pl.Trainer(**(options | settings))
    trainer.fit(LoggingModel(), ckpt_path=ckpt_path)
    return trainer, probe


def test_write_last_is_called_after_each_checkpoint_with_what_was_written(tmp_path: Path) -> None:
    _, probe = fit(tmp_path)
    # Called right after the epoch's top-k checkpoint, which is what was written at that step so far.
    assert [(step, written) for step, written, _ in probe.last_calls] == [
        (2, "epoch=0-step=2.ckpt"),
        (4, "epoch=1-step=4.ckpt"),
    ]
    metrics = probe.last_calls[-1][2]
    assert (int(metrics["epoch"]), int(metrics["step"])) == (1, 4) and "seen" in metrics
    named = probe.format_checkpoint_name(metrics, "{epoch}-{seen:.0f}")
    assert named == str(Path(probe.dirpath or "") / "epoch=1-seen=1.ckpt")
    # Lightning's own rule, which LatestCheckpoint replaces: a full last.ckpt after each top-k write.
    last = tmp_path / "ckpts" / "last.ckpt"
    assert last.is_file() and not last.is_symlink()


def test_may_save_and_written_at_follow_the_global_step(tmp_path: Path) -> None:
    _, probe = fit(tmp_path)
    assert probe.notes == [
        ("train_start", 0, False, ""),  # no step taken yet: nothing worth saving
        ("before_train_epoch_end", 2, True, ""),
        # Written at this step (the top-k file, then Lightning's full last.ckpt): no further save.
        ("train_epoch_end", 2, False, "last.ckpt"),
        ("before_train_epoch_end", 4, True, ""),
        ("train_epoch_end", 4, False, "last.ckpt"),
    ]


@pytest.mark.parametrize(
    ("settings", "at_train_epoch_end", "hook"),
    [
        ({}, True, "train_epoch_end"),
        ({"limit_val_batches": 2}, True, "train_epoch_end"),
        ({"limit_val_batches": 2, "check_val_every_n_epoch": 2}, False, "validation_end"),
        ({"limit_val_batches": 2, "limit_train_batches": 4, "val_check_interval": 2}, False, "validation_end"),
    ],
)
def test_saves_at_train_epoch_end_names_the_hook_that_writes(
    tmp_path: Path, settings: dict[str, Any], at_train_epoch_end: bool, hook: str
) -> None:
    _, probe = fit(tmp_path, **settings)
    assert probe.at_train_epoch_end is at_train_epoch_end
    first_written = next(note for note in probe.notes if note[3])
    assert first_written[0] == hook


def test_save_link_and_remove_replaced(tmp_path: Path) -> None:
    trainer, probe = fit(tmp_path)
    ckpts = tmp_path / "ckpts"
    extra, pointer, elsewhere = ckpts / "extra.ckpt", ckpts / "pointer.ckpt", tmp_path / "elsewhere.ckpt"

    probe.save(trainer, str(extra))
    assert probe.written_at(trainer.global_step) == str(extra)
    assert torch.load(extra, map_location="cpu", weights_only=False)["global_step"] == 4

    probe.link(trainer, str(extra), str(pointer))
    assert pointer.is_symlink() and os.readlink(pointer) == "extra.ckpt"

    probe.save(trainer, str(elsewhere))
    probe.remove_replaced(trainer, str(extra), str(extra))  # the same file
    probe.remove_replaced(trainer, str(elsewhere), str(extra))  # not in this callback's folder
    assert extra.is_file() and elsewhere.is_file()
    probe.remove_replaced(trainer, str(pointer), str(extra))
    assert not pointer.exists() and extra.is_file()


def test_remove_replaced_keeps_the_checkpoint_the_run_resumed_from(tmp_path: Path) -> None:
    fit(tmp_path)
    resumed = tmp_path / "ckpts" / "epoch=1-step=4.ckpt"
    trainer, probe = fit(tmp_path, ckpt_path=resumed, max_epochs=3)
    # Writing epoch 2 replaced the top-1 file, but Lightning keeps the one the run resumed from.
    assert resumed.is_file() and (tmp_path / "ckpts" / "epoch=2-step=6.ckpt").is_file()
    probe.remove_replaced(trainer, str(resumed), str(tmp_path / "ckpts" / "last.ckpt"))
    assert resumed.is_file()


def test_a_state_moved_to_another_folder_keeps_its_top_k_record(tmp_path: Path) -> None:
    """What a restaged (S3) run's checkpoint callback restores from a state written in an earlier staging
    folder: the same record, under the new folder. Lightning itself keeps only best_model_path then."""
    _, probe = fit(tmp_path, keeping={"save_top_k": 2, "monitor": "seen", "mode": "max"}, max_epochs=3)
    state = probe.state_dict()
    assert {"dirpath", "best_k_models", "best_model_score", *MOVED_PATHS} <= set(state)
    moved_to = tmp_path / "elsewhere"
    fresh = CheckpointSeam(dirpath=moved_to, save_top_k=2, monitor="seen", mode="max")
    fresh.load_state_dict(moved_state(state, str(moved_to)))
    renamed = {str(moved_to / Path(path).name): score for path, score in state["best_k_models"].items()}
    assert len(renamed) == 2 and fresh.best_k_models == renamed
    assert fresh.best_model_score == state["best_model_score"]
    assert fresh.best_model_path == str(moved_to / Path(state["best_model_path"]).name)
    assert fresh.kth_best_model_path == str(moved_to / Path(state["kth_best_model_path"]).name)
    assert fresh.last_model_path == str(moved_to / "last.ckpt")
    lightning_alone = CheckpointSeam(dirpath=moved_to, save_top_k=2, monitor="seen", mode="max")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        lightning_alone.load_state_dict(state)
    assert lightning_alone.best_k_models == {}


def test_only_the_seam_reaches_into_model_checkpoint() -> None:
    members = {*vars(ModelCheckpoint()), *(name for cls in ModelCheckpoint.__mro__ for name in vars(cls))}
    private = {name for name in members if name.startswith("_") and not name.startswith("__")}
    package = Path(dreem_trainer.__file__).parent
    seam = package / "training" / "checkpoint_seam.py"
    used = {
        (str(path.relative_to(package)), name)
        for path in package.rglob("*.py")
        if path != seam
        for name in private
        if re.search(rf"\.{name}\b", path.read_text())
    }
    assert used == set()
