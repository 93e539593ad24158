"""`dreem render`: tracked files drawn over their videos, read back with sleap-io."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import numpy.typing as npt
import pytest
import sleap_io as sio
from PIL import Image

from dreem_trainer.data.formats import write_tracks
from dreem_trainer.data.label_format import Predictions
from dreem_trainer.data.microscopy import read_ctc
from dreem_trainer.data.point_tracks import write_tracks_csv
from dreem_trainer.data.records import LabelledVideo
from dreem_trainer.data.sleap import SleapLabels
from dreem_trainer.inference.colours import track_colour
from dreem_trainer.inference.render import FrameLayout, planes_of, render, video_facts, video_frames
from dreem_trainer.inference.render_options import FrameRange, RenderError, RenderOptions
from tests.conftest import dreem_executable
from tests.microscopy_helpers import CELLS, MAN_TRACK, truth_points, write_stack
from tests.trainer_helpers import TWO_FLIES_MP4, TWO_FLIES_SLP

COLOUR_TOLERANCE = 40
"""Per channel, after 4:2:0 chroma and libx264 at CRF 25."""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled clip's ground-truth tracks (F and M), every frame, with trails."""
    output = tmp_path_factory.mktemp("render") / "two_flies.mp4"
    render(TWO_FLIES_SLP, output, options=RenderOptions(trail=5, progress=False))
    return output


def colour_at(image: npt.NDArray[np.uint8], x: float, y: float) -> npt.NDArray[np.int64]:
    """Median colour of the 3x3 pixels around (x, y)."""
    column, row = round(x), round(y)
    patch = image[row - 1 : row + 2, column - 1 : column + 2, :3].reshape(-1, 3)
    median: npt.NDArray[np.int64] = np.median(patch, axis=0).astype(np.int64)
    return median


def isolated_points(
    video: LabelledVideo, frame_idx: int, node: int, clearance: float
) -> list[tuple[int, float, float]]:
    """(track, x, y) of the instances of a frame whose `node` lies at least `clearance` px from any other
    instance's points, so nothing drawn for another track covers it."""
    (frame,) = [f for f in video.frames if f.frame_idx == frame_idx]
    found = []
    for instance in frame.instances:
        x, y = instance.points[node]
        others = np.concatenate([o.points for o in frame.instances if o is not instance])
        distances = np.hypot(others[:, 0] - x, others[:, 1] - y)
        if not np.isnan(x) and np.nanmin(distances) >= clearance:
            found.append((instance.track, float(x), float(y)))
    return found


def assert_track_colours(image: npt.NDArray[np.uint8], points: list[tuple[int, float, float]]) -> None:
    seen = {}
    for track, x, y in points:
        colour = colour_at(image, x, y)
        expected = np.array(track_colour(track))
        assert np.abs(colour - expected).max() <= COLOUR_TOLERANCE, (track, colour.tolist(), expected.tolist())
        seen[track] = colour
    assert len(seen) >= 2, "the check needs two tracks"
    first, second = list(seen.values())[:2]
    assert np.abs(first - second).sum() > 3 * COLOUR_TOLERANCE, "two tracks, two colours"


def nearest_frame(frame: npt.NDArray[np.float64], candidates: dict[int, npt.NDArray[np.float64]]) -> int:
    """The number of the candidate frame closest to `frame` (mean squared difference): drawings and
    re-encoding change a frame a little, a frame's neighbours change it more."""
    return min(candidates, key=lambda index: float(np.mean((candidates[index] - frame) ** 2)))


def test_the_video_keeps_frame_count_and_size_and_each_track_its_colour(rendered: Path) -> None:
    source, drawn = sio.load_video(TWO_FLIES_MP4), sio.load_video(str(rendered), grayscale=False)
    assert drawn.shape[:3] == source.shape[:3] == (128, 1024, 1024)
    truth = SleapLabels().read(TWO_FLIES_SLP, TWO_FLIES_MP4)
    thorax = truth.node_names.index("thorax")
    checked = 0
    for frame_idx in range(0, 128, 16):
        points = isolated_points(truth, frame_idx, thorax, clearance=40)
        if len(points) == 2:
            assert_track_colours(drawn[frame_idx], points)
            checked += 1
    assert checked >= 3


def test_a_frame_range_renders_exactly_those_frames(rendered: Path, tmp_path: Path) -> None:
    part = render(TWO_FLIES_SLP, tmp_path / "part.mp4", options=RenderOptions(trail=5, frames=FrameRange(40, 50)))
    assert part.frames == 10
    whole, drawn = sio.load_video(str(rendered), grayscale=False), sio.load_video(str(part.output), grayscale=False)
    assert drawn.shape[0] == 10
    candidates = {index: whole[index].astype(np.float64) for index in range(34, 56)}
    for offset in range(10):
        assert nearest_frame(drawn[offset].astype(np.float64), candidates) == 40 + offset


