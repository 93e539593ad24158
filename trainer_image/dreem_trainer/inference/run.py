"""`dreem track` and `dreem eval`: a trained checkpoint over videos, tracked labels and metrics out."""

from __future__ import annotations

import csv
import json
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
from torch.utils.data import DataLoader

from dreem_trainer.config import DreemConfig
from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.data.clip import Clip, collate_clips
from dreem_trainer.data.dataset import ClipDataset, SourceReads
from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.data.formats import format_of, write_tracks
from dreem_trainer.data.label_format import Predictions
from dreem_trainer.data.records import UNTRACKED, LabelledVideo
from dreem_trainer.data.sources import DataError
from dreem_trainer.inference.device import TRAINING_MACHINE_KEYS, InferenceDevice, inference_device
from dreem_trainer.models.checkpoint import load_model, stored_config
from dreem_trainer.models.gtr import GlobalTrackingTransformer
from dreem_trainer.tracking.metrics import TRACKING_METRICS, TrackingCounts, tracking_counts
from dreem_trainer.tracking.tracker import ClipTracks, Tracker


@dataclass(frozen=True)
class TrackedVideo:
    """Predicted and true identities of every cropped instance of one video."""

    video: LabelledVideo
    frame_indices: np.ndarray
    index_in_frame: np.ndarray
    true_tracks: np.ndarray
    predicted_tracks: np.ndarray
    tracking_scores: np.ndarray
    review_frames: list[int]
    """Frames the tracker flagged as uncertain (`tracker.confidence_threshold`)."""
    seconds: float
    clip_frames: np.ndarray
    """Every frame the tracked clips held, those left without an instance to track included."""

    def counts(self) -> TrackingCounts:
        """CLEAR-MOT and IDF1 counts against the labels. A labelled instance of a tracked frame that tracking
        left out (a missing anchor under `handle_missing: drop`, a duplicate by `max_detection_overlap`, one
        beyond `max_tracks`) is a miss: the tracks hold nothing for it, even where it left a frame empty."""
        seen = set(zip(self.frame_indices.tolist(), self.index_in_frame.tolist(), strict=True))
        tracked_frames = set(self.clip_frames.tolist())
        left_out = [
            (frame.frame_idx, instance.track)
            for frame in self.video.frames
            if frame.frame_idx in tracked_frames
            for instance in frame.instances
            if instance.track >= 0 and (frame.frame_idx, instance.index_in_frame) not in seen
        ]
        frames = np.concatenate([self.frame_indices, np.array([f for f, _ in left_out], dtype=np.int64)])
        truth = np.concatenate([self.true_tracks, np.array([t for _, t in left_out], dtype=np.int64)])
        predicted = np.concatenate([self.predicted_tracks, np.full(len(left_out), -1, dtype=np.int64)])
        return tracking_counts(frames, truth, predicted)

    def predictions(self) -> Predictions:
        """What the writers take: each tracked instance's track and tracking score, and the flagged frames."""
        keys = [(int(f), int(i)) for f, i in zip(self.frame_indices, self.index_in_frame, strict=True)]
        return Predictions(
            tracks=dict(zip(keys, self.predicted_tracks.tolist(), strict=True)),
            scores=dict(zip(keys, self.tracking_scores.tolist(), strict=True)),
            review_frames=tuple(self.review_frames),
        )


DEFAULT_TRACKING_WORKERS = {"cuda": 1}
"""Loader processes by the device the model runs on, when `dataloader.test_dataloader.num_workers` is not
given. On a GPU one worker decodes and crops the next clips while the GPU runs the model, which keeps it
busy. On a CPU the model's threads already use every core, and a worker decoding beside them only slows them:
two_flies tracked at 45.2 frames/s with one and 50.9 without (float32; 75.1 and 87.9 in bf16), on 2 cores."""


def tracking_workers(config: DreemConfig, device: torch.device) -> int:
    """`dataloader.test_dataloader.num_workers` when given (0 decodes in the tracking process itself),
    else DEFAULT_TRACKING_WORKERS for `device` (none where it names none)."""
    loader = config.dataloader.test_dataloader
    if "num_workers" in loader.explicit():
        return loader.num_workers
    return DEFAULT_TRACKING_WORKERS.get(device.type, 0)


