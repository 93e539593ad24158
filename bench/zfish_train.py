"""Large frames: training on the synthetic ten_zfish (bench/zfish.py) against its compute bound.

Prints JSON: the wall time of N epochs (default 10; BENCH_ZFISH_EPOCHS) from the first step to the end of
training, start-up, checkpoint size, and the compute bound of the same work (N epochs of bare model steps on the
same crops, all timed, bench/bound_worker.py), with their ratio; the target is at most 1.15.
The bound is measured just before training and again just after, and the ratio is to their mean: this
machine's speed drifts by 10-15% within minutes (one run's ratio read 1.21, the next day's 1.06), and a
bound taken on one side only puts all of that drift into the ratio.
Usage: python -m bench.zfish_train
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from bench.common import run_child
from bench.zfish import make

EPOCHS = int(os.environ.get("BENCH_ZFISH_EPOCHS", "10"))


def workload() -> dict[str, Any]:
    data = str(make())
    split = {"dir": {"path": data}, "anchors": "center", "crop_size": 128, "clip_length": 32}
    return {
        "dataset": {"train_dataset": split, "val_dataset": dict(split)},
        "trainer": {"max_epochs": EPOCHS},
    }


def bound_seconds(overrides: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    bound, _ = run_child(["-m", "bench.bound_worker", json.dumps(overrides), str(EPOCHS)])
    return bound["train_steps_s"] + bound["val_forwards_s"], bound


def main() -> None:
    overrides = workload()
    before_s, before = bound_seconds(overrides)
    with tempfile.TemporaryDirectory() as tmp:
        ours, rss = run_child(["-m", "bench.train_worker", tmp, json.dumps(overrides)])
    after_s, after = bound_seconds(overrides)
    training_s = sum(ours["epoch_seconds"])
    bound_s = (before_s + after_s) / 2
    result = {
        "workload": f"synthetic ten_zfish: 32 frames of 3712x3712, 10 fish, crop 128, resnet18, {EPOCHS} epochs, CPU",
        "epochs_s": training_s,
        "epoch_seconds": [round(s, 2) for s in ours["epoch_seconds"]],
        "compute_bound_s": bound_s,
        "compute_bound_before_and_after_s": [before_s, after_s],
        "ratio_to_bound": training_s / bound_s,
        "target_ratio": 1.15,
        "startup_to_first_step_s": ours["startup_to_first_step_s"],
        "checkpoint_mb": ours["checkpoint_mb"],
        "peak_rss_gib": rss,
        "bound_detail_before": before,
        "bound_detail_after": after,
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
