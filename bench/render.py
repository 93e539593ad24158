"""`dreem render` against the video work it cannot avoid: a bare ffmpeg decode and re-encode of the same
video with the same codec settings, measured in the same run, rounds interleaved (the order rotating)
so that load from other work on the machine falls on all sides.

Two bare transcodes are timed: the ffmpeg command (imageio-ffmpeg's binary, the issue's yardstick) and the
same decode and re-encode through PyAV, the FFmpeg libraries dreem render itself runs in process, so that a
difference between the two builds of FFmpeg shows instead of passing for the render's own cost.

The rendered workload is the bundled two-fly clip (1024x1024, 128 frames) with its ground-truth tracks:
skeletons, names, 10-frame trails and boxes. Wall time and CPU time (this process and its children: the
decoder and encoder) are reported per side, as medians over the rounds, with the ratio of the medians.

Run: `.venv/bin/python -m bench.render [--rounds 7] [--preset superfast] [--crf 25]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DEMO_DATA, median
from dreem_trainer.inference.render import render
from dreem_trainer.inference.render_options import RenderOptions

VIDEO = DEMO_DATA / "two_flies.mp4"
LABELS = DEMO_DATA / "two_flies.slp"


def cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bare_transcode(target: Path, preset: str, crf: int) -> None:
    """ffmpeg alone: decode, re-encode with the codec arguments dreem render gives its encoder."""
    import imageio_ffmpeg
    import sleap_io as sio

    settings = sio.VideoWriter(target, fps=25, crf=crf, preset=preset)
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-y", "-i", str(VIDEO), "-an", "-sn"]
    command += ["-vcodec", settings.codec, "-pix_fmt", settings.pixelformat, *settings.build_output_params()]
    command.append(str(target))
    subprocess.run(command, check=True)


def bare_library_transcode(target: Path, preset: str, crf: int) -> None:
    """The same decode and re-encode through PyAV's FFmpeg libraries: threads as the ffmpeg command picks them."""
    from fractions import Fraction

    import av
    from av.video.frame import PictureType

    with av.open(str(VIDEO)) as source, av.open(str(target), "w") as output:
        decoding = source.streams.video[0]
        decoding.thread_type = "AUTO"
        encoding = output.add_stream("libx264", rate=25)
        encoding.width, encoding.height, encoding.pix_fmt = decoding.width, decoding.height, "yuv420p"
        encoding.time_base = frame_time = Fraction(1, 25)  # the stream's own changes once the muxer opens
        encoding.options = {"crf": str(crf), "preset": preset}
        encoding.codec_context.thread_count = 0
        for index, frame in enumerate(source.decode(decoding)):
            frame.pts, frame.time_base, frame.pict_type = index, frame_time, PictureType.NONE
            output.mux(encoding.encode(frame))
        output.mux(encoding.encode(None))


def timed(action: Any) -> tuple[float, float]:
    cpu, wall = cpu_seconds(), time.perf_counter()
    action()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--preset", default=RenderOptions.preset)
    parser.add_argument("--crf", type=int, default=RenderOptions.crf)
    args = parser.parse_args()
    options = RenderOptions(trail=10, boxes=True, overwrite=True, preset=args.preset, crf=args.crf, progress=False)
    load_before = os.getloadavg()
    timings: dict[str, list[tuple[float, float]]] = {"bare": [], "bare_library": [], "render": []}
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        frames = 0

        def draw() -> None:
            nonlocal frames
            frames = render(LABELS, out / "rendered.mp4", str(VIDEO), options).frames

        sides = [
            ("bare", lambda: bare_transcode(out / "bare.mp4", args.preset, args.crf)),
            ("bare_library", lambda: bare_library_transcode(out / "library.mp4", args.preset, args.crf)),
            ("render", draw),
        ]
        for round_number in range(args.rounds):
            shift = round_number % len(sides)
            for name, action in sides[shift:] + sides[:shift]:
                timings[name].append(timed(action))
    bare, library, drawn = timings["bare"], timings["bare_library"], timings["render"]
    bare_wall, render_wall = median([w for w, _ in bare]), median([w for w, _ in drawn])
    bare_cpu, render_cpu = median([c for _, c in bare]), median([c for _, c in drawn])
    library_wall, library_cpu = median([w for w, _ in library]), median([c for _, c in library])
    print(
        json.dumps(
            {
                "video": f"{VIDEO.name}, 1024x1024, {frames} frames",
                "codec": f"libx264 -preset {args.preset} -crf {args.crf}, yuv420p",
                "rounds": args.rounds,
                "bare_decode_reencode_s": round(bare_wall, 3),
                "render_s": round(render_wall, 3),
                "ratio": round(render_wall / bare_wall, 3),
                "bare_frames_per_s": round(frames / bare_wall, 1),
                "render_frames_per_s": round(frames / render_wall, 1),
                "bare_cpu_s": round(bare_cpu, 3),
                "render_cpu_s": round(render_cpu, 3),
                "cpu_ratio": round(render_cpu / bare_cpu, 3),
                "bare_library_transcode_s": round(library_wall, 3),
                "bare_library_cpu_s": round(library_cpu, 3),
                "ratio_to_library_transcode": round(render_wall / library_wall, 3),
                "cpu_ratio_to_library_transcode": round(render_cpu / library_cpu, 3),
                "per_round_ratio": [round(r / b, 3) for (r, _), (b, _) in zip(drawn, bare, strict=True)],
                "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
