"""Labels and videos are paired by file name, never by listing order."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import sleap_io as sio

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.data.discovery import discover, pair_directory
from dreem_trainer.data.sources import DataError


def touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"")


def test_pairs_by_stem_whatever_the_listing_order(tmp_path: Path) -> None:
    # Sorted, the labels run a.n.slp, a.slp and the videos a.mp4, a.n.mp4 ("n" < "s" but "m" < "n"): pairing by
    # listing order would put a.mp4 against a.n.slp.
    labels, videos = ["a.slp", "a.n.slp"], ["a.n.mp4", "a.mp4"]
    assert [*zip(sorted(labels), sorted(videos), strict=True)] != [("a.n.slp", "a.n.mp4"), ("a.slp", "a.mp4")]
    touch(tmp_path, *labels, *videos, "notes.txt")
    pairs = pair_directory(str(tmp_path), ".slp", ".mp4", 64)
    assert sorted((Path(p.labels_path).name, Path(p.video_path).name) for p in pairs) == [
        ("a.n.slp", "a.n.mp4"),
        ("a.slp", "a.mp4"),
    ]


def sleap_file(path: Path, *videos: str) -> Path:
    """A SLEAP labels file that names `videos`, as SLEAP records them."""
    named = [sio.Video(filename=video, open_backend=False) for video in videos]
    sio.save_slp(sio.Labels(videos=named, skeletons=[sio.Skeleton(["thorax"])]), str(path))
    return path


def test_unmatched_labels_file_is_named(tmp_path: Path) -> None:
    touch(tmp_path, "a.slp", "a.mp4")
    sleap_file(tmp_path / "b.slp", "/elsewhere/b.mp4")
    with pytest.raises(DataError, match=r"b\.slp: no video named b\.mp4 beside it, and the video it names, "):
        pair_directory(str(tmp_path), ".slp", ".mp4", 64)


def test_labels_kept_apart_read_the_videos_they_name(tmp_path: Path) -> None:
    """SLEAP users keep videos elsewhere, or one project file for several videos: each names its own."""
    (tmp_path / "videos").mkdir()
    labels = tmp_path / "labels"
    labels.mkdir()
    touch(tmp_path / "videos", "a.mp4", "b.mp4")
    # One path absolute, one relative to the labels file, as SLEAP writes either.
    sleap_file(labels / "project.slp", str(tmp_path / "videos" / "a.mp4"), "../videos/b.mp4")
    pairs = pair_directory(str(labels), ".slp", ".mp4", 64)
    assert [(Path(p.labels_path).name, Path(p.video_path).resolve()) for p in pairs] == [
        ("project.slp", tmp_path / "videos" / "a.mp4"),
        ("project.slp", tmp_path / "videos" / "b.mp4"),
    ]
    # A video it names that lies beside it is its own, not a video without labels.
    touch(labels, "c.mp4")
    sleap_file(labels / "other.slp", "/moved/away/c.mp4")
    assert [Path(p.video_path).name for p in pair_directory(str(labels), ".slp", ".mp4", 64)] == [
        "c.mp4",
        "a.mp4",
        "b.mp4",
    ]
    # And listed without video_files, as `dreem track -slp` alone gives them.
    split = DatasetSplitConfig(slp_files=[str(labels / "project.slp")])
    assert [Path(p.video_path).name for p in discover(split)] == ["a.mp4", "b.mp4"]


def test_orphan_video_is_named(tmp_path: Path) -> None:
    touch(tmp_path, "a.slp", "a.mp4", "extra.mp4")
    with pytest.raises(DataError, match=r"extra\.mp4: no labels file"):
        pair_directory(str(tmp_path), ".slp", ".mp4", 64)


def test_what_tracking_wrote_into_the_data_folder_is_left_out_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`dreem track -o` into the data folder, with --render, leaves tracks beside a drawn copy of the video:
    paired by name they trained on the drawing, and a tracks file alone broke the folder for good."""
    outputs = ["a.dreem_track.slp", "a.dreem_track.mp4", "b.dreem_track.slp", "a.dreem_inference.20261207.slp"]
    touch(tmp_path, "a.slp", "a.mp4", "b.slp", "b.mp4", *outputs)
    with caplog.at_level(logging.WARNING, logger="dreem_trainer"):
        pairs = pair_directory(str(tmp_path), ".slp", ".mp4", 64)
        pair_directory(str(tmp_path), ".slp", ".mp4", 64)  # the validation split reading the same folder
    assert [(Path(p.labels_path).name, Path(p.video_path).name) for p in pairs] == [
        ("a.slp", "a.mp4"),
        ("b.slp", "b.mp4"),
    ]
    (said,) = [record.getMessage() for record in caplog.records]
    assert said.startswith(f"warning: {tmp_path}: left out what tracking wrote there (a.dreem_inference.")
    assert "and 1 more" in said and "rename a proofread file" in said


def test_missing_directory_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data directory"):
        pair_directory(str(tmp_path / "nope"), ".slp", ".mp4", 64)
    touch(tmp_path, "a.slp")
    with pytest.raises(DataError, match=r"a\.slp: a file where a folder of labels and videos is expected"):
        pair_directory(str(tmp_path / "a.slp"), ".slp", ".mp4", 64)
    (tmp_path / "a.slp").unlink()
    with pytest.raises(DataError, match=r"no labels file ending in '\.slp'"):
        pair_directory(str(tmp_path), ".slp", ".mp4", 64)


def test_crop_size_list_applies_per_directory(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    touch(first, "a.slp", "a.mp4")
    touch(second, "b.slp", "b.mp4")
    split = DatasetSplitConfig.model_validate({"dir": {"path": [str(first), str(second)]}, "crop_size": [48, 96]})
    assert [pair.crop_size for pair in discover(split)] == [48, 96]


def test_explicit_file_lists(tmp_path: Path) -> None:
    touch(tmp_path, "x.slp", "y.mp4")
    split = DatasetSplitConfig.model_validate(
        {"slp_files": [str(tmp_path / "x.slp")], "video_files": [str(tmp_path / "y.mp4")], "crop_size": 40}
    )
    (pair,) = discover(split)
    assert (Path(pair.labels_path).name, Path(pair.video_path).name, pair.crop_size) == ("x.slp", "y.mp4", 40)
    missing = DatasetSplitConfig.model_validate(
        {"slp_files": [str(tmp_path / "gone.slp")], "video_files": [str(tmp_path / "y.mp4")]}
    )
    with pytest.raises(DataError, match=r"gone\.slp: no such file"):
        discover(missing)


def test_file_lists_replace_the_directory_as_in_dreem(tmp_path: Path) -> None:
    # DREEM keeps dir.path (required there) and reads slp_files/video_files instead of the directory's pairs.
    directory, files = tmp_path / "dir", tmp_path / "files"
    directory.mkdir()
    files.mkdir()
    touch(directory, "a.slp", "a.mp4")
    touch(files, "x.slp", "y.mp4")
    listed = {"slp_files": [str(files / "x.slp")], "video_files": [str(files / "y.mp4")]}
    split = DatasetSplitConfig.model_validate({"dir": {"path": str(directory)}, **listed})
    assert [Path(pair.labels_path).name for pair in discover(split)] == ["x.slp"]
    directory_only = DatasetSplitConfig.model_validate({"dir": {"path": str(directory)}})
    assert [Path(pair.labels_path).name for pair in discover(directory_only)] == ["a.slp"]
