"""ClipDataset on the real two-fly recording: clips, crops, anchors and augmentation keys."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.data.dataset import ClipDataset
from dreem_trainer.data.sources import MediaReader
from tests.conftest import DEMO_DATA


def split(**keys: Any) -> DatasetSplitConfig:
    base: dict[str, Any] = {"dir": {"path": str(DEMO_DATA)}, "anchors": "thorax", "crop_size": 32, "clip_length": 8}
    return DatasetSplitConfig.model_validate(base | keys)


def test_clip_length_and_chunking() -> None:
    dataset = ClipDataset(split(clip_length=8, mode="val"))
    assert len(dataset) == 16  # 128 labelled frames
    clip = dataset[0]
    assert clip.num_frames == 8 and clip.num_instances == 16
    assert clip.crops.shape == (16, 3, 32, 32)
    assert set(clip.track_ids.tolist()) == {0, 1}
    whole = ClipDataset(split(chunk=False, mode="val"))
    assert len(whole) == 1 and whole[0].num_frames == 128


def test_a_clip_names_its_nodes_for_the_trackers_body_axes() -> None:
    """Validation tracks each clip with the tracker's front_nodes/back_nodes, which it finds by these names (it
    fell back to the principal axis, so val metrics scored another tracker than dreem track's)."""
    dataset = ClipDataset(split(mode="val"))
    clip = dataset[0]
    assert clip.node_names == dataset.video(clip.video_index).node_names
    assert clip.points is not None and clip.points.shape[1] == len(clip.node_names) and "head" in clip.node_names


def test_n_chunks_number_and_fraction() -> None:
    assert len(ClipDataset(split(n_chunks=3))) == 3
    assert len(ClipDataset(split(n_chunks=0.25))) == 4


def test_padding_and_anchor_list_shape_the_crops() -> None:
    padded = ClipDataset(split(padding=4, mode="val"))[0]
    assert padded.crops.shape[-1] == 40
    stacked = ClipDataset(split(anchors=["head", "thorax"], mode="val"))[0]
    assert stacked.crops.shape[1] == 6 and stacked.boxes.shape[1] == 2
    random = ClipDataset(split(anchors=3, mode="val"))[0]
    assert random.crops.shape[1] == 9


def test_anchor_moves_the_crop() -> None:
    head = ClipDataset(split(anchors="head", mode="val"))[0]
    thorax = ClipDataset(split(anchors="thorax", mode="val"))[0]
    assert not torch.equal(head.crops, thorax.crops)
    assert not torch.equal(head.boxes, thorax.boxes)


def test_dilation_masks_the_background() -> None:
    plain = ClipDataset(split(mode="val"))[0]
    masked = ClipDataset(split(dilation_radius_px=3, mode="val"))[0]
    assert (masked.crops == 0).float().mean() > (plain.crops == 0).float().mean() + 0.3
    assert masked.crops.float().mean() < plain.crops.float().mean()


