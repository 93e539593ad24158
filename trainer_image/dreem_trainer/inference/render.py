"""`dreem render`: a tracked file drawn over its video, each track in its own colour with its name.

Frames travel as planar YUV 4:2:0, the format videos are stored in, from an ffmpeg decoder's pipe to an
ffmpeg encoder's. On Linux (`FrameRelay`) the rows nothing is drawn on move between the two pipes inside the
kernel (`os.splice`); only the bands of rows the tracks are drawn on are read, drawn on in place on their
Y, U and V planes, and written on. Elsewhere, and for still images, a thread reads whole frames into a few
reused buffers, drawn in place and written whole. Drawing in RGB instead would cost two colour conversions
per frame (YUV to RGB after decoding, RGB to YUV before encoding): measured, 1.75x the CPU time of a bare
decode and re-encode.

The encoder is the ffmpeg binary imageio-ffmpeg ships, run with sleap-io's `VideoWriter` settings (codec,
pixel format, CRF, preset). sleap-io's writer itself only takes RGB or grey frames and pads sizes to
multiples of 16, which would change the frame size; imageio-ffmpeg's `write_frames` pipe under it cannot be
started before the frames are known good and stopped without writing a broken file, and polls for the
encoder's exit. Both ffmpeg processes start before the labels are read, so their start-up overlaps it.

Importing this module loads neither torch nor the model: rendering is drawing and video I/O only.
"""

from __future__ import annotations

import bisect
import math
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import numpy.typing as npt

from dreem_trainer.data.discovery import SourcePair
from dreem_trainer.data.microscopy import CTC_RESULT_TRACKS, CTC_TRACKS, TiffReader, is_tiff_video, numbered_tiffs
from dreem_trainer.data.point_tracks import TRACKS_CSV_SUFFIX
from dreem_trainer.data.records import Instance, LabelledVideo
from dreem_trainer.inference.colours import RGB, track_colour
from dreem_trainer.inference.render_options import TIFF_FPS, X264_PRESETS, RenderError, RenderOptions

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


def render(
    tracked: str | Path, output: Path, video: str | None = None, options: RenderOptions | None = None
) -> RenderResult:
    """Draw the tracks of `tracked` (a `.slp`, CTC results or a tracks CSV) over its video into `output`
    (a video, or one still frame for a `.png`/`.jpg` output). Nothing is written unless it all works:
    the output appears under its name only when complete, and an existing one needs `overwrite`."""
    options = options or RenderOptions()
    if output.exists() and not options.overwrite:
        raise RenderError(f"{output}: already exists; pass --overwrite to replace it")
    if options.preset not in X264_PRESETS:
        raise RenderError(f"--preset: not a libx264 preset ({', '.join(X264_PRESETS)}), got {options.preset!r}")
    if not 0 <= options.crf <= 51:
        raise RenderError(f"--crf: libx264 takes 0 (lossless) to 51, got {options.crf}")
    pair = tracked_source(Path(tracked), video)
    facts = video_facts(pair.video_path)
    frames = options.frames.resolve(facts.frame_count, pair.video_path)
    still = output.suffix.lower() in STILL_SUFFIXES
    if still and len(frames) != 1:
        raise RenderError(f"{output}: a still image holds one frame; choose it with --frames N")
    layout = FrameLayout.of(facts, options.scale)
    partial = output.with_name(f".{output.stem}.partial{output.suffix}")
    started = time.perf_counter()
    written = 0
    # The decoder and the encoder start before the labels are read, so that their start-up overlaps the
    # reading. Their messages go to files, not pipes: a damaged video can log more than a pipe holds, and a
    # full pipe nobody reads would stall ffmpeg.
    with tempfile.TemporaryFile() as decoder_messages, tempfile.TemporaryFile() as encoder_messages:
        relayed = not still and hasattr(os, "splice") and not is_tiff_video(pair.video_path)
        source: Generator[Plane, None, None] | FrameRelay = (
            FrameRelay(pair.video_path, frames, layout, decoder_messages)
            if relayed
            else decoded_frames(pair.video_path, frames, layout, decoder_messages)
        )
        encoder: Encoder | None = None
        try:
            if not still:
                output.parent.mkdir(parents=True, exist_ok=True)
                fps = options.fps or facts.fps or TIFF_FPS
                encoder = Encoder(partial, layout, fps, options, encoder_messages)
            labelled = pair.read()
            check_tracks(labelled)
            check_matches(labelled, facts)
            painter = Painter(labelled, layout, options)
            if encoder is None:
                assert not isinstance(source, FrameRelay)
                output.parent.mkdir(parents=True, exist_ok=True)
                written = _write_still(source, painter, frames, partial)
            else:
                written = _write_video(source, painter, frames, encoder, options, output.name)
            if written == 0:
                raise RenderError(f"{pair.video_path}: ffmpeg decoded no frame of {frames.start}-{frames.stop - 1}")
            os.replace(partial, output)
        finally:
            source.close()  # stops the decoder if the labels or the encoder failed first
            if encoder is not None:
                encoder.stop()  # a no-op after a finished encoding
            partial.unlink(missing_ok=True)
    tracks = len({i.track for f in labelled.frames for i in f.instances if i.track >= 0})
    return RenderResult(
        output, written, len(frames), layout.width, layout.height, tracks, time.perf_counter() - started
    )


