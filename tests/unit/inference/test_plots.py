"""`dreem eval`'s identity timeline and metrics chart, read back as images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from dreem_trainer.inference.colours import track_colour
from dreem_trainer.inference.plots import identity_rows, switches, write_identity_timeline, write_metrics_chart

FRAMES, SWITCH = 60, 36


def swapped_at_switch() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Two identities over FRAMES frames; track 0 follows identity 0 until SWITCH, then identity 1 (a swap)."""
    frames = np.repeat(np.arange(FRAMES), 2)
    truth = np.tile([0, 1], FRAMES)
    predicted = np.where(frames < SWITCH, truth, 1 - truth)
    return frames, truth, predicted


def row_colours(image: npt.NDArray[np.int64], colours: list[npt.NDArray[np.int64]]) -> list[npt.NDArray[np.int64]]:
    """For each image row, which of `colours` each pixel is exactly (-1: none), found in the plotted area."""
    matches = np.full(image.shape[:2], -1, dtype=np.int64)
    for index, colour in enumerate(colours):
        matches[(image[..., :3] == colour).all(axis=2)] = index
    return list(matches)


def test_a_switch_changes_the_colour_along_its_row(tmp_path: Path) -> None:
    frames, truth, predicted = swapped_at_switch()
    path = write_identity_timeline(tmp_path / "timeline.png", "clip", frames, truth, predicted, ["F", "M"])
    image = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    first, second = np.array(track_colour(0)), np.array(track_colour(1))
    rows = row_colours(image, [first, second])
    # The plotted area: the image rows and columns where the two track colours appear.
    painted = np.array([(row >= 0).sum() for row in rows])
    plotted_rows = np.flatnonzero(painted > painted.max() * 0.5)
    top, bottom = plotted_rows.min(), plotted_rows.max()
    columns = np.flatnonzero((np.array(rows)[top : bottom + 1] >= 0).mean(axis=0) > 0.5)  # not the legend
    left, right = columns.min(), columns.max()
    boundary = left + (right - left + 1) * SWITCH / FRAMES
    for identity, (before, after) in enumerate([(0, 1), (1, 0)]):
        middle = rows[round(top + (bottom - top) * (identity + 0.5) / 2)][left : right + 1]
        x = np.arange(left, right + 1)
        early, late = middle[x < boundary - 3], middle[x > boundary + 3]
        assert (early == before).mean() > 0.95, f"identity {identity} starts in track {before}'s colour"
        assert (late == after).mean() > 0.95, f"identity {identity} continues in track {after}'s colour"


def test_switches_are_found_per_identity_and_gaps_are_not_switches() -> None:
    frames, truth, predicted = swapped_at_switch()
    predicted[(frames == 10) & (truth == 0)] = -1  # a frame where no track covers identity 0
    identities, span, grid = identity_rows(frames, truth, predicted)
    assert identities.tolist() == [0, 1] and span.tolist() == list(range(FRAMES))
    assert grid[0, 10] == -1 and grid[0, 9] == grid[0, 11] == 0
    assert switches(grid) == [(0, SWITCH), (1, SWITCH)]


def test_metrics_chart_is_written(tmp_path: Path) -> None:
    rows: list[dict[str, float | str]] = [
        {"video": "a", "mota": 0.9, "idf1": 0.8, "precision": 1.0, "recall": 0.95, "num_switches": 2.0},
        {"video": "b", "mota": -0.2, "idf1": 0.5, "precision": 0.7, "recall": 0.6, "num_switches": 7.0},
    ]
    image = Image.open(write_metrics_chart(tmp_path / "metrics.png", rows))
    assert image.format == "PNG" and image.width > 400 and image.height > 300