def clip_loader(dataset: ClipDataset, order: list[int], workers: int, pin_memory: bool) -> DataLoader[Clip]:
    """The clips `order` names, in that order. With `workers` > 0, decoding and cropping run in that many
    worker processes, each keeping two clips ready, while the caller runs the model; `pin_memory` (for a
    GPU) puts each clip in page-locked memory so its copy to the device does not block."""
    return DataLoader(
        dataset,
        batch_size=1,
        sampler=order,
        collate_fn=collate_clips,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        pin_memory=pin_memory,
    )


Item = TypeVar("Item")
_ENDED = object()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def prefetched(items: Iterable[Item], ahead: int = 1) -> Iterator[Item]:
    """`items`, each made `ahead` of its use in a thread: decoding and cropping the next clip (PyAV and numpy
    let go of the GIL) overlaps the model's forward over this one. On a CPU a loader process costs more than
    it saves, its start and its copies on the cores the model already uses: two_flies on 2 cores tracked at
    56.9 frames/s in one thread, 60.6 and 63.0 (two runs) with this one ahead, 52.6 with a loader process. An
    error the thread meets is raised here, where the item it was making would have been."""
    ready: queue.Queue[object] = queue.Queue(maxsize=ahead)

    def make() -> None:
        try:
            for item in items:
                ready.put(item)
        except BaseException as error:  # handed to the consumer, whatever it is
            ready.put(_Failed(error))
            return
        ready.put(_ENDED)

    threading.Thread(target=make, name="dreem-prefetch", daemon=True).start()
    while (made := ready.get()) is not _ENDED:
        if isinstance(made, _Failed):
            raise made.error
        yield cast(Item, made)


@dataclass
class _VideoTracks:
    """What tracking one video gathers, clip by clip."""

    video_index: int
    video: LabelledVideo
    frames: list[np.ndarray] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    truth: list[np.ndarray] = field(default_factory=list)
    predicted: list[np.ndarray] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    review: list[int] = field(default_factory=list)
    clip_frames: list[np.ndarray] = field(default_factory=list)

    def add(self, clip: Clip, tracked: ClipTracks) -> None:
        self.clip_frames.append(clip.frame_indices.numpy())
        self.frames.append(clip.frame_indices[clip.frame_ids].numpy())
        self.positions.append(clip.index_in_frame.numpy())
        self.truth.append(clip.track_ids.numpy())
        self.predicted.append(tracked.tracks.numpy())
        self.scores.append(tracked.scores.numpy())
        self.review += clip.frame_indices[tracked.low_confidence].tolist()

    def result(self, seconds: float) -> TrackedVideo:
        return TrackedVideo(
            video=self.video,
            frame_indices=np.concatenate(self.frames),
            index_in_frame=np.concatenate(self.positions),
            true_tracks=np.concatenate(self.truth),
            predicted_tracks=np.concatenate(self.predicted),
            tracking_scores=np.concatenate(self.scores),
            review_frames=self.review,
            seconds=seconds,
            clip_frames=np.concatenate(self.clip_frames),
        )


def track_videos(
    model: GlobalTrackingTransformer,
    split: DatasetSplitConfig,
    pairs: list[SourcePair],
    config: DreemConfig,
    num_workers: int | None = None,
    sources: SourceReads | None = None,
) -> list[TrackedVideo]:
    """Track every video from its first labelled frame to its last, carrying tracks across clips.

    Clips come from `clip_loader`, with `num_workers` processes (default: `tracking_workers`) decoding and
    cropping ahead of the model. A video's `seconds` run from the end of the one before (the first's from
    the start, the loader's start-up included). `sources` holds labels already read (by `check_ground_truth`)."""
    dataset = ClipDataset(
        split, seed=config.seed, pairs=pairs, frame_cache_mb=0, max_tracks=config.tracker.max_tracks, sources=sources
    )
    tracker = Tracker.for_model(model, config.tracker)
    order = sorted(range(len(dataset)), key=lambda index: dataset.spans[index].video_index)  # stable: clip order
    device = next(model.parameters()).device
    workers = tracking_workers(config, device) if num_workers is None else num_workers
    results: list[TrackedVideo] = []
    current: _VideoTracks | None = None
    started = time.perf_counter()
    clips = clip_loader(dataset, order, workers, pin_memory=device.type == "cuda")
    for (clip,) in clips if workers > 0 else prefetched(clips):
        if current is None or clip.video_index != current.video_index:
            if current is not None:
                results.append(current.result(time.perf_counter() - started))
                started = time.perf_counter()
            current = _VideoTracks(clip.video_index, dataset.video(clip.video_index))
            tracker.reset(node_names=current.video.node_names)
        current.add(clip, tracker.track_clip(clip, model.visual_encoder(clip.crops.to(device, non_blocking=True))))
    if current is not None:
        results.append(current.result(time.perf_counter() - started))
    return results