def render_beside(tracked: Path, video_path: str) -> RenderResult:
    """`dreem track --render`: a tracked file drawn over its video as `<tracked file>.mp4` beside it.
    Like the tracked file, it is dreem track's own output, which the next run replaces."""
    target = tracked.with_name(tracked.name.removesuffix(tracked.suffix) + ".mp4")
    return render(tracked, target, video_path, RenderOptions(overwrite=True))


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
        import tifffile

        if os.path.isdir(video_path):
            files = numbered_tiffs(Path(video_path))
            if not files:
                raise RenderError(f"{video_path}: no TIFF frames in the folder")
            shape = tifffile.imread(files[min(files)]).shape
            return VideoFacts(max(files) + 1, int(shape[0]), int(shape[1]), None)
        with tifffile.TiffFile(video_path) as stack:
            shape = stack.pages[0].shape
            return VideoFacts(len(stack.pages), int(shape[0]), int(shape[1]), None)
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
        if not 0 < scale <= 8:
            raise RenderError(f"--scale: expected a factor above 0 and at most 8, got {scale}")
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

    @property
    def nbytes(self) -> int:
        return self.width * self.height * 3 // 2

    @property
    def plane_heights(self) -> tuple[int, int, int]:
        return self.height, self.height // 2, self.height // 2

    @property
    def plane_offsets(self) -> tuple[int, int, int]:
        """Where each plane starts in a frame's bytes, and (as the widths) how many bytes each of its rows holds."""
        luma = self.width * self.height
        return 0, luma, luma + luma // 4

    @property
    def plane_widths(self) -> tuple[int, int, int]:
        return self.width, self.width // 2, self.width // 2

    def planes(self, buffer: Plane) -> tuple[Plane, Plane, Plane]:
        """Views of a flat I420 buffer as its Y, U and V planes (no copy)."""
        luma = self.width * self.height
        chroma = luma // 4
        return (
            buffer[:luma].reshape(self.height, self.width),
            buffer[luma : luma + chroma].reshape(self.height // 2, self.width // 2),
            buffer[luma + chroma :].reshape(self.height // 2, self.width // 2),
        )


def decoded_frames(
    video_path: str, frames: range, layout: FrameLayout, messages: IO[bytes]
) -> Generator[Plane, None, None]:
    """Frames `frames` of a video as flat I420 buffers, each valid until the next is asked for. A video's
    decoder starts now, not at the first frame, so that its start-up overlaps whatever the caller does next."""
    if is_tiff_video(video_path):
        return _tiff_frames(video_path, frames, layout)
    return _media_frames(_start_decoder(video_path, frames, layout, messages), messages, video_path, layout)


DECODED_AHEAD = 4
"""Frames the decoder may run ahead of the drawing. With none, a decoder blocked on a full pipe sits idle
while the encoder is busy, and the drawing then waits for it: a few buffers let the two overlap, as the
queues between ffmpeg's own decoding and encoding threads do in a bare transcode."""


def _start_decoder(video_path: str, frames: range, layout: FrameLayout, messages: IO[bytes]) -> subprocess.Popen[bytes]:
    import imageio_ffmpeg

    filters = [f"trim=start_frame={frames.start}:end_frame={frames.stop}"]
    if (layout.scaled_width, layout.scaled_height) != (layout.source_width, layout.source_height):
        filters.append(f"scale={layout.scaled_width}:{layout.scaled_height}")
    if (layout.width, layout.height) != (layout.scaled_width, layout.scaled_height):
        filters.append(f"pad={layout.width}:{layout.height}:0:0")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-nostdin",
        "-v",
        "error",
        # One decoding thread keeps ahead of any x264 preset and spends less CPU than frame threads,
        # which the encoder needs more.
        "-threads",
        "1",
        "-i",
        video_path,
        "-an",
        "-sn",
        "-dn",
        "-vf",
        ",".join(filters),
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        # Unbuffered output: each frame goes to the pipe in one write, not copied through ffmpeg's 32 KiB
        # I/O buffer in dozens (measured: about a tenth less CPU for the whole render).
        "-avioflags",
        "direct",
        "-",
    ]
    decoder = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=messages, bufsize=0)
    assert decoder.stdout is not None
    _widen_pipe(decoder.stdout.fileno(), layout.nbytes)
    return decoder


