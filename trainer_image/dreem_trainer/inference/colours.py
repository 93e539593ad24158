"""One colour per track, the same in `dreem render`'s videos and in `dreem eval`'s identity timelines,
so a track looks the same in both. Saturated colours, blue and orange first (told apart with the
common colour-vision deficiencies), that stand out on grey animal and microscopy footage."""

from __future__ import annotations

RGB = tuple[int, int, int]

PALETTE: tuple[RGB, ...] = (
    (0, 130, 200),  # blue
    (245, 130, 48),  # orange
    (60, 180, 75),  # green
    (230, 25, 75),  # red
    (145, 30, 180),  # purple
    (70, 240, 240),  # cyan
    (240, 50, 230),  # magenta
    (255, 225, 25),  # yellow
    (210, 245, 60),  # lime
    (0, 128, 128),  # teal
    (170, 110, 40),  # brown
    (0, 0, 128),  # navy
)

UNASSIGNED: RGB = (190, 190, 190)
"""An instance present in the ground truth that no predicted track covers."""


def track_colour(track: int) -> RGB:
    """The colour of track `track` (0, 1, ...); colours repeat after len(PALETTE) tracks."""
    return PALETTE[track % len(PALETTE)]
