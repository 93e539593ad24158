"""The split `dreem track` and `dreem eval` read: the configured test split or the training split's crop
settings, reading the inputs given on the command line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dreem_trainer.config import validate

TRAIN = {
    "dir": {"path": "/data/train", "labels_suffix": ".csv", "vid_suffix": ".tif"},
    "crop_size": 48,
    "anchors": "head",
    "n_chunks": 3,
    "chunk": False,
    "augmentations": {"Blur": {"p": 0.5}},
}


def test_without_a_test_split_the_training_split_is_read_in_test_mode() -> None:
    dataset = validate({"dataset": {"train_dataset": TRAIN}}).dataset
    split = dataset.test_split()
    assert (split.mode, split.augmentations, split.n_chunks, split.chunk) == ("test", None, 1.0, True)
    assert (split.crop_size, split.anchors, split.dir) == (48, "head", dataset.train_dataset.dir)
    configured = validate({"dataset": {"train_dataset": TRAIN, "test_dataset": {"crop_size": 64}}})
    assert configured.dataset.test_split().crop_size == 64


def test_a_directory_given_is_paired_with_the_split_suffixes_and_crops_stay() -> None:
    split = validate({"dataset": {"train_dataset": TRAIN}}).dataset.test_split().reading("/new")
    assert split.dir is not None
    assert (split.dir.path, split.dir.labels_suffix, split.dir.vid_suffix) == ("/new", ".csv", ".tif")
    assert (split.crop_size, split.anchors, split.mode) == (48, "head", "test")
    per_directory = TRAIN | {"dir": {"path": ["/one", "/two"]}, "crop_size": [48, 96]}
    assert validate({"dataset": {"train_dataset": per_directory}}).dataset.test_split().reading("/new").crop_size == 48
    files = validate({"dataset": {"train_dataset": {"slp_files": ["/a.slp"], "video_files": ["/a.mp4"]}}})
    from_files = files.dataset.test_split().reading("/new")
    assert from_files.dir is not None and (from_files.dir.labels_suffix, from_files.slp_files) == (".slp", None)


def test_files_given_replace_the_directory_and_must_pair() -> None:
    split = validate({"dataset": {"train_dataset": TRAIN}}).dataset.test_split()
    read = split.reading(slp_files=["/x.slp"], video_files=["/x.mp4"])
    assert (read.dir, read.slp_files, read.video_files, read.crop_size) == (None, ["/x.slp"], ["/x.mp4"], 48)
    with pytest.raises(ValidationError, match=r"needs one video per labels file \(2 slp_files\)"):
        split.reading(slp_files=["/x.slp", "/y.slp"], video_files=["/x.mp4"])
    # Without video_files, each labels file's own videos are read (discovery finds them).
    assert split.reading(slp_files=["/x.slp"]).video_files is None
