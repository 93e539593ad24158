"""Tracking throughput on two_flies (resnet18, d_model 128, 1+1 layers, window 8), beside its bound and the
reference, measured in the same run.

Prints JSON: our frames/s including decoding, start-up, wall time and peak RSS of the tracking process, on the
device tracking chose (CUDA with bf16 autocast when the machine has a GPU, else the CPU), with tracking's
default loader worker and with none (decoding in the tracking process); the bound, taken in each tracking
process after it tracked: the bare encoder forward over every crop of the clip (one forward per clip, as
tracking batches them), and separately the bare decoding and cropping; our frames/s over the bound's; and the
reference's figures from ../shared/peer when it has been built (PEER_HOME), with our/their ratios.
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


def tracking_runs(checkpoint: str, out: str, workers: str | None, repeats: int) -> list[dict[str, Any]]:
    runs = []
    for _ in range(repeats):
        timing, rss = run_child(["-m", "bench.track_worker", "track", checkpoint, out, *([workers] if workers else [])])
        runs.append(timing | {"peak_rss_gib": rss, "frames_per_s": timing["frames"] / timing["tracking_seconds"]})
    return runs


def main() -> None:
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    given = sys.argv[sys.argv.index("--checkpoint") + 1] if "--checkpoint" in sys.argv else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = given or run_child(["-m", "bench.track_worker", "train", tmp])[0]["checkpoint"]
        runs = tracking_runs(checkpoint, tmp, None, repeats)
        serial = tracking_runs(checkpoint, tmp, "0", repeats)
        everything = runs + serial
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
                "no_worker_frames_per_s_median": median([r["frames_per_s"] for r in serial]),
                "no_worker_runs_frames_per_s": [round(r["frames_per_s"], 2) for r in serial],
                "startup_s_median": median([r["startup_s"] for r in runs]),
                "wall_s_median": median([r["wall_s"] for r in runs]),
                "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
            },
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
        peer = None if "--no-peer" in sys.argv else peer_summary(Path(tmp) / "peer")
        if peer is not None:
            result["reference"] = {k: v for k, v in peer.items() if k.startswith("track")}
            result["ratios"] |= {
                "reference_over_bound": peer["track_frames_per_s_incl_data"] * encoder_s / frames,
                "track_frames_per_s": ours / peer["track_frames_per_s_incl_data"],
                "track_wall": result["ours"]["wall_s_median"] / peer["track_wall_s"],
            }
    result["load_average_before"] = [round(x, 2) for x in load_before]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
