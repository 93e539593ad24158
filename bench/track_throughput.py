"""Tracking throughput on two_flies (resnet18, d_model 128, 1+1 layers, window 8), beside its bound and the
reference, measured in the same run.

Prints JSON: our frames/s including decoding, start-up, wall time and peak RSS of the tracking process, on the
device tracking chose (CUDA with bf16 autocast when the machine has a GPU, else the CPU), with tracking's
default loader workers for that device (1 on a GPU, 0 on a CPU) and with the other choice; on a CPU with
native bf16, also in bf16 (`trainer.precision: bf16-mixed`) beside its own bound in bf16; the bound, taken
in each tracking process after it tracked: the bare encoder forward over every crop of the clip (one forward
per clip, as tracking batches them), and separately the bare decoding and cropping; our frames/s over the
bound's; and the reference's figures from ../shared/peer when it has been built (PEER_HOME), with our/their ratios.
Usage: python bench/track_throughput.py [--no-peer] [--repeats N] [--checkpoint CKPT]
(--checkpoint: track with that model, e.g. tests/data/dreem/dreem_two_flies.ckpt, instead of training one)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import REPO, median, peer_summary, run_child
from dreem_trainer.hardware import cpu_has_native_bf16


def tracking_run(checkpoint: str, out: str, workers: str, precision: str | None = None) -> dict[str, Any]:
    command = ["-m", "bench.track_worker", "track", checkpoint, out, workers, *([precision] if precision else [])]
    timing, rss = run_child(command)
    return timing | {"peak_rss_gib": rss, "frames_per_s": timing["frames"] / timing["tracking_seconds"]}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    frames = runs[0]["frames"]
    encoder_s = median([r["bound_encoder_s"] for r in runs])
    ours = median([r["frames_per_s"] for r in runs])
    return {
        "device": runs[0]["device"],
        "loader_workers": runs[0]["workers"],
        "track_frames_per_s_incl_data_median": ours,
        "runs_frames_per_s": [round(r["frames_per_s"], 2) for r in runs],
        "bound_encoder_s_median": encoder_s,
        "bound_frames_per_s": frames / encoder_s,
        "ours_over_bound": ours * encoder_s / frames,
    }


def main() -> None:
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    given = sys.argv[sys.argv.index("--checkpoint") + 1] if "--checkpoint" in sys.argv else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = given or run_child(["-m", "bench.track_worker", "train", tmp])[0]["checkpoint"]
        # The sides alternate within each round, so the machine's drift falls on all of them alike.
        runs, other, bf16 = [], [], []
        for _ in range(repeats):
            runs.append(tracking_run(checkpoint, tmp, "default"))
            other_workers = "1" if runs[0]["workers"] == 0 else "0"
            other.append(tracking_run(checkpoint, tmp, other_workers))
            if runs[0]["device"].startswith("cpu") and cpu_has_native_bf16():
                bf16.append(tracking_run(checkpoint, tmp, "default", "bf16-mixed"))
        everything = runs + other
        frames = runs[0]["frames"]
        ours = median([r["frames_per_s"] for r in runs])
        encoder_s = median([r["bound_encoder_s"] for r in everything])
        decode_s = median([r["decode_crop_s"] for r in everything])
        result: dict[str, Any] = {
            "workload": "two_flies (128 frames, 2 flies), resnet18, d_model 128, 1+1 layers, window 8",
            "device": runs[0]["device"],
            "torch_threads": runs[0]["torch_threads"],
            "checkpoint": given or "trained here, 1 step",
            "ours": {
                "track_frames_per_s_incl_data_median": ours,
                "loader_workers": runs[0]["workers"],
                "runs_frames_per_s": [round(r["frames_per_s"], 2) for r in runs],
                "startup_s_median": median([r["startup_s"] for r in runs]),
                "wall_s_median": median([r["wall_s"] for r in runs]),
                "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
            },
            "ours_other_loader_workers": summary(other),
            "bound": {
                "crops": runs[0]["crops"],
                "encoder_s_median": encoder_s,
                "frames_per_s": frames / encoder_s,
                "runs_encoder_s": [round(r["bound_encoder_s"], 3) for r in everything],
                "decode_crop_s_median": decode_s,
                "decode_crop_frames_per_s": frames / decode_s,
                "serial_frames_per_s": frames / (encoder_s + decode_s),
            },
            "ratios": {"ours_over_bound": ours * encoder_s / frames},
        }
        if bf16:
            result["ours_cpu_bf16"] = summary(bf16) | {"over_float32": median([r["frames_per_s"] for r in bf16]) / ours}
        peer = None if "--no-peer" in sys.argv else peer_summary(Path(tmp) / "peer")
        if peer is not None:
            result["reference"] = {k: v for k, v in peer.items() if k.startswith("track")}
            result["ratios"] |= {
                "reference_over_bound": peer["track_frames_per_s_incl_data"] * encoder_s / frames,
                "track_frames_per_s": ours / peer["track_frames_per_s_incl_data"],
                "track_wall": result["ours"]["wall_s_median"] / peer["track_wall_s"],
            }
            if bf16:
                bf16_fps = result["ours_cpu_bf16"]["track_frames_per_s_incl_data_median"]
                result["ratios"]["cpu_bf16_track_frames_per_s"] = bf16_fps / peer["track_frames_per_s_incl_data"]
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
