"""A synthetic stand-in for DREEM's `ten_zfish`: ten fish swimming on 3712x3712 grey frames, 32 frames.

The real clip is not available here; what its workload stresses is the frame size (13.8 Mpx to decode
per frame) and ten instances per frame (320 crops per 32-frame clip). Each fish is an ellipse with its own
stripe pattern, so identities can be told apart, on a smooth background with faint texture. Frames are
written with OpenCV (mpeg4), labels with sleap-io, into a folder the benchmarks ignore in git.

Usage: python -m bench.zfish [OUTDIR]   (default bench/data/ten_zfish; skipped when already made)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.common import REPO

SIZE = 3712
FRAMES = 32
FISH = 10
NODES = ("head", "center", "tail")
BODY_LENGTH = 90.0
DEFAULT_DIR = REPO / "bench" / "data" / "ten_zfish"
STEM = "ten_zfish"


def _trajectories(
    rng: np.random.Generator, size: int, frames: int, fish: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(frames, fish, 2) centres and (frames, fish) headings of fish swimming smooth random paths."""
    scale = size / SIZE
    margin = 300.0 * scale
    start = rng.uniform(margin, size - margin, size=(fish, 2))
    heading = rng.uniform(0, 2 * np.pi, size=fish)
    speed = rng.uniform(8.0, 20.0, size=fish) * scale
    centres = np.zeros((frames, fish, 2))
    headings = np.zeros((frames, fish))
    position = start
    for t in range(frames):
        heading = heading + rng.normal(0, 0.15, size=fish)
        position = np.clip(
            position + speed[:, None] * np.stack([np.cos(heading), np.sin(heading)], 1), margin, size - margin
        )
        centres[t], headings[t] = position, heading
    return centres, headings


def _background(rng: np.random.Generator, size: int) -> npt.NDArray[np.uint8]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    smooth = 90 + 30 * np.sin(3 * x + 1.0) * np.cos(2 * y)
    texture = rng.normal(0, 3, size=(size // 16, size // 16)).astype(np.float32)
    texture = np.kron(texture, np.ones((16, 16), dtype=np.float32))
    background: npt.NDArray[np.uint8] = np.clip(smooth + texture, 0, 255).astype(np.uint8)
    return background


def _draw_fish(
    frame: npt.NDArray[np.uint8], centre: npt.NDArray[np.float64], heading: float, identity: int, length: float
) -> None:
    """An ellipse body `length` long with `identity`-dependent stripes, drawn into a local window only."""
    half = int(length)
    cx, cy = round(centre[0]), round(centre[1])
    y, x = np.mgrid[cy - half : cy + half, cx - half : cx + half].astype(np.float32)
    along = (x - centre[0]) * np.cos(heading) + (y - centre[1]) * np.sin(heading)
    across = -(x - centre[0]) * np.sin(heading) + (y - centre[1]) * np.cos(heading)
    body = (along / (length / 2)) ** 2 + (across / (length / 7)) ** 2 <= 1.0
    stripes = np.cos(along * (0.08 + 0.04 * identity) * BODY_LENGTH / length + identity) > 0
    shade = np.where(stripes, 40 + 8 * identity, 200 - 6 * identity).astype(np.uint8)
    window = frame[cy - half : cy + half, cx - half : cx + half]
    window[body] = shade[body]


def _points(centre: npt.NDArray[np.float64], heading: float, length: float) -> npt.NDArray[np.float64]:
    direction = np.array([np.cos(heading), np.sin(heading)])
    offset = direction * length / 2
    return np.stack([centre + offset, centre, centre - offset])


def make(
    directory: Path = DEFAULT_DIR, seed: int = 0, size: int = SIZE, frames: int = FRAMES, fish: int = FISH
) -> Path:
    """Writes ten_zfish.mp4 and ten_zfish.slp into `directory` (once); returns the directory. Smaller `size`,
    `frames` and `fish` make a scaled-down clip (bench/gpu.py --smoke), the fish scaled with the frame."""
    import cv2
    import sleap_io as sio

    video_path, labels_path = directory / f"{STEM}.mp4", directory / f"{STEM}.slp"
    if video_path.is_file() and labels_path.is_file():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    length = BODY_LENGTH * size / SIZE
    centres, headings = _trajectories(rng, size, frames, fish)
    background = _background(rng, size)
    partial = directory / f".{STEM}.partial.mp4"
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"mp4v"), 30.0, (size, size), isColor=False)
    try:
        for t in range(frames):
            frame = background.copy()
            for identity in range(fish):
                _draw_fish(frame, centres[t, identity], float(headings[t, identity]), identity, length)
            writer.write(frame)
    finally:
        writer.release()
    partial.replace(video_path)

    skeleton = sio.Skeleton(list(NODES))
    tracks = [sio.Track(name=f"fish_{identity}") for identity in range(fish)]
    video = sio.Video.from_filename(str(video_path))
    labelled = [
        sio.LabeledFrame(
            video=video,
            frame_idx=t,
            instances=[
                sio.Instance.from_numpy(
                    _points(centres[t, identity], float(headings[t, identity]), length),
                    skeleton,
                    track=tracks[identity],
                )
                for identity in range(fish)
            ],
        )
        for t in range(frames)
    ]
    labels = sio.Labels(labeled_frames=labelled, videos=[video], skeletons=[skeleton], tracks=tracks)
    sio.save_slp(labels, str(labels_path), verbose=False)
    video.close()
    return directory


if __name__ == "__main__":
    print(make(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR))
