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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from dreem_trainer.data.label_format import LabelFormat, Predictions, TrackAssignment
from dreem_trainer.data.records import UNTRACKED, Frame, Instance, LabelledVideo
from dreem_trainer.data.sources import DataError, Images

CTC_TRACKS = "man_track.txt"
CTC_RESULT_TRACKS = "res_track.txt"
"""The same table in a tracker's results (`<seq>_RES/`), beside masks holding the tracks."""
MAX_CTC_LABEL = 2**16 - 1
"""CTC masks are 16-bit."""
CTC_NODE = "centroid"
"""The one node of a cell: its mask's centre of mass."""
TIFF_SUFFIXES = (".tif", ".tiff")
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.8
_NUMBER = re.compile(r"(\d+)(?=\.tiff?$)", re.IGNORECASE)
FRAME_PLANES = ("YX", "YXS", "SYX")
"""What one page of a TIFF video may hold: a grey plane, or its colour samples, interleaved or planar."""
MICRONS_PER_UNIT = {"nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
LENGTH_UNITS = {
    **dict.fromkeys(("nm", "nanometer", "nanometers", "nanometre", "nanometres"), "nm"),
    **dict.fromkeys(("µm", "μm", "um", "micron", "microns", "micrometer", "micrometers", "micrometre"), "µm"),
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "mm"),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "cm"),
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), "m"),
}
"""The spellings ImageJ, TrackMate and OME use for a length, by the unit they mean."""
PIXEL_UNITS = ("", "pixel", "pixels", "px")


def _unit_key(name: str) -> str:
    """A unit as written (`(micron)`, ImageJ's `\\u00B5m`), bare and lower-case."""
    if "\\u" in name:  # ImageJ escapes non-ASCII in its TIFF description
        name = name.encode("ascii", "backslashreplace").decode("unicode_escape")
    return name.strip().strip("()").strip().lower()


def is_pixel_unit(name: str) -> bool:
    return _unit_key(name) in PIXEL_UNITS


def length_unit(name: str) -> str | None:
    """A length unit's canonical name (`µm` for micron, um, \\u00B5m...); None for pixels or an unknown one."""
    return LENGTH_UNITS.get(_unit_key(name))


@dataclass(frozen=True)
class PixelSize:
    """A TIFF's calibration: the width and height of a pixel, in µm."""

    width: float
    height: float

    @staticmethod
    def of(image: Any) -> PixelSize | None:
        """From an open tifffile.TiffFile: OME's PhysicalSizeX/Y, or ImageJ's unit with the X/YResolution
        tags (pixels per unit). None where neither records a length (a plain TIFF's dpi is not one)."""
        if image.is_ome:
            from defusedxml import ElementTree

            pixels = ElementTree.fromstring(image.ome_metadata).find(".//{*}Pixels")
            microns = []
            for axis in "XY":
                size = None if pixels is None else pixels.get(f"PhysicalSize{axis}") or pixels.get("PhysicalSizeX")
                unit = None if pixels is None else length_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
                if size is None or unit is None or not _positive(size):
                    return None
                microns.append(float(size) * MICRONS_PER_UNIT[unit])
            return PixelSize(*microns)
        unit = length_unit(str((image.imagej_metadata or {}).get("unit", "")))
        tags = image.pages[0].tags
        if unit is None or "XResolution" not in tags:
            return None
        per_unit = [
            tags[name].value for name in ("XResolution", "YResolution" if "YResolution" in tags else "XResolution")
        ]
        if any(numerator == 0 for numerator, _ in per_unit):
            return None
        width, height = (denominator / numerator * MICRONS_PER_UNIT[unit] for numerator, denominator in per_unit)
        return PixelSize(width, height)


def _positive(number: str) -> bool:
    try:
        return float(number) > 0
    except ValueError:
        return False


def frame_number(path: Path) -> int:
    """The frame index in a CTC file name (`t012.tif`, `frame_0012.tif`, `man_track012.tif`)."""
    found = _NUMBER.search(path.name)
    if found is None:
        raise DataError(f"{path}: no frame number in the file name")
    return int(found.group(1))


