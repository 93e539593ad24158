"""Record DREEM 0.5.1's tracker, frame by frame, for tests/unit/tracking/test_dreem_parity.py.

Run with the reference implementation's interpreter (it imports DREEM; nothing here is part of dreem):

    /work/main/.peer/venv/bin/python scripts/make_dreem_tracker_fixture.py tests/data/dreem/tracker_parity.pt

DREEM's own `Tracker` tracks sleap/two_flies with the shared DREEM checkpoint (anchor thorax, crop 128, as
/work/shared/data/dreem/track.yaml), once per scenario below. For every frame it records what the tracker
was given (instances in DREEM's order: boxes, labelled track index, keypoints) and what it decided (track ids,
tracking scores, the low-confidence flag); for every frame it associated, the window it built (frame and
track of each column) and the model's logits for the query instances against it. The "noisy" scenarios add
seeded Gaussian noise to the logits so that tracks break, start and end, which DREEM's trained model
alone never does on this clip. One scenario drops one fly in some frames, to exercise DREEM's
single-detection feature overwrite; it also records the features of the window instances as the model
saw them, and every instance's own features.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import sleap_io as sio
import torch
from dreem.cli import build_config
from dreem.inference.tracker import Tracker
from dreem.io import Config
from dreem.io.flags import FrameFlagCode
from dreem.models import GTRRunner

DATA = Path("/work/shared/data")
CHECKPOINT = DATA / "dreem/dreem_two_flies.ckpt"

SCENARIOS: dict[str, dict] = {
    # tracker: DREEM Tracker keyword arguments; noise: std of the Gaussian noise added to the logits;
    # frames: how many frames of the clip; drop: frames where a track's instance is removed.
    "defaults": {"tracker": {"overlap_thresh": 0.01, "iou": "mult", "window_size": 8}, "noise": 0.0, "frames": 128},
    "noisy_mult_iou": {"tracker": {"window_size": 2, "overlap_thresh": 0.5}, "noise": 4.0, "frames": 64},
    "noisy_no_iou_max_tracks": {
        "tracker": {"iou": None, "overlap_thresh": 0.3, "window_size": 4, "max_tracks": 4},
        "noise": 4.0,
        "frames": 64,
    },
    "noisy_max_iou_flat_threshold_max_gap": {
        "tracker": {"iou": "max", "mult_thresh": False, "overlap_thresh": 0.95, "window_size": 1, "max_gap": 2},
        "noise": 4.0,
        "frames": 64,
    },
    "noisy_center_distance": {
        "tracker": {
            "iou": None,
            "max_center_dist": 5.0,
            "distance_penalty_multiplier": 2.0,
            "overlap_thresh": 0.45,
            "window_size": 2,
        },
        "noise": 4.0,
        "frames": 64,
    },
    "untracked_at_max_tracks": {
        "tracker": {
            "max_tracks": 1,
            "window_size": 1,
            "max_gap": 2,
            "confidence_threshold": 0.3,
            "temperature": 0.5,
            "iou": None,
        },
        "noise": 2.0,
        "frames": 40,
        "drop": {"M": [9, 10, 11, 12]},
    },
    "noisy_angles_front_back": {
        "tracker": {
            "max_angle_diff": 10.0,
            "front_nodes": ["head"],
            "back_nodes": ["thorax"],
            "iou": None,
            "overlap_thresh": 0.45,
            "window_size": 2,
        },
        "noise": 4.0,
        "frames": 64,
    },
    "noisy_angles_principal_axis": {
        "tracker": {
            "max_angle_diff": 5.0,
            "angle_diff_penalty_multiplier": 3.0,
            "iou": "max",
            "overlap_thresh": 0.45,
            "window_size": 2,
        },
        "noise": 4.0,
        "frames": 64,
    },
    "single_detections": {
        "tracker": {},
        "noise": 0.0,
        "frames": 40,
        "drop": {"M": [9, 10, 11, 12, 20, 21, 30], "F": [15, 16, 31]},
        "features": True,
    },
}


def labels_dropping(drop: dict[str, list[int]], frames: int, directory: Path) -> Path:
    """two_flies with the named tracks' instances removed from the given frames, cut to `frames` frames."""
    labels = sio.load_slp(str(DATA / "sleap/two_flies.slp"))
    for labelled_frame in labels.labeled_frames:
        labelled_frame.instances = [
            instance
            for instance in labelled_frame.instances
            if labelled_frame.frame_idx not in drop.get(instance.track.name, [])
        ]
    labels.labeled_frames = [lf for lf in labels.labeled_frames if lf.frame_idx < frames]
    labels.videos[0].replace_filename(str(DATA / "sleap/two_flies.mp4"), open=False)
    path = directory / "two_flies.slp"
    labels.save(str(path))
    return path


class RecordingModel:
    """DREEM's model as the tracker calls it, with the window and the logits recorded (and noise added)."""

    def __init__(self, model: torch.nn.Module, noise: float, features: bool) -> None:
        self.model = model
        self.noise = noise
        self.features = features
        self.generator = torch.Generator().manual_seed(0)
        self.calls: list[dict] = []

    def eval(self) -> RecordingModel:
        self.model.eval()
        return self

    def __call__(self, ref_instances, query_instances, retain_crops=False):
        output = self.model(ref_instances, query_instances, retain_crops=retain_crops)
        matrix = output[-1].matrix
        if self.noise:
            matrix = matrix + self.noise * torch.randn(matrix.shape, generator=self.generator)
            output[-1].matrix = matrix
        n_query = len(query_instances)
        window = ref_instances[: len(ref_instances) - n_query]
        record = {
            "window_frames": torch.tensor([i.frame.frame_id.item() for i in window]),
            "window_tracks": torch.tensor([i.pred_track_id.item() for i in window]),
            "logits": matrix[:, : len(window)].detach().clone().float(),
        }
        if self.features:
            record["window_features"] = torch.stack([i.features.reshape(-1) for i in window]).detach().clone()
        self.calls.append(record)
        return output


