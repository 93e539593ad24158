"""Microscopy inputs: the CTC sequence in ../shared/data, TIFF frames of every depth, and TrackMate / ICY
point tracks written here and read back."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from dreem_trainer.data.crops import cut_crops
from dreem_trainer.data.dataset import open_reader
from dreem_trainer.data.discovery import SourcePair, pair_directory
from dreem_trainer.data.microscopy import TiffReader, to_uint8
from dreem_trainer.data.point_tracks import read_trackmate_csv, write_tracks_csv
from dreem_trainer.data.sources import DataError
from tests.microscopy_helpers import CELLS, MAN_TRACK, truth_points, write_stack


def lineage_table() -> list[tuple[int, int, int, int]]:
    """(label, begin, end, parent) rows; a label that returns after a gap has a row per segment."""
    return [tuple(int(v) for v in line.split()) for line in MAN_TRACK.read_text().splitlines() if line.strip()]  # type: ignore[misc]


def test_ctc_sequence_is_found_and_its_identities_match_man_track() -> None:
    (pair,) = pair_directory(str(CELLS), ".slp", ".mp4", 32)
    video = pair.read()
    table = lineage_table()
    assert video.node_names == ("centroid",) and len(video.frames) == 11
    present: dict[str, set[int]] = {}
    for frame in video.frames:
        for instance in frame.instances:
            present.setdefault(video.track_names[instance.track], set()).add(frame.frame_idx)
            x0, y0, x1, y1 = instance.bbox  # type: ignore[misc]
            (x, y) = instance.points[0]
            assert x0 <= x < x1 and y0 <= y < y1
    frames = {frame.frame_idx for frame in video.frames}
    expected: dict[str, set[int]] = {}
    for label, begin, end, _ in table:
        expected.setdefault(str(label), set()).update(set(range(begin, end + 1)) & frames)
    assert present == {label: seen for label, seen in expected.items() if seen}
    divided = {(str(label), str(parent)) for label, _, _, parent in table if parent}
    assert {(video.track_names[a], video.track_names[b]) for a, b in video.parents} == divided
    assert 19 <= min(len(f.instances) for f in video.frames) <= max(len(f.instances) for f in video.frames) <= 21


def test_frames_of_every_depth_become_uint8_by_percentiles() -> None:
    rng = np.random.default_rng(0)
    twelve_bit = rng.integers(200, 4000, size=(64, 64)).astype(np.uint16)
    twelve_bit[0, 0] = 65535  # one hot pixel must not set the scale
    scaled = to_uint8(twelve_bit)
    assert scaled.dtype == np.uint8
    assert np.percentile(scaled, 50) > 100, "a 12-bit image divided by a fixed 65535/255 would stay near 0"
    assert scaled.max() == 255 and scaled.min() == 0
    floats = rng.random((32, 32)).astype(np.float32) * 0.01
    assert to_uint8(floats).max() == 255
    eight_bit = rng.integers(0, 256, size=(8, 8)).astype(np.uint8)
    assert np.array_equal(to_uint8(eight_bit), eight_bit)


def test_a_multi_page_tiff_is_one_video(tmp_path: Path) -> None:
    pages = np.stack([np.full((16, 24), value, dtype=np.uint8) for value in (10, 20, 30, 40)])
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    images = TiffReader(str(tmp_path / "stack.tif")).read([0, 3])
    assert images.shape == (2, 16, 24, 1) and images[0].max() == 10 and images[1].max() == 40
    folder = open_reader(str(CELLS / "test_0")).read([2])
    assert np.array_equal(folder[0, ..., 0], tifffile.imread(CELLS / "test_0" / "frame_0002.tif"))


def as_tracks(labels_path: Path, video_path: Path) -> set[tuple[str, int, float, float]]:
    video = SourcePair(str(labels_path), str(video_path), 32).read()
    return {
        (video.track_names[i.track], f.frame_idx, round(float(i.points[0, 0]), 2), round(float(i.points[0, 1]), 2))
        for f in video.frames
        for i in f.instances
    }


def expected(points: list[tuple[int, int, float, float]]) -> set[tuple[str, int, float, float]]:
    return {(str(track), frame, round(x, 2), round(y, 2)) for track, frame, x, y in points}


def test_trackmate_xml_round_trips_in_pixels(tmp_path: Path) -> None:
    points = truth_points()
    pixel = 0.5  # micrometres per pixel: TrackMate stores calibrated positions
    spots = "".join(
        f'<Spot ID="{n}" FRAME="{frame}" POSITION_X="{x * pixel}" POSITION_Y="{y * pixel}" />'
        for n, (_, frame, x, y) in enumerate(points)
    )
    by_track: dict[int, list[int]] = {}
    for n, (track, _, _, _) in enumerate(points):
        by_track.setdefault(track, []).append(n)
    tracks = "".join(
        f'<Track TRACK_ID="{track}">'
        + "".join(f'<Edge SPOT_SOURCE_ID="{a}" SPOT_TARGET_ID="{b}" />' for a, b in itertools.pairwise(ids))
        + (f'<Edge SPOT_SOURCE_ID="{ids[0]}" SPOT_TARGET_ID="{ids[0]}" />' if len(ids) == 1 else "")
        + "</Track>"
        for track, ids in by_track.items()
    )
    xml = (
        f'<TrackMate version="7.11.1"><Model spatialunits="micron"><AllSpots><SpotsInFrame frame="0">{spots}'
        f"</SpotsInFrame></AllSpots><AllTracks>{tracks}</AllTracks></Model>"
        f'<Settings><ImageData filename="cells.tif" pixelwidth="{pixel}" pixelheight="{pixel}" /></Settings>'
        "</TrackMate>"
    )
    (tmp_path / "cells.xml").write_text(xml)
    assert as_tracks(tmp_path / "cells.xml", write_stack(tmp_path, "cells")) == expected(points)


def test_trackmate_csv_with_unit_rows_round_trips(tmp_path: Path) -> None:
    points = truth_points()
    lines = [
        "LABEL,ID,TRACK_ID,QUALITY,POSITION_X,POSITION_Y,POSITION_Z,POSITION_T,FRAME",
        "Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame",
        "Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame",
        ",,,(quality),(pixel),(pixel),(pixel),(sec),",
        *(f"ID{n},{n},{t},1.0,{x},{y},0,{f},{f}" for n, (t, f, x, y) in enumerate(points)),
    ]
    (tmp_path / "cells.csv").write_text("\n".join(lines) + "\n")
    assert as_tracks(tmp_path / "cells.csv", write_stack(tmp_path, "cells")) == expected(points)


IMAGEJ_MICRONS = {"imagej": True, "resolution": (1 / 0.5, 1 / 0.25), "metadata": {"axes": "TYX", "unit": "micron"}}
IMAGEJ_ESCAPED = {"imagej": True, "resolution": (1 / 0.5, 1 / 0.25), "metadata": {"axes": "TYX", "unit": "\\u00B5m"}}
OME = {"ome": True, "metadata": {"axes": "TYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.25}}


@pytest.mark.parametrize(
    ("unit", "calibration", "per_micron"),
    [("(micron)", IMAGEJ_MICRONS, 1.0), ("(nm)", IMAGEJ_ESCAPED, 1000.0), ("(µm)", OME, 1.0)],
)
def test_trackmate_csv_in_calibrated_units_is_read_in_pixels(
    tmp_path: Path, unit: str, calibration: dict[str, Any], per_micron: float
) -> None:
    """TrackMate exports positions in the image's units; the TIFF's pixel size (0.5 x 0.25 µm here, ImageJ's
    or OME's) turns them back into pixels, or every crop would be cut at the wrong place."""
    points = truth_points()
    lines = [
        "LABEL,ID,TRACK_ID,QUALITY,POSITION_X,POSITION_Y,POSITION_Z,POSITION_T,FRAME",
        "Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame",
        "Label,Spot ID,Track ID,Quality,X,Y,Z,T,Frame",
        f",,,(quality),{unit},{unit},{unit},(sec),",
        *(
            f"ID{n},{n},{t},1.0,{x * 0.5 * per_micron},{y * 0.25 * per_micron},0,{f},{f}"
            for n, (t, f, x, y) in enumerate(points)
        ),
    ]
    (tmp_path / "cells.csv").write_text("\n".join(lines) + "\n")
    assert as_tracks(tmp_path / "cells.csv", write_stack(tmp_path, "cells", **calibration)) == expected(points)


def test_trackmate_csv_in_calibrated_units_needs_a_calibrated_tiff(tmp_path: Path) -> None:
    lines = ["TRACK_ID,POSITION_X,POSITION_Y,FRAME", "Track ID,X,Y,Frame", "Track ID,X,Y,Frame", ",(micron),(micron),"]
    (tmp_path / "cells.csv").write_text("\n".join([*lines, "0,1.5,2.5,0"]) + "\n")
    stack = write_stack(tmp_path, "cells")
    with pytest.raises(DataError, match=r"cells\.csv: positions in \(micron\), but .*cells\.tif records no pixel size"):
        read_trackmate_csv(str(tmp_path / "cells.csv"), str(stack))
    (tmp_path / "cells.csv").write_text("\n".join([*lines[:3], ",(furlong),(furlong),", "0,1.5,2.5,0"]) + "\n")
    with pytest.raises(DataError, match=r"positions in \(furlong\), which is neither pixels nor a known length"):
        read_trackmate_csv(str(tmp_path / "cells.csv"), str(stack))


def test_icy_xml_round_trips(tmp_path: Path) -> None:
    points = truth_points()
    particles: dict[int, list[tuple[int, float, float]]] = {}
    for track, frame, x, y in points:
        particles.setdefault(track, []).append((frame, x, y))
    body = "".join(
        "<particle>" + "".join(f'<detection t="{f}" x="{x}" y="{y}" z="0"/>' for f, x, y in spots) + "</particle>"
        for _, spots in sorted(particles.items())
    )
    (tmp_path / "cells.xml").write_text(
        f'<root><TrackContestISBI2012 snr="7" density="low">{body}</TrackContestISBI2012></root>'
    )
    tracks = as_tracks(tmp_path / "cells.xml", write_stack(tmp_path, "cells"))
    # ICY numbers particles in file order: compare the grouping, not the names.
    by_name: dict[str, set[tuple[int, float, float]]] = {}
    for name, frame, x, y in tracks:
        by_name.setdefault(name, set()).add((frame, x, y))
    written = {frozenset((f, round(x, 2), round(y, 2)) for f, x, y in spots) for spots in particles.values()}
    assert {frozenset(group) for group in by_name.values()} == written


def test_the_tracks_csv_dreem_writes_reads_back(tmp_path: Path) -> None:
    points = truth_points()
    write_tracks_csv(points, tmp_path / "cells.csv")
    assert as_tracks(tmp_path / "cells.csv", write_stack(tmp_path, "cells")) == expected(points)


def test_clear_errors_for_what_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "nothing.txt").write_text("x")
    with pytest.raises(DataError, match=r"matches no known layout: no labels file ending in '\.slp'"):
        pair_directory(str(tmp_path), ".slp", ".mp4", 32)

    (tmp_path / "bad.csv").write_text("ID,FRAME,X\n1,0,3.0\n")
    tifffile.imwrite(tmp_path / "bad.tif", np.zeros((2, 8, 8), dtype=np.uint8), photometric="minisblack")
    with pytest.raises(DataError, match=r"bad\.csv: lacks the column\(s\) TRACK_ID, POSITION_X, POSITION_Y"):
        read_trackmate_csv(str(tmp_path / "bad.csv"), str(tmp_path / "bad.tif"))

    (tmp_path / "other.xml").write_text("<gpx><trk/></gpx>")
    with pytest.raises(DataError, match=r"neither TrackMate XML .* the root element is <gpx>"):
        SourcePair(str(tmp_path / "other.xml"), str(tmp_path / "bad.tif"), 32).read()

    sequence, truth = tmp_path / "seq" / "s1", tmp_path / "seq" / "s1_GT" / "TRA"
    sequence.mkdir(parents=True)
    truth.mkdir(parents=True)
    tifffile.imwrite(sequence / "t000.tif", np.zeros((32, 32), dtype=np.uint8))
    tifffile.imwrite(truth / "man_track000.tif", np.ones((16, 32), dtype=np.uint16))
    (truth / "man_track.txt").write_text("1 0 0 0\n")
    (pair,) = pair_directory(str(tmp_path / "seq"), ".slp", ".mp4", 16)
    with pytest.raises(DataError, match=r"man_track000\.tif: mask is 32x16 but the frames of .*s1 are 32x32"):
        pair.read()
    (truth / "man_track.txt").write_text("1 0 zero 0\n")
    with pytest.raises(DataError, match=r"man_track\.txt:1: expected 'label begin end parent'"):
        pair.read()


def test_crops_of_a_frame_in_one_cut_equal_crops_one_by_one() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(120, 90, 1)).astype(np.uint8)
    centers = np.concatenate([rng.uniform(-10, 130, size=(300, 2)), [[np.nan, np.nan], [0.0, 0.0], [89.6, 119.4]]])
    together = cut_crops(image, centers, 9)
    one_by_one = np.stack([cut_crops(image, center[None], 9)[0] for center in centers])
    assert np.array_equal(together, one_by_one)
    assert not together[300].any()
    inside = cut_crops(image, np.array([[45.0, 60.0]]), 9)[0]
    # The crop's corner is the centre minus half the size, rounded half to even: x 40.5 -> 40, y 55.5 -> 56.
    assert np.array_equal(inside, image[56:65, 40:49])
