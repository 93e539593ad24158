"""`ClipDataset`: a dataset split as Clips, frames decoded once per clip and cached within a byte budget."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.config.root import CHANNELS_PER_CROP
from dreem_trainer.data.augment import FrameAugmenter
from dreem_trainer.data.cache import CLIP, FRAMES, ByteBudgetCache, ReaderPool, frame_cache_bytes
from dreem_trainer.data.clip import Clip
from dreem_trainer.data.crops import anchor_centers, anchor_names, boxes_around, cut_crops, keypoint_mask
from dreem_trainer.data.detections import excess_detections, overlapping_duplicates
from dreem_trainer.data.discovery import SourcePair, discover
from dreem_trainer.data.label_table import LabelTable
from dreem_trainer.data.microscopy import TiffReader, is_tiff_video
from dreem_trainer.data.records import Frame, Instance, LabelledVideo
from dreem_trainer.data.sources import DataError, Images, MediaReader, VideoReader

_dataset_ids = itertools.count()

Anchored = tuple[Instance, npt.NDArray[np.float64]]
"""An instance with the centres of its crops, one per anchor."""


@dataclass(frozen=True)
class ClipSpan:
    """Which labelled frames of which video make one clip."""

    video_index: int
    start: int
    stop: int


def plan_clips(
    videos: Sequence[npt.NDArray[np.int64] | Sequence[int]],
    clip_length: int,
    chunk: bool,
    n_chunks: int | float,
    rng: np.random.Generator,
    max_batching_gap: int | None = None,
) -> list[ClipSpan]:
    """Each video's labelled frame numbers, in order, cut into clips of consecutive labelled frames;
    `n_chunks` keeps a number (int) or fraction (float) of them.

    With chunking, labelled frames `max_batching_gap` or more frames apart start a new clip, as in DREEM, so
    a clip never spans a long unlabelled stretch."""
    spans = []
    for index, video in enumerate(videos):
        count = len(video)
        if not chunk:
            spans += [ClipSpan(index, 0, count)] if count else []
            continue
        for first, end in _stretches(video, max_batching_gap):
            spans += [ClipSpan(index, start, min(start + clip_length, end)) for start in range(first, end, clip_length)]
    keep = n_chunks if isinstance(n_chunks, int) else math.ceil(n_chunks * len(spans))
    if keep >= len(spans):
        return spans
    chosen = sorted(rng.choice(len(spans), size=keep, replace=False).tolist())
    return [spans[i] for i in chosen]


def _stretches(indices: npt.NDArray[np.int64] | Sequence[int], max_gap: int | None) -> list[tuple[int, int]]:
    """[first, end) positions of the runs of labelled frames closer than `max_gap` frames to the one before."""
    starts = [0, *(k for k in range(1, len(indices)) if max_gap is not None and indices[k] - indices[k - 1] >= max_gap)]
    return list(zip(starts, [*starts[1:], len(indices)], strict=True)) if len(indices) else []


def open_reader(video_path: str) -> VideoReader:
    """TIFF frames (a folder of them, or one stack) through tifffile; other media through sleap-io."""
    if is_tiff_video(video_path):
        return TiffReader(video_path)
    return MediaReader(video_path)


class SourceReads:
    """Each source's labels, read once, and each video's reader, made (and so probed) once, for the
    datasets of one run: the training and validation splits often name the same files, and reading them
    again would only delay the first step. A shared reader has one entry in the cache the datasets share, so
    it is charged to the budget once, whichever dataset opened it."""

    def __init__(self) -> None:
        self._labels: dict[tuple[str, str], LabelTable] = {}
        self._readers: dict[str, VideoReader] = {}

    def labels(self, pair: SourcePair) -> LabelTable:
        key = (pair.labels_path, pair.video_path)
        if key not in self._labels:
            self._labels[key] = LabelTable.of(pair.read())
        return self._labels[key]

    def reader(self, video_path: str) -> VideoReader:
        if video_path not in self._readers:
            self._readers[video_path] = open_reader(video_path)
        return self._readers[video_path]


class ClipDataset(Dataset[Clip]):
    """Clips of one dataset split. Augmentation and random anchors apply in train mode only.

    What it holds does not grow with the number of videos beyond their labels, kept as flat arrays
    (`LabelTable`): decoded frames or built clips, and the videos kept open, stay within one byte budget per
    process (`cache`, shared with the process's other datasets), plus the video being read."""

    def __init__(
        self,
        split: DatasetSplitConfig,
        seed: int | None = None,
        pairs: list[SourcePair] | None = None,
        frame_cache_mb: int | None = None,
        max_tracks: int | None = None,
        cache: ByteBudgetCache | None = None,
        sources: SourceReads | None = None,
    ) -> None:
        """`max_tracks` (the tracker's, when tracking) drops each frame's least confident predicted
        instances beyond that many, as DREEM's dataset does before tracking. Without a `cache`, the dataset
        makes its own of `frame_cache_mb` (see `frame_cache_bytes`). `sources` shares the labels and readers
        of files another split of the run also reads."""
        self.split = split
        self.max_tracks = max_tracks
        self.pairs = pairs if pairs is not None else discover(split)
        sources = sources or SourceReads()
        self.labels = [sources.labels(pair) for pair in self.pairs]
        self.train = split.mode == "train"
        self.seed = split.seed if split.seed is not None else seed  # DREEM seeds each split's dataset
        self.rng = np.random.default_rng(self.seed)
        self.spans = plan_clips(
            [table.frame_indices for table in self.labels],
            split.clip_length,
            split.chunk,
            split.n_chunks,
            self.rng,
            split.max_batching_gap,
        )
        self.cache = cache if cache is not None else ByteBudgetCache(frame_cache_bytes(frame_cache_mb))
        self.cache_id = next(_dataset_ids)
        self.readers = ReaderPool([sources.reader(pair.video_path) for pair in self.pairs], self.cache)
        for pair, reader, table in zip(self.pairs, self.readers.readers, self.labels, strict=True):
            _check_frames_fit(pair, reader, table)
        self.augmenter = FrameAugmenter(split.augmentations, seed) if self.train and split.augmentations else None
        # A clip that comes out the same every time is cached whole (crops are ~30x smaller than frames);
        # one that is augmented or drawn at random is rebuilt from cached frames.
        self.deterministic = not (self.train and (self.augmenter is not None or isinstance(split.anchors, int)))
        if not isinstance(split.anchors, int):
            for table in self.labels:
                anchor_names(split.anchors, table.node_names, self.rng)

    def __len__(self) -> int:
        return len(self.spans)

    def reseed(self, seed: int) -> None:
        """Augmentations and random anchors drawn from `seed` from now on. A loader worker starts with a copy
        of the dataset's generators, so without this every worker would draw the same augmentations, and,
        where workers are started again each epoch, the same ones every epoch (`reseed_worker`)."""
        self.rng = np.random.default_rng(seed)
        if self.augmenter is not None:
            self.augmenter.reseed(seed)

    def video(self, video_index: int) -> LabelledVideo:
        """One video's labels as its reader made them, rebuilt from the table (for writing tracks back)."""
        return self.labels[video_index].video()

    def frames_of(self, span: ClipSpan) -> tuple[Frame, ...]:
        return self.labels[span.video_index].frames(span.start, span.stop)

    def images_of(self, span: ClipSpan) -> Images:
        """A clip's decoded frames. Cached by video and frame numbers, not by dataset, so that splits of a run
        reading the same files (DREEM's configs often validate on the training videos) decode them once: a
        split that caches its clips whole (`deterministic`) reads frames another split cached, adding none."""
        frame_indices = self.labels[span.video_index].frame_indices[span.start : span.stop].tolist()
        key = (FRAMES, self.pairs[span.video_index].video_path, tuple(frame_indices))
        images = self.cache.get(key)
        if not isinstance(images, np.ndarray):
            images = self.readers.read(span.video_index, frame_indices)
            if not self.deterministic:
                self.cache.put(key, images, images.nbytes)
        return images

    def __getitem__(self, index: int) -> Clip:
        clip = self.cache.get((self.cache_id, CLIP, index)) if self.deterministic else None
        if not isinstance(clip, Clip):
            clip = self._build(index)
            if self.deterministic:
                self.cache.put((self.cache_id, CLIP, index), clip, clip.nbytes)
        return clip

    def _build(self, index: int) -> Clip:
        span = self.spans[index]
        table = self.labels[span.video_index]
        frames = self.frames_of(span)
        images = self.images_of(span)
        size = self.pairs[span.video_index].crop_size + 2 * self.split.padding
        rng = self.rng if self.train else np.random.default_rng((self.seed or 0) + index)
        names = anchor_names(self.split.anchors, table.node_names, rng)
        crops, boxes, frame_ids, track_ids, positions, points = [], [], [], [], [], []
        for frame_id, (frame, image) in enumerate(zip(frames, images, strict=True)):
            instances = frame.instances
            if self.augmenter is not None:
                image, instances = self.augmenter(image, instances)
            anchored = [
                (instance, centers)
                for instance in instances
                if (centers := anchor_centers(instance, names, table.node_names, self.split.handle_missing)) is not None
            ]
            anchored = self._kept(anchored, size)
            if not anchored:
                continue
            # Every crop of the frame in one cut, then split per instance.
            every_center = np.concatenate([centers for _, centers in anchored])
            cuts = cut_crops(image, every_center, size).reshape(len(anchored), len(names), size, size, -1)
            for (instance, centers), cut in zip(anchored, cuts, strict=True):
                if self.split.dilation_radius_px:
                    for k, center in enumerate(centers):
                        cut[k][~keypoint_mask(instance.points, center, size, self.split.dilation_radius_px)] = 0
                crops.append(_to_channels(cut))
                boxes.append(boxes_around(centers, size))
                frame_ids.append(frame_id)
                track_ids.append(instance.track)
                positions.append(instance.index_in_frame)
                points.append(instance.points)
        height, width = images.shape[1:3]
        channels = CHANNELS_PER_CROP * len(names)
        return Clip(
            crops=torch.from_numpy(np.stack(crops))
            if crops
            else torch.zeros((0, channels, size, size), dtype=torch.uint8),
            boxes=torch.from_numpy(np.stack(boxes)) if boxes else torch.zeros((0, len(names), 4)),
            frame_ids=torch.tensor(frame_ids, dtype=torch.long),
            track_ids=torch.tensor(track_ids, dtype=torch.long),
            index_in_frame=torch.tensor(positions, dtype=torch.long),
            frame_indices=torch.tensor([frame.frame_idx for frame in frames], dtype=torch.long),
            image_size=torch.tensor([height, width], dtype=torch.long),
            video_index=span.video_index,
            points=torch.from_numpy(np.stack(points).astype(np.float32))
            if points
            else torch.zeros((0, len(table.node_names), 2)),
            node_names=tuple(table.node_names),
        )

    def _kept(self, anchored: list[Anchored], size: int) -> list[Anchored]:
        """The detections DREEM keeps of a frame: at most `max_tracks` (the least confident predicted ones go
        first), then, of two whose crop boxes overlap more than `max_detection_overlap`, the better-posed."""
        excess = excess_detections([instance.score for instance, _ in anchored], self.max_tracks)
        anchored = [item for position, item in enumerate(anchored) if position not in excess]
        if self.split.max_detection_overlap <= 0 or len(anchored) < 2:
            return anchored
        boxes = np.stack([boxes_around(centers, size) for _, centers in anchored])
        visible = [int((~np.isnan(instance.points).any(axis=1)).sum()) for instance, _ in anchored]
        duplicates = overlapping_duplicates(boxes, visible, self.split.max_detection_overlap)
        return [item for position, item in enumerate(anchored) if position not in duplicates]


def _to_channels(crops: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(A, S, S, C) anchor crops to (A * 3, S, S): grey repeated to RGB, anchors stacked on channels."""
    channels = crops.shape[-1]
    if channels == 1:
        crops = np.repeat(crops, CHANNELS_PER_CROP, axis=-1)
    elif channels != CHANNELS_PER_CROP:
        raise DataError(f"frames with {channels} channels: expected grey (1) or RGB (3)")
    anchors, size = crops.shape[0], crops.shape[1]
    return np.ascontiguousarray(crops.transpose(0, 3, 1, 2).reshape(anchors * CHANNELS_PER_CROP, size, size))


def _check_frames_fit(pair: SourcePair, reader: VideoReader, table: LabelTable) -> None:
    """The video's frames against what is cut from them, before any is decoded.

    A crop larger than the frames is a slip (4096 for 1024-pixel frames): each would be mostly padding, and a
    clip of them took tens of GB before the kernel killed the run. Labels whose points mostly lie outside the
    frames belong to another video (or a scaled copy of this one): every crop would be padding."""
    height, width = reader.frame_size()
    visible = table.points[~np.isnan(table.points).any(axis=1)]
    outside = (visible[:, 0] < 0) | (visible[:, 0] > width) | (visible[:, 1] < 0) | (visible[:, 1] > height)
    if len(visible) and outside.mean() > 0.5:
        x, y = visible[np.flatnonzero(outside)[0]]
        raise DataError(
            f"{pair.labels_path}: {outside.mean():.0%} of its points lie outside the {width}x{height} frames of "
            f"{pair.video_path} (one at ({x:.0f}, {y:.0f})): the labels belong to another video, or to a copy of "
            "another size"
        )
    if pair.crop_size > max(height, width):  # padding aside: a model's crop_size is fixed, DREEM pads by 5
        raise DataError(
            f"crop_size: {pair.crop_size} is larger than the {width}x{height} frames of {pair.video_path}; a crop "
            "is cut around each instance: make it about the size of an animal"
        )


def reseed_worker(worker_id: int) -> None:
    """A DataLoader's worker_init_fn: each worker of each rank draws its own augmentations and anchors.
    Lightning's own worker seeding (what seed_everything(workers=True) adds, which this replaces) seeds torch,
    Python and NumPy from torch's per-worker seed, the worker and the global rank; the dataset's generators
    follow torch's seed it leaves, so they differ between workers, ranks and epochs and follow the run's seed."""
    from lightning.fabric.utilities.seed import pl_worker_init_function

    pl_worker_init_function(worker_id)
    info = torch.utils.data.get_worker_info()
    if info is not None and isinstance(info.dataset, ClipDataset):
        info.dataset.reseed(torch.initial_seed())