def run(name: str, scenario: dict, runner: GTRRunner, base_cfg, work: Path) -> dict:
    np.random.seed(0)  # DREEM shuffles the instances of each frame with numpy's global generator
    labels_path = labels_dropping(scenario.get("drop", {}), scenario["frames"], work / name)
    pred_cfg = Config(base_cfg)
    dataset = pred_cfg.get_dataset(
        label_files=[str(labels_path)],
        vid_files=[str(DATA / "sleap/two_flies.mp4")],
        mode="test",
        overrides={"max_tracks": scenario["tracker"].get("max_tracks", float("inf")), "save_frame_meta": False},
    )
    tracker = Tracker(**scenario["tracker"])
    model = RecordingModel(runner.model, scenario["noise"], scenario.get("features", False))
    frames_out: list[dict] = []
    for clip_index in range(len(dataset)):
        clip = dataset[clip_index]
        given = [
            {
                "frame_idx": frame.frame_id.item(),
                "boxes": torch.cat([i.bbox for i in frame.instances]).float()
                if frame.instances
                else torch.zeros(0, 1, 4),
                "true_tracks": torch.tensor([i.gt_track_id.item() for i in frame.instances], dtype=torch.long),
                "points": torch.tensor(
                    np.array([[i.pose[n] for n in NODE_NAMES] for i in frame.instances], dtype=np.float32)
                ).reshape(-1, len(NODE_NAMES), 2),
                "crops": [i.crop.clone() for i in frame.instances],
            }
            for frame in clip
        ]
        calls_before = len(model.calls)
        with torch.no_grad():
            tracked = tracker(model, clip)
        del calls_before
        for frame, record in zip(tracked, given, strict=True):
            if scenario.get("features"):
                with torch.no_grad():
                    crops = torch.cat(record["crops"]) if record["crops"] else None
                    record["features"] = runner.model.visual_encoder(crops) if crops is not None else torch.zeros(0)
            del record["crops"]
            record["tracks"] = torch.tensor([i.pred_track_id.item() for i in frame.instances], dtype=torch.long)
            record["scores"] = torch.tensor([float(i.track_score) for i in frame.instances], dtype=torch.float32)
            record["low_confidence"] = frame.has_flag(FrameFlagCode.LOW_CONFIDENCE)
            frames_out.append(record)
    # The keys a scenario leaves out take the Tracker class's defaults; of those, only iou differs from ours.
    tracker_keys = {"iou": None, **scenario["tracker"]}
    return {"tracker": tracker_keys, "noise": scenario["noise"], "frames": frames_out, "calls": model.calls}


def pack(scenario: dict) -> dict:
    """Per-frame and per-call records as a few flat tensors (thousands of small tensors would double the file)."""
    frames, calls = scenario["frames"], scenario["calls"]
    packed = {"tracker": scenario["tracker"], "noise": scenario["noise"]}
    packed["frame_idx"] = torch.tensor([f["frame_idx"] for f in frames])
    packed["counts"] = torch.tensor([len(f["true_tracks"]) for f in frames])
    packed["low_confidence"] = torch.tensor([bool(f["low_confidence"]) for f in frames])
    for key in ("boxes", "true_tracks", "points", "tracks", "scores", "features"):
        if key in frames[0]:
            packed[key] = torch.cat([f[key] for f in frames])
    packed["window_sizes"] = torch.tensor([len(c["window_frames"]) for c in calls])
    for key in ("window_frames", "window_tracks", "window_features"):
        if key in calls[0]:
            packed[key] = torch.cat([c[key] for c in calls])
    packed["logits"] = torch.cat([c["logits"].reshape(-1) for c in calls])
    return packed


NODE_NAMES = ["head", "thorax", "abdomen", "wingL", "wingR", "forelegL4", "forelegR4", "midlegL4", "midlegR4",
              "hindlegL4", "hindlegR4", "eyeL", "eyeR"]  # fmt: skip


def main() -> None:
    out = Path(sys.argv[1])
    torch.manual_seed(0)
    base_cfg = build_config(
        "track",
        DATA / "dreem/track.yaml",
        None,
        **{
            "ckpt_path": str(CHECKPOINT),
            "outdir": tempfile.mkdtemp(),
            "dataset.test_dataset.dir.path": str(DATA / "sleap"),
            "dataset.test_dataset.anchors": "thorax",
            "dataset.test_dataset.clip_length": 32,
            "dataset.test_dataset.crop_size": 128,
            "trainer.accelerator": "cpu",
        },
    )
    runner = GTRRunner.load_from_checkpoint(str(CHECKPOINT), strict=False, map_location="cpu")
    runner.model.eval()
    scenarios = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in SCENARIOS.items():
            (Path(tmp) / name).mkdir()
            recorded = run(name, scenario, runner, base_cfg, Path(tmp))
            scenarios[name] = pack(recorded)
            tracks = sorted(set(scenarios[name]["tracks"].tolist()))
            print(f"{name}: {len(recorded['frames'])} frames, {len(recorded['calls'])} associations, tracks {tracks}")
            torch.save(
                {"node_names": NODE_NAMES, "image_size": [1024, 1024], "scenarios": scenarios, "dreem": "0.5.1"},
                out,
            )
    print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
