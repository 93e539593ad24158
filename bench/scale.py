"""Many videos: one epoch on 1, 8 and 32 copies of the bundled clip under different names, with `num_workers` 0 and 2.

Each copy is a symlinked pair (`two_flies_NNN.slp`, `two_flies_NNN.mp4`) in a temporary directory, so the only
thing that grows is the number of videos, never their content. Small crops (32 px), clips of 8 frames, test_resnet
and d_model 32 keep the model cheap, so the figure is about data loading. DREEM's default augmentations stay on,
so training rebuilds clips from decoded frames. The cache's budget is the default, or DREEM_FRAME_CACHE_MB if
set: decoded frames and the videos kept open share it (each open video charged about 24 bytes a pixel), so with
room to spare every video stays open and none is reopened, and with less they are reopened as it demands.

Every run is one whole epoch, as users train: 16 clips for 1 copy, 512 for 32, each read once, in shuffled order.
(Capping the epoch at 16 steps, as this bench once did, drew 16 clips from 512 nearly each from a video not yet
opened in the process, so it charged every clip the ~30 ms opening that a real epoch pays once per video.)
frames/s counts the steps after the first (the first waits for the loader workers to start); the start-up is
reported on its own. With `num_workers` 2, 1 copy's 16 steps are shorter than the loader's own transients: its
workers make up to 4 clips ahead during the first step, which is not counted, and the main process trains the
last prefetched clips alone after they finish; so its figure is a best case that a long epoch does not reach,
and 8 against 32 copies is the like-for-like pair there. On a busy machine the figure from the median step is
the steadier one, and steadier still the data path's time per clip measured with the copy counts interleaved in
one process, each through its whole epoch at the same pace (`data_path_per_clip_interleaved`: the model's share
of a step is the same for every count, so only this part can differ).

Peak RSS is sampled over the whole process tree (the training process and its loader workers; psutil sums each
one's RSS, so pages they share count once per process). The frame cache's budget holds per process that loads
data: the training process with `num_workers` 0, each worker otherwise, so the cache's share of RSS is at most
max(1, num_workers) x budget (plus the video being read), whatever the number of videos.

Prints one JSON document: per copy count and `num_workers`, frames/s and its ratio to 1 copy, peak RSS and its
growth over 1 copy beside the budget that bounds it, and the load average.
Usage: python -m bench.scale [COPIES...]   (about 5 minutes on 2 idle cores)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEMO_DATA, WORKLOAD, median, run_child
from dreem_trainer.config import validate
from dreem_trainer.config.loader import deep_merge
from dreem_trainer.data.cache import frame_cache_bytes
from dreem_trainer.data.dataset import ClipDataset

COPIES = (1, 8, 32)
WORKERS = (0, 2)
CLIP_LENGTH = 8
CLIPS_PER_COPY = 16
"""The 128 labelled frames of one copy make 16 clips of 8."""


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
        "checkpointing": {"save_top_k": 0, "save_last": False},
    }


def measure(tmp: Path, count: int, workers: int) -> dict[str, Any]:
    data = tmp / f"data-{count}"
    if not data.exists():
        copies_of_the_clip(data, count)
    out = tmp / f"out-{count}-{workers}"
    child, _ = run_child(["-m", "bench.train_worker", str(out), json.dumps(workload(data, workers)), "--sample-rss"])
    steady = child["step_seconds"][1:]
    return {
        "copies": count,
        "num_workers": workers,
        "steps": len(child["step_seconds"]),
        "frames_per_s": CLIP_LENGTH * len(steady) / sum(steady),
        "frames_per_s_median_step": CLIP_LENGTH / median(steady),
        "peak_rss_gib_with_workers": child["peak_tree_rss_gib"],
        "startup_to_first_step_s": child["startup_to_first_step_s"],
        "load_average_1min": os.getloadavg()[0],
    }


def data_path(tmp: Path, copies: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Seconds per clip of the data path alone (decode, augment, crop) in one process, every copy count through
    its whole epoch in shuffled order at the same pace (a clip of 1 copy for each 32 of 32 copies): a busy
    machine slows every count alike, so the ratio holds still. Each dataset has the run's budget."""
    datasets = {}
    for count in copies:
        config = validate(deep_merge(WORKLOAD, workload(tmp / f"data-{count}", 0)))
        datasets[count] = ClipDataset(config.dataset.train_dataset, seed=0)
    draw = np.random.default_rng(0)
    order = {count: draw.permutation(len(dataset)).tolist() for count, dataset in datasets.items()}
    seconds: dict[int, list[float]] = {count: [] for count in copies}
    most = max(len(dataset) for dataset in datasets.values())
    for step in range(1, most + 1):
        for count, dataset in datasets.items():
            while len(seconds[count]) < step * len(dataset) // most:
                started = time.perf_counter()
                dataset[order[count][len(seconds[count])]]
                seconds[count].append(time.perf_counter() - started)
    base = median(seconds[min(copies)])
    return {
        str(count): {"clips": len(times), "median_s_per_clip": median(times), "vs_fewest_copies": median(times) / base}
        for count, times in seconds.items()
    }


def main(copies: tuple[int, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(Path(tmp), count, workers) for count in copies for workers in WORKERS]
        clips = data_path(Path(tmp), copies)
    budget_gib = frame_cache_bytes() / 2**30
    for run in runs:
        base = next(r for r in runs if r["num_workers"] == run["num_workers"] and r["copies"] == min(copies))
        growth = run["peak_rss_gib_with_workers"] - base["peak_rss_gib_with_workers"]
        run["frames_per_s_vs_fewest_copies"] = run["frames_per_s"] / base["frames_per_s"]
        run["median_step_frames_per_s_vs_fewest_copies"] = (
            run["frames_per_s_median_step"] / base["frames_per_s_median_step"]
        )
        run["rss_growth_gib_vs_fewest_copies"] = growth
        run["frame_cache_bound_gib"] = max(1, run["num_workers"]) * budget_gib
    result = {
        "workload": f"N symlinked copies of two_flies, clip {CLIP_LENGTH}, crop 32, DREEM's augmentations, "
        f"test_resnet, d_model 32, 1 whole epoch ({CLIPS_PER_COPY} clips a copy)",
        "frame_cache_budget_gib_per_process": budget_gib,
        "targets": "frames/s within 10% of the fewest copies; RSS growth within the frame-cache budget "
        "(frame_cache_bound_gib: the budget times the processes that load data)",
        "load_average": os.getloadavg(),
        "runs": runs,
        "data_path_per_clip_interleaved": clips,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or COPIES)
