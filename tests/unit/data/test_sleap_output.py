"""Tracked SLEAP labels as DREEM users read them: tracks named by number, tracking scores, review frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sleap_io as sio

from dreem_trainer.data.formats import write_tracks
from dreem_trainer.data.label_format import Predictions
from dreem_trainer.data.records import LabelledVideo


def predicted_labels(path: Path) -> LabelledVideo:
    skeleton = sio.Skeleton(["head", "tail"])
    video = sio.Video(filename="clip.mp4", open_backend=False)
    frames = [
        sio.LabeledFrame(
            video=video,
            frame_idx=frame,
            instances=[
                sio.PredictedInstance.from_numpy(
                    np.array([[10.0 * i, 5.0], [10.0 * i, 9.0]]), skeleton=skeleton, score=0.9
                )
                for i in range(3)
            ],
        )
        for frame in range(2)
    ]
    sio.save_slp(sio.Labels(frames), str(path))
    return LabelledVideo(
        name="clip", labels_path=str(path), video_path="clip.mp4", node_names=("head", "tail"), frames=()
    )


def test_sleap_output_names_tracks_as_dreem_does(tmp_path: Path) -> None:
    video = predicted_labels(tmp_path / "clip.slp")
    predictions = Predictions(
        tracks={(0, 0): 1, (0, 1): 0, (0, 2): -1, (1, 0): 0, (1, 1): 1},
        scores={(0, 0): -1.0, (0, 1): -1.0, (0, 2): -1.0, (1, 0): -0.25, (1, 1): -0.5},
        review_frames=(1,),
    )
    (tmp_path / "out").mkdir()
    written = sio.load_slp(str(write_tracks(video, predictions, tmp_path / "out")), open_videos=False)
    # Numbers, in order of first appearance; an untracked detection (max_tracks) goes to track -1.
    assert [track.name for track in written.tracks] == [1, 0, -1]
    first, second = sorted(written.labeled_frames, key=lambda lf: lf.frame_idx)
    assert [i.track.name for i in first.instances] == [1, 0, -1]
    assert [i.track.name if i.track else None for i in second.instances] == [0, 1, None]  # (1, 2): not tracked
    assert [float(i.tracking_score) for i in second.instances[:2]] == [-0.25, -0.5]
    assert [s.frame_idx for s in written.suggestions] == [1]
    assert (tmp_path / "clip.slp").stat().st_size > 0  # the input stays as it was
    assert sio.load_slp(str(tmp_path / "clip.slp"), open_videos=False).tracks == []


def test_sleap_output_records_the_tracked_video_by_its_absolute_path(tmp_path: Path) -> None:
    # The input records "clip.mp4", relative to its own folder; the output lives elsewhere.
    video = predicted_labels(tmp_path / "clip.slp")
    tracked = LabelledVideo(
        name="clip", labels_path=video.labels_path, video_path=str(tmp_path / "clip.mp4"), node_names=(), frames=()
    )
    (tmp_path / "out").mkdir()
    written = write_tracks(tracked, Predictions(tracks={}), tmp_path / "out")
    (recorded,) = sio.load_slp(str(written), open_videos=False).videos
    assert recorded.filename == str(tmp_path / "clip.mp4")
