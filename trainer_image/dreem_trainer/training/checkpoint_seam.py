"""The one place that reaches into Lightning's private ModelCheckpoint members.

`LatestCheckpoint` changes when last.ckpt is written, and Lightning has no public hook for that: it needs
to know which file was written at a step, to save, link and prune checkpoints the way Lightning does, and
to replace Lightning's own last.ckpt rule. Each private member it uses is reached here only, under a name
that says what it means, and tests/unit/training/test_checkpoint_seam.py checks those meanings against
the installed Lightning, so an upgrade that changes one fails that test rather than a resumed run.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor


class CheckpointSeam(ModelCheckpoint):
    """A ModelCheckpoint whose internals are public methods; subclasses use these, never Lightning's privates."""

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Tensor]) -> None:
        # Lightning calls this right after writing a top-k checkpoint (and on exception, at the end of training).
        self.write_last(trainer, monitor_candidates)

    def write_last(self, trainer: pl.Trainer, metrics: dict[str, Tensor]) -> None:
        """Write last.ckpt when Lightning would; Lightning's own rule unless a subclass replaces it."""
        super()._save_last_checkpoint(trainer, metrics)

    def saves_at_train_epoch_end(self, trainer: pl.Trainer) -> bool:
        """True when this run's epoch checkpoints are written at train epoch end, False at validation end."""
        return self._should_save_on_train_epoch_end(trainer)

    def may_save(self, trainer: pl.Trainer) -> bool:
        """False before the first step, once a checkpoint was written at this step, and whenever Lightning would
        not checkpoint at all (not fitting, sanity checking, fast_dev_run)."""
        return not self._should_skip_saving_checkpoint(trainer)

    def name_values(self, trainer: pl.Trainer) -> dict[str, Tensor]:
        """The logged metrics with `epoch` and `step`: what checkpoint file names are formatted from."""
        return self._monitor_candidates(trainer)

    def written_at(self, step: int) -> str:
        """The file this callback wrote most recently, if that was at global step `step`; "" otherwise."""
        return self._last_checkpoint_saved if self._last_global_step_saved == step else ""

    def save(self, trainer: pl.Trainer, path: str) -> None:
        """Write a full checkpoint to `path` (all ranks take part), remembered as written at this step."""
        self._save_checkpoint(trainer, path)

    def link(self, trainer: pl.Trainer, target: str, path: str) -> None:
        """Make `path` a relative symlink to `target` on rank 0 (a copy where links are refused), then a barrier."""
        self._link_checkpoint(trainer, target, path)

    def remove_replaced(self, trainer: pl.Trainer, previous: str, current: str) -> None:
        """Delete `previous`, now replaced by `current`, unless Lightning keeps it: the same file, outside
        this callback's folder, or the checkpoint the run resumed from."""
        if self._should_remove_checkpoint(trainer, previous, current):
            self._remove_checkpoint(trainer, previous)


MOVED_PATHS = ("best_model_path", "kth_best_model_path", "last_model_path")
"""The paths ModelCheckpoint's state holds besides `best_k_models` (all in its `dirpath`)."""


def moved_state(state: dict[str, Any], folder: str) -> dict[str, Any]:
    """A ModelCheckpoint state written in another folder, as if written in `folder`: same file names. Lightning
    drops the top-k record (best score, best files) when a resumed state's dirpath differs, so a run whose
    folder changes on every start (an S3 output's local staging) would call its first checkpoint after a
    resume the best, however bad."""
    earlier = str(state.get("dirpath") or "")

    def moved(path: str) -> str:
        inside = bool(earlier) and os.path.dirname(path) == earlier.rstrip(os.sep)
        return os.path.join(folder, os.path.basename(path)) if inside else path

    adopted = dict(state, dirpath=folder)
    for key in MOVED_PATHS:
        if state.get(key):
            adopted[key] = moved(str(state[key]))
    adopted["best_k_models"] = {moved(str(path)): score for path, score in state.get("best_k_models", {}).items()}
    return adopted