def numbered_tiffs(folder: Path) -> dict[int, Path]:
    """The TIFFs of a folder by frame number. Two files of one number (`c1_t000.tif` beside `c2_t000.tif`,
    or a number after the frame's, as in `t005_c1.tif`) are an error: the frames could not be told apart."""
    numbered: dict[int, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES):
        number = frame_number(path)
        if number in numbered:
            raise DataError(
                f"{folder}: {numbered[number].name} and {path.name} both read as frame {number} (the number "
                "before .tif); keep one channel or sequence per folder"
            )
        numbered[number] = path
    return numbered


def to_uint8(image: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """8-bit frames as they are; others scaled robustly by their percentiles, or by their range where the
    percentiles meet (a few bright spots on a flat background). NaN is black."""
    if image.dtype == np.uint8:
        return image.astype(np.uint8, copy=False)
    values = image.astype(np.float32)
    floating = image.dtype.kind == "f"  # only floats hold NaN: whole numbers skip the copies that drop them
    finite = values[np.isfinite(values)] if floating else values
    if not finite.size:
        return np.zeros(image.shape, dtype=np.uint8)
    low, high = (float(bound) for bound in np.percentile(finite, (LOW_PERCENTILE, HIGH_PERCENTILE)))
    if high <= low:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.uint8)
    scaled = np.clip((values - low) * (255.0 / (high - low)), 0, 255)
    if floating:
        np.nan_to_num(scaled, copy=False, nan=0.0)
    as_bytes: npt.NDArray[np.uint8] = scaled.astype(np.uint8)
    return as_bytes


def as_frames(images: npt.NDArray[Any]) -> Images:
    """(T, H, W) or (T, H, W, C) frames as (T, H, W, C) uint8."""
    frames = np.stack([to_uint8(image) for image in images])
    return frames if frames.ndim == 4 else frames[..., None]


def plane_size(path: Path | str, page: Any) -> tuple[int, int]:
    """(height, width) of a TIFF page that holds one frame, from its header: nothing is decoded."""
    if page.axes not in FRAME_PLANES:
        raise DataError(f"{path}: a page of shape {page.shape} (axes {page.axes}); frames are grey or colour planes")
    height, width = page.shape[1:3] if page.axes == "SYX" else page.shape[:2]
    return int(height), int(width)


def frame_plane(path: Path | str, page: Any) -> npt.NDArray[Any]:
    """One TIFF page as a frame, (H, W) or (H, W, S): planar colour samples go last."""
    plane_size(path, page)
    plane: npt.NDArray[Any] = page.asarray()
    return np.moveaxis(plane, 0, -1) if page.axes == "SYX" else plane


def folder_frame(path: Path, image: Any) -> Any:
    """The one page of a folder's frame file."""
    if len(image.pages) != 1:
        raise DataError(
            f"{path}: {len(image.pages)} pages; a frame of a folder is one page (3D sequences are not supported)"
        )
    return image.pages[0]


def stack_frames(path: str, stack: Any) -> tuple[int, tuple[int, int]]:
    """How many frames a TIFF stack holds, one page each, and their (height, width). A stack of several
    channels or planes per time point (TCYX, TZYX) would otherwise read each channel as a frame of its own."""
    series = stack.series[0]
    extra = [(axis, size) for axis, size in zip(series.axes, series.shape, strict=True) if axis not in "YXS"]
    if len([size for _, size in extra if size > 1]) > 1:
        raise DataError(
            f"{path}: a stack of shape {series.shape} (axes {series.axes}): more than one axis besides the "
            "frames' (channels or planes); save one channel as a (T, Y, X) stack"
        )
    frames = int(np.prod([size for _, size in extra], dtype=np.int64))
    if frames != len(stack.pages):
        raise DataError(
            f"{path}: {len(stack.pages)} pages for {frames} frames (axes {series.axes}); save one page per frame"
        )
    return frames, plane_size(path, stack.pages[0])


