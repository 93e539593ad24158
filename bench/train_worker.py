"""Child process of bench/train_throughput.py: trains the reference workload and prints its timeline."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

STARTED = psutil.Process().create_time()

import lightning.pytorch as pl  # noqa: E402

from bench.common import WORKLOAD  # noqa: E402
from dreem_trainer.config import validate  # noqa: E402
from dreem_trainer.config.loader import deep_merge  # noqa: E402
from dreem_trainer.training.run import run_training  # noqa: E402


class StepTimes(pl.Callback):
    """Wall time of each training step including the wait for its batch (data loading)."""

    def __init__(self) -> None:
        self.first_step_done: float | None = None
        self.previous: float | None = None
        self.steps: list[float] = []
        self.epoch_started = 0.0
        self.epochs: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.previous = self.epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epochs.append(time.perf_counter() - self.epoch_started)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        if self.first_step_done is None:
            self.first_step_done = time.time()
        assert self.previous is not None
        self.steps.append(now - self.previous)
        self.previous = now


def main(out: str, overrides: dict[str, Any]) -> None:
    """Train the workload; `overrides` (JSON) refine it, e.g. s3:// data and outputs."""
    raw = deep_merge(WORKLOAD, {"logging": {"save_dir": f"{out}/logs"}, "checkpointing": {"dirpath": f"{out}/models"}})
    timeline = StepTimes()
    run_training(validate(deep_merge(raw, overrides)), callbacks=[timeline])
    assert timeline.first_step_done is not None
    sizes = [p.stat().st_size for p in Path(out, "models").glob("*.ckpt") if not p.is_symlink()] or [0]
    print(
        json.dumps(
            {
                "startup_to_first_step_s": timeline.first_step_done - STARTED,
                "step_seconds": timeline.steps,
                "epoch_seconds": timeline.epochs,
                "checkpoint_files": len(sizes),
                "checkpoint_mb": max(sizes) / 1e6,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
