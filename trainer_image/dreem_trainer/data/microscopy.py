"""Microscopy sources: the Cell Tracking Challenge (CTC) layout and TIFF frames.

A CTC sequence is a folder of raw frames (`<seq>/t000.tif` or `frame_0000.tif`) beside its ground truth
`<seq>_GT/TRA/`: one label mask per frame (each cell's identity is its pixel value) and `man_track.txt`,
lines `label begin end parent`, the parent being the cell it divided from (0: none).
A cell becomes an Instance with one node, `centroid`, at its mask's centre of mass, and its bounding box.

Frames that are not 8-bit (16-bit, float) are scaled by their 1st and 99.8th percentiles, not by a
fixed 255: a 12-bit camera fills a few percent of the 16-bit range, and one hot pixel must not set it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dreem_trainer.data.label_format import LabelFormat, Predictions
from dreem_trainer.data.records import UNTRACKED, Frame, Instance, LabelledVideo
from dreem_trainer.data.sources import DataError, Images

CTC_TRACKS = "man_track.txt"
CTC_RESULT_TRACKS = "res_track.txt"
"""The same table in a tracker's results (`<seq>_RES/`), beside masks holding the tracks."""
CTC_NODE = "centroid"
"""The one node of a cell: its mask's centre of mass."""
TIFF_SUFFIXES = (".tif", ".tiff")
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.8
_NUMBER = re.compile(r"(\d+)(?=\.tiff?$)")


def frame_number(path: Path) -> int:
    """The frame index in a CTC file name (`t012.tif`, `frame_0012.tif`, `man_track012.tif`)."""
    found = _NUMBER.search(path.name)
    if found is None:
        raise DataError(f"{path}: no frame number in the file name")
    return int(found.group(1))


def numbered_tiffs(folder: Path) -> dict[int, Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES]
    return {frame_number(p): p for p in sorted(files)}


