"""The CTC sequence (tests/data/cell_tracking), and the same cells written as other microscopy formats, for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from dreem_trainer.data.microscopy import read_ctc
from tests.conftest import TEST_DATA

CELLS = TEST_DATA / "cell_tracking"
MAN_TRACK = CELLS / "test_0_GT" / "TRA" / "man_track.txt"


def truth_points() -> list[tuple[int, int, float, float]]:
    """(track, frame, x, y) of every cell of the CTC sequence: real positions to write in other formats."""
    video = read_ctc(str(MAN_TRACK), str(CELLS / "test_0"))
    return [
        (int(video.track_names[i.track]), f.frame_idx, float(i.points[0, 0]), float(i.points[0, 1]))
        for f in video.frames
        for i in f.instances
    ]


def write_stack(folder: Path, name: str, **calibration: Any) -> Path:
    """The shared CTC sequence's frames as a 12-bit stack; `calibration`: tifffile.imwrite's ImageJ or OME
    keywords recording a pixel size."""
    frames = [tifffile.imread(path) for path in sorted((CELLS / "test_0").glob("frame_*.tif"))]
    target = folder / f"{name}.tif"
    tifffile.imwrite(target, np.stack(frames).astype(np.uint16) * 16, photometric="minisblack", **calibration)
    return target
