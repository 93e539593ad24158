"""CTC results as the Cell Tracking Challenge defines them, and the microscopy inputs users bring: masks saved
as floats or 3D, stacks with channels, folders numbered from 1 or with two channels, frames of bright spots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from dreem_trainer.data.label_format import Predictions
from dreem_trainer.data.microscopy import (
    CtcLabels,
    TiffReader,
    read_ctc,
    read_lineage,
    result_tracks,
    to_uint8,
)
from dreem_trainer.data.point_tracks import read_trackmate_csv
from dreem_trainer.data.sources import DataError


def segmented_sequence(root: Path, masks: list[np.ndarray]) -> tuple[Path, Path]:
    """A sequence `s1` of blank frames beside `s1_ERR_SEG`, one mask per frame."""
    sequence, segmentation = root / "s1", root / "s1_ERR_SEG"
    sequence.mkdir(parents=True)
    segmentation.mkdir()
    for number, mask in enumerate(masks):
        tifffile.imwrite(sequence / f"t{number:03d}.tif", np.zeros(mask.shape[-2:], dtype=np.uint8))
        tifffile.imwrite(segmentation / f"mask{number:03d}.tif", mask)
    return sequence, segmentation


def cell_masks(frames: int, absent: dict[int, set[int]]) -> list[np.ndarray]:
    """Three cells (labels 1-3) at fixed places; `absent[label]`: the frames it is missing from."""
    masks = []
    for frame in range(frames):
        mask = np.zeros((24, 24), dtype=np.uint16)
        for label, (row, column) in {1: (2, 2), 2: (10, 10), 3: (18, 4)}.items():
            if frame not in absent.get(label, set()):
                mask[row : row + 3, column : column + 3] = label
        masks.append(mask)
    return masks


def test_a_track_missing_from_frames_continues_under_a_new_label_whose_parent_is_the_label_before(
    tmp_path: Path,
) -> None:
    sequence, segmentation = segmented_sequence(tmp_path, cell_masks(7, {2: {1, 2}, 3: {2, 4, 5}}))
    labels = CtcLabels()
    video = labels.read(str(segmentation), str(sequence))
    # Each cell its own track: labels 1, 2 and 3 sit at rows 2, 10 and 18, tracks 0, 1 and 2.
    tracks = {(f.frame_idx, i.index_in_frame): int(i.points[0, 1] // 8) for f in video.frames for i in f.instances}
    result = labels.write(video, Predictions(tracks), tmp_path / "out")

    lineage = read_lineage(result / "res_track.txt")
    assert all(len(segments) == 1 for segments in lineage.values()), "a label is one line"
    present: dict[int, set[int]] = {}
    for frame in range(7):
        for label in np.unique(tifffile.imread(result / f"mask{frame:03d}.tif")):
            if label:
                present.setdefault(int(label), set()).add(frame)
    for label, [(begin, end, _)] in lineage.items():
        assert present[label] == set(range(begin, end + 1)), f"label {label} is in every frame from B to E"
    by_parent = {parent: label for label, [(_, _, parent)] in lineage.items() if parent}
    # Track 1 (label 2) continues after its gap; track 2 (label 3) after each of its two.
    assert lineage[2] == [(0, 0, 0)] and lineage[by_parent[2]] == [(3, 6, 2)]
    assert lineage[3] == [(0, 1, 0)]
    assert lineage[by_parent[3]] == [(3, 3, 3)] and lineage[by_parent[by_parent[3]]] == [(6, 6, by_parent[3])]
    assert lineage[1] == [(0, 6, 0)]

    # Read back, the continuations are their tracks again: the same colour in `dreem render`.
    again = read_ctc(str(result / "res_track.txt"), str(sequence))
    read_tracks = {(frame.frame_idx, i.index_in_frame): i.track for frame in again.frames for i in frame.instances}
    assert read_tracks == tracks
    assert again.parents == ()
    assert [again.track_names[track] for track in (0, 1, 2)] == ["1", "2", "3"]


def test_a_division_is_not_taken_for_a_gap(tmp_path: Path) -> None:
    # Parent 1 divides into 2 and 3 the frame after it ends; 4 continues 5 after a gap, 6 begins after
    # its parent ended but is not its only child.
    table = tmp_path / "res_track.txt"
    table.write_text("1 0 3 0\n2 4 9 1\n3 4 9 1\n5 0 2 0\n4 5 9 5\n7 0 1 0\n6 4 9 7\n8 4 9 7\n")
    assert result_tracks(read_lineage(table)) == {1: 0, 2: 1, 3: 2, 4: 4, 5: 4, 6: 5, 7: 6, 8: 7}


def test_masks_saved_as_whole_floats_read_and_others_are_refused_naming_the_file(tmp_path: Path) -> None:
    masks = cell_masks(2, {})
    sequence, segmentation = segmented_sequence(tmp_path / "float", [m.astype(np.float32) for m in masks])
    video = CtcLabels().read(str(segmentation), str(sequence))
    assert [len(frame.instances) for frame in video.frames] == [3, 3]
    assert CtcLabels().write(video, Predictions({(0, 0): 0, (1, 0): 0}), tmp_path / "out").is_dir()

    bad = {
        "fraction": [m.astype(np.float32) / 2 for m in masks],
        "negative": [m.astype(np.int32) - (m == 3).astype(np.int32) * 4 for m in masks],
        "volume": [np.stack([m, m]) for m in masks],
    }
    messages = {
        "fraction": r"mask000\.tif: a mask of fractional values",
        "negative": r"mask000\.tif: a mask with label -1; cell labels are positive",
        "volume": r"t000\.tif: 2 pages; a frame of a folder is one page \(3D sequences are not supported\)",
    }
    for name, kind in bad.items():
        sequence, segmentation = segmented_sequence(tmp_path / name, kind)
        if name == "volume":
            tifffile.imwrite(sequence / "t000.tif", np.zeros((2, 24, 24), dtype=np.uint8))
        with pytest.raises(DataError, match=messages[name]):
            CtcLabels().read(str(segmentation), str(sequence))


def test_a_stack_with_channels_per_time_point_is_refused_and_planar_colour_reads_as_colour(tmp_path: Path) -> None:
    channels = np.zeros((3, 2, 16, 20), dtype=np.uint8)
    channels[:, 1] = 200
    tifffile.imwrite(tmp_path / "tcyx.tif", channels, imagej=True, metadata={"axes": "TCYX"})
    with pytest.raises(DataError, match=r"tcyx\.tif: a stack of shape \(3, 2, 16, 20\) \(axes TCYX\)"):
        TiffReader(str(tmp_path / "tcyx.tif"))

    colour = np.zeros((3, 3, 16, 20), dtype=np.uint8)
    colour[:, 0] = 10  # red
    colour[:, 1, :, 10:] = 200  # green on the right half
    tifffile.imwrite(tmp_path / "planar.tif", colour, photometric="rgb", planarconfig="separate")
    reader = TiffReader(str(tmp_path / "planar.tif"))
    frames = reader.read([0, 2])
    assert reader.frame_numbers() == [0, 1, 2]
    assert frames.shape == (2, 16, 20, 3)
    assert (frames[..., 0] == 10).all() and (frames[:, :, 10:, 1] == 200).all() and (frames[:, :, :10, 1] == 0).all()
    with pytest.raises(DataError, match=r"planar\.tif: its labels have frame 3, but the stack has 3 frames"):
        reader.read([3])


def test_a_folder_s_frame_numbers(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in (1, 2, 4):
        tifffile.imwrite(folder / f"T{number:03d}.TIF", np.full((8, 8), number * 10, dtype=np.uint8))
    reader = TiffReader(str(folder))
    assert reader.frame_numbers() == [1, 2, 4]  # upper-case names count; numbering may start at 1 and skip
    assert reader.read([4])[0].max() == 40
    with pytest.raises(DataError, match=r"frames: its labels have frame 3, but no TIFF in it has that number"):
        reader.read([2, 3])

    tifffile.imwrite(folder / "c2_t004.tif", np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match=r"T004\.TIF and c2_t004\.tif both read as frame 4"):
        TiffReader(str(folder)).read([1])


def test_bright_spots_on_a_flat_background_and_nan_keep_their_picture() -> None:
    spots = np.full((100, 100), 100, dtype=np.uint16)
    spots[10, 10] = spots[50, 60] = 4000  # 0.02% of the pixels: both percentiles are the background
    scaled = to_uint8(spots)
    assert scaled[10, 10] == scaled[50, 60] == 255 and scaled[0, 0] == 0
    ramp = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    ramp[3, 3] = np.nan
    scaled = to_uint8(ramp)
    assert scaled[3, 3] == 0 and scaled.max() == 255 and len(np.unique(scaled)) > 200


def test_trackmate_frames_written_as_floats_are_read(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "spots.tif", np.zeros((3, 16, 16), dtype=np.uint8), photometric="minisblack")
    (tmp_path / "spots.csv").write_text(
        "LABEL,TRACK_ID,FRAME,POSITION_X,POSITION_Y\nLabel,Track ID,Frame,X,Y\n"
        "a,0,0.0,4.0,5.0\nb,0,1.0,5.0,5.0\nc,0,2.0,6.0,5.0\n"
    )
    video = read_trackmate_csv(str(tmp_path / "spots.csv"), str(tmp_path / "spots.tif"))
    assert [frame.frame_idx for frame in video.frames] == [0, 1, 2]
    (tmp_path / "half.csv").write_text("TRACK_ID,FRAME,POSITION_X,POSITION_Y\n0,1.5,4.0,5.0\n")
    with pytest.raises(DataError, match=r"half\.csv:2: FRAME '1\.5' is not a frame number"):
        read_trackmate_csv(str(tmp_path / "half.csv"), str(tmp_path / "spots.tif"))
    (tmp_path / "before.csv").write_text("TRACK_ID,FRAME,POSITION_X,POSITION_Y\n0,-3,4.0,5.0\n")
    with pytest.raises(DataError, match=r"before\.csv:2: FRAME '-3' is not a frame number \(0 or more\)"):
        read_trackmate_csv(str(tmp_path / "before.csv"), str(tmp_path / "spots.tif"))


def test_results_of_a_sequence_numbered_from_1_with_a_frame_missing_render_every_numbered_frame(
    tmp_path: Path,
) -> None:
    import sleap_io as sio

    from dreem_trainer.inference.render import render

    sequence, segmentation = segmented_sequence(tmp_path, cell_masks(5, {}))
    for folder, prefix in ((sequence, "t"), (segmentation, "mask")):
        (folder / f"{prefix}000.tif").unlink()  # numbered from 1
        (folder / f"{prefix}003.tif").unlink()  # and frame 3 lost
    for number in (1, 2, 4):
        tifffile.imwrite(sequence / f"t{number:03d}.tif", np.full((24, 24), 60 * number, dtype=np.uint8))
    video = CtcLabels().read(str(segmentation), str(sequence))
    tracks = {(frame.frame_idx, i.index_in_frame): i.index_in_frame for frame in video.frames for i in frame.instances}
    results = CtcLabels().write(video, Predictions(tracks), tmp_path / "out")
    drawn = render(results, tmp_path / "cells.mp4", video=str(sequence))
    assert drawn.frames == 4  # frames 1 to 4, the missing 3 drawn black
    frames = sio.load_video(str(drawn.output), grayscale=True)
    brightness = [float(np.median(np.asarray(frames[index]))) for index in range(4)]
    assert brightness[2] < 10 < brightness[0] < brightness[1] < brightness[3]
