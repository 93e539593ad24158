"""Child process of bench/train_throughput.py: trains the reference workload and prints its timeline."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
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


class TreeRss:
    """Peak RSS of this process and its loader workers together, sampled: ru_maxrss sees one process only."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.peak = 0
        self.every_s = every_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self.done.wait(self.every_s):
            total = 0
            for process in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += process.memory_info().rss
            self.peak = max(self.peak, total)


def main(out: str, overrides: dict[str, Any], sample_rss: bool = False) -> None:
    """Train the workload; `overrides` (JSON) refine it, e.g. s3:// data and outputs."""
    raw = deep_merge(WORKLOAD, {"logging": {"save_dir": f"{out}/logs"}, "checkpointing": {"dirpath": f"{out}/models"}})
    timeline = StepTimes()
    rss = TreeRss()
    if sample_rss:
        rss.thread.start()
    run_training(validate(deep_merge(raw, overrides)), callbacks=[timeline])
    rss.done.set()
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
                "peak_tree_rss_gib": rss.peak / 2**30,
            }
        )
    )


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a != "--sample-rss"]
    main(arguments[0], json.loads(arguments[1]) if len(arguments) > 1 else {}, "--sample-rss" in sys.argv)
