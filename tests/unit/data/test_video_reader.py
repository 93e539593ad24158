"""MediaReader's frames are sleap-io's: the grey channel sleap-io's grey reader keeps, or all three of a colour
video, in one (T, H, W, C) uint8 array whatever order the frames are asked in."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio

from dreem_trainer.data.sources import DataError, MediaReader
from tests.conftest import DEMO_DATA

VIDEO = DEMO_DATA / "two_flies.mp4"


def test_a_grey_video_reads_as_sleap_ios_grey_frames() -> None:
    wanted = [0, 5, 6, 3, 100]
    frames = MediaReader(str(VIDEO)).read(wanted)
    video = sio.load_video(str(VIDEO))
    expected = np.stack([np.asarray(video[index]) for index in wanted])
    assert video.backend.grayscale  # the bundled clip is grey: sleap-io keeps one channel
    video.close()
    assert frames.dtype == np.uint8 and frames.flags.c_contiguous
    assert frames.shape == (len(wanted), 1024, 1024, 1)
    np.testing.assert_array_equal(frames, expected)


def test_a_colour_video_keeps_its_three_channels(tmp_path: Path) -> None:
    path = tmp_path / "colour.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), 10, (64, 48))
    for index in range(4):
        frame = np.zeros((48, 64, 3), dtype=np.uint8)
        frame[:, :, 0] = 40 * index  # blue, green and red differ, so a channel taken for another shows
        frame[:, :, 1] = 200
        frame[:, 16:, 2] = 120
        writer.write(frame)
    writer.release()
    frames = MediaReader(str(path)).read([2, 1])
    video = sio.load_video(str(path))
    expected = np.stack([np.asarray(video[2]), np.asarray(video[1])])
    assert not video.backend.grayscale
    video.close()
    assert frames.shape == (2, 48, 64, 3)
    np.testing.assert_array_equal(frames, expected)
    assert abs(float(frames[..., 1].mean()) - 200) < 8  # RGB order: green stays the middle channel


def test_a_frame_past_the_videos_end_names_the_video() -> None:
    reader = MediaReader(str(VIDEO))
    with pytest.raises(DataError, match=r"two_flies\.mp4: its labels have frame 500, but the video has no such"):
        reader.read([0, 500])