class TiffReader:
    """Frames from a folder of numbered TIFFs or from one multi-page TIFF stack (one page per frame).

    A stack is opened once on creation, and closed again, so that one that cannot be read, or that holds
    more than frames (several channels per time point), is an error naming it before training starts.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._stack: Any = None
        self._pid = -1
        self._files: dict[int, Path] | None = None
        """The numbered frames of a folder, listed once rather than for every clip."""
        self.stack_frames = 0
        self._stack_size: tuple[int, int] | None = None
        self.open_bytes = 2**20
        """An open stack is a file handle and its pages' index; a folder, its listing: a nominal megabyte."""
        if not os.path.isdir(path):
            import tifffile

            try:
                with tifffile.TiffFile(path) as stack:
                    self.stack_frames, self._stack_size = stack_frames(path, stack)
            except DataError:
                raise
            except Exception as error:
                raise DataError(f"{path}: cannot read as a TIFF stack ({error})") from error

    def frame_size(self) -> tuple[int, int]:
        """(height, width) of the frames: a stack's, read on creation; a folder's, from its first frame's header
        (its lowest number)."""
        if self._stack_size is not None:
            return self._stack_size
        import tifffile

        path = self._first_file()
        with tifffile.TiffFile(path) as image:
            return plane_size(path, folder_frame(path, image))  # a stack's size was read on creation

    def pixel_size(self) -> PixelSize | None:
        """The calibration of the stack, or of the folder's first frame: see PixelSize.of."""
        import tifffile

        with tifffile.TiffFile(self._first_file()) as image:
            return PixelSize.of(image)

    def frame_numbers(self) -> list[int]:
        """The frames there are, by number: a folder's file numbers (which may start above 0, or skip)."""
        if os.path.isdir(self.path):
            return sorted(self._numbered())
        return list(range(self.stack_frames))

    def read(self, frame_indices: list[int]) -> Images:
        import tifffile

        if os.path.isdir(self.path):
            files = self._numbered()
            missing = [index for index in frame_indices if index not in files]
            if missing:
                raise DataError(f"{self.path}: its labels have frame {missing[0]}, but no TIFF in it has that number")
            planes = []
            for index in frame_indices:
                with tifffile.TiffFile(files[index]) as image:
                    planes.append(frame_plane(files[index], folder_frame(files[index], image)))
            return as_frames(np.stack(planes))
        beyond = [index for index in frame_indices if not 0 <= index < self.stack_frames]
        if beyond:
            raise DataError(
                f"{self.path}: its labels have frame {beyond[0]}, but the stack has {self.stack_frames} frames"
            )
        if self._stack is None or self._pid != os.getpid():
            self._stack = tifffile.TiffFile(self.path)
            self._pid = os.getpid()
        return as_frames(np.stack([frame_plane(self.path, self._stack.pages[index]) for index in frame_indices]))

    def _first_file(self) -> Path:
        """The stack, or the folder's first frame (its lowest number)."""
        return self._numbered()[min(self._numbered())] if os.path.isdir(self.path) else Path(self.path)

    def _numbered(self) -> dict[int, Path]:
        if self._files is None:
            self._files = numbered_tiffs(Path(self.path))
        return self._files

    def close(self) -> None:
        """Closes the stack, and forgets a folder's listing: a closed reader holds nothing per frame."""
        if self._stack is not None and self._pid == os.getpid():
            self._stack.close()
        self._stack = None
        self._files = None

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_stack": None, "_pid": -1}  # an open stack does not survive pickling


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


class LineageSegment(NamedTuple):
    """One line of `man_track.txt` (or `res_track.txt`) after its label: the frames a label spans, and the
    label it came from (0 for none)."""

    begin: int
    end: int
    parent: int


Lineage = dict[int, list[LineageSegment]]
"""{label: its segments}: a label may come back after a gap, on a line of its own."""


