"""`dreem render`: a tracked file drawn over its video, each track in its own colour with its name.

The video is decoded, drawn on and encoded in this process by FFmpeg's libraries (PyAV), in planar YUV
4:2:0, the format videos are stored in: each decoded frame is drawn on in place on its Y, U and V planes
and handed to the encoder as it is. Drawing in RGB instead would cost two colour conversions per frame
(YUV to RGB after decoding, RGB to YUV before encoding): measured, 1.75x the CPU time of a bare decode and
re-encode. Two ffmpeg processes with the frames piped through this one cost each frame a copy into and out
of two pipes, and kept the render at 1.15-1.31x a bare transcode; in one process it is 1.11-1.18x.

The encoder takes sleap-io's `VideoWriter` settings (codec, pixel format, CRF, preset). sleap-io's writer
itself only takes RGB or grey frames and pads sizes to multiples of 16, which would change the frame size.

Importing this module loads neither torch nor the model: rendering is drawing and video I/O only.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import cv2
import numpy as np
import numpy.typing as npt
from av import VideoFrame
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, VideoReformatter

from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.data.microscopy import CTC_RESULT_TRACKS, CTC_TRACKS, TiffReader, is_tiff_video
from dreem_trainer.data.point_tracks import TRACKS_CSV_SUFFIX
from dreem_trainer.data.records import Instance, LabelledVideo
from dreem_trainer.inference.colours import RGB, track_colour
from dreem_trainer.inference.render_options import TIFF_FPS, RenderError, RenderOptions

STILL_SUFFIXES = (".png", ".jpg", ".jpeg")
POINT_MARGIN = 0.02
"""How far outside the frame (a fraction of its size) a labelled point may lie before the labels are
taken to belong to another video: predictions at the border can overshoot a little."""

Plane = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class RenderResult:
    output: Path
    frames: int
    requested: int
    """Frames asked for; more than `frames` when the video ends before its container says it does."""
    width: int
    height: int
    tracks: int
    seconds: float


@dataclass(frozen=True)
class VideoFacts:
    frame_count: int
    height: int
    width: int
    fps: float | None
    first_frame: int = 0
    """A folder of TIFFs may number its frames from 1; the frames before it are not drawn."""


def render(
    tracked: str | Path, output: Path, video: str | None = None, options: RenderOptions | None = None
) -> RenderResult:
    """Draw the tracks of `tracked` (a `.slp`, CTC results or a tracks CSV) over its video into `output`
    (a video, or one still frame for a `.png`/`.jpg` output). Nothing is written unless it all works:
    the output appears under its name only when complete, and an existing one needs `overwrite`."""
    options = options or RenderOptions()
    if output.exists() and not options.overwrite:
        raise RenderError(f"{output}: already exists; pass --overwrite to replace it")
    pair = tracked_source(Path(tracked), video)
    for read in (pair.video_path, pair.labels_path, str(tracked)):
        if _same_file(output, Path(read)):  # --overwrite replaces drawings, never what they are drawn from
            raise RenderError(f"{output}: this render reads it ({read}); choose another --output")
    facts = video_facts(pair.video_path)
    frames = options.frames.resolve(facts.frame_count, pair.video_path, facts.first_frame)
    still = output.suffix.lower() in STILL_SUFFIXES
    if still and len(frames) != 1:
        raise RenderError(f"{output}: a still image holds one frame; choose it with --frames N")
    layout = FrameLayout.of(facts, options.scale)
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    started = time.perf_counter()
    source = video_frames(pair.video_path, frames, layout)  # a video's decoding starts now, beside the label reading
    encoder: Encoder | None = None
    try:
        labelled = pair.read()
        check_tracks(labelled)
        check_matches(labelled, facts)
        painter = Painter(labelled, layout, options)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RenderError(f"{output.parent}: cannot create the output folder ({error.strerror})") from error
        if still:
            written = _write_still(source, painter, frames, partial, output)
        else:
            encoder = Encoder(partial, output, layout, options.fps or facts.fps or TIFF_FPS, options)
            written = _write_video(source, painter, frames, encoder, options, output.name)
        if written == 0:
            raise RenderError(f"{pair.video_path}: no frame of {frames.start}-{frames.stop - 1} could be decoded")
        os.replace(partial, output)
    finally:
        source.close()
        if encoder is not None:
            encoder.stop()
        partial.unlink(missing_ok=True)
    tracks = len({i.track for f in labelled.frames for i in f.instances if i.track >= 0})
    return RenderResult(
        output, written, len(frames), layout.width, layout.height, tracks, time.perf_counter() - started
    )


def _same_file(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def beside(tracked: Path) -> Path:
    """Where `dreem track --render` draws a tracked file: `<tracked file>.mp4` beside it."""
    return tracked.with_name(tracked.name.removesuffix(tracked.suffix) + ".mp4")


def render_beside(tracked: Path, video_path: str) -> RenderResult:
    """`dreem track --render`: a tracked file drawn over its video as `<tracked file>.mp4` beside it. The
    run checked beforehand that it may write there (`inference.run.check_outputs`)."""
    return render(tracked, beside(tracked), video_path, RenderOptions(overwrite=True))


def tracked_source(tracked: Path, video: str | None) -> SourcePair:
    """The (labels, video) pair the label formats read, for what `dreem track` writes: a `.slp`, CTC results
    (`<seq>_RES/` or its `res_track.txt`) or a tracks CSV. Without `video`, the video is the one the
    `.slp` records, the `<seq>` folder beside `<seq>_RES`, or the `.tif` named like the CSV."""
    if not tracked.exists():
        raise RenderError(f"{tracked}: no such tracked file")
    if tracked.is_dir() or tracked.name == CTC_RESULT_TRACKS:
        folder = tracked if tracked.is_dir() else tracked.parent
        labels = folder / CTC_RESULT_TRACKS
        if not labels.is_file():
            labels = folder / CTC_TRACKS
        if not labels.is_file():
            raise RenderError(f"{folder}: not CTC results: holds neither {CTC_RESULT_TRACKS} nor {CTC_TRACKS}")
        guess = folder.parent / folder.name.removesuffix("_RES")
        return _pair(labels, video, guess if guess != folder else None, "the sequence folder beside it")
    if tracked.suffix == ".slp":
        recorded = _recorded_video(tracked) if video is None else None
        return _pair(tracked, video, recorded, "the video recorded in it")
    if tracked.suffix in (".csv", ".xml"):
        stem = tracked.name.removesuffix(TRACKS_CSV_SUFFIX).removesuffix(tracked.suffix)
        beside = [tracked.with_name(stem + suffix) for suffix in (".tif", ".tiff")]
        return _pair(tracked, video, next((p for p in beside if p.exists()), beside[0]), "the TIFF stack named like it")
    raise RenderError(
        f"{tracked}: not a tracked file dreem reads (a .slp, CTC results <seq>_RES/, or a tracks .csv/.xml)"
    )


def _pair(labels: Path, video: str | None, guess: Path | None, what: str) -> SourcePair:
    if video is not None:
        if not Path(video).exists():
            raise RenderError(f"{video}: no such video")
        return SourcePair(str(labels), video, 0)
    if guess is None or not guess.exists():
        raise RenderError(f"{labels}: cannot find its video ({what}: {guess or 'none'}); give it with --video")
    return SourcePair(str(labels), str(guess), 0)


def _recorded_video(labels_path: Path) -> Path | None:
    """The video a `.slp` names, relative paths taken from the labels' folder; None for several videos.
    Only the file's video table is read: the labels themselves are read once, by their label format."""
    from sleap_io.io.slp import read_videos

    try:
        videos = read_videos(str(labels_path), open_backend=False)
    except Exception as error:
        raise RenderError(f"{labels_path}: cannot read SLEAP labels ({error})") from error
    if len(videos) != 1:
        return None
    recorded = Path(str(videos[0].filename))
    return recorded if recorded.is_absolute() else labels_path.parent / recorded


