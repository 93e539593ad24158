"""Training and tracking frames/s on the Cell Tracking Challenge sequence of ../shared/data (11 frames,
19-21 cells each), with the reference workload's model (resnet18, d_model 128, 1+1 layers) and 32-pixel
crops around each cell.

Run: `.venv/bin/python -m bench.microscopy`. The reference implementation's benchmark script reads SLEAP
files only, so there is no same-run reference figure for this sequence.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, WORKLOAD
from bench.train_worker import StepTimes
from dreem_trainer.config import validate
from dreem_trainer.config.loader import deep_merge
from dreem_trainer.data.crops import cut_crops
from dreem_trainer.data.discovery import discover
from dreem_trainer.inference.run import track_videos
from dreem_trainer.models.checkpoint import load_model
from dreem_trainer.training.run import run_training

CELLS = REPO / "tests" / "data" / "cell_tracking"
CLIP = 11  # the whole sequence in one clip: one optimizer step per epoch
EPOCHS = 6


def config(out: Path) -> dict[str, Any]:
    split = {
        "dir": {"path": str(CELLS), "labels_suffix": ".csv", "vid_suffix": ".tif"},
        "anchors": "centroid",
        "crop_size": 32,
        "clip_length": CLIP,
    }
    return deep_merge(
        WORKLOAD,
        {
            "dataset": {"train_dataset": split, "val_dataset": None},
            "trainer": {"max_epochs": EPOCHS, "limit_val_batches": 0},
            "logging": None,
            "checkpointing": {"dirpath": str(out / "models"), "monitor": ["train_loss"]},
        },
    )


def crop_seconds(instances: int = 300, size: int = 16, repeats: int = 20) -> tuple[float, float]:
    """Median seconds to crop `instances` cells from one 592x608 frame: in one cut, and one by one (the way
    crops were cut before, one padded copy of the frame per instance)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(592, 608, 1)).astype(np.uint8)
    centers = rng.uniform(0, 592, size=(instances, 2))
    together, apart = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        cut_crops(image, centers, size)
        together.append(time.perf_counter() - started)
        started = time.perf_counter()
        for center in centers:
            cut_crops(image, center[None], size)
        apart.append(time.perf_counter() - started)
    return statistics.median(together), statistics.median(apart)


def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        out = Path(workdir)
        resolved = validate(config(out))
        timeline = StepTimes()
        run_training(resolved, callbacks=[timeline])
        steps = timeline.steps[1:]  # the first step includes warm-up
        model = load_model(next((out / "models").glob("*.ckpt")))
        pairs = discover(resolved.dataset.train_dataset)
        rates = []
        for _ in range(3):
            started = time.perf_counter()
            (result,) = track_videos(model, resolved.dataset.test_split(), pairs, resolved)
            rates.append(len(set(result.frame_indices.tolist())) / (time.perf_counter() - started))
    together, apart = crop_seconds()
    print(
        json.dumps(
            {
                "crops_300_cells_16px_one_cut_ms": round(together * 1000, 2),
                "crops_300_cells_16px_one_by_one_ms": round(apart * 1000, 2),
                "sequence": "cell_tracking/test_0 (11 frames, 19-21 cells, 592x608)",
                "training_frames_per_s_incl_data": round(CLIP / statistics.median(steps), 1),
                "training_median_step_s": round(statistics.median(steps), 3),
                "tracking_frames_per_s_incl_decoding_median_of_3": round(statistics.median(rates), 1),
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