def frames_in_order(path: Path, first: int, stop: int) -> dict[int, npt.NDArray[np.float64]]:
    """Grey frames `first` to `stop` of a video, numbered by counting from its first frame (OpenCV)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    found = {}
    for index in range(stop):
        ok, image = capture.read()
        assert ok, (path, index)
        if index >= first:
            found[index] = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float64)
    capture.release()
    return found


@pytest.mark.parametrize(
    ("name", "encoding", "first"),
    [
        # mp4 with B-frames (superfast), a range starting mid-GOP: the seek lands on the keyframe before it.
        ("gop.mp4", ["-g", "25", "-preset", "superfast"], 310),
        # MPEG-TS: its seek stops on a packet, not a keyframe, and the decoder resumes past the range's start.
        ("gop.ts", ["-g", "25", "-preset", "superfast"], 280),
        # Frames from 200 on twice as far apart: timestamps do not number them, counting does.
        ("vfr.mp4", ["-vf", "setpts='if(lt(N,200),N,200+2*(N-200))/(25*TB)'", "-fps_mode", "vfr"], 262),
    ],
)
def test_a_range_deep_in_a_long_video_starts_at_the_frame_asked_for(
    tmp_path: Path, name: str, encoding: list[str], first: int
) -> None:
    """Far from the start, decoding may begin at the keyframe before the range, found by timestamp: the
    frames rendered must still be exactly the ones asked for, numbered as sleap-io numbers them (counting),
    whatever the container's seeking or the spacing of the frames."""
    long_video = tmp_path / name
    loop = ["-stream_loop", "2", "-i", TWO_FLIES_MP4, "-c:v", "libx264", *encoding]
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *loop, str(long_video)], check=True)
    part = render(
        TWO_FLIES_SLP, tmp_path / "deep.mp4", str(long_video), RenderOptions(frames=FrameRange(first, first + 6))
    )
    assert part.frames == 6
    candidates = frames_in_order(long_video, first - 12, first + 18)
    drawn = frames_in_order(part.output, 0, 6)
    for offset, frame in drawn.items():
        assert nearest_frame(frame, candidates) == first + offset, (name, offset)


def test_full_range_video_keeps_its_brightness(tmp_path: Path) -> None:
    """A full-range (yuvj420p) video is brought to the limited range the output is tagged with: its frames
    read back as bright as the source's."""
    full = tmp_path / "full.mp4"
    encode = ["-frames:v", "70", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuvj420p"]
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", TWO_FLIES_MP4, *encode, str(full)], check=True
    )
    truth = SleapLabels().read(TWO_FLIES_SLP, TWO_FLIES_MP4)
    labels = tmp_path / "short.slp"
    short = sio.load_slp(TWO_FLIES_SLP)
    short.labeled_frames = [frame for frame in short.labeled_frames if frame.frame_idx < 70]
    sio.save_slp(short, str(labels))
    drawn = render(labels, tmp_path / "drawn.mp4", str(full), RenderOptions(frames=FrameRange(60, 62)))
    source = frames_in_order(full, 60, 62)[60]
    rendered = frames_in_order(drawn.output, 0, 1)[0]
    # Away from the flies (their drawings change pixels), the picture is the source's.
    away = np.ones(source.shape, dtype=bool)
    (frame,) = [f for f in truth.frames if f.frame_idx == 60]
    for instance in frame.instances:
        (left, top), (right, bottom) = np.nanmin(instance.points, axis=0), np.nanmax(instance.points, axis=0)
        away[max(0, int(top) - 80) : int(bottom) + 80, max(0, int(left) - 80) : int(right) + 80] = False
    assert away.mean() > 0.8
    assert float(np.abs(rendered - source)[away].mean()) < 1.5
    assert abs(float(rendered[away].mean()) - float(source[away].mean())) < 0.5


def test_one_frame_as_a_png_still(tmp_path: Path) -> None:
    still = render(TWO_FLIES_SLP, tmp_path / "frame.png", options=RenderOptions(frames=FrameRange.parse("64")))
    image = np.asarray(Image.open(still.output).convert("RGB"))
    assert image.shape == (1024, 1024, 3)
    truth = SleapLabels().read(TWO_FLIES_SLP, TWO_FLIES_MP4)
    assert_track_colours(image, isolated_points(truth, 64, truth.node_names.index("thorax"), clearance=40))
    with pytest.raises(RenderError, match="a still image holds one frame"):
        render(TWO_FLIES_SLP, tmp_path / "two.png", options=RenderOptions(frames=FrameRange(1, 3)))