def tracking_base(checkpoint: str | Path) -> dict[str, Any]:
    """The checkpoint's configuration as the base of a tracking run, less the trainer keys and the data
    loaders that described the machine it was trained on: a model trained on GPUs tracks on a laptop."""
    base = stored_config(checkpoint)
    trainer = {k: v for k, v in dict(base.get("trainer") or {}).items() if k not in TRAINING_MACHINE_KEYS}
    # The training machine's loaders say nothing of this one's: tracking picks its own workers.
    return {k: v for k, v in base.items() if k != "dataloader"} | {"trainer": trainer}


def placed_model(
    config: DreemConfig, checkpoint: str | Path, quiet: bool = False
) -> tuple[GlobalTrackingTransformer, InferenceDevice]:
    """The checkpoint's network on the device the configuration asks for (CUDA by default when present),
    its encoder's BatchNorms folded into its convolutions (tracking never trains it)."""
    placement = inference_device(config.trainer)
    if not quiet:
        print(f"tracking on {placement}", flush=True)
    model = load_model(checkpoint).to(placement.device)
    model.visual_encoder.fold_batchnorm()
    return model, placement


def output_folder(output: Path) -> Path:
    """The output folder, made when the first file goes into it: a run that fails before leaves none behind."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataError(f"{output}: cannot make the output folder ({error.strerror})") from error
    return output


EVALUATION_FILES = ("metrics.json", "metrics_per_video.csv", "metrics_per_video.png")


def timeline_path(output: Path, video_path: str) -> Path:
    """Where dreem eval draws a video's identity timeline."""
    return output / f"{Path(video_path).stem}.identity_timeline.png"


def check_outputs(
    pairs: list[SourcePair], output: Path, render: bool, overwrite: bool, evaluation: bool = False
) -> None:
    """Before any video is tracked, the files the run will write: no two videos' tracks to one file (videos
    of one name in different folders), none over a file the run reads, and none over an existing file unless
    `overwrite` (a tracked file may have been proofread since the last run; an earlier evaluation's metrics
    are its results). `evaluation`: dreem eval's metrics and identity timelines too."""
    from dreem_trainer.inference.render import beside

    if output.exists() and not output.is_dir():
        raise DataError(f"{output}: is a file; --output names the folder tracked files go into")
    inputs = {Path(path).resolve(): path for pair in pairs for path in (pair.labels_path, pair.video_path)}
    planned: dict[Path, SourcePair] = {}
    for pair in pairs:
        tracked = format_of(pair.labels_path).written_to(pair.video_path, output)
        for target in [tracked, *([beside(tracked)] if render else [])]:
            resolved = target.resolve()
            if resolved in planned:
                raise DataError(
                    f"{target}: the tracks of {planned[resolved].labels_path} and of {pair.labels_path} would both "
                    "be written here (their videos share a name); track them into different --output folders"
                )
            read = inputs.get(resolved) or next(
                (source for path, source in inputs.items() if resolved in path.parents), None
            )  # a results folder (CTC's <seq>_RES) holding what the run reads counts as read
            if read is not None:
                raise DataError(f"{target}: this run reads it ({read}); choose another --output")
            if target.exists() and not overwrite:
                raise DataError(f"{target}: already exists; pass --overwrite to replace it")
            planned[resolved] = pair
    if evaluation and not overwrite:
        results = [output / name for name in EVALUATION_FILES]
        results += [timeline_path(output, pair.video_path) for pair in pairs]
        found = next((path for path in results if path.exists()), None)
        if found is not None:
            raise DataError(f"{found}: already exists (an earlier evaluation?); pass --overwrite to replace it")


