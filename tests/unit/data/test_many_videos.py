"""A dataset of many videos holds no more than one of a few: open decoders, cached bytes and label objects stay
bounded as the number of videos grows (bench/scale.py measures the time and memory this buys)."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.data.cache import READER, SHARED, ByteBudgetCache
from dreem_trainer.data.clip import Clip
from dreem_trainer.data.dataset import ClipDataset, SourceReads
from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.data.label_table import LabelTable
from dreem_trainer.data.records import Frame, Instance, LabelledVideo
from dreem_trainer.data.sources import DataError, MediaReader
from tests.conftest import DEMO_DATA

VIDEO = DEMO_DATA / "two_flies.mp4"


def copies(directory: Path, count: int) -> Path:
    """`count` videos under different names, all the bundled clip (symlinks: nothing but their number grows)."""
    for index in range(count):
        for suffix in (".slp", ".mp4"):
            (directory / f"fly_{index:02d}{suffix}").symlink_to(DEMO_DATA / f"two_flies{suffix}")
    return directory


def split(directory: Path, **keys: Any) -> DatasetSplitConfig:
    base: dict[str, Any] = {"dir": {"path": str(directory)}, "anchors": "thorax", "crop_size": 32, "clip_length": 2}
    return DatasetSplitConfig.model_validate(base | keys)


def first_clip_of_each_video(dataset: ClipDataset) -> list[int]:
    """The clip at frame 0 of every video: decoding it needs no seek, so the test stays cheap."""
    return [index for index, span in enumerate(dataset.spans) if span.start == 0]


def open_descriptors_of(path: Path) -> int:
    """Files this process holds open on `path` (through any of its names): what an open decoder costs."""
    target = os.stat(path)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            opened = os.stat(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed by now
        count += (opened.st_dev, opened.st_ino) == (target.st_dev, target.st_ino)
    return count


def test_open_videos_stay_within_the_budget_as_videos_grow(tmp_path: Path) -> None:
    data = copies(tmp_path, 6)
    decoder = MediaReader(str(VIDEO)).open_bytes
    gc.collect()
    # Counted from here: other tests' fixtures in this process may still hold the same video open.
    before = open_descriptors_of(VIDEO)
    for room in (3, 0):  # open videos the budget has room for, beside the clips (1 MiB)
        dataset = ClipDataset(split(data, mode="val"), cache=ByteBudgetCache(room * decoder + 2**20))
        assert open_descriptors_of(VIDEO) - before == 0  # checked on creation, then closed
        first = first_clip_of_each_video(dataset)
        assert len(first) == 6
        for index in first:
            dataset[index]
            assert 1 <= open_descriptors_of(VIDEO) - before <= max(1, room)  # the one being read stays open
        assert open_descriptors_of(VIDEO) - before == max(1, room)
        # A video closed to make room opens again when read: the same frames.
        assert np.array_equal(dataset.readers.read(0, [0, 1]), MediaReader(str(VIDEO)).read([0, 1]))
        for reader in dataset.readers.readers:
            reader.close()


def test_one_cache_budget_holds_for_every_dataset_and_video_of_a_process(tmp_path: Path) -> None:
    data = copies(tmp_path, 6)
    one_clip_of_frames = 2 * 1024 * 1024  # two 1024x1024 grey frames
    shared = ByteBudgetCache(int(2.5 * one_clip_of_frames))
    # Augmented training caches decoded frames; validation caches whole clips: both count against one budget.
    train = ClipDataset(split(data, mode="train", augmentations={"Blur": {"p": 1.0}}), seed=0, cache=shared)
    val = ClipDataset(split(data, mode="val"), cache=shared)
    assert not train.deterministic and val.deterministic
    for index in first_clip_of_each_video(train):
        train[index]
        val[index]
        kept = [value for value, _, _ in shared.entries.values()]
        held = sum(value.nbytes for value in kept if isinstance(value, np.ndarray | Clip))
        assert held == shared.used <= shared.budget  # videos (24 MiB each) never fit: the one read stays open outside
    frames = [value for value, _, _ in shared.entries.values() if isinstance(value, np.ndarray)]
    assert 2 <= len(frames) < 6  # the budget binds: frames of the first videos went to make room
    assert len(shared.entries) > len(frames)  # the validation clips share the same budget


def test_a_dataset_keeps_labels_as_arrays_not_an_object_per_instance(tmp_path: Path) -> None:
    def live_instances() -> int:
        gc.collect()
        return sum(type(item) is Instance for item in gc.get_objects())

    before = live_instances()
    dataset = ClipDataset(split(copies(tmp_path, 8), mode="val"))
    assert live_instances() == before
    labelled_instances = sum(len(table.tracks) for table in dataset.labels)
    assert labelled_instances == 8 * 256  # two flies in each of 128 frames, per copy
    # The labels cost their keypoints and a few numbers per instance, whatever the number of videos.
    points = sum(table.points.nbytes for table in dataset.labels)
    assert sum(table.nbytes for table in dataset.labels) < points + 80 * labelled_instances


def test_a_label_table_gives_back_the_labels_it_was_made_from() -> None:
    real = SourcePair(str(DEMO_DATA / "two_flies.slp"), str(VIDEO), 32).read()
    # Boxes, instances with different numbers of keypoints and a frame without instances, as other formats make.
    made = LabelledVideo(
        name="cells",
        labels_path="cells.xml",
        video_path="cells.tif",
        node_names=("centroid",),
        frames=(
            Frame(4, (Instance(np.array([[1.0, 2.0]]), track=3, bbox=(0.0, 1.0, 5.0, 6.0), score=0.5),)),
            Frame(7, ()),
            Frame(
                9, (Instance(np.array([[np.nan, 1.0], [2.0, 3.0]]), index_in_frame=0), Instance(np.zeros((1, 2)), 1, 1))
            ),
        ),
        track_names=("a", "b"),
        parents=((1, 0),),
    )
    for video in (real, made):
        table = LabelTable.of(video)
        again = table.video()
        assert (again.name, again.labels_path, again.video_path, again.node_names) == (
            video.name,
            video.labels_path,
            video.video_path,
            video.node_names,
        )
        assert (again.track_names, again.parents, again.edges) == (video.track_names, video.parents, video.edges)
        assert [f.frame_idx for f in again.frames] == [f.frame_idx for f in video.frames]
        for original, rebuilt in zip(video.frames, again.frames, strict=True):
            assert len(original.instances) == len(rebuilt.instances)
            for a, b in zip(original.instances, rebuilt.instances, strict=True):
                assert np.array_equal(a.points, b.points, equal_nan=True)
                assert (a.track, a.index_in_frame, a.score, a.bbox) == (b.track, b.index_in_frame, b.score, b.bbox)
        assert [f.frame_idx for f in table.frames(1, 3)] == [f.frame_idx for f in video.frames[1:3]]


def test_a_video_that_cannot_be_decoded_is_named_before_training(tmp_path: Path) -> None:
    data = copies(tmp_path, 3)
    broken = data / "fly_01.mp4"
    broken.unlink()
    broken.write_bytes(b"not a video")
    with pytest.raises(DataError, match=r"fly_01\.mp4: cannot "):
        ClipDataset(split(data, mode="val"))


def test_splits_that_share_a_video_hold_it_open_once_in_the_budget(tmp_path: Path) -> None:
    """A run's training and validation datasets share their readers (SourceReads) and their cache: a video
    both read is one open decoder, charged to the budget once."""
    data = copies(tmp_path, 1)
    decoder = MediaReader(str(VIDEO)).open_bytes
    cache, sources = ByteBudgetCache(10 * decoder), SourceReads()
    training = ClipDataset(split(data, mode="val"), cache=cache, sources=sources)
    validation = ClipDataset(split(data, mode="val"), cache=cache, sources=sources)
    training.readers.read(0, [0])
    validation.readers.read(0, [1])
    assert training.readers.readers[0] is validation.readers.readers[0]
    assert [key for key in cache.entries if key[1] == READER] == [(SHARED, READER, id(training.readers.readers[0]))]
    assert cache.used == decoder
    training.readers.readers[0].close()


def test_a_reopened_video_is_not_probed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under the budget a video is reopened for a clip, and in every loader worker: the plugin and colour the
    # probe found at the start spare sleap-io opening the file with PyAV to choose a plugin, and comparing a
    # frame's channels, at each reopening.
    import copy

    import av
    import sleap_io as sio
    from sleap_io.io.video_reading import VideoBackend

    reader = MediaReader(str(VIDEO))
    in_worker = copy.deepcopy(reader)  # through __getstate__, as a spawned loader worker receives it
    expected = np.stack([np.asarray(sio.load_video(str(VIDEO))[index]) for index in (60, 61)])
    colour_checks: list[str] = []
    pyav_opens: list[str] = []
    detect_grayscale, av_open = VideoBackend.detect_grayscale, av.open

    def counted_detect_grayscale(backend: VideoBackend, *args: Any) -> bool:
        colour_checks.append(str(backend.filename))
        return bool(detect_grayscale(backend, *args))

    def counted_av_open(*args: Any, **kwargs: Any) -> Any:
        pyav_opens.append(str(args[0]))
        return av_open(*args, **kwargs)

    monkeypatch.setattr(VideoBackend, "detect_grayscale", counted_detect_grayscale)
    monkeypatch.setattr(av, "open", counted_av_open)
    for opened in (reader, in_worker):
        assert np.array_equal(opened.read([60, 61]), expected)
        opened.close()
    assert colour_checks == []
    assert pyav_opens == []
    assert in_worker.open_bytes == reader.open_bytes
