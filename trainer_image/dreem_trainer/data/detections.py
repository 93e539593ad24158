"""Which detections of a frame are kept before tracking, by DREEM's rules.

A pose model may report one animal twice, or more animals than there are: `max_detection_overlap` drops
near-duplicates (the one with fewer visible keypoints), and `tracker.max_tracks` drops the least confident
predictions beyond that many. Labelled (user) instances have score 1 and are never dropped for confidence.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def excess_detections(scores: npt.ArrayLike, max_tracks: int | None) -> set[int]:
    """Positions to drop so that at most `max_tracks` remain: repeatedly the least confident one, as long as its
    score is under 1 (a labelled instance's); the first of equals goes first."""
    remaining = list(enumerate(np.asarray(scores, dtype=np.float64).tolist()))
    dropped: set[int] = set()
    if max_tracks is None:
        return dropped
    for _ in range(len(remaining) - max_tracks):
        position, score = min(remaining, key=lambda item: item[1])
        if score < 1:
            remaining.remove((position, score))
            dropped.add(position)
    return dropped


def overlapping_duplicates(
    boxes: npt.NDArray[np.floating], visible_nodes: npt.ArrayLike, max_overlap: float
) -> set[int]:
    """Positions to drop among detections whose boxes overlap by more than `max_overlap` (intersection over
    the smaller area, averaged over anchors): of each such pair, the one with fewer visible keypoints (the
    second on a tie). Pairs are taken in row order; a pair with an already dropped member is skipped.

    `boxes` is (N, A, 4) y1, x1, y2, x2.
    """
    if max_overlap <= 0 or len(boxes) < 2:
        return set()
    visible = np.asarray(visible_nodes)
    size = np.minimum(boxes[:, None, :, 2:], boxes[None, :, :, 2:]) - np.maximum(
        boxes[:, None, :, :2], boxes[None, :, :, :2]
    )
    intersection = size.clip(min=0).prod(axis=-1)  # (N, N, A)
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # (N, A)
    with np.errstate(invalid="ignore", divide="ignore"):
        overlap = np.nanmean(intersection / np.minimum(area[:, None], area[None]), axis=-1)
    dropped: set[int] = set()
    for first, second in zip(*np.nonzero(overlap > max_overlap), strict=True):
        if first == second or first in dropped or second in dropped:
            continue
        dropped.add(int(second) if visible[first] >= visible[second] else int(first))
    return dropped