def run_tracking(
    config: DreemConfig,
    checkpoint: str | Path,
    pairs: list[SourcePair],
    output: Path,
    render: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
) -> list[Path]:
    """Tracked labels per video; with `render`, each also drawn over its video beside it."""
    check_outputs(pairs, output, render, overwrite)
    model, placement = placed_model(config, checkpoint, quiet)
    written = []
    tracked: set[tuple[str, str]] = set()
    with torch.inference_mode(), placement.autocast():
        for result in track_videos(model, config.dataset.test_split(), pairs, config):
            written.append(write_tracks(result.video, result.predictions(), output_folder(output)))
            tracked.add((result.video.labels_path, result.video.video_path))
            frames = len(np.unique(result.frame_indices))
            tracks = len(np.unique(result.predicted_tracks))
            if not quiet:
                print(f"{written[-1]}: {frames} frames, {tracks} tracks, {frames / result.seconds:.1f} frames/s")
            if render:
                _render_beside(written[-1], result.video.video_path, quiet)
    for pair in pairs:
        if (pair.labels_path, pair.video_path) not in tracked:
            print(f"{pair.labels_path}: no labelled frames with instances to track; nothing written", file=sys.stderr)
    return written


def _render_beside(tracked: Path, video_path: str, quiet: bool) -> None:
    from dreem_trainer.inference.render import render_beside

    drawn = render_beside(tracked, video_path)
    if not quiet:
        print(f"{drawn.output}: {drawn.frames} frames drawn, {drawn.frames / drawn.seconds:.1f} frames/s")


def check_ground_truth(pairs: list[SourcePair], sources: SourceReads | None = None) -> None:
    """Every video to score has instances with identities, before any is tracked: untracked predictions are
    for `dreem track`. The labels are read into `sources`, which tracking then reads them from."""
    sources = sources or SourceReads()
    for pair in pairs:
        tracks = sources.labels(pair).tracks
        if not (tracks != UNTRACKED).any():
            what = "no labelled instances" if not len(tracks) else "no tracks"
            raise DataError(
                f"{pair.labels_path}: {what}, so no ground truth to score against (dreem eval scores labels whose "
                "instances carry their identities; dreem track tracks untracked ones)"
            )


def run_evaluation(
    config: DreemConfig,
    checkpoint: str | Path,
    pairs: list[SourcePair],
    output: Path,
    render: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
) -> dict[str, float]:
    """Metrics over every video, with per-video identity timelines and a metrics chart as PNGs."""
    from dreem_trainer.inference.plots import write_identity_timeline, write_metrics_chart

    check_outputs(pairs, output, render, overwrite, evaluation=True)
    sources = SourceReads()
    check_ground_truth(pairs, sources)
    model, placement = placed_model(config, checkpoint, quiet)
    rows: list[dict[str, float | str]] = []
    total = TrackingCounts()
    with torch.inference_mode(), placement.autocast():
        for result in track_videos(model, config.dataset.test_split(), pairs, config, sources=sources):
            tracked = write_tracks(result.video, result.predictions(), output_folder(output))
            counts = result.counts()
            total += counts
            rows.append({"video": result.video.name, **counts.summary()})
            write_identity_timeline(
                timeline_path(output, result.video.video_path),
                result.video.name,
                result.frame_indices,
                result.true_tracks,
                result.predicted_tracks,
                result.video.track_names,
            )
            if render:
                _render_beside(tracked, result.video.video_path, quiet)
    metrics_json, metrics_csv, metrics_png = (output_folder(output) / name for name in EVALUATION_FILES)
    write_metrics_chart(metrics_png, rows)
    summary = total.summary()
    metrics_json.write_text(json.dumps(summary, indent=2) + "\n")
    with metrics_csv.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if not quiet:
        _print_table([*rows, {"video": "ALL", **summary}])
    return summary


def _print_table(rows: list[dict[str, float | str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Tracking metrics")
    columns = ["video", *(metric.name for metric in TRACKING_METRICS if metric.eval_table)]
    for column in columns:
        table.add_column(column, justify="left" if column == "video" else "right")
    for row in rows:
        table.add_row(*(str(row[c]) if c == "video" else f"{float(row[c]):.4g}" for c in columns))
    Console(file=sys.stdout, width=100).print(table)
