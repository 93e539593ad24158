"""Child process of bench/track_throughput.py: `train` makes a checkpoint, `track` times tracking."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psutil

STARTED = psutil.Process().create_time()

from bench.common import DEMO_DATA, WORKLOAD  # noqa: E402
from dreem_trainer.config import validate  # noqa: E402
from dreem_trainer.config.loader import deep_merge  # noqa: E402


def train(out: str) -> None:
    from dreem_trainer.training.run import run_training

    raw = deep_merge(
        WORKLOAD,
        {
            "trainer": {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 0},
            "logging": None,
            "checkpointing": {"dirpath": f"{out}/models", "monitor": ["train_loss"]},
        },
    )
    run_training(validate(raw))
    print(json.dumps({"checkpoint": str(next(Path(out, "models").glob("epoch=*.ckpt")))}))


def track(checkpoint: str, out: str) -> None:
    import torch

    from dreem_trainer.data.discovery import SourcePair
    from dreem_trainer.data.formats import write_tracks
    from dreem_trainer.inference.run import placed_model, track_videos, tracking_base

    split = {"anchors": "thorax", "crop_size": 128, "clip_length": 32}
    settings = {"tracker": {"window_size": 8, "iou": "mult"}, "dataset": {"test_dataset": split}}
    config = validate(deep_merge(tracking_base(checkpoint), settings))
    pairs = [SourcePair(str(DEMO_DATA / "two_flies.slp"), str(DEMO_DATA / "two_flies.mp4"), 128)]
    model, placement = placed_model(config, checkpoint)  # CUDA when the machine has one
    ready = time.time()
    with torch.inference_mode(), placement.autocast():
        (result,) = track_videos(model, config.dataset.test_split(), pairs, config)
    write_tracks(result.video, result.predictions(), Path(out))
    frames = len(set(result.frame_indices.tolist()))
    print(
        json.dumps(
            {
                "frames": frames,
                "tracking_seconds": result.seconds,
                "startup_s": ready - STARTED,
                "wall_s": time.time() - STARTED,
                "device": str(placement),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2])
    else:
        track(sys.argv[2], sys.argv[3])
