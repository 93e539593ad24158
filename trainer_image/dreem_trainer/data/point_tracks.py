"""Point tracks from microscopy tools, with a TIFF stack as the video: TrackMate XML and CSV exports and
ICY / ISBI 2012 challenge XML. Each spot becomes an Instance with one node, `centroid`, in pixels.

The files pair with their video by name, as SLEAP files do (`labels_suffix: .xml` or `.csv`,
`vid_suffix: .tif`); which XML dialect a file is comes from its root element. Tracks are written back as
a CSV of tracked points, whatever the input.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Literal
from xml.etree.ElementTree import Element, ParseError

import numpy as np
from defusedxml import ElementTree

from dreem_trainer.data.label_format import LabelFormat, Predictions
from dreem_trainer.data.microscopy import MICRONS_PER_UNIT, TiffReader, is_pixel_unit, is_tiff_video, length_unit
from dreem_trainer.data.records import UNTRACKED, Frame, Instance, LabelledVideo
from dreem_trainer.data.sources import DataError

SPOT_NODE = "centroid"
"""The one node of a spot: its position. Named like a cell's, so `anchors: centroid` serves both."""
TRACKMATE_CSV_COLUMNS = ("TRACK_ID", "POSITION_X", "POSITION_Y", "FRAME")
TRACKS_CSV_SUFFIX = ".dreem_tracks.csv"
"""How the tracks CSV of a video is named: `<video>.dreem_tracks.csv`."""

Spot = tuple[int, float, float, str | None]
"""(frame, x, y, track name or None) in pixels."""


def labelled_video(labels_path: str, video_path: str, spots: list[Spot]) -> LabelledVideo:
    names = sorted({name for *_, name in spots if name is not None}, key=lambda n: (len(n), n))
    track_of = {name: index for index, name in enumerate(names)}
    by_frame: dict[int, list[Spot]] = defaultdict(list)
    for spot in spots:
        by_frame[spot[0]].append(spot)
    frames = tuple(
        Frame(
            frame_idx=frame,
            instances=tuple(
                Instance(
                    points=np.array([[x, y]], dtype=np.float64),
                    track=track_of[name] if name is not None else UNTRACKED,
                    index_in_frame=index,
                )
                for index, (_, x, y, name) in enumerate(by_frame[frame])
            ),
        )
        for frame in sorted(by_frame)
    )
    return LabelledVideo(
        name=Path(video_path).stem,
        labels_path=labels_path,
        video_path=video_path,
        node_names=(SPOT_NODE,),
        frames=frames,
        track_names=tuple(names),
    )


def _number(value: str | None, what: str, where: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} is not a number (got {value!r})") from None


def read_trackmate_xml(root: Element, path: str) -> list[Spot]:
    image = root.find("Settings/ImageData")
    pixel_width = _number(image.get("pixelwidth", "1"), "pixelwidth", path) if image is not None else 1.0
    pixel_height = _number(image.get("pixelheight", "1"), "pixelheight", path) if image is not None else 1.0
    track_of_spot: dict[str, str] = {}
    filtered = {element.get("TRACK_ID") for element in root.iterfind("Model/FilteredTracks/TrackID")}
    for track in root.iterfind("Model/AllTracks/Track"):
        name = track.get("TRACK_ID")
        if name is None or (filtered and name not in filtered):
            continue
        for edge in track.iterfind("Edge"):
            for end in ("SPOT_SOURCE_ID", "SPOT_TARGET_ID"):
                spot_id = edge.get(end)
                if spot_id is not None:
                    track_of_spot[spot_id] = name
    spots: list[Spot] = []
    for spot in root.iterfind("Model/AllSpots/SpotsInFrame/Spot"):
        where = f"{path}: spot {spot.get('ID')}"
        frame = int(_number(spot.get("FRAME"), "FRAME", where))
        x = _number(spot.get("POSITION_X"), "POSITION_X", where) / pixel_width
        y = _number(spot.get("POSITION_Y"), "POSITION_Y", where) / pixel_height
        spots.append((frame, x, y, track_of_spot.get(spot.get("ID", ""))))
    return spots


def read_icy_xml(root: Element, path: str) -> list[Spot]:
    spots: list[Spot] = []
    for number, particle in enumerate(root.iter("particle")):
        for detection in particle.iter("detection"):
            where = f"{path}: particle {number}"
            frame = int(_number(detection.get("t"), "t", where))
            x, y = _number(detection.get("x"), "x", where), _number(detection.get("y"), "y", where)
            spots.append((frame, x, y, str(number)))
    return spots


XmlDialect = Literal["TrackMate", "ICY"]


def xml_dialect(labels_path: str) -> XmlDialect:
    """Which track XML a file is: TrackMate's root element `<TrackMate>`, or ICY / ISBI 2012 `<particle>`
    elements. Reads no further than the first element that tells."""
    root = None
    try:
        with open(labels_path, "rb") as handle:
            for _, element in ElementTree.iterparse(handle, events=("start",)):
                if root is None:
                    root = element.tag
                    if root == "TrackMate":
                        return "TrackMate"
                if element.tag == "particle":
                    return "ICY"
    except (ParseError, OSError) as error:
        raise DataError(f"{labels_path}: cannot read as XML ({error})") from error
    raise DataError(
        f"{labels_path}: neither TrackMate XML (<TrackMate>) nor ICY/ISBI track XML (<particle>); "
        f"the root element is <{root}>"
    )


def _xml_root(labels_path: str) -> Element:
    try:
        root = ElementTree.parse(labels_path).getroot()
    except (ParseError, OSError) as error:
        raise DataError(f"{labels_path}: cannot read as XML ({error})") from error
    if root is None:
        raise DataError(f"{labels_path}: an empty XML document")
    return root


