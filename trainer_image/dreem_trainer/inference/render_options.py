"""What `dreem render` can be asked for: each option spelled once, as a field of `RenderOptions` whose
metadata makes it a command-line option, so the CLI, `dreem track --render` and the benchmark share one
set of defaults.

Kept apart from `render` so that the CLI builds its options without loading OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dreem_trainer.data.sources import DataError

CLI = "cli"
"""The metadata key of a field that is a command-line option: (flag, typer.Option keyword arguments)."""
X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
TIFF_FPS = 10.0
"""Frame rate of a video made from TIFF frames, which record none, unless --fps is given."""


class RenderError(DataError):
    """A tracked file, video or output that cannot be rendered, with the path and the reason."""


@dataclass(frozen=True)
class FrameRange:
    """Frames `start` to `stop` (exclusive), as in Python; None: from the first, to the last."""

    start: int | None = None
    stop: int | None = None

    @classmethod
    def parse(cls, text: str) -> FrameRange:
        """`A:B`, `A:`, `:B`, or `A` for frame A alone."""
        parts = text.split(":")
        try:
            if len(parts) == 1:
                return cls(int(parts[0]), int(parts[0]) + 1)
            if len(parts) == 2:
                return cls(int(parts[0]) if parts[0] else None, int(parts[1]) if parts[1] else None)
        except ValueError:
            pass
        # The command line names --frames before this message.
        raise RenderError(f"expected A:B, A:, :B or A (frame numbers from 0), got {text!r}")

    def resolve(self, frame_count: int, video: str, first_frame: int = 0) -> range:
        """The frames to draw; all of them, from the video's first, by default."""
        start = first_frame if self.start is None else self.start
        stop = frame_count if self.stop is None else self.stop
        if not 0 <= start < stop <= frame_count:
            raise RenderError(
                f"--frames {start}:{stop}: outside the {frame_count} frames (0 to {frame_count - 1}) of {video}"
            )
        return range(start, stop)


def option(flag: str, help: str, **typer_option: Any) -> dict[str, Any]:
    """A field's metadata making it the command-line option `flag`."""
    return {CLI: (flag, {"help": help, **typer_option})}


@dataclass(frozen=True)
class RenderOptions:
    """How tracks are drawn and encoded. A field made with `option` is a `dreem render` option of the same
    name and meaning, its default shown in --help; one the user leaves out keeps the default here."""

    trail: int = field(default=0, metadata=option("--trail", "Draw each track's last N positions.", min=0))
    boxes: bool = field(default=False, metadata=option("--boxes", "Draw a box around each instance."))
    scale: float = field(
        default=1.0,
        metadata=option("--scale", "Resize the frames by this factor.", show_default="the video's own size"),
    )
    frames: FrameRange = field(
        default_factory=FrameRange,
        metadata=option(
            "--frames",
            "Frames A:B (B excluded, from 0), A:, :B, or A alone.",
            parser=FrameRange.parse,
            metavar="A:B",
            show_default="all",
        ),
    )
    fps: float | None = field(
        default=None,
        metadata=option(
            "--fps", "Frame rate of the output.", show_default=f"the video's own; TIFF frames record none: {TIFF_FPS:g}"
        ),
    )
    crf: int = field(default=25, metadata=option("--crf", "libx264 quality, 0-51: lower is better and bigger."))
    preset: str = field(
        default="superfast", metadata=option("--preset", "libx264 speed preset (ultrafast ... veryslow).")
    )
    overwrite: bool = field(default=False, metadata=option("--overwrite", "Replace OUTPUT if it exists."))
    progress: bool = True
    """A progress bar on stderr; `dreem render` always shows it."""

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise RenderError(f"--fps: a frame rate above 0, got {self.fps:g}")
        if not 0 <= self.crf <= 51:
            raise RenderError(f"--crf: libx264's quality runs from 0 to 51, got {self.crf}")
        if self.preset not in X264_PRESETS:
            raise RenderError(f"--preset: not a libx264 preset ({', '.join(X264_PRESETS)}), got {self.preset!r}")
        if not (math.isfinite(self.scale) and 0 < self.scale <= 8):
            raise RenderError(f"--scale: expected a factor above 0 and at most 8, got {self.scale}")
