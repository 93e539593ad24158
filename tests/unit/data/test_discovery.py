"""Labels and videos are paired by file name, never by listing order."""

from __future__ import annotations

from pathlib import Path

import pytest

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.data.discovery import discover, pair_directory
from dreem_trainer.data.sources import DataError


def touch(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_bytes(b"")


def test_pairs_by_stem_whatever_the_listing_order(tmp_path: Path) -> None:
    # Sorted listing would put "b_cam.mp4" against "a.slp" if pairing went by order.
    touch(tmp_path, "b.slp", "a.slp", "b.mp4", "a.mp4", "notes.txt")
    pairs = pair_directory(str(tmp_path), ".slp", ".mp4", 64)
    assert [(Path(p.labels_path).name, Path(p.video_path).name) for p in pairs] == [
        ("a.slp", "a.mp4"),
        ("b.slp", "b.mp4"),
    ]


def test_unmatched_labels_file_is_named(tmp_path: Path) -> None:
    touch(tmp_path, "a.slp", "a.mp4", "b.slp", "c.mp4")
    with pytest.raises(DataError, match=r"b\.slp: no video named b\.mp4"):
        pair_directory(str(tmp_path), ".slp", ".mp4", 64)


def test_orphan_video_is_named(tmp_path: Path) -> None:
    touch(tmp_path, "a.slp", "a.mp4", "extra.mp4")
    with pytest.raises(DataError, match=r"extra\.mp4: no labels file"):
        pair_directory(str(tmp_path), ".slp", ".mp4", 64)


def test_missing_directory_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such data directory"):
        pair_directory(str(tmp_path / "nope"), ".slp", ".mp4", 64)
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