def test_scale_resizes_frames_and_positions(tmp_path: Path) -> None:
    half = render(TWO_FLIES_SLP, tmp_path / "half.png", options=RenderOptions(scale=0.5, frames=FrameRange(64, 65)))
    image = np.asarray(Image.open(half.output).convert("RGB"))
    assert image.shape == (512, 512, 3)
    truth = SleapLabels().read(TWO_FLIES_SLP, TWO_FLIES_MP4)
    points = isolated_points(truth, 64, truth.node_names.index("thorax"), clearance=40)
    assert_track_colours(image, [(track, x / 2, y / 2) for track, x, y in points])


def test_ctc_results_render_over_their_tiff_frames(tmp_path: Path) -> None:
    truth = read_ctc(str(MAN_TRACK), str(CELLS / "test_0"))
    assigned = {(f.frame_idx, i.index_in_frame): i.track for f in truth.frames for i in f.instances}
    results = write_tracks(truth, Predictions(assigned), tmp_path)
    drawn = render(results, tmp_path / "cells.mp4", video=str(CELLS / "test_0"))
    assert (drawn.frames, drawn.width, drawn.height) == (11, 608, 592)
    video = sio.load_video(str(drawn.output), grayscale=False)
    assert video.shape[:3] == (11, 592, 608)
    assert_track_colours(video[5], isolated_points(truth, 5, 0, clearance=60))


def test_a_tracks_csv_finds_its_tiff_stack_by_name(tmp_path: Path) -> None:
    points = truth_points()
    write_tracks_csv(points, tmp_path / "cells.dreem_tracks.csv")
    write_stack(tmp_path, "cells")
    drawn = render(
        tmp_path / "cells.dreem_tracks.csv", tmp_path / "cells.png", options=RenderOptions(frames=FrameRange(3, 4))
    )
    image = np.asarray(Image.open(drawn.output).convert("RGB"))
    video = read_ctc(str(MAN_TRACK), str(CELLS / "test_0"))
    # The CSV names tracks by their CTC labels, ordered as the reader orders them.
    labels = sorted({name for name, *_ in points}, key=lambda n: (len(str(n)), str(n)))
    remap = {video.track_names.index(str(label)): position for position, label in enumerate(labels)}
    assert_track_colours(image, [(remap[t], x, y) for t, x, y in isolated_points(video, 3, 0, clearance=60)])


