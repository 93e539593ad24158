"""dreem eval's counts of one video against its labels: what tracking left out of a tracked frame is a miss."""

from __future__ import annotations

import numpy as np

from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.inference.run import TrackedVideo
from tests.trainer_helpers import TWO_FLIES_MP4, TWO_FLIES_SLP


def test_a_labelled_instance_tracking_left_out_is_a_miss() -> None:
    """handle_missing: drop, max_detection_overlap or max_tracks take instances out before tracking; the
    labels still hold them, so the tracks missed them (they vanished from the counts, and recall stayed 1)."""
    video = SourcePair(TWO_FLIES_SLP, TWO_FLIES_MP4, 32).read()
    rows = [(f.frame_idx, i.index_in_frame, i.track) for f in video.frames for i in f.instances]
    # One instance each of two frames that keep their other one, and both of a frame left empty.
    dropped = {rows[5], rows[9], rows[20], rows[21]}
    assert rows[20][0] == rows[21][0]
    kept = [row for row in rows if row not in dropped]
    frames, index_in_frame, truth = (np.array(column, dtype=np.int64) for column in zip(*kept, strict=True))
    every_frame = np.array([frame.frame_idx for frame in video.frames])
    result = TrackedVideo(video, frames, index_in_frame, truth, truth.copy(), np.zeros(len(kept)), [], 0.0, every_frame)
    counts = result.counts()
    assert (counts.num_objects, counts.num_misses) == (len(rows), len(dropped))
    assert counts.recall == (len(rows) - len(dropped)) / len(rows) and counts.num_switches == 0
