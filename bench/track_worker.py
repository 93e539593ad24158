"""Child process of bench/track_throughput.py: `train` makes a checkpoint, `track` times tracking and,
in the same process, its bound (decoding alone, the encoder alone).

Usage: python -m bench.track_worker train OUT | track CHECKPOINT OUT [WORKERS|default] [PRECISION]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

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


def track(checkpoint: str, out: str, workers: int | None, precision: str | None) -> None:
    """Track the clip (`workers` loader processes; None: tracking's default) in `precision` (None: the
    device's default), then, in the same process and precision, time what bounds it: decoding and cropping
    every clip, and the bare encoder forward over their crops."""
    import torch

    from dreem_trainer.data.discovery import SourcePair
    from dreem_trainer.data.formats import write_tracks
    from dreem_trainer.inference.run import placed_model, track_videos, tracking_base, tracking_workers

    split = {"anchors": "thorax", "crop_size": 128, "clip_length": 32}
    settings: dict[str, Any] = {"tracker": {"window_size": 8, "iou": "mult"}, "dataset": {"test_dataset": split}}
    if precision is not None:
        settings["trainer"] = {"precision": precision}
    config = validate(deep_merge(tracking_base(checkpoint), settings))
    pairs = [SourcePair(str(DEMO_DATA / "two_flies.slp"), str(DEMO_DATA / "two_flies.mp4"), 128)]
    model, placement = placed_model(config, checkpoint)  # CUDA when the machine has one
    ready = time.time()
    with torch.inference_mode(), placement.autocast():
        (result,) = track_videos(model, config.dataset.test_split(), pairs, config, num_workers=workers)
        bound = encoder_bound(model, config, pairs)
    write_tracks(result.video, result.predictions(), Path(out))
    frames = len(set(result.frame_indices.tolist()))
    print(
        json.dumps(
            {
                "frames": frames,
                "tracking_seconds": result.seconds,
                "workers": tracking_workers(config, placement.device) if workers is None else workers,
                "startup_s": ready - STARTED,
                "wall_s": time.time() - STARTED,
                "device": str(placement),
                "torch_threads": torch.get_num_threads(),
                **bound,
            }
        )
    )


def encoder_bound(model: Any, config: Any, pairs: list[Any]) -> dict[str, float]:
    """Decoding and cropping every clip in this process, then the encoder alone over each clip's crops as
    tracking feeds them (one forward per clip, split at INFERENCE_BATCH), after one warm-up forward."""
    import torch

    from dreem_trainer.data.dataset import ClipDataset

    device = next(model.parameters()).device

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    split = config.dataset.test_split()
    started = time.perf_counter()
    dataset = ClipDataset(split, seed=config.seed, pairs=pairs, frame_cache_mb=0, max_tracks=config.tracker.max_tracks)
    clips = [dataset[index] for index in range(len(dataset))]
    decode_s = time.perf_counter() - started
    model.visual_encoder(clips[0].crops.to(device))
    synchronize()
    started = time.perf_counter()
    for clip in clips:
        model.visual_encoder(clip.crops.to(device, non_blocking=True))
    synchronize()
    return {
        "bound_encoder_s": time.perf_counter() - started,
        "decode_crop_s": decode_s,
        "crops": float(sum(clip.num_instances for clip in clips)),
    }


if __name__ == "__main__":
    if sys.argv[1] == "train":
        train(sys.argv[2])
    else:
        workers = sys.argv[4] if len(sys.argv) > 4 else "default"
        precision = sys.argv[5] if len(sys.argv) > 5 else None
        track(sys.argv[2], sys.argv[3], None if workers == "default" else int(workers), precision)