def to_uint8(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """8-bit frames as they are; others scaled robustly by their percentiles."""
    if image.dtype == np.uint8:
        return image.astype(np.uint8, copy=False)
    values = image.astype(np.float32)
    low, high = (float(bound) for bound in np.percentile(values, (LOW_PERCENTILE, HIGH_PERCENTILE)))
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled: npt.NDArray[np.uint8] = np.clip((values - low) * (255.0 / (high - low)), 0, 255).astype(np.uint8)
    return scaled


def as_frames(images: npt.NDArray[Any]) -> Images:
    """(T, H, W) or (T, H, W, C) frames as (T, H, W, C) uint8."""
    frames = np.stack([to_uint8(image) for image in images])
    return frames if frames.ndim == 4 else frames[..., None]


class TiffReader:
    """Frames from a folder of numbered TIFFs or from one multi-page TIFF stack (one page per frame).

    A stack is opened once on creation, and closed again, so that one that cannot be read is an error
    naming it before training starts.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stack: Any = None
        self._pid = -1
        self._files: dict[int, Path] | None = None
        """The numbered frames of a folder, listed once rather than for every clip."""
        self.open_bytes = 2**20
        """An open stack is a file handle and its pages' index; a folder, its listing: a nominal megabyte."""
        if not os.path.isdir(path):
            import tifffile

            try:
                with tifffile.TiffFile(path) as stack:
                    _ = stack.pages[0].shape
            except Exception as error:
                raise DataError(f"{path}: cannot read as a TIFF stack ({error})") from error

    def read(self, frame_indices: list[int]) -> Images:
        import tifffile

        if os.path.isdir(self.path):
            if self._files is None:
                self._files = numbered_tiffs(Path(self.path))
            return as_frames(np.stack([tifffile.imread(self._files[index]) for index in frame_indices]))
        if self._stack is None or self._pid != os.getpid():
            self._stack = tifffile.TiffFile(self.path)
            self._pid = os.getpid()
        return as_frames(np.stack([self._stack.pages[index].asarray() for index in frame_indices]))

    def close(self) -> None:
        """Closes the stack, and forgets a folder's listing: a closed reader holds nothing per frame."""
        if self._stack is not None and self._pid == os.getpid():
            self._stack.close()
        self._stack = None
        self._files = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_stack": None, "_pid": -1, "_files": self._files}


def ctc_ground_truth(sequence: Path) -> Path:
    return sequence.parent / f"{sequence.name}_GT" / "TRA"


def ctc_segmentation(sequence: Path) -> Path | None:
    """Masks without identities, to track a new sequence: `<seq>_ERR_SEG/` (the CTC's name for a
    segmentation result) or `<seq>_SEG/`."""
    for name in (f"{sequence.name}_ERR_SEG", f"{sequence.name}_SEG"):
        if (sequence.parent / name).is_dir():
            return sequence.parent / name
    return None


def is_tiff_video(video_path: str) -> bool:
    """TIFF frames: a folder of numbered TIFFs or one multi-page stack."""
    return os.path.isdir(video_path) or video_path.lower().endswith(TIFF_SUFFIXES)


def is_ctc(labels_path: str) -> bool:
    """Whether a source's labels are CTC masks: `man_track.txt` (or a result's `res_track.txt`) with its
    masks, or a folder of masks."""
    return labels_path.endswith((CTC_TRACKS, CTC_RESULT_TRACKS)) or os.path.isdir(labels_path)


def ctc_masks(labels_path: str) -> Path:
    return Path(labels_path) if os.path.isdir(labels_path) else Path(labels_path).parent


def read_lineage(path: Path) -> dict[int, list[tuple[int, int, int]]]:
    """`man_track.txt` as {label: [(begin, end, parent), ...]}: a label may come back after a gap, on a
    line of its own."""
    lineage: dict[int, list[tuple[int, int, int]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(field.lstrip("-").isdigit() for field in fields):
            raise DataError(f"{path}:{number}: expected 'label begin end parent', got {line.strip()!r}")
        label, begin, end, parent = (int(field) for field in fields)
        lineage.setdefault(label, []).append((begin, end, parent))
    return lineage


def cell_labels(mask: npt.NDArray[Any]) -> list[int]:
    """The cells of a mask by label, in the order `index_in_frame` counts them."""
    return [int(label) for label in np.unique(mask) if label != 0]


def cells_of(mask: npt.NDArray[Any], track_of: dict[int, int]) -> tuple[Instance, ...]:
    """One Instance per label of a mask: its centre of mass and bounding box."""
    from scipy import ndimage

    labels = cell_labels(mask)
    if not labels:
        return ()
    centres = ndimage.center_of_mass(np.ones(mask.shape, dtype=np.uint8), mask, labels)
    boxes = ndimage.find_objects(mask.astype(np.int64))
    instances = []
    for index, (label, (row, column)) in enumerate(zip(labels, centres, strict=True)):
        rows, columns = boxes[label - 1]
        instances.append(
            Instance(
                points=np.array([[column, row]], dtype=np.float64),
                track=track_of.get(label, UNTRACKED),
                index_in_frame=index,
                bbox=(float(columns.start), float(rows.start), float(columns.stop), float(rows.stop)),
            )
        )
    return tuple(instances)


def read_ctc(tracks_path: str, sequence_path: str) -> LabelledVideo:
    """A CTC sequence: raw frames in `sequence_path`; masks and `man_track.txt` at `tracks_path` (its
    _GT/TRA), or, given a folder of masks without identities, cells to track."""
    import tifffile

    sequence, truth = Path(sequence_path), ctc_masks(tracks_path)
    lineage = read_lineage(Path(tracks_path)) if not os.path.isdir(tracks_path) else {}
    raw = numbered_tiffs(sequence)
    masks = numbered_tiffs(truth)
    if not raw:
        raise DataError(f"{sequence}: no TIFF frames in the sequence folder")
    missing = sorted(masks.keys() - raw.keys())
    if missing:
        raise DataError(f"{masks[missing[0]]}: a mask for frame {missing[0]}, which {sequence} does not have")
    names = sorted(lineage)
    track_of = {label: index for index, label in enumerate(names)}
    first = tifffile.imread(raw[min(raw)])
    frames = []
    for number in sorted(masks):
        mask = tifffile.imread(masks[number])
        if mask.shape[:2] != first.shape[:2]:
            raise DataError(
                f"{masks[number]}: mask is {mask.shape[1]}x{mask.shape[0]} but the frames of {sequence} are "
                f"{first.shape[1]}x{first.shape[0]}"
            )
        unknown = sorted(set(np.unique(mask).tolist()) - set(lineage) - {0}) if lineage else []
        if unknown:
            raise DataError(f"{masks[number]}: label {unknown[0]} is not in {tracks_path}")
        frames.append(Frame(frame_idx=number, instances=cells_of(mask, track_of)))
    divisions = {
        (track_of[label], track_of[parent])
        for label, segments in lineage.items()
        for _, _, parent in segments
        if parent in track_of
    }
    return LabelledVideo(
        name=sequence.name,
        labels_path=tracks_path,
        video_path=str(sequence),
        node_names=(CTC_NODE,),
        frames=tuple(frames),
        track_names=tuple(str(label) for label in names),
        parents=tuple(sorted(divisions)),
    )


class CtcLabels(LabelFormat):
    """Cell Tracking Challenge sequences: `man_track.txt` with its masks, a folder of masks to track, or a
    tracker's results (`res_track.txt` with its masks, what `write` makes and `dreem render` draws)."""

    layout = (
        "Cell Tracking Challenge sequence (a <seq>/ folder of TIFF frames beside "
        f"<seq>_GT/TRA/{CTC_TRACKS} or <seq>_ERR_SEG/)"
    )

    def detects(self, labels_path: str) -> bool:
        return is_ctc(labels_path)

    def read(self, labels_path: str, video_path: str) -> LabelledVideo:
        return read_ctc(labels_path, video_path)

    def written_to(self, video_path: str, output: Path) -> Path:
        return output / f"{Path(video_path).name}_RES"

    def write(self, video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
        """`<output>/<sequence>_RES/`: `mask<t>.tif` per frame, each cell's pixels holding its predicted track
        (from 1), and `res_track.txt` (`label begin end parent`; DREEM links cells, it does not detect
        divisions, so every parent is 0)."""
        import tifffile

        tracks = predictions.tracks
        target = self.written_to(video.video_path, output)
        target.mkdir(parents=True, exist_ok=True)
        masks = numbered_tiffs(ctc_masks(video.labels_path))
        digits = max(3, len(str(max(masks, default=0))))
        spans: dict[int, list[int]] = {}
        for frame in video.frames:
            mask = tifffile.imread(masks[frame.frame_idx])
            lookup = np.zeros(int(mask.max()) + 1, dtype=np.uint16)
            for position, label in enumerate(cell_labels(mask)):
                track = tracks.get((frame.frame_idx, position), UNTRACKED)
                if track >= 0:
                    lookup[label] = track + 1
                    spans.setdefault(track + 1, []).append(frame.frame_idx)
            tifffile.imwrite(target / f"mask{frame.frame_idx:0{digits}d}.tif", lookup[mask], compression="zlib")
        lines = [f"{label} {min(frames)} {max(frames)} 0" for label, frames in sorted(spans.items())]
        (target / CTC_RESULT_TRACKS).write_text("\n".join(lines) + "\n")
        return target

    def sources_in(self, folder: Path) -> list[tuple[Path, Path]]:
        """The sequences at `folder` (itself, or the folders in it). The labels are `<seq>_GT/TRA/man_track.txt`,
        or else a segmentation folder to track (`<seq>_ERR_SEG/`)."""
        candidates = [
            folder,
            *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(("_GT", "_SEG"))),
        ]
        found = []
        for sequence in candidates:
            tracks = ctc_ground_truth(sequence) / CTC_TRACKS
            labels = tracks if tracks.is_file() else ctc_segmentation(sequence)
            if labels is not None:
                found.append((labels, sequence))
        return found