def _media_frames(
    decoder: subprocess.Popen[bytes], messages: IO[bytes], video_path: str, layout: FrameLayout
) -> Generator[Plane, None, None]:
    """The decoder's frames, read by a thread into a ring of DECODED_AHEAD reused buffers (reading from
    the pipe releases the GIL, so it overlaps the drawing and the encoder's writes)."""
    assert decoder.stdout is not None
    stream = decoder.stdout
    ring = [np.empty(layout.nbytes, dtype=np.uint8) for _ in range(DECODED_AHEAD)]
    free: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    filled: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    failure: list[BaseException] = []
    for index in range(DECODED_AHEAD):
        free.put(index)

    def read() -> None:
        try:
            while (slot := free.get()) is not None and _fill(stream, memoryview(ring[slot])):  # type: ignore[arg-type]
                filled.put(slot)
        except BaseException as error:  # handed to the consuming thread, which raises it
            failure.append(error)
        finally:
            filled.put(None)

    reader = threading.Thread(target=read, name="render-decoder", daemon=True)
    reader.start()
    try:
        while (slot := filled.get()) is not None:
            yield ring[slot]
            free.put(slot)
    finally:
        decoder.kill()  # the reader then meets the end of the pipe, if it is still reading
        free.put(None)  # or stops waiting for a free buffer
        reader.join()
        stream.close()
        errors = _decoder_errors(decoder, messages)
    if failure:
        raise RenderError(f"{video_path}: reading ffmpeg's frames failed ({failure[0]})") from failure[0]
    if errors:
        raise RenderError(f"{video_path}: ffmpeg could not decode it ({errors})")


def _decoder_errors(decoder: subprocess.Popen[bytes], messages: IO[bytes]) -> str:
    """What a stopped decoder said, if it failed (not when it was stopped early)."""
    decoder.wait()
    if decoder.returncode in (0, -9):
        return ""
    messages.seek(0)
    return messages.read().decode(errors="replace").strip()


class FrameRelay:
    """Frames passed from the decoder's pipe to the encoder's, drawn on the way (Linux, where `os.splice`
    exists). The rows no drawing touches move from pipe to pipe inside the kernel without being copied
    into this process; only the bands of rows an instance is drawn on are read, drawn and written. For a few
    animals on a large frame most rows are untouched, and copying them through the process twice was most
    of its CPU time."""

    def __init__(self, video_path: str, frames: range, layout: FrameLayout, messages: IO[bytes]) -> None:
        self.video_path = video_path
        self.layout = layout
        self.messages = messages
        self.decoder = _start_decoder(video_path, frames, layout, messages)
        assert self.decoder.stdout is not None
        self.stream = self.decoder.stdout
        self.buffer = np.empty(layout.nbytes, dtype=np.uint8)
        self.view = memoryview(self.buffer)  # type: ignore[arg-type]

    def relay(self, frame_idx: int, painter: Painter, encoder: Encoder) -> bool:
        """Move frame `frame_idx` to the encoder with its drawings; False when the decoder has no more."""
        planes = self.layout.planes(self.buffer)
        done = 0  # bytes of this frame handed on
        for plane_index, bands in enumerate(painter.bands(frame_idx)):
            offset, row_bytes = self.layout.plane_offsets[plane_index], self.layout.plane_widths[plane_index]
            for band in bands:
                start, stop = offset + band.start * row_bytes, offset + band.stop * row_bytes
                if not self._pass(start - done, encoder) or not _fill(self.stream, self.view[start:stop]):
                    return False
                painter.draw_plane(frame_idx, plane_index, planes[plane_index], band.drawings)
                encoder.write(self.view[start:stop])
                done = stop
        return self._pass(self.layout.nbytes - done, encoder)

    def _pass(self, count: int, encoder: Encoder) -> bool:
        """Splice `count` bytes from the decoder's pipe to the encoder's."""
        while count > 0:
            moved = os.splice(self.stream.fileno(), encoder.fileno(), count)
            if moved == 0:
                return False
            count -= moved
        return True

    def close(self) -> None:
        """Stop the decoder (a no-op once it has finished); raise if it failed."""
        self.decoder.kill()
        self.stream.close()
        errors = _decoder_errors(self.decoder, self.messages)
        if errors:
            raise RenderError(f"{self.video_path}: ffmpeg could not decode it ({errors})")


