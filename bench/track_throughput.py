"""Tracking throughput on two_flies (resnet18, d_model 128, 1+1 layers, window 8), beside the reference.

Prints JSON: frames/s including decoding, start-up, wall time and peak RSS of the tracking process, on the
device tracking chose (CUDA with bf16 autocast when the machine has a GPU, else the CPU); and the
reference's figures from ../shared/peer when it has been built, with our/their ratios.
Usage: python bench/track_throughput.py [--no-peer] [--repeats N] [--checkpoint CKPT]
(--checkpoint: track with that model, e.g. tests/data/dreem/dreem_two_flies.ckpt, instead of training one)
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, median, peer_summary, run_child


def main() -> None:
    repeats = int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3
    given = sys.argv[sys.argv.index("--checkpoint") + 1] if "--checkpoint" in sys.argv else None
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = given or run_child(["-m", "bench.track_worker", "train", tmp])[0]["checkpoint"]
        runs = []
        for _ in range(repeats):
            timing, rss = run_child(["-m", "bench.track_worker", "track", checkpoint, tmp])
            runs.append(timing | {"peak_rss_gib": rss, "frames_per_s": timing["frames"] / timing["tracking_seconds"]})
        result: dict[str, object] = {
            "workload": "two_flies (128 frames, 2 flies), resnet18, d_model 128, 1+1 layers, window 8",
            "device": runs[0]["device"],
            "checkpoint": given or "trained here, 1 step",
            "ours": {
                "track_frames_per_s_incl_data_median": median([r["frames_per_s"] for r in runs]),
                "runs_frames_per_s": [round(r["frames_per_s"], 2) for r in runs],
                "startup_s_median": median([r["startup_s"] for r in runs]),
                "wall_s_median": median([r["wall_s"] for r in runs]),
                "peak_rss_gib": max(r["peak_rss_gib"] for r in runs),
            },
        }
        peer = None if "--no-peer" in sys.argv else peer_summary(Path(tmp) / "peer")
        if peer is not None:
            ours = result["ours"]
            assert isinstance(ours, dict)
            result["reference"] = {k: v for k, v in peer.items() if k.startswith("track")}
            result["ratios"] = {
                "track_frames_per_s": ours["track_frames_per_s_incl_data_median"]
                / peer["track_frames_per_s_incl_data"],
                "track_wall": ours["wall_s_median"] / peer["track_wall_s"],
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