def test_handle_missing_drop_ignore_centroid() -> None:
    import sleap_io as sio

    labels = sio.load_slp(str(DEMO_DATA / "two_flies.slp"))
    node = labels.skeletons[0].node_names.index("forelegR4")
    frames = sorted(labels.labeled_frames, key=lambda lf: lf.frame_idx)
    points = np.stack([i.numpy() for lf in frames for i in lf.instances])
    missing = np.isnan(points[:, node, 0])
    assert 0 < missing.sum() < len(points)
    keep = ClipDataset(split(anchors="forelegR4", handle_missing="centroid", mode="val", chunk=False))[0]
    drop = ClipDataset(split(anchors="forelegR4", handle_missing="drop", mode="val", chunk=False))[0]
    ignore = ClipDataset(split(anchors="forelegR4", handle_missing="ignore", mode="val", chunk=False))[0]
    # The clips' instances are the labels' in frame order: keep and ignore hold them all, drop those with the node.
    assert keep.points is not None and ignore.points is not None and drop.points is not None
    assert np.array_equal(keep.points.numpy(), points.astype(np.float32), equal_nan=True)
    assert np.array_equal(ignore.points.numpy(), points.astype(np.float32), equal_nan=True)
    assert np.array_equal(drop.points.numpy(), points[~missing].astype(np.float32), equal_nan=True)
    # ignore: a blank crop and no box exactly where the anchor is missing.
    assert np.array_equal((ignore.crops.flatten(1).amax(1) == 0).numpy(), missing)
    assert np.array_equal(torch.isnan(ignore.boxes[:, 0]).all(1).numpy(), missing)
    # centroid: where the anchor is missing, the crop is centred on the mean of the instance's visible points.
    centroids = np.array([p[~np.isnan(p).any(1)].mean(0) for p in points[missing]])  # x, y
    boxes = keep.boxes[torch.from_numpy(missing), 0].numpy()  # y1, x1, y2, x2
    centres = np.stack([(boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2], axis=1)
    assert np.allclose(centres, centroids, atol=1e-3)
    centred = ClipDataset(split(anchors="centroid", mode="val", chunk=False))[0]  # every crop on the centroid
    assert torch.equal(keep.crops[missing], centred.crops[missing])
    assert not (keep.crops[missing].flatten(1).amax(1) == 0).any()
    # Where the anchor is visible, centroid crops around it as ignore does.
    assert torch.equal(keep.crops[~missing], ignore.crops[~missing])
    assert torch.equal(keep.boxes[~missing], ignore.boxes[~missing])


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The frame numbers of every read that reaches a video's decoder, in order."""
    calls: list[list[int]] = []
    original = MediaReader.read

    def counting(self: MediaReader, frame_indices: list[int]) -> Any:
        calls.append(frame_indices)
        return original(self, frame_indices)

    monkeypatch.setattr(MediaReader, "read", counting)
    return calls


def test_frames_are_decoded_once_per_clip(decodes: list[list[int]]) -> None:
    dataset = ClipDataset(split(mode="val"))
    dataset[0]
    dataset[0]
    assert decodes == [list(range(8))]  # one decode for 16 instances, and none the second time
    augmented = ClipDataset(split(mode="train", augmentations={"Blur": {"p": 1.0}}))
    first, second = augmented[1], augmented[1]
    assert decodes[1:] == [list(range(8, 16))]  # augmented clips are rebuilt from the cached frames
    assert first.num_instances == second.num_instances


def test_splits_reading_the_same_video_decode_its_frames_once(decodes: list[list[int]]) -> None:
    """Training (augmented: it caches frames) and validation (caches whole clips) over the same file, as
    DREEM's configs often have them, share one cache: validation reads the frames training decoded."""
    from dreem_trainer.data.cache import ByteBudgetCache
    from dreem_trainer.data.dataset import SourceReads

    cache, sources = ByteBudgetCache(2**30), SourceReads()
    train = ClipDataset(split(mode="train", augmentations={"Blur": {"p": 1.0}}), cache=cache, sources=sources)
    val = ClipDataset(split(mode="val"), cache=cache, sources=sources)
    train[0]
    val_clip = val[0]
    assert decodes == [list(range(8))]
    alone = ClipDataset(split(mode="val"))[0]  # its own cache: decodes
    assert len(decodes) == 2
    assert torch.equal(val_clip.crops, alone.crops) and torch.equal(val_clip.boxes, alone.boxes)


def test_augmentations_apply_in_train_mode_only() -> None:
    augmentations = {"Rotate": {"limit": [90, 90], "p": 1.0}}
    train = ClipDataset(split(mode="train", augmentations=augmentations), seed=0)[0]
    val = ClipDataset(split(mode="val", augmentations=augmentations), seed=0)[0]
    plain = ClipDataset(split(mode="val"), seed=0)[0]
    assert torch.equal(val.crops, plain.crops)
    assert not torch.equal(train.crops, plain.crops)
    # Keypoints move with the pixels: the boxes follow the rotated thorax.
    assert not torch.allclose(train.boxes, plain.boxes)


def test_instance_and_node_dropout() -> None:
    dropped = ClipDataset(split(mode="train", augmentations={"InstanceDropout": {"p": 1.0, "n": 1}}), seed=0)[0]
    assert dropped.num_instances == 8  # one of the two flies hidden in each of 8 frames
    nodes = ClipDataset(
        split(
            mode="train", anchors="thorax", handle_missing="drop", augmentations={"NodeDropout": {"p": 1.0, "n": 13}}
        ),
        seed=0,
    )[0]
    assert nodes.num_instances == 0


def test_grey_frames_become_three_equal_channels() -> None:
    clip = ClipDataset(split(mode="val"))[0]
    assert torch.equal(clip.crops[:, 0], clip.crops[:, 1]) and torch.equal(clip.crops[:, 1], clip.crops[:, 2])
    assert clip.crops.dtype == torch.uint8 and int(clip.crops.max()) > 0
    assert np.isfinite(clip.boxes.numpy()).all()


def predicted_copy(tmp_path: Any) -> DatasetSplitConfig:
    """two_flies' first 8 frames as predictions: the flies at scores 0.9 and 0.5, and a third detection that
    repeats the first fly 3 px away with half its keypoints (score 0.95)."""
    import sleap_io as sio

    labels = sio.load_slp(str(DEMO_DATA / "two_flies.slp"))
    skeleton = labels.skeletons[0]
    frames = []
    for labelled_frame in sorted(labels.labeled_frames, key=lambda lf: lf.frame_idx)[:8]:
        first, second = (instance.numpy() for instance in labelled_frame.instances[:2])
        echo = first + 3.0
        echo[::2] = np.nan
        instances = [
            sio.PredictedInstance.from_numpy(points, skeleton=skeleton, score=score)
            for points, score in ((first, 0.9), (second, 0.5), (echo, 0.95))
        ]
        frames.append(sio.LabeledFrame(video=labels.videos[0], frame_idx=labelled_frame.frame_idx, instances=instances))
    path = tmp_path / "two_flies.slp"
    sio.save_slp(sio.Labels(frames, videos=labels.videos, skeletons=[skeleton]), str(path))
    (tmp_path / "two_flies.mp4").symlink_to(DEMO_DATA / "two_flies.mp4")
    return split(dir={"path": str(tmp_path)}, mode="test")


def test_dreem_detection_filters_keep_the_frame_s_best_detections(tmp_path: Any) -> None:
    test_split = predicted_copy(tmp_path)
    everything = ClipDataset(test_split)[0]
    assert everything.num_instances == 8 * 3
    # max_tracks 2: the least confident detection of each frame goes (the second fly, at 0.5).
    capped = ClipDataset(test_split, max_tracks=2)[0]
    assert capped.index_in_frame.tolist() == [0, 2] * 8
    # The echo overlaps the first fly almost whole and shows fewer keypoints: it goes.
    deduplicated = ClipDataset(test_split.model_copy(update={"max_detection_overlap": 0.5}))[0]
    assert deduplicated.index_in_frame.tolist() == [0, 1] * 8
    both = ClipDataset(test_split.model_copy(update={"max_detection_overlap": 0.5}), max_tracks=2)[0]
    assert both.index_in_frame.tolist() == [0] * 8


def test_a_long_unlabelled_stretch_starts_a_new_clip() -> None:
    from dreem_trainer.data.dataset import plan_clips

    video = [*range(10), *range(30, 40)]  # the labelled frames: 21 frames from 9 to 30
    rng = np.random.default_rng(0)

    def cuts(gap: int | None) -> list[tuple[int, int]]:
        return [(span.start, span.stop) for span in plan_clips([video], 8, True, 1.0, rng, gap)]

    assert cuts(15) == [(0, 8), (8, 10), (10, 18), (18, 20)]  # DREEM's default gap, 15
    assert cuts(22) == cuts(None) == [(0, 8), (8, 16), (16, 20)]
    assert [(s.start, s.stop) for s in plan_clips([video], 8, False, 1.0, rng, 15)] == [(0, 20)]


def test_a_split_s_own_seed_wins() -> None:
    seeded = ClipDataset(split(n_chunks=3, seed=5), seed=1)
    assert seeded.seed == 5
    assert [s.start for s in seeded.spans] == [s.start for s in ClipDataset(split(n_chunks=3), seed=5).spans]
