"""Many videos: one epoch on 1, 8 and 32 copies of the bundled clip under different names, small crops and model.

Prints JSON: for each number of copies and each `num_workers` (0 and 2), frames/s over the epoch's steps and the
peak RSS of the training process and its loader workers together (sampled), with the ratios to the 1-copy
figure. The copies are symlinks, so the only thing that grows is the number of videos, never their content.
Usage: python -m bench.scale [COPIES...]
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import DEMO_DATA, run_child

COPIES = (1, 8, 32)
WORKERS = (0, 2)
CLIP_LENGTH = 32


def copies_of_the_clip(directory: Path, copies: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index in range(copies):
        for suffix in (".slp", ".mp4"):
            (directory / f"two_flies_{index:03d}{suffix}").symlink_to(DEMO_DATA / f"two_flies{suffix}")
    return directory


def workload(data: Path, workers: int) -> dict[str, Any]:
    split = {"dir": {"path": str(data)}, "anchors": "thorax", "crop_size": 32, "clip_length": CLIP_LENGTH}
    return {
        "model": {"d_model": 32, "nhead": 2, "encoder_cfg": {"model_name": "test_resnet"}},
        "dataset": {"train_dataset": split, "val_dataset": None},
        "dataloader": {"train_dataloader": {"shuffle": True, "num_workers": workers}},
        "trainer": {"max_epochs": 1, "limit_val_batches": 0},
    }


def main(copies: tuple[int, ...]) -> None:
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in copies:
            data = copies_of_the_clip(Path(tmp) / f"data-{count}", count)
            for workers in WORKERS:
                out = Path(tmp) / f"out-{count}-{workers}"
                child, _ = run_child(
                    ["-m", "bench.train_worker", str(out), json.dumps(workload(data, workers)), "--sample-rss"]
                )
                steps = child["step_seconds"]
                runs.append(
                    {
                        "copies": count,
                        "num_workers": workers,
                        "clips": len(steps),
                        "frames_per_s": CLIP_LENGTH * len(steps) / sum(steps),
                        "peak_rss_gib_with_workers": child["peak_tree_rss_gib"],
                        "startup_to_first_step_s": child["startup_to_first_step_s"],
                        "load_average_1min": os.getloadavg()[0],
                    }
                )
    for run in runs:
        base = next(r for r in runs if r["num_workers"] == run["num_workers"] and r["copies"] == min(copies))
        run["frames_per_s_vs_fewest_copies"] = run["frames_per_s"] / base["frames_per_s"]
        run["rss_growth_gib_vs_fewest_copies"] = run["peak_rss_gib_with_workers"] - base["peak_rss_gib_with_workers"]
    result = {
        "workload": f"N symlinked copies of two_flies, clip {CLIP_LENGTH}, crop 32, test_resnet, d_model 32, 1 epoch",
        "targets": "frames/s within 10% of the fewest copies; RSS growth within the frame-cache budget",
        "runs": runs,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or COPIES)