def video_facts(video_path: str) -> VideoFacts:
    if is_tiff_video(video_path):
        reader = TiffReader(video_path)
        numbers = reader.frame_numbers()
        if not numbers:
            raise RenderError(f"{video_path}: no TIFF frames in the folder")
        return VideoFacts(numbers[-1] + 1, *reader.frame_size(), None, first_frame=numbers[0])
    # The container's numbers, as sleap-io reads them with OpenCV, without decoding a frame.
    capture = cv2.VideoCapture(video_path)
    try:
        if not capture.isOpened():
            raise RenderError(f"{video_path}: cannot open video")
        count, width, height, fps = (
            capture.get(prop)
            for prop in (
                cv2.CAP_PROP_FRAME_COUNT,
                cv2.CAP_PROP_FRAME_WIDTH,
                cv2.CAP_PROP_FRAME_HEIGHT,
                cv2.CAP_PROP_FPS,
            )
        )
    finally:
        capture.release()
    return VideoFacts(int(count), int(height), int(width), float(fps) if fps > 0 else None)


def check_tracks(video: LabelledVideo) -> None:
    if not any(instance.track >= 0 for frame in video.frames for instance in frame.instances):
        raise RenderError(
            f"{video.labels_path}: holds no tracks (no instance belongs to a track); render what dreem track wrote"
        )


