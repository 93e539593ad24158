"""The callbacks training.run adds to Lightning's own, each for a need Lightning leaves open.

- `EpochLines`: pod logs and CI are not terminals, so one plain line per epoch stands in for the progress bar.
- `LatestCheckpoint`: last.ckpt must always be the newest state, or a restarted job resumes from the past.
- `PreciseBatchNorm`: a short run leaves BatchNorm statistics near their starting values, and validation and
  tracking run in eval mode on those statistics; it re-estimates them from the epoch's last batch.
- `StorageSync`: a pod's disk goes with the pod, so checkpoints and logs go to S3 as soon as they are written.
- `ProgressReporter`: rank 0 writes progress into its DreemTrainingJob's status, so `kubectl get dtj` shows it.

Their order is set in training.run: PreciseBatchNorm before the checkpoints, which must hold its statistics;
StorageSync, then ProgressReporter, after them, as they upload and name the files just written.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from torch import Tensor

from dreem_trainer.cluster import JobStatus
from dreem_trainer.config.run import StorageConfig
from dreem_trainer.contract import ProgressReport
from dreem_trainer.models.encoder import batchnorms
from dreem_trainer.storage.fence import AttemptFence
from dreem_trainer.storage.staging import MirroredOutput
from dreem_trainer.storage.sync import DirectorySync
from dreem_trainer.tracking.metrics import METRICS
from dreem_trainer.training.checkpoint_io import AtomicCheckpointIO
from dreem_trainer.training.checkpoint_seam import CheckpointSeam, moved_state
from dreem_trainer.training.module import DreemModule, epoch_value_name
from dreem_trainer.training.termination import CheckpointGate


class EpochValidation:
    """Whether this epoch validated: with check_val_every_n_epoch > 1 an epoch may end without, and then
    the val metrics Lightning holds are an earlier epoch's. Validation runs before on_train_epoch_end."""

    validated_epoch = -1

    def note_validation(self, trainer: pl.Trainer) -> None:
        """Called from on_validation_end; the sanity check is no epoch's validation."""
        if not trainer.sanity_checking:
            self.validated_epoch = trainer.current_epoch

    def validated_this_epoch(self, trainer: pl.Trainer) -> bool:
        return self.validated_epoch == trainer.current_epoch


