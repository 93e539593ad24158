"""The table of labels formats: each file goes to its format, and what a format writes numbers the
instances exactly as its reader did, so tracks land on the instances they were predicted for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dreem_trainer.data.discovery import SourcePair, pair_directory
from dreem_trainer.data.formats import format_of, write_tracks
from dreem_trainer.data.label_format import Predictions, TrackAssignment
from dreem_trainer.data.microscopy import CtcLabels, read_ctc
from dreem_trainer.data.point_tracks import IcyXml, TrackMateCsv, TrackMateXml, write_tracks_csv
from dreem_trainer.data.records import Instance, LabelledVideo
from dreem_trainer.data.sleap import SleapLabels
from dreem_trainer.data.sources import DataError
from tests.microscopy_helpers import CELLS, MAN_TRACK, truth_points, write_stack
from tests.trainer_helpers import TWO_FLIES_MP4, TWO_FLIES_SLP

Position = tuple[int, float, float]
"""An instance by frame and centroid: a CTC result numbers cells by track, so their order in a frame changes."""


def position(frame_idx: int, instance: Instance) -> Position:
    assert instance.centroid is not None
    x, y = (round(float(value), 2) for value in instance.centroid)
    return frame_idx, x, y


def crossed(video: LabelledVideo) -> TrackAssignment:
    """Tracks that differ from the true ones and change partners every frame, so a writer that put a track
    on another instance of the frame (or ignored the assignment) shows."""
    return {
        (frame.frame_idx, instance.index_in_frame): (instance.index_in_frame + frame.frame_idx) % len(frame.instances)
        for frame in video.frames
        for instance in frame.instances
    }


def track_names(video: LabelledVideo) -> dict[Position, str]:
    return {
        position(frame.frame_idx, instance): video.track_names[instance.track]
        for frame in video.frames
        for instance in frame.instances
    }


def expected_names(video: LabelledVideo, tracks: TrackAssignment, name: Callable[[int], str]) -> dict[Position, str]:
    """What each instance's track is called once written: the format's `name` of its assigned track."""
    return {
        position(frame.frame_idx, instance): name(tracks[(frame.frame_idx, instance.index_in_frame)])
        for frame in video.frames
        for instance in frame.instances
    }


def test_each_labels_file_goes_to_its_format(tmp_path: Path) -> None:
    (tmp_path / "tm.xml").write_text('<TrackMate version="7"><Model /></TrackMate>')
    (tmp_path / "icy.xml").write_text("<root><TrackContestISBI2012><particle /></TrackContestISBI2012></root>")
    expected = {
        TWO_FLIES_SLP: SleapLabels,
        str(MAN_TRACK): CtcLabels,
        str(CELLS / "test_0_GT" / "TRA"): CtcLabels,
        str(tmp_path / "test_0_RES" / "res_track.txt"): CtcLabels,
        str(tmp_path / "tm.xml"): TrackMateXml,
        str(tmp_path / "icy.xml"): IcyXml,
        str(tmp_path / "spots.csv"): TrackMateCsv,
    }
    assert {path: type(format_of(path)) for path in expected} == expected
    with pytest.raises(DataError, match=r"notes\.txt: no reader for labels ending in '\.txt'"):
        format_of(str(tmp_path / "notes.txt"))


def test_sleap_tracks_are_written_onto_the_instances_read(tmp_path: Path) -> None:
    video = SourcePair(TWO_FLIES_SLP, TWO_FLIES_MP4, 32).read()
    tracks = crossed(video)
    written = write_tracks(video, Predictions(tracks), tmp_path)
    assert written == tmp_path / "two_flies.dreem_track.slp"
    again = SourcePair(str(written), TWO_FLIES_MP4, 32).read()
    assert track_names(again) == expected_names(video, tracks, str)  # DREEM names tracks by their id
    assert [frame.frame_idx for frame in again.frames] == [frame.frame_idx for frame in video.frames]


def test_a_prediction_the_user_did_not_replace_is_tracked_beside_the_user_instances(tmp_path: Path) -> None:
    """A proofread frame holds the user's instance of one fly and SLEAP's prediction of the other: both flies
    are there to track. The prediction a user instance replaced (from_predicted) is not tracked, and the file
    is written back whole (an instance left holding a replaced Track made save_slp fail after tracking)."""
    import sleap_io as sio

    labels = sio.load_slp(TWO_FLIES_SLP, open_videos=False)
    skeleton = labels.skeletons[0]
    for labelled_frame in labels.labeled_frames[:3]:
        kept, other = labelled_frame.instances
        predicted = sio.PredictedInstance.from_numpy(other.numpy(), skeleton=skeleton, score=0.9, track=other.track)
        labelled_frame.instances = [kept, predicted]
    replaced = labels.labeled_frames[3]
    first = replaced.instances[0]
    superseded = sio.PredictedInstance.from_numpy(first.numpy() + 5, skeleton=skeleton, score=0.8, track=first.track)
    first.from_predicted = superseded
    replaced.instances = [*replaced.instances, superseded]
    # DREEM's usual preparation: SLEAP predicted untracked, the user corrected, then tracks were given.
    corrected = labels.labeled_frames[4]
    second = corrected.instances[1]
    untracked_original = sio.PredictedInstance.from_numpy(second.numpy() + 3, skeleton=skeleton, score=0.7)
    second.from_predicted = untracked_original
    corrected.instances = [*corrected.instances, untracked_original]
    mixed = tmp_path / "two_flies.slp"
    sio.save_slp(labels, str(mixed))

    video = SourcePair(str(mixed), TWO_FLIES_MP4, 32).read()
    assert all(len(frame.instances) == 2 for frame in video.frames)
    assert [instance.score for instance in video.frames[0].instances] == [1.0, pytest.approx(0.9)]
    tracks = crossed(video)
    out = tmp_path / "out"
    out.mkdir()
    written = write_tracks(video, Predictions(tracks), out)
    again = SourcePair(str(written), TWO_FLIES_MP4, 32).read()
    assert track_names(again) == expected_names(video, tracks, str)
    user, _, replaced_prediction = sio.load_slp(str(written), open_videos=False).labeled_frames[3].instances
    assert replaced_prediction.track is user.track  # still paired with the user instance that replaced it


def test_ctc_tracks_are_written_onto_the_cells_read(tmp_path: Path) -> None:
    (pair,) = pair_directory(str(CELLS), ".slp", ".mp4", 32)
    video = pair.read()
    tracks = crossed(video)
    written = write_tracks(video, Predictions(tracks), tmp_path)
    assert written == tmp_path / "test_0_RES"
    again = read_ctc(str(written / "res_track.txt"), str(CELLS / "test_0"))
    assert track_names(again) == expected_names(video, tracks, lambda track: str(track + 1))  # labels from 1


def test_point_tracks_are_written_as_a_csv_of_the_spots_read(tmp_path: Path) -> None:
    write_tracks_csv(truth_points(), tmp_path / "cells.csv")
    video = SourcePair(str(tmp_path / "cells.csv"), str(write_stack(tmp_path, "cells")), 32).read()
    out = tmp_path / "out"
    out.mkdir()
    tracks = crossed(video)
    written = write_tracks(video, Predictions(tracks), out)
    assert written == out / "cells.dreem_tracks.csv"
    again = SourcePair(str(written), str(tmp_path / "cells.tif"), 32).read()
    assert track_names(again) == expected_names(video, tracks, str)
