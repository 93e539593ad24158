"""`dreem track` with the checkpoint DREEM trained gives DREEM's own tracks of two_flies (issue 12's gate:
IDF1 at least 0.99 with DREEM's output taken as the truth)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from dreem_trainer.tracking.metrics import tracking_counts
from tests.conftest import DEMO_DATA, TEST_DATA, dreem_executable

pytestmark = pytest.mark.slow

DREEM = TEST_DATA / "dreem"


def tracks_by_pose(path: Path) -> dict[tuple[int, bytes], str]:
    """Each tracked instance's track name, keyed by its frame and its points (the two files hold the same
    poses, in different orders and objects)."""
    labels = sio.load_slp(str(path), open_videos=False)
    found = {}
    for frame in labels.labeled_frames:
        for instance in frame.instances:
            if instance.track is not None:
                pose = np.round(np.nan_to_num(instance.numpy()[:, :2], nan=-1.0), 2).tobytes()
                found[(frame.frame_idx, pose)] = str(instance.track.name)
    return found


def numbered(names: list[str]) -> np.ndarray:
    ids = {name: index for index, name in enumerate(sorted(set(names)))}
    return np.array([ids[name] for name in names])


def test_dreem_checkpoint_tracks_two_flies_as_dreem_did(tmp_path: Path) -> None:
    # DREEM's run: `dreem track ... --crop-size 128 --anchor thorax` with dreem/track.yaml's tracker
    # (window 8, overlap_thresh 0.01, iou mult); see tests/data/dreem/README.md.
    result = subprocess.run(
        [
            dreem_executable(),
            "track",
            str(DEMO_DATA),
            "--checkpoint",
            str(DREEM / "dreem_two_flies.ckpt"),
            "--output",
            str(tmp_path),
            "--crop-size",
            "128",
            "--anchor",
            "thorax",
            "--set",
            "tracker.window_size=8",
            "--set",
            "tracker.overlap_thresh=0.01",
            "--set",
            "tracker.iou=mult",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (ours_file,) = tmp_path.glob("two_flies*.slp")
    theirs, ours = tracks_by_pose(DREEM / "two_flies.dreem_tracks.slp"), tracks_by_pose(ours_file)
    assert set(ours) == set(theirs) and len(ours) == 256
    keys = sorted(theirs)
    counts = tracking_counts(
        [frame for frame, _ in keys], numbered([theirs[k] for k in keys]), numbered([ours[k] for k in keys])
    )
    assert counts.summary()["idf1"] >= 0.99, counts.summary()