def _widen_pipe(descriptor: int, frame_bytes: int) -> None:
    """Room for a whole frame in the pipe (Linux; up to its pipe-max-size), rather than 64 KiB: a frame
    then crosses in a few system calls instead of dozens."""
    import fcntl

    resize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if resize is None:
        return
    for size in (frame_bytes, 1 << 20):
        try:
            fcntl.fcntl(descriptor, resize, size)
            return
        except OSError:
            continue


def _fill(stream: Any, view: memoryview) -> bool:
    """Read exactly one frame into `view`; False at the end of the stream."""
    got = 0
    while got < len(view):
        count = stream.readinto(view[got:])
        if not count:
            return False
        got += count
    return True


def _tiff_frames(video_path: str, frames: range, layout: FrameLayout) -> Generator[Plane, None, None]:
    """TIFF frames (scaled to 8 bits by the tracking reader) converted once to I420."""
    reader = TiffReader(video_path)
    buffer = np.empty(layout.nbytes, dtype=np.uint8)
    target = buffer.reshape(layout.height * 3 // 2, layout.width)
    for index in frames:
        image = reader.read([index])[0]
        rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.shape[2] == 1 else image[..., :3]
        if (layout.scaled_width, layout.scaled_height) != (layout.source_width, layout.source_height):
            rgb = cv2.resize(rgb, (layout.scaled_width, layout.scaled_height), interpolation=cv2.INTER_AREA)
        if (layout.width, layout.height) != (layout.scaled_width, layout.scaled_height):
            rgb = cv2.copyMakeBorder(
                rgb, 0, layout.height - layout.scaled_height, 0, layout.width - layout.scaled_width, cv2.BORDER_CONSTANT
            )
        cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420, dst=target)
        yield buffer


def yuv_of(colour: RGB) -> tuple[int, int, int]:
    """BT.601 limited-range Y, U, V of an RGB colour: what ffmpeg and OpenCV assume for untagged video."""
    patch = np.full((2, 2, 3), colour, dtype=np.uint8)
    converted = cv2.cvtColor(patch, cv2.COLOR_RGB2YUV_I420).reshape(-1)
    return int(converted[0]), int(converted[4]), int(converted[5])


@dataclass(frozen=True)
class Track:
    """What the painter draws for one track: its name, colour and where it was, frame by frame."""

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


@dataclass(frozen=True)
class Band:
    """Rows [start, stop) of one plane and the drawings that lie within them."""

    start: int
    stop: int
    drawings: list[Drawing]


