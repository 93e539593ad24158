"""`dreem eval`'s pictures: an identity timeline per video and a bar chart of the metrics per video.

The timeline has one row per ground-truth identity over the frames, each frame coloured by the
predicted track that covered it, in the colours `dreem render` draws that track with. An identity
switch is a change of colour along a row, marked with a black tick. Drawn with matplotlib's Agg
canvas directly: no display and no global pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dreem_trainer.inference.colours import RGB, UNASSIGNED, track_colour

BLANK = (255, 255, 255)
"""Frames where an identity is not in the ground truth."""
RATIO_METRICS = ("mota", "idf1", "precision", "recall")
MAX_LABELLED_ROWS = 60
"""Beyond this many identities (cells), rows lose their names to stay readable."""


def identity_rows(
    frame_indices: npt.ArrayLike, true_tracks: npt.ArrayLike, predicted_tracks: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The timeline as numbers: identities (rows), frames (columns), and (rows, columns) predicted
    track covering each, -1 where none does and -2 where the identity is absent."""
    frames, truth, guess = (np.asarray(a, dtype=np.int64) for a in (frame_indices, true_tracks, predicted_tracks))
    identities = np.unique(truth[truth >= 0])
    span = np.arange(frames.min(), frames.max() + 1) if len(frames) else np.zeros(0, dtype=np.int64)
    grid = np.full((len(identities), len(span)), -2, dtype=np.int64)
    labelled = truth >= 0
    rows = np.searchsorted(identities, truth[labelled])
    grid[rows, frames[labelled] - (span[0] if len(span) else 0)] = np.where(guess[labelled] >= 0, guess[labelled], -1)
    return identities, span, grid


def switches(grid: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """(row, column) where a row's covering track differs from the one that last covered it."""
    found = []
    for row, cells in enumerate(grid):
        previous = -1
        for column, track in enumerate(cells):
            if track < 0:
                continue
            if previous >= 0 and track != previous:
                found.append((row, column))
            previous = int(track)
    return found


def write_identity_timeline(
    path: Path,
    title: str,
    frame_indices: npt.ArrayLike,
    true_tracks: npt.ArrayLike,
    predicted_tracks: npt.ArrayLike,
    identity_names: Sequence[str] = (),
) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    identities, span, grid = identity_rows(frame_indices, true_tracks, predicted_tracks)
    image = np.empty((*grid.shape, 3), dtype=np.uint8)
    image[:] = BLANK
    image[grid == -1] = UNASSIGNED
    shown_tracks = sorted({int(t) for t in np.unique(grid) if t >= 0})
    for track in shown_tracks:
        image[grid == track] = track_colour(track)
    marks = switches(grid)
    height = min(2.0 + 0.35 * len(identities), 30.0)
    figure = Figure(figsize=(11, height), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    first, last = (int(span[0]), int(span[-1])) if len(span) else (0, 0)
    axes.imshow(
        image, aspect="auto", interpolation="nearest", extent=(first - 0.5, last + 0.5, len(identities) - 0.5, -0.5)
    )
    for row, column in marks:
        x = int(span[column]) - 0.5
        axes.plot([x, x], [row - 0.5, row + 0.5], color="black", linewidth=1.5)
        axes.plot([x], [row - 0.5], marker="v", color="black", markersize=6, clip_on=False)
    names = [_name(identity_names, int(i)) for i in identities]
    if len(identities) <= MAX_LABELLED_ROWS:
        axes.set_yticks(range(len(identities)), names)
    else:
        axes.set_yticks([])
    axes.set_xlabel("frame")
    axes.set_ylabel("ground-truth identity")
    axes.set_title(f"{title}: predicted track covering each identity ({len(marks)} switches marked ▼)")
    legend = [Patch(color=_unit(track_colour(t)), label=f"track {t}") for t in shown_tracks[:24]]
    legend.append(Patch(color=_unit(UNASSIGNED), label="no track"))
    axes.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    figure.savefig(path)
    return path


def _unit(colour: RGB) -> tuple[float, float, float]:
    red, green, blue = colour
    return red / 255, green / 255, blue / 255


def _name(names: Sequence[str], identity: int) -> str:
    return names[identity] if identity < len(names) and names[identity] else f"identity {identity}"


def write_metrics_chart(path: Path, rows: Sequence[dict[str, float | str]]) -> Path:
    """Bars of MOTA, IDF1, precision and recall per video, and beside them the identity switches."""
    from matplotlib.figure import Figure

    videos = [str(row["video"]) for row in rows]
    figure = Figure(figsize=(max(8.0, 2.0 + 1.2 * len(videos)), 4.5), dpi=100, layout="constrained")
    ratios, counts = figure.subplots(1, 2, width_ratios=(3, 1))
    positions = np.arange(len(videos))
    width = 0.8 / len(RATIO_METRICS)
    for offset, metric in enumerate(RATIO_METRICS):
        values = [float(row[metric]) for row in rows]
        ratios.bar(positions + (offset - (len(RATIO_METRICS) - 1) / 2) * width, values, width, label=metric)
    ratios.set_xticks(
        positions, videos, rotation=30 if len(videos) > 4 else 0, ha="right" if len(videos) > 4 else "center"
    )
    ratios.set_ylim(min(0.0, *(float(row["mota"]) for row in rows)), 1.15)
    ratios.axhline(0, color="black", linewidth=0.8)
    ratios.set_title("per video")
    ratios.legend(loc="upper center", ncols=len(RATIO_METRICS), fontsize="small", frameon=False)
    counts.bar(positions, [float(row["num_switches"]) for row in rows], color="black")
    counts.set_xticks(
        positions, videos, rotation=30 if len(videos) > 4 else 0, ha="right" if len(videos) > 4 else "center"
    )
    counts.set_title("identity switches")
    figure.savefig(path)
    return path
