"""Callbacks: plain per-epoch progress lines for logs that are not a terminal."""

from __future__ import annotations

import sys
import time

import lightning.pytorch as pl


class EpochLines(pl.Callback):
    """One line per epoch (rank 0), for pod logs and CI where a live progress bar is noise."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.started = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        shown = []
        for name in ("train_loss_epoch", "val_loss", "val_idf1", "val_mota", "val_num_switches"):
            value = trainer.callback_metrics.get(name)
            if value is not None:
                shown.append(f"{name.removesuffix('_epoch')} {float(value):.4g}")
        limit = "" if trainer.max_epochs in (None, -1) else f"/{trainer.max_epochs}"
        elapsed = time.monotonic() - self.started
        print(
            f"epoch {trainer.current_epoch + 1}{limit}: {', '.join(shown)} ({elapsed:.1f} s)",
            file=sys.stdout,
            flush=True,
        )