BAND_MARGIN = 3
"""Rows added above and below each drawing's band: anti-aliasing, rounding to fixed point and to the chroma
planes' half resolution each reach a row or so past the shapes' own coordinates."""

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
        self.tracks: dict[int, Track] = {}
        self.by_frame: dict[int, list[Drawing]] = {}
        self._shapes: dict[tuple[int, float], tuple[list[npt.NDArray[np.int32]], list[npt.NDArray[np.int32]]]] = {}
        for frame in video.frames:
            for instance in frame.instances:
                drawing = self._drawing(instance, edges) if instance.track >= 0 else None
                if drawing is None:
                    continue
                self.by_frame.setdefault(frame.frame_idx, []).append(drawing)
                track = self.tracks.get(instance.track)
                if track is None:
                    name = video.track_names[instance.track] if instance.track < len(video.track_names) else ""
                    track = Track(name or f"track {instance.track}", yuv_of(track_colour(instance.track)), [], [])
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

    def draw(self, frame_idx: int, buffer: Plane) -> None:
        """Draw a frame's instances on all three planes of a whole I420 frame."""
        drawings = self.by_frame.get(frame_idx, [])
        for plane_index, plane in enumerate(self.layout.planes(buffer)):
            self.draw_plane(frame_idx, plane_index, plane, drawings)

    def draw_plane(self, frame_idx: int, plane_index: int, plane: Plane, drawings: Sequence[Drawing]) -> None:
        """Draw `drawings` on one plane (0: Y, 1: U, 2: V) of frame `frame_idx`."""
        scale = PLANE_SCALES[plane_index]
        # Anti-aliasing where the eye sees edges, in luma; the half-resolution chroma planes take plain
        # lines at under half the cost (a chroma edge blurs anyway when the frame is shown).
        line_type = cv2.LINE_AA if scale == 1.0 else cv2.LINE_8
        width = max(1, round(self.thickness * scale))
        diameter = max(2, round(2 * self.node_radius * scale))
        text_width = max(1, round(self.font_thickness * scale))
        for drawing in drawings:
            track = self.tracks[drawing.track]
            value = track.yuv[plane_index]
            strokes, dots = self._fixed_shapes(drawing, scale)
            trail = self._trail(track, frame_idx)
            if trail is not None:
                strokes = [*strokes, _fixed(trail, scale)]
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

    def bands(self, frame_idx: int) -> list[list[Band]]:
        """For each plane, the bands of rows frame `frame_idx`'s drawings touch, top to bottom, each with
        the drawings inside it. Generous by a few rows: a row outside every band is left as decoded."""
        drawings = self.by_frame.get(frame_idx, [])
        rows = [self._rows(drawing, frame_idx) for drawing in drawings]
        planes: list[list[Band]] = []
        for scale, height in zip(PLANE_SCALES, self.layout.plane_heights, strict=True):
            scaled = sorted(
                (
                    (
                        max(0, math.floor(top * scale) - BAND_MARGIN),
                        min(height, math.ceil(bottom * scale) + BAND_MARGIN),
                    ),
                    order,
                )
                for order, (top, bottom) in enumerate(rows)
            )
            merged: list[tuple[int, int, list[int]]] = []
            for (top, bottom), order in scaled:
                if top >= bottom:
                    continue
                if merged and top <= merged[-1][1]:
                    merged[-1] = (merged[-1][0], max(merged[-1][1], bottom), [*merged[-1][2], order])
                else:
                    merged.append((top, bottom, [order]))
            # Within a band, drawings keep the frame's order, so overlaps come out as a whole frame draws them.
            planes.append([Band(top, bottom, [drawings[k] for k in sorted(orders)]) for top, bottom, orders in merged])
        return planes

    def _rows(self, drawing: Drawing, frame_idx: int) -> tuple[float, float]:
        """The luma rows [top, bottom) a drawing covers on this frame: its shapes, its trail and its name."""
        reach = max(self.node_radius, self.thickness)
        ys = [drawing.dots[:, 0, 1]]
        if len(drawing.edges):
            ys.append(drawing.edges[:, :, 1].ravel())
        if drawing.box is not None:
            ys.append(drawing.box[:, 1])
        trail = self._trail(self.tracks[drawing.track], frame_idx)
        if trail is not None:
            ys.append(trail[:, 1])
        every = np.concatenate(ys)
        every = every[~np.isnan(every)]
        top, bottom = float(every.min()) - reach, float(every.max()) + reach
        (_, text_height), baseline = cv2.getTextSize(
            self.tracks[drawing.track].name, cv2.FONT_HERSHEY_SIMPLEX, self.font_scale, self.font_thickness
        )
        _, label_y = self._label_at(drawing)
        top = min(top, label_y - text_height - self.font_thickness)
        bottom = max(bottom, label_y + baseline + self.font_thickness)
        return top, bottom + 1

    def _label_at(self, drawing: Drawing) -> tuple[float, float]:
        x, y = drawing.label_origin
        return x, max(y, 12 * self.font_scale)

    def _fixed_shapes(
        self, drawing: Drawing, scale: float
    ) -> tuple[list[npt.NDArray[np.int32]], list[npt.NDArray[np.int32]]]:
        """An instance's lines and discs in a plane's fixed-point pixels, computed once per scale: U and V
        share them, and a frame drawn again (a second render of the same labels) reuses them."""
        key = (id(drawing), scale)
        shapes = self._shapes.get(key)
        if shapes is None:
            lines = list(_fixed(drawing.edges, scale)) + ([] if drawing.box is None else [_fixed(drawing.box, scale)])
            shapes = (lines, list(_fixed(drawing.dots, scale)))
            self._shapes[key] = shapes
        return shapes

    def _trail(self, track: Track, frame_idx: int) -> npt.NDArray[np.float64] | None:
        if self.options.trail <= 0:
            return None
        first = bisect.bisect_left(track.frames, frame_idx - self.options.trail)
        last = bisect.bisect_right(track.frames, frame_idx)
        return np.array(track.positions[first:last]) if last - first >= 2 else None