def check_matches(video: LabelledVideo, facts: VideoFacts) -> None:
    """Labels that reach past the video's last frame, or points far outside its frames, belong to another video."""
    last = max(frame.frame_idx for frame in video.frames)
    if last >= facts.frame_count:
        raise RenderError(
            f"{video.labels_path}: labels reach frame {last}, but {video.video_path} has {facts.frame_count} "
            f"frames: is it the video these labels were made on?"
        )
    margin = POINT_MARGIN * max(facts.width, facts.height)
    for frame in video.frames:
        for instance in frame.instances:
            points = instance.points[~np.isnan(instance.points).any(axis=1)]
            outside = (
                (points < -margin).any(axis=1)
                | (points[:, 0] > facts.width + margin)
                | (points[:, 1] > facts.height + margin)
            )
            if outside.any():
                x, y = points[outside][0]
                raise RenderError(
                    f"{video.labels_path}: frame {frame.frame_idx} has a point at ({x:.0f}, {y:.0f}), outside the "
                    f"{facts.width}x{facts.height} frames of {video.video_path}: is it the video these labels were "
                    "made on?"
                )


@dataclass(frozen=True)
class FrameLayout:
    """Source and output frame sizes. YUV 4:2:0 needs even sizes, so an odd one gains a pixel of
    padding at the right or bottom; positions are only scaled, never shifted."""

    source_width: int
    source_height: int
    scaled_width: int
    scaled_height: int
    width: int
    height: int

    @classmethod
    def of(cls, facts: VideoFacts, scale: float) -> FrameLayout:
        scaled_width = max(2, round(facts.width * scale))
        scaled_height = max(2, round(facts.height * scale))
        return cls(
            facts.width,
            facts.height,
            scaled_width,
            scaled_height,
            scaled_width + scaled_width % 2,
            scaled_height + scaled_height % 2,
        )

    @property
    def factor(self) -> tuple[float, float]:
        return self.scaled_width / self.source_width, self.scaled_height / self.source_height


class FrameSource(Protocol):
    """Frames of a video as writable I420 `av.VideoFrame`s of the output size, in order."""

    def __iter__(self) -> Iterator[VideoFrame]: ...

    def close(self) -> None: ...


def video_frames(video_path: str, frames: range, layout: FrameLayout) -> FrameSource:
    """Frames `frames` of a video or a TIFF stack."""
    if is_tiff_video(video_path):
        return TiffFrames(video_path, frames, layout)
    return DecodedVideo(video_path, frames, layout)


DECODED_AHEAD = 4
"""Frames the decoding thread may hold ready for the drawing and the encoder."""
SEEK_FROM = 250
"""A range starting this far in starts at the keyframe before it, found by timestamp, rather than by decoding
every frame from the first (minutes, deep into an hour of video). Nearer the start, frames are counted from
the first, exactly as sleap-io numbers them, at the cost of under a second."""


class _SeekMissed(Exception):
    """A seek did not land where frames can be numbered by their timestamps, before the range's start."""


