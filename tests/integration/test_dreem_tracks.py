"""A model DREEM trained tracks here as it tracked in DREEM.

`tests/data/dreem/two_flies.dreem_tracks.slp` is what DREEM 0.5.1's `dreem track` wrote for two_flies with
the checkpoint beside it (tests/data/dreem/README.md). Our `dreem track`, given the same checkpoint, video
and tracking settings, must agree with it: IDF1 of at least 0.99 taking DREEM's tracks as the truth, and the
same track names (DREEM names tracks by number).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sleap_io as sio

from dreem_trainer.tracking.metrics import tracking_counts
from tests.conftest import DEMO_DATA, REPO_ROOT, dreem_executable

pytestmark = pytest.mark.slow

DREEM = REPO_ROOT / "tests" / "data" / "dreem"


def instance_tracks(path: Path) -> dict[tuple[int, tuple[float, ...]], Any]:
    """Each instance's track name, keyed by its frame and its points (both files hold the same poses)."""
    labels = sio.load_slp(str(path), open_videos=False)
    return {
        (int(lf.frame_idx), tuple(np.round(np.nan_to_num(instance.numpy()[:, :2], nan=-1), 2).ravel())): (
            instance.track.name if instance.track is not None else None
        )
        for lf in labels.labeled_frames
        for instance in lf.instances
    }


def test_our_tracks_from_dreems_checkpoint_are_dreems(tmp_path: Path) -> None:
    # DREEM tracked with its track.yaml (window 8, overlap_thresh 0.01, iou mult: its defaults), anchor thorax
    # and crop 128 given on its command line; the checkpoint does not record them.
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
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "does not store how its crops were made" not in result.stderr  # both were given
    ours = instance_tracks(tmp_path / "two_flies.dreem_track.slp")
    dreems = instance_tracks(DREEM / "two_flies.dreem_tracks.slp")
    assert ours.keys() == dreems.keys()
    keys = sorted(dreems)
    truth = np.array([dreems[key] for key in keys])
    counts = tracking_counts([frame for frame, _ in keys], truth, np.array([ours[key] for key in keys]))
    assert counts.num_objects == len(keys) == 256
    assert counts.idf1 >= 0.99, counts
    assert sum(ours[key] == dreems[key] for key in keys) / len(keys) >= 0.99  # the same names, not only partition


def test_tracking_with_dreems_checkpoint_says_which_crops_it_assumes(tmp_path: Path) -> None:
    """The checkpoint keeps only its network: without --crop-size and --anchor the defaults are taken, and a
    model trained on other crops would track worse without a word."""
    data = tmp_path / "videos"
    data.mkdir()
    command = [dreem_executable(), "track", str(data), "--checkpoint", str(DREEM / "dreem_two_flies.ckpt")]
    result = subprocess.run([*command, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    # The folder is empty, so the run stops after reading the configuration, which is all this needs.
    assert "matches no known layout" in result.stderr, result.stderr[-3000:]
    assert "tracking with crop_size 128 and anchors 'centroid': give --crop-size and --anchor" in result.stderr
    anchored = subprocess.run([*command, "-a", "thorax"], capture_output=True, text=True, timeout=300)
    assert "tracking with crop_size 128: give" in anchored.stderr, anchored.stderr[-3000:]