def _fixed(points: npt.NDArray[np.float64], scale: float) -> npt.NDArray[np.int32]:
    return np.rint(points * (scale * ONE)).astype(np.int32)


def _write_video(
    source: Iterator[Plane] | FrameRelay,
    painter: Painter,
    frames: range,
    encoder: Encoder,
    options: RenderOptions,
    label: str,
) -> int:
    """Draw each decoded frame and hand it to the encoder; returns the frames written."""
    written = 0
    with _progress(options.progress, len(frames), label) as advance:
        if isinstance(source, FrameRelay):
            for frame_idx in frames:
                if not source.relay(frame_idx, painter, encoder):
                    break
                written += 1
                advance()
        else:
            for frame_idx, buffer in zip(frames, source, strict=False):
                painter.draw(frame_idx, buffer)
                encoder.write(buffer)
                written += 1
                advance()
    encoder.finish()
    return written


class Encoder:
    """An ffmpeg process encoding raw I420 frames from its stdin into `target`, with sleap-io's
    `VideoWriter` settings. `finish` waits for a complete file; `stop` kills an unfinished one."""

    def __init__(
        self, target: Path, layout: FrameLayout, fps: float, options: RenderOptions, messages: IO[bytes]
    ) -> None:
        import imageio_ffmpeg
        import sleap_io as sio

        settings = sio.VideoWriter(target, fps=fps, crf=options.crf, preset=options.preset)
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "yuv420p",
            "-s",
            f"{layout.width}x{layout.height}",
            "-r",
            str(Fraction(fps).limit_denominator()),
            "-avioflags",
            "direct",  # each frame read from the pipe in one piece, as the decoder writes it
            "-i",
            "-",
            "-an",
            "-vcodec",
            settings.codec,
            "-pix_fmt",
            settings.pixelformat,
            *settings.build_output_params(),
            str(target),
        ]
        self.target = target
        self._messages = messages
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=self._messages, bufsize=0)
        assert self._process.stdin is not None
        self._stdin = self._process.stdin
        _widen_pipe(self._stdin.fileno(), layout.nbytes)

    def fileno(self) -> int:
        return self._stdin.fileno()

    def write(self, frame: Plane | memoryview) -> None:
        view = frame if isinstance(frame, memoryview) else memoryview(frame)  # type: ignore[arg-type]
        try:
            while view:
                view = view[self._stdin.write(view) :]
        except BrokenPipeError:
            self._process.wait()
            raise RenderError(f"{self.target}: ffmpeg stopped encoding ({self._message()})") from None

    def finish(self) -> None:
        self._stdin.close()
        if self._process.wait() != 0:
            raise RenderError(f"{self.target}: ffmpeg could not encode the video ({self._message()})")

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._stdin.close()

    def _message(self) -> str:
        self._messages.seek(0)
        return self._messages.read().decode(errors="replace").strip() or f"exit status {self._process.returncode}"


def _write_still(source: Iterator[Plane], painter: Painter, frames: range, target: Path) -> int:
    for frame_idx, buffer in zip(frames, source, strict=False):
        painter.draw(frame_idx, buffer)
        layout = painter.layout
        image = cv2.cvtColor(buffer.reshape(layout.height * 3 // 2, layout.width), cv2.COLOR_YUV2BGR_I420)
        if not cv2.imwrite(str(target), image):
            raise RenderError(f"{target}: could not write the image")
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