def test_bad_input_is_refused_and_nothing_is_overwritten(tmp_path: Path) -> None:
    untracked = sio.load_slp(TWO_FLIES_SLP)
    for frame in untracked.labeled_frames:
        for instance in frame.instances:
            instance.track = None
    untracked.tracks = []
    sio.save_slp(untracked, str(tmp_path / "untracked.slp"))
    with pytest.raises(RenderError, match="holds no tracks"):
        render(tmp_path / "untracked.slp", tmp_path / "a.mp4", video=TWO_FLIES_MP4)

    short, small = tmp_path / "short.mp4", tmp_path / "small.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-v", "error", "-y"]
    subprocess.run([ffmpeg, "-i", TWO_FLIES_MP4, "-frames:v", "20", *encode, str(short)], check=True)
    subprocess.run([ffmpeg, "-i", TWO_FLIES_MP4, "-vf", "scale=256:256", *encode, str(small)], check=True)
    with pytest.raises(RenderError, match=r"labels reach frame 127, but .*short.mp4 has 20 frames"):
        render(TWO_FLIES_SLP, tmp_path / "a.mp4", video=str(short))
    with pytest.raises(RenderError, match=r"outside the 256x256 frames of .*small.mp4"):
        render(TWO_FLIES_SLP, tmp_path / "a.mp4", video=str(small))

    with pytest.raises(RenderError, match=r"nope\.mp4: no such video"):
        render(TWO_FLIES_SLP, tmp_path / "a.mp4", video=str(tmp_path / "nope.mp4"))
    moved = tmp_path / "elsewhere" / "two_flies.slp"
    moved.parent.mkdir()
    shutil.copy(TWO_FLIES_SLP, moved)
    with pytest.raises(RenderError, match=r"cannot find its video .*two_flies.mp4.*give it with --video"):
        render(moved, tmp_path / "a.mp4")
    with pytest.raises(RenderError, match="outside the 128 frames"):
        render(TWO_FLIES_SLP, tmp_path / "a.mp4", options=RenderOptions(frames=FrameRange(120, 130)))
    with pytest.raises(RenderError, match="--preset: not a libx264 preset"):
        render(TWO_FLIES_SLP, tmp_path / "a.mp4", options=RenderOptions(preset="quick"))
    assert not (tmp_path / "a.mp4").exists()

    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"the user's own video")
    with pytest.raises(RenderError, match=r"mine\.mp4: already exists; pass --overwrite"):
        render(TWO_FLIES_SLP, mine, options=RenderOptions(frames=FrameRange(0, 2)))
    assert mine.read_bytes() == b"the user's own video"
    render(TWO_FLIES_SLP, mine, options=RenderOptions(frames=FrameRange(0, 2), overwrite=True))
    assert sio.load_video(str(mine)).shape[0] == 2
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_the_command_reports_errors_with_exit_2_and_loads_no_torch(tmp_path: Path) -> None:
    mine = tmp_path / "mine.mp4"
    mine.write_bytes(b"x")
    refused = subprocess.run(
        [dreem_executable(), "render", TWO_FLIES_SLP, "--output", str(mine)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "already exists; pass --overwrite" in refused.stderr
    drawn = subprocess.run(
        [dreem_executable(), "render", TWO_FLIES_SLP, "-o", str(tmp_path / "f.png"), "--frames", "3", "--boxes"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert drawn.returncode == 0, drawn.stderr
    assert "f.png: 1 frame, 1024x1024, 2 tracks" in drawn.stdout
    probe = "import sys, dreem_trainer.cli, dreem_trainer.inference.render; print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def distance_to_path(pixels: npt.NDArray[np.float64], path: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each (x, y) pixel's distance to the polyline `path` (n, 2)."""
    nearest = np.full(len(pixels), np.inf)
    for start, end in itertools.pairwise(path):
        along = end - start
        t = np.clip((pixels - start) @ along / max(float(along @ along), 1e-9), 0, 1)[:, None]
        nearest = np.minimum(nearest, np.linalg.norm(pixels - (start + t * along), axis=1))
    return nearest


def test_each_render_option_of_the_command_reaches_the_video(tmp_path: Path) -> None:
    """The command's options are generated from RenderOptions: each one typed must change what is drawn."""
    import cv2
    from typer.testing import CliRunner

    from dreem_trainer.cli import app

    target = tmp_path / "clip.mp4"
    target.write_bytes(b"the user's own video")
    typed = ["--frames", "2:6", "--scale", "0.5", "--fps", "5"]
    args = ["render", TWO_FLIES_SLP, "-o", str(target), *typed, "--preset", "ultrafast"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "already exists" in refused.output
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert "clip.mp4: 4 frames, 512x512, 2 tracks" in result.output
    capture = cv2.VideoCapture(str(target))
    assert capture.get(cv2.CAP_PROP_FPS) == 5 and capture.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    capture.release()
    bad = CliRunner().invoke(app, ["render", TWO_FLIES_SLP, "-o", str(tmp_path / "x.mp4"), "--preset", "quick"])
    assert bad.exit_code == 2 and "--preset: not a libx264 preset" in bad.output

    # --boxes, --trail and --crf one at a time, each against the same command without it. At --crf 0 libx264
    # is lossless, so the pixels that differ are the ones the option drew. Frame 50, where a fly walks.
    last, trail = 50, 12

    def command(name: str, *options: str) -> tuple[Path, npt.NDArray[np.int64]]:
        output = tmp_path / f"{name}.mp4"
        frames = ["--frames", f"{last - 2}:{last + 1}", "--scale", "0.5", "--preset", "ultrafast"]
        ran = CliRunner().invoke(app, ["render", TWO_FLIES_SLP, "-o", str(output), *frames, *options])
        assert ran.exit_code == 0, ran.output
        return output, sio.load_video(str(output), grayscale=False)[-1].astype(np.int64)

    base_file, base = command("base", "--crf", "0")

    def drawn(image: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """(x, y) of the pixels that differ from the base render."""
        return np.argwhere(np.abs(image - base).max(axis=2) > 20)[:, ::-1].astype(np.float64)

    truth = SleapLabels().read(TWO_FLIES_SLP, TWO_FLIES_MP4)
    (frame,) = [f for f in truth.frames if f.frame_idx == last]

    # --boxes: a box around each fly, just outside its keypoints' extent on all four sides, and nothing else.
    x, y = drawn(command("boxes", "--crf", "0", "--boxes")[1]).T
    around_any = np.zeros(len(x), dtype=bool)
    for instance in frame.instances:
        points = instance.points[~np.isnan(instance.points).any(axis=1)] / 2
        (left, top), (right, bottom) = points.min(axis=0), points.max(axis=0)
        sides = np.stack([left - x, x - right, top - y, y - bottom])
        outside = sides.max(axis=0)
        around = (outside > 0) & (outside <= 10)
        assert all((around & (side == outside)).any() for side in sides), instance.track
        around_any |= around
    assert len(x) and around_any.all()

    # --trail: lines along each track's positions of the last `trail` frames (the centres of its visible
    # keypoints), reaching back to where the fly that moved most was trail - 1 frames ago.
    pixels = drawn(command("trail", "--crf", "0", "--trail", str(trail))[1])
    paths: dict[int, list[npt.NDArray[np.float64]]] = {}
    for earlier in truth.frames:
        if last - trail <= earlier.frame_idx <= last:
            for instance in earlier.instances:
                visible = instance.points[~np.isnan(instance.points).any(axis=1)]
                paths.setdefault(instance.track, []).append(visible.mean(axis=0) / 2)
    tracks = {track: np.array(positions) for track, positions in paths.items()}
    # Within 4 px: anti-aliasing, and colour drawn on planes of half the resolution.
    assert len(pixels) and (np.min([distance_to_path(pixels, path) for path in tracks.values()], axis=0) <= 4).all()
    walked = max(tracks.values(), key=lambda path: float(np.linalg.norm(path[1] - path[-1])))
    assert np.linalg.norm(walked[1] - walked[-1]) > 10  # far from where the fly is drawn now
    assert np.linalg.norm(pixels - walked[1], axis=1).min() <= 4

    # --crf: a coarser encoding of the same pictures, in a smaller file.
    coarse_file, coarse = command("coarse", "--crf", "40")
    assert coarse_file.stat().st_size < base_file.stat().st_size
    assert 0 < np.abs(coarse - base).mean() < 10


def test_drawing_in_place_never_reaches_the_frames_decoded_after() -> None:
    """Frames are drawn on in the decoder's own buffers. A decoder keeps decoded frames as references for
    the next ones, so a drawing on a shared buffer would show up, moved, in later frames. Decode the clip
    twice, once drawing a white square over most of each frame: each frame must come out of the decoder
    exactly as it does when nothing is drawn."""
    layout = FrameLayout.of(video_facts(str(TWO_FLIES_MP4)), 1.0)
    frames = range(40)
    clean = video_frames(str(TWO_FLIES_MP4), frames, layout)
    drawn_on = video_frames(str(TWO_FLIES_MP4), frames, layout)
    compared = 0
    try:
        for untouched, frame in zip(clean, drawn_on, strict=True):
            planes, expected = planes_of(frame), planes_of(untouched)
            assert all(np.array_equal(got, want) for got, want in zip(planes, expected, strict=True)), compared
            for plane in planes:
                plane[: plane.shape[0] * 3 // 4, : plane.shape[1] * 3 // 4] = 255
            compared += 1
    finally:
        clean.close()
        drawn_on.close()
    assert compared == len(frames)


def test_an_odd_sized_grey_video_keeps_its_size_but_one_padding_pixel(tmp_path: Path) -> None:
    """A video that is not I420 (grey, and negated so its edges are bright) at an odd size: converted once,
    padded to even for x264. The range starts mid-video, where both flies are apart (two frames: sleap-io
    cannot read a one-frame mp4 back)."""
    odd = tmp_path / "odd.mp4"
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    grey_odd = ["-vf", "format=gray,crop=1023:1021:0:0,negate", "-pix_fmt", "gray"]
    encode = ["-c:v", "libx264", "-preset", "ultrafast"]
    subprocess.run([ffmpeg, "-v", "error", "-i", TWO_FLIES_MP4, *grey_odd, *encode, str(odd)], check=True)
    drawn = render(
        TWO_FLIES_SLP, tmp_path / "odd_drawn.mp4", video=str(odd), options=RenderOptions(frames=FrameRange(64, 66))
    )
    assert (drawn.frames, drawn.width, drawn.height) == (2, 1024, 1022)
    video = sio.load_video(str(drawn.output), grayscale=False)
    assert video.shape[:3] == (2, 1022, 1024)
    truth = SleapLabels().read(TWO_FLIES_SLP, TWO_FLIES_MP4)
    thorax = truth.node_names.index("thorax")
    image = video[0]
    assert_track_colours(image, isolated_points(truth, 64, thorax, clearance=40))
    # The padding column and row are black, next to the video's own (negated, so bright) edge.
    assert image[:, -1].max() < 40 and image[-1, :].max() < 40
    assert np.median(image[:-1, -2]) > 150 and np.median(image[-2, :-1]) > 150