def read_lineage(path: Path) -> Lineage:
    """`man_track.txt` (or a tracker's `res_track.txt`) by label."""
    lineage: Lineage = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(field.lstrip("-").isdigit() for field in fields):
            raise DataError(f"{path}:{number}: expected 'label begin end parent', got {line.strip()!r}")
        label, begin, end, parent = (int(field) for field in fields)
        lineage.setdefault(label, []).append(LineageSegment(begin, end, parent))
    return lineage


def cell_labels(mask: npt.NDArray[Any]) -> list[int]:
    """The cells of a mask by label, in the order `index_in_frame` counts them."""
    return [int(label) for label in np.unique(mask) if label != 0]


def read_mask(path: Path) -> npt.NDArray[np.integer[Any]]:
    """A 2D label mask: 0 background, each cell a positive whole number. Floats holding whole numbers (some
    tools save masks as float32) are taken as such."""
    import tifffile

    mask = tifffile.imread(path)
    if mask.ndim != 2:
        raise DataError(f"{path}: a mask of shape {mask.shape}; masks are 2D (3D sequences are not supported)")
    if mask.dtype.kind == "f":
        if not np.isfinite(mask).all() or (mask != np.round(mask)).any():
            raise DataError(f"{path}: a mask of fractional values; cell labels are whole numbers")
        mask = mask.astype(np.int64)
    elif mask.dtype.kind not in "ui":
        raise DataError(f"{path}: a mask of {mask.dtype} values; cell labels are whole numbers")
    if mask.size and int(mask.min()) < 0:
        raise DataError(f"{path}: a mask with label {int(mask.min())}; cell labels are positive (0: background)")
    return mask


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
    sequence, truth = Path(sequence_path), ctc_masks(tracks_path)
    lineage = read_lineage(Path(tracks_path)) if not os.path.isdir(tracks_path) else {}
    frames_reader = TiffReader(str(sequence))
    raw = set(frames_reader.frame_numbers())
    masks = numbered_tiffs(truth)
    if not raw:
        raise DataError(f"{sequence}: no TIFF frames in the sequence folder")
    missing = sorted(masks.keys() - raw)
    if missing:
        raise DataError(f"{masks[missing[0]]}: a mask for frame {missing[0]}, which {sequence} does not have")
    if tracks_path.endswith(CTC_RESULT_TRACKS):
        # A result's labels are its tracks (label - 1, as `write` numbers them), so a track keeps its colour
        # in `dreem render` and in `dreem eval`'s timeline; a gap's continuation is the track it continues.
        track_of = result_tracks(lineage)
        names = [""] * (max(track_of.values(), default=-1) + 1)
        for track in track_of.values():
            names[track] = str(track + 1)
    else:
        names = [str(label) for label in sorted(lineage)]
        track_of = {label: index for index, label in enumerate(sorted(lineage))}
    height, width = frames_reader.frame_size()
    frames = []
    for number in sorted(masks):
        mask = read_mask(masks[number])
        if mask.shape[:2] != (height, width):
            raise DataError(
                f"{masks[number]}: mask is {mask.shape[1]}x{mask.shape[0]} but the frames of {sequence} are "
                f"{width}x{height}"
            )
        unknown = sorted(set(np.unique(mask).tolist()) - set(lineage) - {0}) if lineage else []
        if unknown:
            raise DataError(f"{masks[number]}: label {unknown[0]} is not in {tracks_path}")
        frames.append(Frame(frame_idx=number, instances=cells_of(mask, track_of)))
    divisions = {
        (track_of[label], track_of[segment.parent])
        for label, segments in lineage.items()
        for segment in segments
        if segment.parent in track_of and track_of[label] != track_of[segment.parent]
    }
    return LabelledVideo(
        name=sequence.name,
        labels_path=tracks_path,
        video_path=str(sequence),
        node_names=(CTC_NODE,),
        frames=tuple(frames),
        track_names=tuple(names),
        parents=tuple(sorted(divisions)),
    )


@dataclass(frozen=True)
class CtcSegment:
    """One line of `res_track.txt`: a track's cells over consecutive frames, under one label."""

    label: int
    track: int
    begin: int
    end: int
    parent: int
    """The label the track had before its last gap; 0 for a track's first segment."""

    def cells(self) -> Iterator[tuple[int, int]]:
        """(frame, track) of every frame the segment covers."""
        return ((frame, self.track) for frame in range(self.begin, self.end + 1))