class EpochLines(EpochValidation, pl.Callback):
    """One line per epoch (rank 0), for pod logs and CI where a live progress bar is noise."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.monotonic()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.note_validation(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = []
        splits = ("train", "val") if self.validated_this_epoch(trainer) else ("train",)  # else val's are stale
        for metric in METRICS:
            for split in metric.splits if metric.epoch_line else ():
                if split not in splits:
                    continue
                value = trainer.callback_metrics.get(epoch_value_name(metric, split))
                if value is not None:
                    shown.append(f"{metric.logged(split)} {float(value):.4g}")
        limit = "" if trainer.max_epochs in (None, -1) else f"/{trainer.max_epochs}"
        elapsed = time.monotonic() - self.started
        print(
            f"epoch {trainer.current_epoch + 1}{limit}: {', '.join(shown)} ({elapsed:.1f} s)",
            file=sys.stdout,
            flush=True,
        )


class LatestCheckpoint(EpochValidation, CheckpointSeam):
    """A ModelCheckpoint whose last.ckpt always holds the newest training state, stored once.

    Lightning (2.6) writes last.ckpt only when a top-k checkpoint was written at the same step, and
    with `save_last="link"` points it at the last top-k file: either way it goes stale as soon as the
    monitored metric stops improving, and a resume after a failure would silently go back in time.
    Here last.ckpt is refreshed at every checkpointing epoch: a link when a checkpoint was written at
    this very step (by this callback, or by another monitor's that ran before it in the same hook), the full
    file otherwise, so every state is on disk exactly once. A link is
    removed before a full write, so a write never goes through it into a best checkpoint.

    Every hook that writes goes through `gate`, so a SIGTERM upload never sees files half changed.
    Lightning's internals are reached through `CheckpointSeam` only.
    """

    def __init__(self, *, gate: CheckpointGate | None = None, restaged: bool = False, **settings: Any) -> None:
        """`restaged`: the folder is a new local staging of the same S3 output on every start, so a resumed
        state written in an earlier one is this run's own (see `moved_state`)."""
        super().__init__(**settings)
        self.gate = gate or CheckpointGate()
        self.restaged = restaged

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.restaged and self.dirpath is not None:
            state_dict = moved_state(state_dict, str(self.dirpath))
        super().load_state_dict(state_dict)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        with self.gate.open() as allowed:
            if allowed:
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        with self.gate.open() as allowed:
            if allowed:
                super().on_validation_end(trainer, pl_module)
                self.note_validation(trainer)
                if not self.saves_at_train_epoch_end(trainer):
                    self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Validation has run by now where this epoch has one. An epoch without (check_val_every_n_epoch > 1)
        refreshes last.ckpt here, or the epochs after the last validation, the final one included, were lost."""
        with self.gate.open() as allowed:
            if allowed:
                super().on_train_epoch_end(trainer, pl_module)
                if self.saves_at_train_epoch_end(trainer) or not self.validated_this_epoch(trainer):
                    self._refresh_last(trainer)

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        every = self.every_n_epochs or 0
        due = every >= 1 and (trainer.current_epoch + 1) % every == 0
        if self.save_last and due and self.may_save(trainer):
            self.write_last(trainer, self.name_values(trainer))

    def write_last(self, trainer: pl.Trainer, metrics: dict[str, Tensor]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(metrics, self.CHECKPOINT_NAME_LAST)
        previous, self.last_model_path = self.last_model_path, filepath
        step = trainer.global_step
        others = [c for c in trainer.checkpoint_callbacks if isinstance(c, CheckpointSeam) and c is not self]
        written_now = next((path for c in [self, *others] if (path := c.written_at(step))), "")
        writer = trainer.strategy.checkpoint_io
        if written_now not in ("", filepath) and isinstance(writer, AtomicCheckpointIO):
            if trainer.is_global_zero:
                writer.link(written_now, filepath)  # once the file it points to is written
            trainer.strategy.barrier()
        elif written_now not in ("", filepath):
            self.link(trainer, written_now, filepath)
        else:
            if trainer.is_global_zero and os.path.islink(filepath) and not isinstance(writer, AtomicCheckpointIO):
                os.unlink(filepath)  # AtomicCheckpointIO replaces the link itself, never writing through it
            self.save(trainer, filepath)
        if previous:
            self.remove_replaced(trainer, previous, filepath)


STATISTICS_CROPS = 32
"""Crops the BatchNorm re-estimation forwards, at most, spread over the last batch's clips."""


class PreciseBatchNorm(EpochValidation, pl.Callback):
    """Re-estimates BatchNorm statistics for the current weights before validation and checkpoints, from
    crops of the epoch's last training batch, already decoded and cropped.

    Running statistics are an exponential average that starts from mean 0, variance 1. Crops of an
    arena have far smaller activation variance (about 0.01 in the first layer on two_flies), so after
    the few dozen steps of a short run the averages are still dominated by their start, and the network
    in eval mode (validation, tracking) sees activations scaled wrongly. The exact statistics of a
    training batch under the final weights fix this; ranks then average theirs.

    The statistics the training forwards computed are one optimizer step behind the weights, which
    matters after large steps (measured: up to 0.46 of a layer's spread off a full re-estimation after a
    step at lr 0.003), so crops of the last batch go forward once more, through the encoder only, at most
    `crops` of them: every pixel of every crop is a sample of each channel's statistics, so a few
    dozen crops pin them down, and the pass costs the same whatever the batch (a whole training forward
    per epoch, a third of the step, on ten_zfish's 320-crop clips otherwise).
    """

    def __init__(self, crops: int = STATISTICS_CROPS) -> None:
        self.crops = crops
        self._last_batch: Any = None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._last_batch = batch  # already on the device; held until the next batch replaces it

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.recalibrate(trainer, pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.note_validation(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """An epoch that validated was re-estimated before validation; one that did not (no validation split,
        or check_val_every_n_epoch > 1) is re-estimated here, before its checkpoint is written."""
        if not self.validated_this_epoch(trainer):
            self.recalibrate(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last_batch = None

    @torch.no_grad()
    def recalibrate(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        norms = batchnorms(pl_module)
        if not norms or self._last_batch is None:
            return
        momenta = [norm.momentum for norm in norms]
        for norm in norms:
            norm.reset_running_stats()  # statistics_forward weighs each of its calls by its crops
        was_training = pl_module.training
        pl_module.train()
        try:
            assert isinstance(pl_module, DreemModule)
            pl_module.statistics_forward(self._last_batch, self.crops)
        finally:
            for norm, momentum in zip(norms, momenta, strict=True):
                norm.momentum = momentum
            pl_module.train(was_training)
        if trainer.world_size > 1:
            for norm in norms:
                assert norm.running_mean is not None and norm.running_var is not None
                norm.running_mean.copy_(trainer.strategy.reduce(norm.running_mean, reduce_op="mean"))
                norm.running_var.copy_(trainer.strategy.reduce(norm.running_var, reduce_op="mean"))


class StorageSync(Checkpoint):
    """Mirrors checkpoints and logs to S3 on rank 0, so they outlive the pod and a restarted job resumes from
    them: at start (the resolved config.yaml), after every checkpointing hook and at the end, where the run waits
    for the uploads to finish. In a cluster job every upload is checked against the gang's AttemptFence, and a
    gang fenced out by a newer one stops.

    A `Checkpoint` subclass, so Lightning runs it after the ModelCheckpoints of the same hook and the
    checkpoint just written goes up at once. Its scans go through `gate`, like the writes; `flush` is the
    SIGTERM path, run once the gate is shut.
    """

    def __init__(
        self,
        storage: StorageConfig,
        outputs: list[MirroredOutput],
        gate: CheckpointGate,
        fence: AttemptFence | None = None,
        writer: AtomicCheckpointIO | None = None,
    ) -> None:
        self.storage = storage
        self.outputs = outputs
        self.gate = gate
        self.fence = fence
        self.writer = writer
        """The checkpoint writer: with one writing in the background, scans wait in its queue for the writes
        before them, so a file or link is never uploaded before it is complete."""
        self.syncs: list[DirectorySync] = []
        self._synced_step = -1
        """The step whose mid-epoch checkpoint went up last."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.is_global_zero and not self.syncs:
            self.syncs = [
                DirectorySync(self.storage, output.local, output.remote, fence=self.fence, cache=output.cached)
                for output in self.outputs
            ]
        self._sync()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """A checkpoint written within the epoch (`every_n_train_steps`, `train_time_interval`) goes up at
        once: a node lost later in a long epoch must not take it along."""
        step = trainer.global_step
        if step == self._synced_step:
            return  # the micro-batches of one step (accumulate_grad_batches) share its checkpoint
        if any(isinstance(c, CheckpointSeam) and c.written_at(step) for c in trainer.checkpoint_callbacks):
            self._synced_step = step
            self._sync()
            self._stop_if_storing_nothing()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._sync()
            self._stop_if_storing_nothing()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync()
        self._stop_if_storing_nothing()

    def _stop_if_storing_nothing(self) -> None:
        """A gang whose output a newer gang has claimed, or whose uploads the store refuses (credentials
        rotated to read-only, a bucket policy changed), trains on for nothing: it stops with the reason."""
        for sync in self.syncs:
            if sync.fenced is not None:
                raise sync.fenced
            if sync.refused is not None:
                raise sync.refused

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.finish()

    def _sync(self) -> None:
        if self.writer is not None and self.writer.background:
            self.writer.after_writes(self._scan)  # under the gate, in the writer's thread
            return
        with self.gate.open() as allowed:
            if allowed:
                self._scan()

    def _scan(self) -> None:
        for sync in self.syncs:
            sync.sync()
        # After the uploads just queued (one worker, in order): the bucket never lacks the newer checkpoint.
        pruned = self.writer.take_removed_elsewhere() if self.writer is not None else []
        for path in pruned:
            for sync in self.syncs:
                if Path(path).parent == sync.local:
                    sync.delete_remote(Path(path).name)

    def finish(self) -> None:
        """The end of a run: queue what changed and wait for every upload (raises if one failed for good)."""
        self._sync()
        if self.writer is not None:
            self.writer.wait()
        for sync in self.syncs:
            sync.wait()

    def flush(self, timeout_s: float) -> None:
        """After SIGTERM, with the gate shut: upload what is on disk, waiting at most `timeout_s`."""
        self._scan()
        for sync in self.syncs:
            sync.wait(timeout_s)


def remote_uri(path: str, outputs: list[MirroredOutput]) -> str:
    """Where a locally staged file ends up: its s3:// URI when it is under a mirrored folder."""
    if not path:
        return path
    for output in outputs:
        try:
            # Links followed in the folder, not in the file: last.ckpt may be a link to a best checkpoint,
            # but it is uploaded under its own name.
            relative = (Path(path).parent.resolve() / Path(path).name).relative_to(output.local.resolve())
        except ValueError:
            continue
        return str(output.remote.join(relative.as_posix()))
    return path


class ProgressReporter(Checkpoint):
    """Rank 0 writes epoch, step, the latest metrics and the newest and best checkpoint URIs into its
    DreemTrainingJob's status, so `kubectl get dtj` shows how far the run is and which checkpoint a restart
    resumes from: after every epoch's checkpoints, every `every_seconds` during an epoch, and at the end.

    A `Checkpoint` subclass placed after StorageSync, so the checkpoints it names are those just written.
    """

    def __init__(self, job: JobStatus, outputs: list[MirroredOutput], every_seconds: float = 30.0) -> None:
        self.job = job
        self.outputs = outputs
        self.every_seconds = every_seconds
        self._last = 0.0

    def progress(self, trainer: pl.Trainer, completed_epochs: int) -> ProgressReport:
        metrics = {
            name: round(float(value), 6)
            for name, value in trainer.callback_metrics.items()
            if isinstance(value, Tensor) and value.numel() == 1 and torch.isfinite(value)
        }
        report = ProgressReport(epoch=completed_epochs, step=trainer.global_step, metrics=metrics)
        checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        last = next((c.last_model_path for c in checkpoints if c.last_model_path), "")
        best = next((c.best_model_path for c in checkpoints if c.monitor and c.best_model_path), "")
        if last or best:
            report["lastCheckpoint"] = remote_uri(last or best, self.outputs)
        if best:
            report["bestCheckpoint"] = remote_uri(best, self.outputs)
        return report

    def _report(self, trainer: pl.Trainer, completed_epochs: int) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self.job.report(self.progress(trainer, completed_epochs))
            self._last = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, trainer.current_epoch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if time.monotonic() - self._last >= self.every_seconds:
            self._report(trainer, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not at validation end: with validation every epoch, Lightning saves the epoch's checkpoint at train
        # epoch end, so an epoch is reported done only once its checkpoint exists (resumable, uploading).
        self._report(trainer, trainer.current_epoch + 1)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._report(trainer, trainer.current_epoch)