def read_trackmate_csv(labels_path: str, video_path: str) -> LabelledVideo:
    """A TrackMate spots export. Newer exports add three header rows (name, short name, unit); the unit row
    says whether positions are in pixels or in the image's calibrated units (see in_pixels)."""
    try:
        with open(labels_path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise DataError(f"{labels_path}: cannot read ({error})") from error
    header = set(rows[0]) if rows else set()
    missing = [column for column in TRACKMATE_CSV_COLUMNS if column not in header]
    if missing:
        raise DataError(
            f"{labels_path}: lacks the column(s) {', '.join(missing)} of a TrackMate spots export "
            f"(needs {', '.join(TRACKMATE_CSV_COLUMNS)}; has {', '.join(sorted(header)) or 'none'})"
        )
    spots: list[Spot] = []
    unit = ""
    for line, row in enumerate(rows, start=2):
        where = f"{labels_path}:{line}"
        frame = _frame(row["FRAME"], where)
        if frame is None:
            if row["POSITION_X"].strip().startswith("("):
                unit = row["POSITION_X"].strip()
            continue  # the name, short name and unit rows
        track = row["TRACK_ID"].strip()
        spots.append(
            (
                frame,
                _number(row["POSITION_X"], "POSITION_X", where),
                _number(row["POSITION_Y"], "POSITION_Y", where),
                track if track and track.lower() != "none" else None,
            )
        )
    return labelled_video(labels_path, video_path, in_pixels(spots, unit, labels_path, video_path))


def in_pixels(spots: list[Spot], unit: str, labels_path: str, video_path: str) -> list[Spot]:
    """Spots whose positions are in `unit` (the export's unit row, e.g. `(micron)`), in pixels of the video.
    TrackMate exports the image's calibrated units; they are divided by the pixel size the TIFF records."""
    if is_pixel_unit(unit):
        return spots
    length = length_unit(unit)
    if length is None:
        raise DataError(f"{labels_path}: positions in {unit}, which is neither pixels nor a known length unit")
    pixel = TiffReader(video_path).pixel_size() if is_tiff_video(video_path) else None
    if pixel is None:
        raise DataError(
            f"{labels_path}: positions in {unit}, but {video_path} records no pixel size to convert them to pixels "
            "with (ImageJ or OME calibration); set the image's scale in Fiji (Image > Properties) and save it, "
            "or export the spots with the image in pixels"
        )
    microns = MICRONS_PER_UNIT[length]
    return [(frame, x * microns / pixel.width, y * microns / pixel.height, name) for frame, x, y, name in spots]


def _frame(value: str, where: str) -> int | None:
    """A FRAME cell's number; TrackMate and spreadsheets may write it as a float (`12.0`). None for the
    header rows' words (Frame, the unit row's blank)."""
    try:
        number = float(value)
    except ValueError:
        return None
    if not number.is_integer() or number < 0:
        raise DataError(f"{where}: FRAME {value.strip()!r} is not a frame number (0 or more)")
    return int(number)


def write_tracks_csv(rows: list[tuple[int, int, float, float]], target: Path) -> Path:
    """Tracked points as a CSV TrackMate reads back: TRACK_ID, FRAME, POSITION_X, POSITION_Y (pixels)."""
    with target.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["TRACK_ID", "FRAME", "POSITION_X", "POSITION_Y"])
        ordered = sorted(rows, key=lambda row: (row[1], row[0]))  # by frame, then track
        writer.writerows(ordered)
    return target


class PointTracks(LabelFormat):
    """Spots with one node each; predicted tracks go to `<output>/<video>.dreem_tracks.csv`."""

    def write(self, video: LabelledVideo, predictions: Predictions, output: Path) -> Path:
        tracks = predictions.tracks
        rows = [
            (tracks[(frame.frame_idx, instance.index_in_frame)], frame.frame_idx, *map(float, instance.points[0]))
            for frame in video.frames
            for instance in frame.instances
            if tracks.get((frame.frame_idx, instance.index_in_frame), UNTRACKED) >= 0
        ]
        return write_tracks_csv(rows, self.written_to(video.video_path, output))  # type: ignore[arg-type]

    def written_to(self, video_path: str, output: Path) -> Path:
        return output / f"{Path(video_path).stem}{TRACKS_CSV_SUFFIX}"


class TrackMateXml(PointTracks):
    """A TrackMate session (`.xml`): calibrated spot positions, converted to pixels; its filtered tracks."""

    def detects(self, labels_path: str) -> bool:
        return labels_path.endswith(".xml") and xml_dialect(labels_path) == "TrackMate"

    def read(self, labels_path: str, video_path: str) -> LabelledVideo:
        return labelled_video(labels_path, video_path, read_trackmate_xml(_xml_root(labels_path), labels_path))


class IcyXml(PointTracks):
    """ICY / ISBI 2012 particle tracking challenge XML (`.xml`): one `<particle>` per track, in pixels."""

    def detects(self, labels_path: str) -> bool:
        return labels_path.endswith(".xml") and xml_dialect(labels_path) == "ICY"

    def read(self, labels_path: str, video_path: str) -> LabelledVideo:
        return labelled_video(labels_path, video_path, read_icy_xml(_xml_root(labels_path), labels_path))


class TrackMateCsv(PointTracks):
    """A TrackMate spots export (`.csv`), and the tracks CSV dreem writes."""

    def detects(self, labels_path: str) -> bool:
        return labels_path.endswith(".csv")

    def read(self, labels_path: str, video_path: str) -> LabelledVideo:
        return read_trackmate_csv(labels_path, video_path)