def ctc_segments(video: LabelledVideo, tracks: TrackAssignment) -> list[CtcSegment]:
    """The labelled segments of each predicted track: its first keeps label track + 1, and each one after a
    gap takes the next label above every track's, with the segment before it as parent."""
    frames_of: dict[int, set[int]] = {}
    for labelled in video.frames:
        for instance in labelled.instances:
            track = tracks.get((labelled.frame_idx, instance.index_in_frame), UNTRACKED)
            if track >= 0:
                frames_of.setdefault(track, set()).add(labelled.frame_idx)
    next_label = max(frames_of, default=-1) + 2
    segments = []
    for track, frames in sorted(frames_of.items()):
        ordered = sorted(frames)
        begin, parent, label = ordered[0], 0, track + 1
        for previous, following in zip(ordered, [*ordered[1:], None], strict=True):
            if following == previous + 1:
                continue
            segments.append(CtcSegment(label, track, begin, previous, parent))
            if following is not None:
                begin, parent, label, next_label = following, label, next_label, next_label + 1
    if next_label - 1 > MAX_CTC_LABEL:
        raise DataError(f"{video.name}: {next_label - 1} CTC labels needed, above the 16-bit masks' {MAX_CTC_LABEL}")
    return segments


def result_tracks(lineage: Lineage) -> dict[int, int]:
    """{label: track} of a tracker's CTC results: label - 1, a gap's continuation taking its parent's track.
    A continuation is a parent's only child, beginning at least two frames after the parent ends (a division
    gives two children, each beginning the frame after)."""
    children: dict[int, list[int]] = {}
    for label, segments in lineage.items():
        for segment in segments:
            if segment.parent in lineage:
                children.setdefault(segment.parent, []).append(label)

    def continued(label: int) -> int | None:
        """The label `label` continues after a gap, if it does."""
        first = min(lineage[label])
        if first.parent not in lineage or len(children[first.parent]) != 1:
            return None
        parent_end = max(segment.end for segment in lineage[first.parent])
        return first.parent if first.begin > parent_end + 1 else None

    tracks: dict[int, int] = {}
    for label in sorted(lineage):
        root, seen = label, {label}
        while (earlier := continued(root)) is not None and earlier not in seen:
            root = earlier
            seen.add(root)
        tracks[label] = root - 1
    return tracks


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
        """`<output>/<sequence>_RES/`: `mask<t>.tif` per frame, each cell's pixels holding its track's label,
        and `res_track.txt` (`label begin end parent`). A track's label is its number plus 1 (CTC labels
        start at 1). The CTC wants each label in every frame from its begin to its end, so a track missing
        from some frames continues, after each gap, under a new label whose parent is the label before the
        gap (`result_tracks` joins them again); DREEM links cells and detects no divisions, so no other
        label has a parent."""
        import tifffile

        target = self.written_to(video.video_path, output)
        masks = numbered_tiffs(ctc_masks(video.labels_path))
        digits = max(3, len(str(max(masks, default=0))))
        segments = ctc_segments(video, predictions.tracks)
        label_at = {(frame, track): segment.label for segment in segments for frame, track in segment.cells()}
        target.mkdir(parents=True, exist_ok=True)
        for frame in video.frames:
            mask = read_mask(masks[frame.frame_idx])
            lookup = np.zeros(int(mask.max()) + 1, dtype=np.uint16)
            for position, cell in enumerate(cell_labels(mask)):
                track = predictions.tracks.get((frame.frame_idx, position), UNTRACKED)
                if track >= 0:
                    lookup[cell] = label_at[frame.frame_idx, track]
            tifffile.imwrite(target / f"mask{frame.frame_idx:0{digits}d}.tif", lookup[mask], compression="zlib")
        lines = [f"{s.label} {s.begin} {s.end} {s.parent}" for s in sorted(segments, key=lambda s: s.label)]
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
