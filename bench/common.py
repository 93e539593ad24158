"""Shared pieces of the benchmarks: the reference workload, child-process measurement, the peer run."""

from __future__ import annotations

import json
import os
import re
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PEER_HOME = Path(os.environ.get("PEER_HOME", REPO / ".peer"))
TWO_FLIES = SHARED / "data" / "sleap" / "two_flies"
DEMO_DATA = REPO / "examples" / "demo" / "data"
FRAMES_PER_CLIP = 32

# The workload of the reference figures: two_flies, crop 128, clip 32, resnet18, d_model 128, 1+1 layers.
WORKLOAD: dict[str, Any] = {
    "model": {
        "d_model": 128,
        "nhead": 1,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "encoder_cfg": {"model_name": "resnet18", "backend": "timm", "pretrained": False},
    },
    "optimizer": {"name": "Adam", "lr": 0.0001},
    "dataset": {
        "train_dataset": {"anchors": "thorax", "crop_size": 128, "clip_length": 32, "dir": {"path": str(DEMO_DATA)}},
        "val_dataset": {"anchors": "thorax", "crop_size": 128, "clip_length": 32, "dir": {"path": str(DEMO_DATA)}},
    },
    "dataloader": {"train_dataloader": {"shuffle": True, "num_workers": 0}},
    "logging": {"logger_type": "CSVLogger", "name": "bench"},
    "checkpointing": {"save_top_k": 1},
    "early_stopping": None,
    "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 2},
}


def run_child(args: list[str], env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    """Run a worker that prints one JSON line last; return it and the child's peak RSS in GiB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak_kib <= before:
        peak_kib = before  # ru_maxrss is the largest child so far; workers run largest-last only by chance
    return json.loads(result.stdout.strip().splitlines()[-1]), peak_kib / 2**20


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def peer_summary(out: Path) -> dict[str, float] | None:
    """Run the reference implementation (../shared/peer) on two_flies and parse its summary, if built."""
    if not (PEER_HOME / "venv" / "bin" / "dreem").exists() or not (SHARED / "peer" / "run.sh").exists():
        return None
    env = os.environ | {"PEER_HOME": str(PEER_HOME)}
    subprocess.run(
        ["bash", str(SHARED / "peer" / "run.sh"), str(out), str(TWO_FLIES)], env=env, check=True, capture_output=True
    )
    text = (out / "summary.txt").read_text()

    def number(pattern: str) -> float:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else float("nan")

    return {
        "train_frames_per_s_incl_data": number(r"incl\. data\s+[\d.]+ s/step\s+->\s+[\d.]+ steps/s, ([\d.]+) frames/s"),
        "train_frames_per_s_compute": number(r"fwd\+bwd\+opt\s+[\d.]+ s/step\s+->\s+[\d.]+ steps/s, ([\d.]+) frames/s"),
        "train_wall_s": number(r"train: wall\s+([\d.]+) s"),
        "train_peak_rss_gib": number(r"train: wall\s+[\d.]+ s\s+peak RSS\s+([\d.]+) MiB") / 1024,
        "fit_loop_s": number(r"fit loop total ([\d.]+) s"),
        "track_frames_per_s_incl_data": number(r"incl\. data ([\d.]+) frames/s\n"),
        "track_wall_s": number(r"track: wall\s+([\d.]+) s"),
        "track_peak_rss_gib": number(r"track: wall\s+[\d.]+ s\s+peak RSS\s+([\d.]+) MiB") / 1024,
        "checkpoint_mb": max((p.stat().st_size for p in (out / "models").glob("*.ckpt")), default=0) / 1e6,
    }