class DecodedVideo:
    """A video decoded in this process by FFmpeg's libraries (PyAV), frame by frame, in the order shown.

    One thread decodes, ahead of the drawing and encoding, from the moment the video is opened (so also
    while the labels are read): PyAV releases the GIL while FFmpeg decodes, so it runs beside the drawing
    and x264's threads. The decoder itself stays single-threaded: frame threads would compete with x264's
    for the cores, and measured slower (on the bundled clip, 2 cores: render 1.11x a bare transcode with
    this, 1.21x with FFmpeg's frame threads decoding in the drawing thread).

    Frames come out as the decoder made them when they are already I420 at the output size (the usual
    case), converted once (swscale) otherwise. A damaged packet is skipped, as the ffmpeg command skips it
    (the render then reports fewer frames than requested); frames are numbered in the order they are
    decoded in, as sleap-io numbers them.
    """

    def __init__(self, video_path: str, frames: range, layout: FrameLayout) -> None:
        self.video_path = video_path
        self.frames = frames
        self.layout = layout
        self._open()
        self._reformatter = VideoReformatter()
        self._ahead: queue.Queue[VideoFrame | BaseException | None] = queue.Queue(maxsize=DECODED_AHEAD)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._decode_ahead, name="render-decoder", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[VideoFrame]:
        while (item := self._ahead.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        """Stop decoding (a no-op once it has finished) and close the video."""
        self._stopping.set()
        self._thread.join()
        self._container.close()

    def _open(self) -> None:
        try:
            self._container = av.open(self.video_path)
        except av.error.FFmpegError as error:
            raise RenderError(f"{self.video_path}: cannot open video ({error})") from error
        if not self._container.streams.video:
            self._container.close()
            raise RenderError(f"{self.video_path}: holds no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "SLICE"

    def _decode_ahead(self) -> None:
        try:
            for frame in self._decoded():
                if not self._hand_over(frame):
                    return
        except BaseException as error:  # raised in the consuming thread, where the caller sees it
            self._hand_over(error)
        self._hand_over(None)

    def _hand_over(self, item: VideoFrame | BaseException | None) -> bool:
        """Queue `item` for the consumer; False once it has stopped asking."""
        while not self._stopping.is_set():
            try:
                self._ahead.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _decoded(self) -> Iterator[VideoFrame]:
        if self.frames.start >= SEEK_FROM and self._frame_duration() is not None:
            try:
                yield from self._decoded_from(seek=True)
                return
            except _SeekMissed:  # raised before any frame was handed on: count from the start instead
                self._container.close()
                self._open()
        yield from self._decoded_from(seek=False)

    def _decoded_from(self, seek: bool) -> Iterator[VideoFrame]:
        """Frames in the range, numbered by counting from the first; after a seek, from the first frame's
        timestamp, checked against every frame's until the range starts (`_SeekMissed` when they disagree,
        or the decoder landed past the range's start: a container whose seek stops short of a keyframe,
        or a video whose frames are not evenly spaced)."""
        index = -1  # the number of the frame decoded last
        try:
            if seek:
                self._seek_before(self.frames.start)
                index = -2  # unknown until a frame's timestamp tells where the decoder landed
            for packet in self._container.demux(self._stream):
                if self._stopping.is_set():
                    return
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    continue
                for frame in decoded:
                    if seek and index < self.frames.start:
                        stamped = self._number_of(frame)
                        if stamped > self.frames.start or (index != -2 and stamped != index + 1):
                            raise _SeekMissed
                        index = stamped
                    else:
                        index += 1
                    if index < self.frames.start:
                        continue
                    if index >= self.frames.stop:
                        return
                    yield self._output(frame)
        except av.error.FFmpegError as error:
            if seek and index < self.frames.start:
                raise _SeekMissed from error
            raise RenderError(f"{self.video_path}: cannot decode frame {index + 1} ({error})") from error

    def _frame_duration(self) -> Fraction | None:
        """Seconds per frame of a video whose container says it has a constant rate; None otherwise."""
        average, base = self._stream.average_rate, self._stream.base_rate
        return 1 / Fraction(average) if average and average == base else None

    def _seek_before(self, frame_idx: int) -> None:
        """Move the decoder to the keyframe at or before frame `frame_idx` (by its timestamp)."""
        duration, time_base = self._frame_duration(), self._stream.time_base
        assert duration is not None and time_base is not None
        start = self._stream.start_time or 0
        self._container.seek(start + int(frame_idx * duration / time_base), stream=self._stream, backward=True)

    def _number_of(self, frame: VideoFrame) -> int:
        """A frame's number from its timestamp (`_SeekMissed` for a frame without one)."""
        duration, time_base = self._frame_duration(), self._stream.time_base
        if frame.pts is None or duration is None or time_base is None:
            raise _SeekMissed
        return round((frame.pts - (self._stream.start_time or 0)) * time_base / duration)

    def _output(self, frame: VideoFrame) -> VideoFrame:
        layout = self.layout
        # Full-range YUV (yuvj formats, or tagged so) is brought to the limited range x264 tags its output
        # with, as the ffmpeg command's -pix_fmt yuv420p does; left alone it would show too dark and flat.
        full_range = frame.format.name.startswith("yuvj") or frame.color_range == ColorRange.JPEG
        if (
            frame.format.name != "yuv420p"
            or full_range
            or (frame.width, frame.height) != (layout.scaled_width, layout.scaled_height)
        ):
            frame = self._reformatter.reformat(
                frame,
                width=layout.scaled_width,
                height=layout.scaled_height,
                format="yuv420p",
                src_color_range=ColorRange.JPEG if full_range else None,
                dst_color_range=ColorRange.MPEG,
            )
        if (layout.width, layout.height) != (layout.scaled_width, layout.scaled_height):
            return _padded(frame, layout)
        # The decoder may still hold this frame as a reference for the next ones: drawing on a shared
        # buffer would smear the drawings into them. Copied only when shared.
        frame.make_writable()
        return frame


def _padded(frame: VideoFrame, layout: FrameLayout) -> VideoFrame:
    """An odd-sized I420 frame on an even-sized black one (x264 needs even sizes), at the top left."""
    padded = av.VideoFrame(layout.width, layout.height, "yuv420p")
    for source, target, black in zip(planes_of(frame), planes_of(padded), (16, 128, 128), strict=True):
        target[...] = black
        target[: source.shape[0], : source.shape[1]] = source
    return padded


def planes_of(frame: VideoFrame) -> tuple[Plane, Plane, Plane]:
    """Writable views of an I420 frame's Y, U and V planes, in place (no copy): rows may be padded past the
    width in memory, which the views leave out."""
    chroma_width, chroma_height = (frame.width + 1) // 2, (frame.height + 1) // 2
    shapes = ((frame.height, frame.width), (chroma_height, chroma_width), (chroma_height, chroma_width))
    views = []
    for plane, (height, width) in zip(frame.planes, shapes, strict=True):
        memory = np.frombuffer(memoryview(plane), dtype=np.uint8)
        views.append(memory[: height * plane.line_size].reshape(height, plane.line_size)[:, :width])
    return views[0], views[1], views[2]


class TiffFrames:
    """TIFF frames (scaled to 8 bits by the tracking reader) converted once to I420 frames."""

    def __init__(self, video_path: str, frames: range, layout: FrameLayout) -> None:
        self.reader = TiffReader(video_path)
        self.frames = frames
        self.layout = layout
        self.shape = (layout.source_height, layout.source_width)

    def __iter__(self) -> Iterator[VideoFrame]:
        layout = self.layout
        buffer = np.empty((layout.height * 3 // 2, layout.width), dtype=np.uint8)
        present = set(self.reader.frame_numbers())
        for index in self.frames:
            # A number a folder skips is drawn black, so the frames after it keep their time.
            image = self.reader.read([index])[0] if index in present else np.zeros((*self.shape, 1), np.uint8)
            rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.shape[2] == 1 else image[..., :3]
            if (layout.scaled_width, layout.scaled_height) != (layout.source_width, layout.source_height):
                rgb = cv2.resize(rgb, (layout.scaled_width, layout.scaled_height), interpolation=cv2.INTER_AREA)
            if (layout.width, layout.height) != (layout.scaled_width, layout.scaled_height):
                rgb = cv2.copyMakeBorder(
                    rgb,
                    0,
                    layout.height - layout.scaled_height,
                    0,
                    layout.width - layout.scaled_width,
                    cv2.BORDER_CONSTANT,
                )
            cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420, dst=buffer)
            yield av.VideoFrame.from_ndarray(buffer, format="yuv420p")

    def close(self) -> None:
        self.reader.close()


def yuv_of(colour: RGB) -> tuple[int, int, int]:
    """BT.601 limited-range Y, U, V of an RGB colour: what ffmpeg and OpenCV assume for untagged video."""
    patch = np.full((2, 2, 3), colour, dtype=np.uint8)
    converted = cv2.cvtColor(patch, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    return int(converted[0]), int(converted[4]), int(converted[5])


@dataclass
class TrackPath:
    """What the painter draws for one track: its name, colour and where it was, frame by frame (filled in
    as the painter reads the frames)."""

    name: str
    yuv: tuple[int, int, int]
    frames: list[int]
    positions: list[tuple[float, float]]


@dataclass(frozen=True)
class Drawing:
    """One instance, in output pixels: what it draws in its track's colour."""

    track: int
    edges: npt.NDArray[np.float64]
    """(n, 2, 2) skeleton edges between visible nodes, each a two-point polyline."""
    box: npt.NDArray[np.float64] | None
    """(5, 2) closed outline, when boxes are asked for."""
    dots: npt.NDArray[np.float64]
    """(n, 2, 2) zero-length segments, one per visible node: drawn thick, each is a disc."""
    label_origin: tuple[float, float]


# Drawing on the three planes: Y at full resolution, U and V at half. Coordinates go to OpenCV in
# fixed point (SHIFT fractional bits) so lines and discs sit where the labels put them. Each plane
# gets one call for all of an instance's lines and one for all its discs: per-shape calls from Python
# would cost more than the shapes.
SHIFT = 4
ONE = 1 << SHIFT
PLANE_SCALES = (1.0, 0.5, 0.5)


class Painter:
    """Draws a frame's tracked instances in place on the planes of an I420 buffer."""

    def __init__(self, video: LabelledVideo, layout: FrameLayout, options: RenderOptions) -> None:
        self.layout = layout
        self.options = options
        unit = max(layout.width, layout.height) / 1024
        self.thickness = max(1, round(2 * unit))
        self.node_radius = max(2, round(5 * unit) if video.edges else round(8 * unit))
        self.font_scale = max(0.4, 0.9 * unit)
        self.font_thickness = max(1, round(2 * unit))
        edges = np.array(video.edges, dtype=np.int64).reshape(-1, 2)
        self.tracks: dict[int, TrackPath] = {}
        self.by_frame: dict[int, list[Drawing]] = {}
        for frame in video.frames:
            for instance in frame.instances:
                drawing = self._drawing(instance, edges) if instance.track >= 0 else None
                if drawing is None:
                    continue
                self.by_frame.setdefault(frame.frame_idx, []).append(drawing)
                track = self.tracks.get(instance.track)
                if track is None:
                    name = video.track_names[instance.track] if instance.track < len(video.track_names) else ""
                    track = TrackPath(name or f"track {instance.track}", yuv_of(track_colour(instance.track)), [], [])
                    self.tracks[instance.track] = track
                track.frames.append(frame.frame_idx)
                centre = drawing.dots[:, 0].mean(axis=0)
                track.positions.append((float(centre[0]), float(centre[1])))

    def _drawing(self, instance: Instance, edges: npt.NDArray[np.int64]) -> Drawing | None:
        points = instance.points * np.array(self.layout.factor)
        visible = ~np.isnan(points).any(axis=1)
        if not visible.any():
            return None
        shown = points[visible]
        joined = edges[visible[edges].all(axis=1)] if len(edges) else edges
        box = None
        if instance.bbox is not None:
            left, top = np.array(instance.bbox[:2]) * self.layout.factor
            right, bottom = np.array(instance.bbox[2:]) * self.layout.factor
        else:
            pad = 2 * self.node_radius
            (left, top), (right, bottom) = shown.min(axis=0) - pad, shown.max(axis=0) + pad
        if self.options.boxes:
            box = np.array([[left, top], [right, top], [right, bottom], [left, bottom], [left, top]])
        origin = (float(left), float(top) - 2 * self.thickness)
        return Drawing(instance.track, points[joined], box, np.repeat(shown[:, None], 2, axis=1), origin)

    def draw(self, frame_idx: int, planes: Sequence[Plane]) -> None:
        """Draw a frame's instances on its Y, U and V planes."""
        drawings = self.by_frame.get(frame_idx, [])
        trails = [self._trail(self.tracks[drawing.track], frame_idx) for drawing in drawings]
        shapes: dict[float, list[Shapes]] = {}  # U and V share the half scale
        for plane_index, plane in enumerate(planes):
            scale = PLANE_SCALES[plane_index]
            if scale not in shapes:
                shapes[scale] = [_fixed_shapes(d, trail, scale) for d, trail in zip(drawings, trails, strict=True)]
            self.draw_plane(plane_index, plane, drawings, shapes[scale])

    def draw_plane(self, plane_index: int, plane: Plane, drawings: Sequence[Drawing], shapes: Sequence[Shapes]) -> None:
        """Draw `drawings`, as `shapes` at this plane's scale, on one plane (0: Y, 1: U, 2: V)."""
        scale = PLANE_SCALES[plane_index]
        # Anti-aliasing where the eye sees edges, in luma; the half-resolution chroma planes take plain
        # lines at under half the cost (a chroma edge blurs anyway when the frame is shown).
        line_type = cv2.LINE_AA if scale == 1.0 else cv2.LINE_8
        width = max(1, round(self.thickness * scale))
        diameter = max(2, round(2 * self.node_radius * scale))
        text_width = max(1, round(self.font_thickness * scale))
        for drawing, (strokes, dots) in zip(drawings, shapes, strict=True):
            track = self.tracks[drawing.track]
            value = track.yuv[plane_index]
            if strokes:
                cv2.polylines(plane, strokes, False, value, width, line_type, SHIFT)
            cv2.polylines(plane, dots, False, value, diameter, line_type, SHIFT)
            x, y = self._label_at(drawing)
            cv2.putText(
                plane,
                track.name,
                (round(x * scale), round(y * scale)),
                cv2.FONT_HERSHEY_SIMPLEX,
                self.font_scale * scale,
                value,
                text_width,
                line_type,
            )

    def _label_at(self, drawing: Drawing) -> tuple[float, float]:
        x, y = drawing.label_origin
        return x, max(y, 12 * self.font_scale)

    def _trail(self, track: TrackPath, frame_idx: int) -> npt.NDArray[np.float64] | None:
        if self.options.trail <= 0:
            return None
        first = bisect.bisect_left(track.frames, frame_idx - self.options.trail)
        last = bisect.bisect_right(track.frames, frame_idx)
        return np.array(track.positions[first:last]) if last - first >= 2 else None


Shapes = tuple[list[npt.NDArray[np.int32]], list[npt.NDArray[np.int32]]]
"""An instance's lines (skeleton, box, trail) and discs, in a plane's fixed-point pixels."""


def _fixed_shapes(drawing: Drawing, trail: npt.NDArray[np.float64] | None, scale: float) -> Shapes:
    lines = [*_fixed(drawing.edges, scale)]
    if drawing.box is not None:
        lines.append(_fixed(drawing.box, scale))
    if trail is not None:
        lines.append(_fixed(trail, scale))
    return lines, list(_fixed(drawing.dots, scale))


def _fixed(points: npt.NDArray[np.float64], scale: float) -> npt.NDArray[np.int32]:
    return np.rint(points * (scale * ONE)).astype(np.int32)


def _write_video(
    source: FrameSource, painter: Painter, frames: range, encoder: Encoder, options: RenderOptions, label: str
) -> int:
    """Draw each decoded frame and hand it to the encoder; returns the frames written."""
    written = 0
    with _progress(options.progress, len(frames), label) as advance:
        for frame_idx, frame in zip(frames, source, strict=False):
            painter.draw(frame_idx, planes_of(frame))
            encoder.write(frame)
            written += 1
            advance()
    encoder.finish()
    return written


class Encoder:
    """`target` encoded in this process by FFmpeg's libraries (PyAV) with sleap-io's `VideoWriter` settings
    (codec, pixel format, CRF, preset) from I420 frames. `finish` completes the file; `stop` abandons it."""

    def __init__(self, target: Path, output: Path, layout: FrameLayout, fps: float, options: RenderOptions) -> None:
        """`output`: the name `target` will have when complete, the one messages give."""
        import sleap_io as sio

        settings = sio.VideoWriter(target, fps=fps, crf=options.crf, preset=options.preset)
        rate = Fraction(fps).limit_denominator(100_000)
        self.output = output
        try:
            self._container = av.open(str(target), "w")
        except (av.error.FFmpegError, ValueError) as error:
            raise RenderError(
                f"{output}: cannot write a video of this kind ({error}); name it .mp4, .mkv, .mov or .avi"
            ) from error
        try:
            self._stream = self._container.add_stream(settings.codec, rate=rate)
            self._stream.width, self._stream.height = layout.width, layout.height
            self._stream.pix_fmt = settings.pixelformat
            self._stream.time_base = 1 / rate
            self._stream.options = _codec_options(settings.build_output_params())
            # As the ffmpeg command does: the encoder picks its threads for the machine.
            self._stream.codec_context.thread_count = 0
        except (av.error.FFmpegError, ValueError) as error:
            self._container.close()
            raise RenderError(f"{output}: cannot set up the {settings.codec} encoder ({error})") from error
        self._time_base = 1 / rate  # the stream's own changes to the container's once it opens
        self._written = 0
        self._open = True

    def write(self, frame: VideoFrame) -> None:
        # Numbered anew, and the encoder chooses each frame's type: a decoded frame keeps the type it had
        # in the source, which the encoder would otherwise take as an order.
        frame.pts, frame.time_base, frame.pict_type = self._written, self._time_base, PictureType.NONE
        try:
            self._container.mux(self._stream.encode(frame))
        except av.error.FFmpegError as error:
            raise RenderError(f"{self.output}: encoding frame {self._written} failed ({error})") from error
        self._written += 1

    def finish(self) -> None:
        self._open = False
        try:
            self._container.mux(self._stream.encode(None))
        except av.error.FFmpegError as error:
            with contextlib.suppress(av.error.FFmpegError):
                self._container.close()
            raise RenderError(f"{self.output}: could not complete the video ({error})") from error
        try:
            self._container.close()
        except av.error.FFmpegError as error:
            raise RenderError(f"{self.output}: could not complete the video ({error})") from error

    def stop(self) -> None:
        """Close an unfinished file (the caller removes it); a no-op after `finish`."""
        if self._open:
            self._open = False
            # An abandoned file: an error closing it is not the error to report.
            with contextlib.suppress(av.error.FFmpegError):
                self._container.close()


def _codec_options(params: Sequence[str]) -> dict[str, str]:
    """ffmpeg output arguments (`-crf 25 -preset superfast`) as codec options."""
    options: dict[str, str] = {}
    for flag, value in zip(params[::2], params[1::2], strict=True):
        options[flag.removeprefix("-")] = value
    return options


def _write_still(source: FrameSource, painter: Painter, frames: range, target: Path, output: Path) -> int:
    for frame_idx, frame in zip(frames, source, strict=False):
        painter.draw(frame_idx, planes_of(frame))
        if not cv2.imwrite(str(target), frame.to_ndarray(format="bgr24")):
            raise RenderError(f"{output}: could not write the image")
        return 1
    return 0


class _progress:
    """A progress bar on stderr (rich), or nothing."""

    def __init__(self, shown: bool, total: int, label: str) -> None:
        self.shown, self.total, self.label = shown, total, label
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.shown:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("frames"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._bar.start()
        task = self._bar.add_task(f"rendering {self.label}", total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
