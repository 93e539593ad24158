"""Pairs each labels file with its video by file stem, never by listing order."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from dreem_trainer.config.data import DatasetSplitConfig
from dreem_trainer.config.issues import first_few
from dreem_trainer.data.formats import format_of, laid_out_sources, layouts
from dreem_trainer.data.records import LabelledVideo
from dreem_trainer.data.sources import DataError

log = logging.getLogger(__name__)

TRACKING_OUTPUT_MARKS = (".dreem_track.", ".dreem_tracks.", ".dreem_inference.")
"""How tracking names what it writes: `dreem track`'s `<video>.dreem_track.slp` and `.dreem_tracks.csv`,
`dreem render`'s `<video>.dreem_track.mp4`, DREEM's `<video>.dreem_inference.<time>.slp`. Written into the
data folder, they are predictions and drawings, not labels and recordings: paired by name they would train
on a drawn copy of the video."""


def is_tracking_output(path: Path) -> bool:
    return any(mark in path.name for mark in TRACKING_OUTPUT_MARKS)


@functools.cache
def _say_left_out(directory: str, shown: str) -> None:
    """Once per folder and listing: a run's splits often read the same folder."""
    log.warning(
        "warning: %s: left out what tracking wrote there (%s): rename a proofread file, or list it in "
        "slp_files/video_files, to read it as labels",
        directory,
        shown,
    )


@dataclass(frozen=True)
class SourcePair:
    labels_path: str
    video_path: str
    crop_size: int

    def read(self) -> LabelledVideo:
        """The labelled frames of the video, read in the labels' format."""
        return format_of(self.labels_path).read(self.labels_path, self.video_path)


def _stem(path: Path, suffix: str) -> str:
    return path.name[: -len(suffix)] if suffix and path.name.endswith(suffix) else path.stem


def pair_directory(directory: str, labels_suffix: str, vid_suffix: str, crop_size: int) -> list[SourcePair]:
    root = Path(directory)
    if root.is_file():
        raise DataError(
            f"{directory}: a file where a folder of labels and videos is expected: give its folder, or name the "
            "files with --slp-file and --video-file (slp_files/video_files)"
        )
    if not root.is_dir():
        raise DataError(f"{directory}: no such data directory")
    listed = list(root.iterdir())  # listed once: a directory of thousands of videos is read once, not twice
    entries: list[Path] = []
    outputs: list[str] = []
    for path in listed:
        if is_tracking_output(path):
            outputs.append(path.name)
        else:
            entries.append(path)
    if outputs:
        _say_left_out(directory, first_few(sorted(outputs)))
    labels = {_stem(p, labels_suffix): p for p in entries if p.name.endswith(labels_suffix) and p.is_file()}
    labels_files = set(labels.values())  # a set: the check below runs once per entry
    videos = {_stem(p, vid_suffix): p for p in entries if p.name.endswith(vid_suffix) and p not in labels_files}
    if not labels:
        laid_out = laid_out_sources(root)
        if laid_out:
            return [SourcePair(str(labels_path), str(video_path), crop_size) for labels_path, video_path in laid_out]
        missing = [f"labels file ending in {labels_suffix!r}", *layouts()]
        raise DataError(f"{directory}: matches no known layout: no {', and no '.join(missing)}")
    pairs = []
    for stem in sorted(labels):
        if stem in videos:
            pairs.append(SourcePair(str(labels[stem]), str(videos[stem]), crop_size))
            continue
        # SLEAP users often keep the videos elsewhere, or one project file for many videos: those it names.
        beside = f"no video named {stem}{vid_suffix} beside it"
        pairs += [SourcePair(str(labels[stem]), video, crop_size) for video in named_videos(labels[stem], beside)]
    claimed = {Path(pair.video_path).resolve() for pair in pairs}
    orphans = sorted(str(path) for path in videos.values() if path.resolve() not in claimed)
    if orphans:
        raise DataError(
            f"{orphans[0]}: no labels file ending in {labels_suffix!r} with the same name: dreem tracks the "
            "instances a labels file holds (SLEAP's predictions, for one), so predict them first"
        )
    return pairs


def named_videos(labels: Path, missing_beside: str) -> list[str]:
    """The videos a labels file names, found where it says, else beside it (the folder was moved); refused,
    with `missing_beside` and what it names, when it names none or one is not on this machine."""
    found, absent = [], []
    for named in format_of(str(labels)).videos_named(str(labels)):
        where = [labels.parent / named, labels.parent / Path(named).name, Path(named)]  # an absolute path first
        existing = next((path for path in where if path.is_file()), None)
        if existing is None:
            absent.append(named)
        else:
            found.append(str(existing))
    if absent or not found:
        names = f", and the video it names, {absent[0]}, is not on this machine" if absent else ""
        raise DataError(f"{labels}: {missing_beside}{names}")
    return found


def discover(split: DatasetSplitConfig) -> list[SourcePair]:
    """Every (labels, video) pair of a dataset split, with the crop size that applies to it."""
    sizes = split.crop_size if isinstance(split.crop_size, list) else None
    if split.dir is not None and not split.reads_files:
        pairs: list[SourcePair] = []
        for index, directory in enumerate(split.dir.paths):
            size = sizes[index] if sizes else int(split.crop_size)  # type: ignore[arg-type]
            pairs += pair_directory(directory, split.dir.labels_suffix, split.dir.vid_suffix, size)
        return pairs
    pairs = []
    labels_files = split.slp_files or []
    videos: list[str | None] = list(split.video_files) if split.video_files is not None else [None] * len(labels_files)
    for index, (labels, video) in enumerate(zip(labels_files, videos, strict=True)):
        size = sizes[index] if sizes else int(split.crop_size)  # type: ignore[arg-type]
        for path in (labels, video):
            if path is not None and not Path(path).is_file():
                raise DataError(f"{path}: no such file")
        named = [video] if video is not None else named_videos(Path(labels), "no video_files given for it")
        pairs += [SourcePair(labels, path, size) for path in named]
    return pairs
