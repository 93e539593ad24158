"""Training throughput on the reference workload, side by side with the reference implementation.

Prints JSON: frames/s including data loading (median step, and over the whole run), seconds from
process start to the first optimizer step, peak RSS, checkpoint size; and the same for dreem-track
0.5.1 when ../shared/peer has been built (PEER_HOME, default ./.peer), with our/their ratios. On a CPU with
native bf16 (AVX512-BF16 or AMX) it also trains with `trainer.precision: bf16-mixed` (float32 is the CPU's
default) and reports those frames/s beside the float32 ones.
Usage: python bench/train_throughput.py [--no-peer]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import FRAMES_PER_CLIP, REPO, median, peer_summary, run_child
from dreem_trainer.hardware import cpu_has_native_bf16

BF16 = {"trainer": {"precision": "bf16-mixed"}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours, rss = run_child(["-m", "bench.train_worker", tmp], env=None)
        steps = ours["step_seconds"]
        result: dict[str, Any] = {
            "workload": "two_flies, crop 128, clip 32, resnet18, d_model 128, 1+1 layers, 2 epochs, CPU",
            "ours": {
                "train_frames_per_s_incl_data_median_step": FRAMES_PER_CLIP / median(steps),
                "train_frames_per_s_incl_data_all_steps": FRAMES_PER_CLIP * len(steps) / sum(steps),
                "startup_to_first_step_s": ours["startup_to_first_step_s"],
                "peak_rss_gib": rss,
                "checkpoint_mb": ours["checkpoint_mb"],
                "checkpoint_files": ours["checkpoint_files"],
                "step_seconds": [round(s, 3) for s in steps],
            },
        }
        if cpu_has_native_bf16():
            bf16, _ = run_child(["-m", "bench.train_worker", f"{tmp}/bf16", json.dumps(BF16)], env=None)
            fps = FRAMES_PER_CLIP * len(bf16["step_seconds"]) / sum(bf16["step_seconds"])
            result["ours_cpu_bf16"] = {
                "train_frames_per_s_incl_data_median_step": FRAMES_PER_CLIP / median(bf16["step_seconds"]),
                "train_frames_per_s_incl_data_all_steps": fps,
                "over_float32": fps / result["ours"]["train_frames_per_s_incl_data_all_steps"],
            }
        peer = None if "--no-peer" in sys.argv else peer_summary(Path(tmp) / "peer")
        if peer is not None:
            result["reference"] = peer
            result["ratios"] = {
                "train_frames_per_s": result["ours"]["train_frames_per_s_incl_data_all_steps"]
                / peer["train_frames_per_s_incl_data"],
                "peak_rss": rss / peer["train_peak_rss_gib"],
            }
            if "ours_cpu_bf16" in result:
                bf16_fps = result["ours_cpu_bf16"]["train_frames_per_s_incl_data_all_steps"]
                result["ratios"]["cpu_bf16_train_frames_per_s"] = bf16_fps / peer["train_frames_per_s_incl_data"]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
